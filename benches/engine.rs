//! Engine benchmark (prints figures; not a timed test).
//!
//! 1. Process spawn baseline: `bash -c 'echo hi'` spawned and awaited, sequentially.
//! 2. Per-job overhead: tasks of a 3-stage `echo` workflow run one at a time
//!    (`engine_max_tasks = 1`); per-job time minus the spawn baseline.
//! 3. Throughput: 1,000 queued tasks of the same workflow with the default cap (cores × 4):
//!    total time, tasks/s, ratio to Zadig's dispatcher (at most one task per 3 s), peak RSS.
//! 4. SSE: one job printing 200,000 lines, read live by an SSE client, and again from the
//!    store after the job ended: lines/s at the client.
//!
//! Runs on the embedded store; set `ZADIG_TEST_MONGODB_URI` to run on MongoDB as well.
//! `cargo bench --bench engine` (release) or `cargo test --bench engine` (dev profile).

use std::time::{Duration, Instant};

use serde_json::json;
use zadig_server::config::StorageKind;
use zadig_server::state::AppState;
use zadig_server::workflow::task::{JobTask, StageTask, Status, Task};

mod common;
use common::TOKEN;

fn echo_job(name: &str, script: &str) -> JobTask {
    JobTask {
        name: name.into(),
        key: name.into(),
        job_type: "freestyle".into(),
        spec: json!({"script": script}),
        ..JobTask::default()
    }
}

fn three_stage() -> Vec<StageTask> {
    ["build", "test", "deploy"]
        .iter()
        .map(|s| StageTask {
            name: (*s).into(),
            jobs: vec![echo_job(s, &format!("echo {s}"))],
            ..StageTask::default()
        })
        .collect()
}

async fn queue(state: &AppState, workflow: &str, stages: Vec<StageTask>) -> i64 {
    let id = state
        .sequences
        .next(&format!("workflow_task:{workflow}"))
        .await
        .expect("sequence");
    let now_ms = state.clock.now_ms();
    let task = Task {
        id: zadig_server::validate::new_object_id(now_ms / 1000),
        task_id: id,
        workflow_name: workflow.into(),
        project_name: "bench".into(),
        status: Status::Waiting,
        stages,
        concurrency_limit: -1,
        queued_at_ms: now_ms,
        ..Task::default()
    };
    state.tasks.insert(&task).await.expect("insert task");
    id
}

async fn wait_all(state: &AppState, workflow: &str, n: u64) {
    loop {
        let done = state
            .tasks
            .tasks
            .count(
                &zadig_server::store::Filter::eq("workflow_name", workflow).and(
                    zadig_server::store::Filter::is_in(
                        "status",
                        ["passed", "failed", "cancelled", "timeout"],
                    ),
                ),
            )
            .await
            .expect("count");
        if done >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

async fn spawn_baseline(n: u32) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        let out = tokio::process::Command::new("bash")
            .args(["-c", "echo hi"])
            .output()
            .await
            .expect("bash");
        assert!(out.status.success());
    }
    start.elapsed() / n
}

/// The same `bash -c 'echo hi'` through the job sandbox's launcher (user/mount/PID namespaces,
/// Landlock, the job user when root), as the local executor runs every job command.
async fn sandboxed_spawn(n: u32) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let job_dir = dir.path().join("job");
    std::fs::create_dir_all(&job_dir).expect("job dir");
    let root = nix::unistd::getuid().is_root();
    if root {
        std::os::unix::fs::chown(&job_dir, Some(65534), Some(65534)).expect("chown");
    }
    let spec = zadig_server::engine::sandbox::LaunchSpec {
        job_dir: job_dir.clone(),
        cwd: job_dir.clone(),
        hide: vec![dir.path().join("data")],
        job_user: root.then_some((65534, 65534)),
        required: true,
        ..Default::default()
    };
    let spec = serde_json::to_string(&spec).expect("spec");
    let start = Instant::now();
    for _ in 0..n {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_zadig-server"));
        cmd.args(["__sandbox", "run", &spec, "--", "bash", "-c", "echo hi"])
            .current_dir(&job_dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let (status, out, err) = zadig_server::engine::sandbox::captured(cmd)
            .await
            .expect("launcher");
        assert!(
            status.success() && out == b"hi\n",
            "{status}: {}",
            String::from_utf8_lossy(&err)
        );
    }
    start.elapsed() / n
}

async fn server(
    kind: StorageKind,
    dir: &std::path::Path,
    max_tasks: usize,
) -> zadig_server::Server {
    let mut config = common::config(kind, dir);
    config.engine_max_tasks = max_tasks;
    common::start(config).await
}

/// Queue `n` three-stage tasks of `workflow`, then let the engine run them all: how long that
/// took from the wake-up.
async fn run_queued(st: &AppState, workflow: &str, n: u64) -> Duration {
    for _ in 0..n {
        queue(st, workflow, three_stage()).await;
    }
    let start = Instant::now();
    zadig_server::engine::task_queued(st);
    wait_all(st, workflow, n).await;
    start.elapsed()
}

async fn bench_backend(kind: StorageKind, spawn: Duration) {
    println!("\n== backend: {kind:?} ==");
    let dir = tempfile::tempdir().expect("tempdir");

    // Per-job overhead: one task at a time.
    let srv = server(kind, &dir.path().join("seq"), 1).await;
    let st = srv.state.clone();
    // The executor alone (job log + workspace + process group), without the task runner.
    let n = 100u32;
    let start = Instant::now();
    for i in 0..n {
        let ctx = zadig_server::engine::executor::JobContext {
            project: "bench".into(),
            workflow: "direct".into(),
            task_id: i64::from(i),
            job_name: "echo".into(),
            job_type: "freestyle".into(),
            spec: json!({"script": "echo hi"}),
            params: vec![],
            secrets: vec![],
            context: Default::default(),
            creator: String::new(),
        };
        let end = zadig_server::engine::executor::run_job(&st, ctx, Default::default()).await;
        assert_eq!(end.status.as_str(), "passed", "{}", end.error);
    }
    let direct = start.elapsed() / n;
    println!(
        "run_job alone: {:.1} ms per echo job ({:.1} ms beyond the spawn baseline)",
        direct.as_secs_f64() * 1e3,
        direct.saturating_sub(spawn).as_secs_f64() * 1e3
    );
    let seq_tasks = 50u64;
    let elapsed = run_queued(&st, "seq", seq_tasks).await;
    let per_job = elapsed / u32::try_from(seq_tasks * 3).unwrap_or(1);
    println!(
        "sequential: {seq_tasks} tasks x 3 jobs in {:.2?}: {:.1} ms per job, overhead beyond the spawn baseline {:.1} ms (target <= 20 ms)",
        elapsed,
        per_job.as_secs_f64() * 1e3,
        (per_job.saturating_sub(spawn)).as_secs_f64() * 1e3
    );
    srv.shutdown().await;

    // Throughput: 1,000 queued tasks.
    let srv = server(kind, &dir.path().join("bulk"), 0).await;
    let st = srv.state.clone();
    let n = 1000u64;
    let total = run_queued(&st, "bulk", n).await;
    let failed = st
        .tasks
        .tasks
        .count(&zadig_server::store::Filter::eq("status", "failed"))
        .await
        .unwrap_or(0);
    let tps = n as f64 / total.as_secs_f64();
    println!(
        "bulk: {n} tasks x 3 stages (cap {}) in {:.2?}: {tps:.1} tasks/s, {:.1} jobs/s; {failed} failed; \
         Zadig's dispatcher (1 task / 3 s, 2 concurrent) would need >= {} s: ratio {:.0}x",
        st.config.engine_task_cap(),
        total,
        tps * 3.0,
        n * 3,
        tps / (1.0 / 3.0)
    );
    println!("peak RSS so far: {:.1} MiB", peak_rss_mib());

    // SSE throughput: one job printing 200,000 lines.
    let lines = 200_000u64;
    let id = queue(
        &st,
        "sse",
        vec![StageTask {
            name: "s".into(),
            jobs: vec![echo_job("printer", &format!("seq 1 {lines}"))],
            ..StageTask::default()
        }],
    )
    .await;
    zadig_server::engine::task_queued(&st);
    let client = common::client();
    // Everything from the first line: the job may have started before the client connects.
    let url = format!(
        "http://{}/openapi/logs/sse/v4/workflow/sse/{id}/printer/1000000",
        srv.addr
    );
    print_sse(
        "live (timed from the first)",
        read_sse(&client, &url).await,
        " (target >= 100k)",
    );
    let url = format!(
        "http://{}/openapi/logs/sse/v4/workflow/sse/{id}/printer/{}",
        srv.addr,
        lines + 100
    );
    print_sse("stored", read_sse(&client, &url).await, "");
    println!("peak RSS: {:.1} MiB", peak_rss_mib());
    srv.shutdown().await;
}

/// Print what [`read_sse`] counted in `how_long`, as lines per second.
fn print_sse(what: &str, (events, how_long): (u64, Duration), target: &str) {
    println!(
        "sse {what}: {events} events in {how_long:.2?}: {:.0} lines/s{target}",
        events as f64 / how_long.as_secs_f64()
    );
}

/// Count SSE events until the stream ends; time from the first byte.
async fn read_sse(client: &reqwest::Client, url: &str) -> (u64, Duration) {
    let mut resp = client
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sse");
    assert!(resp.status().is_success());
    let mut events = 0u64;
    let mut first: Option<Instant> = None;
    let mut carry = Vec::new();
    while let Some(chunk) = resp.chunk().await.expect("chunk") {
        first.get_or_insert_with(Instant::now);
        carry.extend_from_slice(&chunk);
        let text = String::from_utf8_lossy(&carry).into_owned();
        let complete = text.rfind("\n\n").map_or(0, |i| i + 2);
        events += text[..complete].matches("event:message\n").count() as u64;
        carry.drain(..complete);
    }
    (events, first.map_or(Duration::ZERO, |f| f.elapsed()))
}

#[tokio::main]
async fn main() {
    let spawn = spawn_baseline(200).await;
    println!("mode: {}", common::mode());
    println!(
        "process spawn baseline (bash -c 'echo hi'): {:.2} ms",
        spawn.as_secs_f64() * 1e3
    );
    let sandboxed = sandboxed_spawn(200).await;
    println!(
        "the same through the job sandbox: {:.2} ms (the sandbox adds {:.2} ms per job command)",
        sandboxed.as_secs_f64() * 1e3,
        sandboxed.saturating_sub(spawn).as_secs_f64() * 1e3
    );
    bench_backend(StorageKind::Embedded, spawn).await;
    if std::env::var("ZADIG_TEST_MONGODB_URI").is_ok_and(|u| !u.is_empty()) {
        bench_backend(StorageKind::Mongodb, spawn).await;
    }
}
