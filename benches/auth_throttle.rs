//! What the failed-authentication throttle costs an authenticated request: requests per second
//! of `GET /openapi/users` with the throttle on (`auth_max_failures` 10, the default) and off
//! (`0`), sequential and with requests in parallel, over the real HTTP stack, on the embedded
//! store (and on MongoDB when `ZADIG_TEST_MONGODB_URI` is set). Every request comes from
//! 127.0.0.1, one client: with the throttle on it takes the table's lock twice and has at most
//! `auth_max_failures` token checks in flight at once. Prints figures; asserts nothing.
//!
//! `cargo bench --bench auth_throttle` (release), or `--profile dev`; the first positional
//! argument is the number of requests per figure (default 2000).

use std::sync::Arc;
use std::time::Instant;

use zadig_server::config::StorageKind;

mod common;

/// Requests per second of `n` authenticated requests, `parallel` at a time, against a server
/// on `kind` with `auth_max_failures = max_failures`.
async fn rate(kind: StorageKind, max_failures: u32, parallel: usize, n: usize) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(kind, dir.path());
    config.auth_max_failures = max_failures;
    let server = common::start(config).await;
    let api = Arc::new(common::Api::of(&server));
    for _ in 0..50 {
        api.get("/openapi/users").await;
    }
    let started = Instant::now();
    let workers: Vec<_> = (0..parallel)
        .map(|w| {
            let api = api.clone();
            let count = n / parallel + usize::from(w < n % parallel);
            tokio::spawn(async move {
                for _ in 0..count {
                    api.get("/openapi/users").await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    let per_sec = n as f64 / started.elapsed().as_secs_f64();
    server.shutdown().await;
    per_sec
}

async fn run(kind: StorageKind, n: usize) {
    for parallel in [1, 16, 64] {
        let off = rate(kind, 0, parallel, n).await;
        let on = rate(kind, 10, parallel, n).await;
        println!(
            "  {parallel:>2} in parallel: throttle on {on:>7.0} req/s, off {off:>7.0} req/s ({:+.1}%)",
            (on / off - 1.0) * 100.0
        );
    }
}

fn main() {
    let n: usize = common::arg(0, 2000);
    common::runtime().block_on(async {
        println!(
            "auth throttle benchmark ({} build, {n} authenticated requests per figure)",
            common::mode()
        );
        println!("embedded (SQLite):");
        run(StorageKind::Embedded, n).await;
        if std::env::var("ZADIG_TEST_MONGODB_URI").is_ok_and(|u| !u.is_empty()) {
            println!("mongodb:");
            run(StorageKind::Mongodb, n).await;
        }
    });
}
