//! Benchmark (not a test; prints figures): scheduled execution of 10,000 release plans whose
//! `schedule_execute_time`s are spread over 60 s.
//!
//! Reports the lag between each plan's due time and the moment its scheduled execution was
//! applied (p50/p99/max), plans that never fired, and double executions (a plan whose scheduled
//! execution was applied more than once — must be 0). Runs on the embedded store with one
//! server, and, when `ZADIG_BENCH_MONGODB_URI` (or `ZADIG_TEST_MONGODB_URI`) is set, on MongoDB
//! with two servers sharing one database.
//!
//! `cargo bench --bench release_plan_schedule` (optional args: plan count, spread seconds).
//! Each plan has one workflow job; with no workflow engine (or no such workflow) starting its
//! task fails, so the job is marked failed — the scheduling path measured is the same.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde_json::json;
use zadig_server::clock::{Clock, SystemClock};
use zadig_server::config::{Config, StorageKind};
use zadig_server::release_plan::model::{
    HookSnapshot, Internal, JobKind, JobSpec, JobStatus, ReleaseJob, ReleasePlan, Status,
};
use zadig_server::store::{Backend, Filter, FindOptions};

mod common;

/// The wall clock shifted by a fixed offset, so plans inserted before the servers start fall due
/// just after they start.
#[derive(Clone, Copy)]
struct OffsetClock {
    offset_ms: i64,
}

impl Clock for OffsetClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + self.offset_ms
    }
    fn sleep_until(&self, at_ms: i64) -> BoxFuture<'static, ()> {
        SystemClock.sleep_until(at_ms - self.offset_ms)
    }
}

fn plan(i: usize, due: i64) -> ReleasePlan {
    ReleasePlan {
        id: format!("{:08x}{:016x}", due, i),
        index: i as i64 + 1,
        name: format!("bench-{i}"),
        manager: "admin".into(),
        manager_id: "bench-admin".into(),
        start_time: 0,
        end_time: 0,
        schedule_execute_time: due,
        description: String::new(),
        created_by: "bench".into(),
        create_time: due - 3600,
        updated_by: "bench".into(),
        update_time: due - 3600,
        approval: None,
        jobs: vec![ReleaseJob {
            id: uuid::Uuid::new_v4().to_string(),
            name: "deploy".into(),
            manager: String::new(),
            manager_id: String::new(),
            kind: JobKind::Workflow,
            spec: JobSpec {
                workflow_key: "bench-workflow".into(),
                project_key: "bench".into(),
                parameters: json!([]),
                inputs: json!([]),
                ..JobSpec::default()
            },
            status: JobStatus::Todo,
            last_status: JobStatus::Unset,
            updated: false,
            executed_by: String::new(),
            executed_time: 0,
            error: String::new(),
        }],
        status: Status::Executing,
        planning_time: due - 3600,
        approval_time: 0,
        executing_time: due - 10,
        success_time: 0,
        finish_planning_time: due - 3600,
        instance_code: format!("{:016x}", i),
        hook_settings: Some(HookSnapshot::default()),
        wait_for_finish_planning_external_check_time: 0,
        wait_for_execute_external_check_time: 0,
        wait_for_all_done_external_check_time: 0,
        external_check_failed_reason: String::new(),
        version: 1,
        internal: Internal {
            manager_identity_type: "system".into(),
            schedule_at: due,
            ..Internal::default()
        },
    }
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn run(label: &str, config: Config, replicas: usize, plans: usize, spread: i64) {
    let backend: Arc<dyn Backend> = zadig_server::store::open(&config).await.expect("store");
    backend
        .migrate(&zadig_server::store::index_specs())
        .await
        .expect("migrate");
    let store = zadig_server::release_plan::store::PlanStore::new(
        backend.as_ref(),
        &Arc::new(zadig_server::secrets::SecretBox::new()),
    );

    // Due times in "bench seconds" starting at 1_000_000 (the servers' clock is shifted there).
    let base: i64 = 1_000_000;
    let t = Instant::now();
    for i in 0..plans {
        let due = base + (i as i64 * spread) / plans as i64;
        store.insert(&plan(i, due)).await.expect("insert");
    }
    println!(
        "[{label}] inserted {plans} plans in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // Start the servers so the first plans fall due 2 s later.
    let offset_ms = (base - 2) * 1000 - SystemClock.now_ms();
    let clock = OffsetClock { offset_ms };
    let mut servers = Vec::new();
    for _ in 0..replicas {
        let b = if replicas == 1 {
            backend.clone()
        } else {
            // Each replica opens its own connection, as separate processes would.
            zadig_server::store::open(&config).await.expect("store")
        };
        servers.push(common::start_on(config.clone(), b, Arc::new(clock)).await);
    }

    // Wait until every plan fired (or the deadline).
    let deadline = Instant::now() + Duration::from_secs(spread as u64 + 120);
    let unfired = || Filter::eq("internal.schedule_fired_ms", 0);
    loop {
        let left = store.count(&unfired()).await.expect("count");
        if left == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // Let in-flight task starts settle before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let all = store
        .find(&Filter::All, &FindOptions::default())
        .await
        .expect("plans");
    let mut lags: Vec<i64> = all
        .iter()
        .filter(|p| p.internal.schedule_fired_ms > 0)
        .map(|p| p.internal.schedule_fired_ms - p.schedule_execute_time * 1000)
        .collect();
    lags.sort_unstable();
    let missed = all.len() - lags.len();
    // A double execution would show as two "执行 by 系统 → running" records for one plan.
    let logs = store
        .logs
        .find(
            &Filter::eq("username", "系统").and(Filter::eq("verb", "执行")),
            &FindOptions::default(),
        )
        .await
        .expect("logs");
    let mut starts: HashMap<String, usize> = HashMap::new();
    for l in logs.iter().filter(|l| l.entry.after["status"] == "running") {
        *starts.entry(l.entry.plan_id.clone()).or_default() += 1;
    }
    let doubles = starts.values().filter(|n| **n > 1).count();
    let started = starts.len();
    println!(
        "[{label}] replicas={replicas} plans={plans} spread={spread}s poll={}ms workers={} fired={} missed={missed} \
         lag_ms p50={} p99={} max={} min={} double_executions={doubles} (plans with a start record: {started})",
        config.release_plan_poll_ms,
        config.release_plan_workers,
        lags.len(),
        percentile(&lags, 0.50),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(0),
        lags.first().copied().unwrap_or(0),
    );
    for s in servers {
        s.shutdown().await;
    }
}

fn base_config(dir: &std::path::Path) -> Config {
    let mut c = common::config(StorageKind::Embedded, dir);
    c.admin_token = String::new();
    c.log = "error".into();
    // Keep the reconciler out of the measurement.
    c.release_plan_reconcile_secs = 3600;
    if let Some(ms) = std::env::var("ZADIG_BENCH_POLL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        c.release_plan_poll_ms = ms;
    }
    if let Some(n) = std::env::var("ZADIG_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        c.release_plan_workers = n;
    }
    c
}

fn main() {
    let plans: usize = common::arg(0, 10_000);
    let spread: i64 = common::arg(1, 60);
    common::runtime().block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = base_config(dir.path());
        c.storage = StorageKind::Embedded;
        run("embedded", c, 1, plans, spread).await;

        let uri = std::env::var("ZADIG_BENCH_MONGODB_URI")
            .or_else(|_| std::env::var("ZADIG_TEST_MONGODB_URI"))
            .ok()
            .filter(|u| !u.is_empty());
        match uri {
            Some(uri) => {
                let dir = tempfile::tempdir().expect("tempdir");
                let mut c = base_config(dir.path());
                c.storage = StorageKind::Mongodb;
                c.mongodb_uri = uri;
                c.mongodb_database = format!("bench_{}", uuid::Uuid::new_v4().simple());
                run("mongodb", c, 2, plans, spread).await;
            }
            None => println!("[mongodb] skipped: set ZADIG_BENCH_MONGODB_URI"),
        }
    });
}
