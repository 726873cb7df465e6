//! Workflow API benchmark: execute latency and throughput, and task list/detail latency with
//! many tasks, over the real HTTP stack, on the embedded store (and on MongoDB when
//! `ZADIG_TEST_MONGODB_URI` is set). Prints figures; asserts nothing.
//!
//! `cargo bench --bench workflow_api` (release) or `cargo run --example`-style in debug with
//! `cargo bench --bench workflow_api --profile dev`. `ZADIG_BENCH_TASKS` sets the number of
//! executes (default 1000).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zadig_server::config::StorageKind;

mod common;
use common::TOKEN;

struct Bench {
    base: String,
    client: reqwest::Client,
    server: zadig_server::Server,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn start(kind: StorageKind) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let server = common::start(common::config(kind, dir.path())).await;
        Ok(Self {
            base: format!("http://{}", server.addr),
            client: common::client(),
            server,
            _dir: dir,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status} {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// p50, p99 and max of `samples`, in milliseconds.
fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

fn workflow() -> Value {
    // Five jobs in three stages, one build expanding into three job tasks; a concurrency
    // limit of 1 keeps an engine (when present) from competing much with the API.
    json!({
        "name": "bench", "project": "bench", "concurrency_limit": 1,
        "params": [{"name": "version", "type": "string", "value": "1"}],
        "stages": [
            {"name": "build", "parallel": true, "jobs": [{"name": "build", "type": "zadig-build", "spec": {
                "service_and_builds": [
                    {"service_name": "a", "service_module": "a", "build_name": "b"},
                    {"service_name": "b", "service_module": "b", "build_name": "b"},
                    {"service_name": "c", "service_module": "c", "build_name": "b"}]}}]},
            {"name": "deploy", "jobs": [{"name": "deploy", "type": "zadig-deploy", "spec": {
                "env": "dev", "source": "fromjob", "job_name": "build"}}]},
            {"name": "ops", "jobs": [
                {"name": "fs", "type": "freestyle", "spec": {"script": "echo $X", "envs": [{"key": "X", "value": "1"}]}},
                {"name": "sql", "type": "sql", "spec": {"sql": "select 1"}}]}
        ]
    })
}

fn execute_body() -> Value {
    json!({"project_key": "bench", "workflow_key": "bench",
        "parameters": [{"name": "version", "type": "string", "value": "2"}],
        "inputs": [{"job_name": "build", "job_type": "zadig-build", "parameters": {}},
                   {"job_name": "deploy", "job_type": "zadig-deploy", "parameters": {}},
                   {"job_name": "fs", "job_type": "freestyle", "parameters": {"kv": [{"key": "X", "value": "2"}]}}]})
}

async fn run(kind: StorageKind, n: usize) -> anyhow::Result<()> {
    let b = Bench::start(kind).await?;
    b.call(
        reqwest::Method::POST,
        "/api/aslan/workflow/v4",
        Some(&workflow()),
    )
    .await?;
    let body = execute_body();

    // Sequential executes: latency.
    let seq = n / 2;
    let mut lat = Vec::with_capacity(seq);
    for _ in 0..seq {
        let t = Instant::now();
        b.call(
            reqwest::Method::POST,
            "/openapi/workflows/custom/task",
            Some(&body),
        )
        .await?;
        lat.push(t.elapsed());
    }
    println!("  execute, sequential ({seq}): {}", summary(lat));

    // Concurrent executes (16 clients): throughput.
    let conc = n - seq;
    let started = Instant::now();
    let mut handles = Vec::new();
    for w in 0..16 {
        let (client, base, body) = (b.client.clone(), b.base.clone(), body.clone());
        let share = conc / 16 + usize::from(w < conc % 16);
        handles.push(tokio::spawn(async move {
            for _ in 0..share {
                let r = client
                    .post(format!("{base}/openapi/workflows/custom/task"))
                    .bearer_auth(TOKEN)
                    .json(&body)
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "execute: {}", r.status());
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  execute, 16 concurrent clients ({conc}): {:.0} tasks/s",
        conc as f64 / secs
    );

    // Reads with n tasks stored.
    let mut list = Vec::new();
    let mut detail = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        let page = b
            .call(
                reqwest::Method::GET,
                &format!(
                    "/openapi/workflows/custom/bench/tasks?projectKey=bench&pageNum={}&pageSize=50",
                    i % 5 + 1
                ),
                None,
            )
            .await?;
        list.push(t.elapsed());
        anyhow::ensure!(
            page["total"].as_u64() == Some(n as u64),
            "total {}",
            page["total"]
        );
        let t = Instant::now();
        b.call(
            reqwest::Method::GET,
            &format!(
                "/openapi/workflows/custom/task?taskId={}&workflowKey=bench",
                i % n + 1
            ),
            None,
        )
        .await?;
        detail.push(t.elapsed());
    }
    println!("  task list (page of 50 of {n}): {}", summary(list));
    println!("  task detail: {}", summary(detail));
    b.server.shutdown().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("ZADIG_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mode = common::mode();
    common::runtime().block_on(async {
        println!("workflow API benchmark ({mode} build, {n} executes)");
        println!("embedded (SQLite):");
        run(StorageKind::Embedded, n).await?;
        if std::env::var("ZADIG_TEST_MONGODB_URI").is_ok_and(|u| !u.is_empty()) {
            println!(
                "mongodb ({}):",
                std::env::var("ZADIG_TEST_MONGODB_URI").unwrap_or_default()
            );
            run(StorageKind::Mongodb, n).await?;
        }
        anyhow::Ok(())
    })
}
