//! Kubernetes executor benchmark against the Kubernetes API emulator (prints figures; not a
//! timed test).
//!
//! Runs N tasks of one freestyle job placed on the emulator's cluster, one at a time, and
//! reports:
//! 1. task start → Job created: from queueing the task to the moment the Job is visible
//!    through the emulator's side door (polled every 5 ms; the emulator's own latency is
//!    included);
//! 2. pod end → job end: from the script's last command (it records the time) to the job's
//!    end stored (the store polled every 2 ms). This includes the agent's exit and report, the emulator's controller tick
//!    (0.2 s, in which the stand-in kubelet notices the process ended) and the executor's
//!    poll; the executor's own share is what exceeds that tick.
//!
//! The emulator's kubelet runs the pod's command as a local process, so the agent path is this
//! build's server binary. Found through `ZADIG_TEST_KUBE_EMULATOR` (else
//! `../shared/tools/kube_emulator.py`); skipped without it.
//! `cargo bench --bench kube_executor` (release) or `cargo test --bench kube_executor`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zadig_server::clock::SystemClock;
use zadig_server::config::{Config, StorageKind};
use zadig_server::workflow::task::{JobTask, StageTask, Status, Task};

const TOKEN: &str = "bench-admin-token-0123456789abcdef0123456789";
const JOBS: u32 = 10;

struct Emulator(Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn emulator_path() -> Option<PathBuf> {
    let path = match std::env::var("ZADIG_TEST_KUBE_EMULATOR") {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/kube_emulator.py"),
    };
    path.is_file().then_some(path)
}

/// Start the emulator; its kubeconfig and base URL.
async fn emulator(dir: &std::path::Path) -> Option<(Emulator, String, String)> {
    let path = emulator_path()?;
    let out = dir.join("kubeconfig");
    let child = Command::new("python3")
        .arg(&path)
        .args(["--port", "0", "--tls", "--kubeconfig-out"])
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let emu = Emulator(child);
    for _ in 0..1200 {
        if let Ok(text) = std::fs::read_to_string(&out)
            && !text.is_empty()
        {
            let kc: Value = serde_yaml_ng::from_str(&text).expect("kubeconfig");
            let base = kc["clusters"][0]["cluster"]["server"]
                .as_str()
                .expect("server")
                .trim_end_matches('/')
                .to_string();
            return Some((emu, text, base));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the emulator wrote no kubeconfig");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let mean = v.iter().sum::<Duration>() / u32::try_from(v.len()).unwrap_or(1).max(1);
    println!(
        "{name}: mean {:.1} ms, median {:.1} ms, min {:.1} ms, max {:.1} ms ({} jobs)",
        ms(mean),
        ms(v[v.len() / 2]),
        ms(v[0]),
        ms(v[v.len() - 1]),
        v.len()
    );
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((_emu, kubeconfig, base)) = emulator(dir.path()).await else {
        println!("skipped: the Kubernetes API emulator is absent (set ZADIG_TEST_KUBE_EMULATOR)");
        return;
    };
    println!(
        "mode: {}",
        if cfg!(debug_assertions) {
            "debug (dev profile)"
        } else {
            "release"
        }
    );
    let mut config = Config::defaults();
    config.data_dir = dir.path().join("data");
    config.admin_token = TOKEN.into();
    config.storage = StorageKind::Embedded;
    config.log = "warn".into();
    config.engine_kube_agent_path = env!("CARGO_BIN_EXE_zadig-server").into();
    let backend = zadig_server::store::open(&config).await.expect("store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let srv = zadig_server::start(config, backend, Arc::new(SystemClock), listener)
        .await
        .expect("start");
    let http = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    let api = format!("http://{}", srv.addr);
    http.post(format!("{api}/openapi/projects/project"))
        .bearer_auth(TOKEN)
        .json(
            &json!({"project_name": "Bench", "project_key": "bench", "is_public": true,
            "description": "d", "project_type": "yaml"}),
        )
        .send()
        .await
        .expect("project");
    let r: Value = http
        .post(format!("{api}/openapi/system/cluster"))
        .bearer_auth(TOKEN)
        .json(
            &json!({"name": "emu", "description": "d", "type": "kubeconfig",
            "kube_config": kubeconfig, "project_names": ["bench"]}),
        )
        .send()
        .await
        .expect("cluster")
        .json()
        .await
        .expect("cluster JSON");
    let cluster = r["cluster"]["cluster_id"].as_str().expect("id").to_string();

    let mut created = Vec::new();
    let mut ended = Vec::new();
    for i in 0..JOBS {
        let stamp = dir.path().join(format!("end-{i}"));
        let script = format!("echo job {i}\ndate +%s%N > {}", stamp.display());
        let job = JobTask {
            name: "run".into(),
            key: "run".into(),
            job_type: "freestyle".into(),
            spec: json!({"script": script, "runtime": {"image_from": "custom", "image_id": "ubuntu:22.04"},
                "advanced_setting": {"cluster_id": cluster}}),
            ..JobTask::default()
        };
        let state = srv.state.clone();
        let now_ms = state.clock.now_ms();
        let task = Task {
            id: zadig_server::validate::new_object_id(now_ms / 1000),
            task_id: i64::from(i) + 1,
            workflow_name: "kbench".into(),
            project_name: "bench".into(),
            status: Status::Waiting,
            stages: vec![StageTask {
                name: "s".into(),
                jobs: vec![job],
                ..StageTask::default()
            }],
            concurrency_limit: -1,
            queued_at_ms: now_ms,
            ..Task::default()
        };
        let start = Instant::now();
        state.tasks.insert(&task).await.expect("insert task");
        zadig_server::engine::task_queued(&state);
        // Poll the side door for the Job.
        let seen = loop {
            let v: Value = http
                .get(format!(
                    "{base}/_emulator/state?kind=Job&namespace=koderover-agent"
                ))
                .send()
                .await
                .expect("state")
                .json()
                .await
                .expect("state JSON");
            if v["objects"].as_array().is_some_and(|a| !a.is_empty()) {
                break start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        // Poll the store (every 2 ms) for the job's end.
        let (status, error) = loop {
            let t = state
                .tasks
                .get("kbench", i64::from(i) + 1)
                .await
                .expect("task")
                .expect("task stored");
            let j = &t.stages[0].jobs[0];
            if j.status.is_final() {
                break (j.status.as_str().to_string(), j.error.clone());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let returned = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        assert_eq!(status, "passed", "{error}");
        let script_end: i64 = std::fs::read_to_string(&stamp)
            .expect("the script's end stamp")
            .trim()
            .parse()
            .expect("nanoseconds");
        created.push(seen);
        ended.push(Duration::from_nanos(
            u64::try_from(returned - script_end).unwrap_or(0),
        ));
        // The next job starts once this one's Job is gone.
        loop {
            let v: Value = http
                .get(format!(
                    "{base}/_emulator/state?kind=Job&namespace=koderover-agent"
                ))
                .send()
                .await
                .expect("state")
                .json()
                .await
                .expect("state JSON");
            if v["objects"].as_array().is_none_or(Vec::is_empty) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    summary("task start -> Job created", created);
    summary(
        "script end -> job end (incl. the emulator's 0.2 s tick)",
        ended,
    );
    srv.shutdown().await;
}
