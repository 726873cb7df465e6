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
//! `../shared/tools/kube_emulator.py`); skipped without it (the test fixture says why).
//! `cargo bench --bench kube_executor` (release) or `cargo test --bench kube_executor`.

use std::time::{Duration, Instant};

use serde_json::json;
use zadig_server::config::StorageKind;
use zadig_server::workflow::task::{JobTask, StageTask, Status, Task};

// The test suite's emulator fixture (start, side door, killed on drop).
#[path = "../tests/it/kube_emulator.rs"]
#[expect(dead_code, reason = "the bench uses part of the test fixture")]
mod kube_emulator;

mod common;

const JOBS: u32 = 10;
const NS: &str = "koderover-agent";

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
    let Some(emu) = kube_emulator::Emulator::start().await else {
        return;
    };
    println!("mode: {}", common::mode());
    let mut config = common::config(StorageKind::Embedded, &dir.path().join("data"));
    config.engine_kube_agent_path = env!("CARGO_BIN_EXE_zadig-server").into();
    let srv = common::start(config).await;
    let api = common::Api::of(&srv);
    api.post(
        "/openapi/projects/project",
        json!({"project_name": "Bench", "project_key": "bench", "is_public": true,
            "description": "d", "project_type": "yaml"}),
    )
    .await;
    let r = api
        .post(
            "/openapi/system/cluster",
            json!({"name": "emu", "description": "d", "type": "kubeconfig",
                "kube_config": emu.kubeconfig, "project_names": ["bench"]}),
        )
        .await;
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
            if !emu.objects("Job", NS).await.is_empty() {
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
        while !emu.objects("Job", NS).await.is_empty() {
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
