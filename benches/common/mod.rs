//! What the benches share: the admin token, a bench server configuration, a server started on
//! a free loopback port, a client without proxies, an API caller, latency percentiles,
//! positional arguments and a runtime.
//!
//! Each bench includes this file (`mod common;`) and uses the part it needs.
#![allow(
    dead_code,
    reason = "every bench compiles this module on its own and uses a part of it; \
              `expect` would fail in the benches that use all of it"
)]

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use zadig_server::clock::{Clock, SystemClock};
use zadig_server::config::{Config, StorageKind};

/// The admin token of every bench server.
pub const TOKEN: &str = "bench-admin-token-0123456789abcdef0123456789";

/// A server storing under `dir` with `kind` (Mongo: `ZADIG_TEST_MONGODB_URI`, a fresh
/// database), the bench admin token, warnings-only logs, and the sandbox launcher of this
/// build.
pub fn config(kind: StorageKind, dir: &Path) -> Config {
    let mut config = Config::defaults();
    config.engine_sandbox_launcher = env!("CARGO_BIN_EXE_zadig-server").into();
    config.data_dir = dir.to_path_buf();
    config.admin_token = TOKEN.to_string();
    config.log = "warn".into();
    config.storage = kind;
    if kind == StorageKind::Mongodb {
        config.mongodb_uri = std::env::var("ZADIG_TEST_MONGODB_URI").unwrap_or_default();
        config.mongodb_database = format!("bench_{}", uuid::Uuid::new_v4().simple());
    }
    config
}

/// Start a server with `config` on a free loopback port, on the system clock.
pub async fn start(config: Config) -> zadig_server::Server {
    let backend = zadig_server::store::open(&config).await.expect("store");
    start_on(config, backend, Arc::new(SystemClock)).await
}

/// Start a server with `config` over an opened `backend` on a free loopback port.
pub async fn start_on(
    config: Config,
    backend: Arc<dyn zadig_server::store::Backend>,
    clock: Arc<dyn Clock>,
) -> zadig_server::Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    zadig_server::start(config, backend, clock, listener)
        .await
        .expect("start")
}

/// An HTTP client that never goes through a proxy (the servers are on loopback).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// A bench server's API: calls that must succeed, with the admin token.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    /// The API of `server`, over a client without proxies.
    pub fn of(server: &zadig_server::Server) -> Self {
        Self {
            base: format!("http://{}", server.addr),
            http: client(),
        }
    }

    /// Call `path`; panics unless the answer is a success. Returns the JSON body (null if none).
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }
}

/// The `p` quantile (0 to 1) of `sorted`, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Print `what: p50 … ms  p99 … ms` of `samples`.
pub fn print_p50_p99(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{what}: p50 {:.2} ms  p99 {:.2} ms",
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3
    );
}

/// Positional argument `i` of the command line (cargo's `--bench` and other flags do not
/// count) as a `T`, or `default` when absent or not a `T`.
pub fn arg<T: FromStr>(i: usize, default: T) -> T {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// A multi-threaded runtime with every driver enabled.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// `debug` or `release`: the figures of a debug build mean little.
pub fn mode() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}
