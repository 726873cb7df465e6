//! Benchmark (not a test; prints figures): `GET /openapi/release_plan/v1/:id` throughput at 64
//! concurrent connections on the embedded store, against a bare axum handler answering the same
//! JSON, in the same run (the ratio is what matters on a shared machine).
//!
//! `cargo bench --bench release_plan_detail` (optional args: seconds per measurement,
//! connections).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zadig_server::config::StorageKind;

mod common;
use common::TOKEN;

/// Requests per second of `url` with `conns` keep-alive connections for `secs`: measured with
/// `wrk` when it is installed (a client much cheaper than the servers), else with reqwest in
/// this process.
async fn load(url: String, token: Option<&str>, conns: usize, secs: u64) -> f64 {
    if let Some(rps) = wrk(&url, token, conns, secs).await {
        return rps;
    }
    load_reqwest(url, token, conns, secs).await
}

async fn wrk(url: &str, token: Option<&str>, conns: usize, secs: u64) -> Option<f64> {
    let mut cmd = tokio::process::Command::new("wrk");
    cmd.args(["-t2", &format!("-c{conns}"), &format!("-d{secs}s")]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd.arg(url).output().await.ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") {
        panic!("wrk saw errors: {text}");
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
}

async fn load_reqwest(url: String, token: Option<&str>, conns: usize, secs: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        // One client (and so one connection) per worker: 64 connections.
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(1)
            .build()
            .expect("client");
        let (url, done, stop) = (url.clone(), done.clone(), stop.clone());
        let auth = token.map(|t| format!("Bearer {t}"));
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let mut req = client.get(&url);
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                let resp = req.send().await.expect("request");
                assert!(resp.status().is_success(), "{}", resp.status());
                let _ = resp.bytes().await.expect("body");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Warm up, then measure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start_count = done.load(Ordering::Relaxed);
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let n = done.load(Ordering::Relaxed) - start_count;
    let rps = n as f64 / t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    rps
}

fn main() {
    let secs: u64 = common::arg(0, 5);
    let conns: usize = common::arg(1, 64);
    common::runtime().block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = common::config(StorageKind::Embedded, dir.path());
        config.log = "error".into();
        let server = common::start(config).await;
        let base = format!("http://{}", server.addr);
        let client = common::client();

        // A realistic plan: approval, five text jobs.
        let body = json!({
            "name": "bench-plan", "manager": "admin", "manager_identity_type": "system",
            "start_time": 0, "end_time": 0, "description": "<p>release notes</p>",
            "approval": {"enabled": true, "type": "native", "native_approval": {"timeout": 5,
                "approve_users": [{"user_name": "admin"}], "needed_approvers": 1}},
            "jobs": (0..5).map(|i| json!({"name": format!("Text-{i}"), "type": "text",
                "spec": {"content": format!("<p>step {i}: do the thing carefully</p>"), "remark": ""}}))
                .collect::<Vec<_>>()
        });
        let created: Value = client
            .post(format!("{base}/openapi/release_plan/v1"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .expect("create")
            .json()
            .await
            .expect("json");
        let id = created["id"].as_str().expect("id").to_string();
        let detail_url = format!("{base}/openapi/release_plan/v1/{id}");
        let detail: Value = client
            .get(&detail_url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("detail")
            .json()
            .await
            .expect("json");
        let bytes = serde_json::to_vec(&detail).expect("json").len();

        // The bare handler: the same JSON from memory, no middleware, no auth, no store.
        let doc = Arc::new(detail);
        let bare = axum::Router::new().route(
            "/detail",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        );
        let bare_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let bare_url = format!("http://{}/detail", bare_listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(bare_listener, bare).await;
        });

        // Alternate to even out noise from other processes on the machine.
        let mut ours = Vec::new();
        let mut bares = Vec::new();
        for _ in 0..2 {
            bares.push(load(bare_url.clone(), None, conns, secs).await);
            ours.push(load(detail_url.clone(), Some(TOKEN), conns, secs).await);
        }
        let ours = ours.iter().sum::<f64>() / ours.len() as f64;
        let bare = bares.iter().sum::<f64>() / bares.len() as f64;
        let client_kind = if std::process::Command::new("wrk").arg("-v").output().is_ok() {
            "wrk"
        } else {
            "reqwest (in process)"
        };
        println!(
            "[detail] embedded store, client {client_kind}, {conns} connections, {secs}s x2 each, body {bytes} bytes: \
             GET /openapi/release_plan/v1/:id = {ours:.0} req/s, bare axum handler = {bare:.0} req/s, \
             ratio = {:.0}%",
            100.0 * ours / bare
        );
        server.shutdown().await;
    });
}
