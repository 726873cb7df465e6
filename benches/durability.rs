//! Benchmark (prints figures, asserts nothing): release-plan create throughput on the embedded
//! store with `embedded_synchronous = full` (the default: the WAL is synced on every commit)
//! and `normal` (synced at checkpoints only), over the real HTTP stack.
//!
//! `cargo bench --bench durability` (optional args: plan count, default 2000; concurrent
//! clients, default 8). The database lives under `ZADIG_BENCH_DIR` (default: the system temp
//! dir) — it must be a real disk for the figures to mean anything (on tmpfs fsync is free).

use std::time::Instant;

use futures::StreamExt;
use serde_json::json;
use zadig_server::config::{EmbeddedSynchronous, StorageKind};

mod common;
use common::TOKEN;

async fn run(sync: EmbeddedSynchronous, plans: usize, clients: usize) -> f64 {
    let root = std::env::var_os("ZADIG_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(root).expect("bench dir");
    let mut config = common::config(StorageKind::Embedded, &dir.path().join("data"));
    config.embedded_synchronous = sync;
    let server = common::start(config).await;
    let url = format!("http://{}/openapi/release_plan/v1", server.addr);
    let client = common::client();

    let t = Instant::now();
    let results: Vec<bool> = futures::stream::iter(0..plans)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let body = json!({"name": format!("bench-{i}"), "manager": "admin",
                                  "manager_identity_type": "system", "description": "d"});
                client
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .buffer_unordered(clients)
        .collect()
        .await;
    let secs = t.elapsed().as_secs_f64();
    let failed = results.iter().filter(|ok| !**ok).count();
    let rate = plans as f64 / secs;
    println!(
        "synchronous={}: {plans} plan creates with {clients} clients in {secs:.2}s = {rate:.0} plans/s ({failed} failed)",
        sync.pragma()
    );
    server.shutdown().await;
    rate
}

#[tokio::main]
async fn main() {
    let plans = common::arg(0, 2000);
    let clients = common::arg(1, 8);
    // Warm-up (page cache, allocator), not reported.
    let _ = run(EmbeddedSynchronous::Normal, plans / 10 + 1, clients).await;
    let full = run(EmbeddedSynchronous::Full, plans, clients).await;
    let normal = run(EmbeddedSynchronous::Normal, plans, clients).await;
    let seq_full = run(EmbeddedSynchronous::Full, plans / 4, 1).await;
    let seq_normal = run(EmbeddedSynchronous::Normal, plans / 4, 1).await;
    println!(
        "FULL/NORMAL throughput: {:.2} with {clients} clients, {:.2} with 1 client",
        full / normal,
        seq_full / seq_normal
    );
}
