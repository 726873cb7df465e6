//! The test harness: a real server on `127.0.0.1:0`, on the embedded store (a fresh temp dir)
//! or on MongoDB (a fresh database on `ZADIG_TEST_MONGODB_URI`), with a manual clock, and an
//! HTTP client that speaks to it over the socket.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use zadig_server::clock::ManualClock;
use zadig_server::config::{Config, StorageKind};
use zadig_server::store::Backend;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123456789";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Embedded,
    Mongo,
}

/// The MongoDB URI for tests, or `None` (the MongoDB variant of each test is then skipped,
/// unless `ZADIG_TEST_REQUIRE_MONGODB=1`, as in CI, makes that a failure).
pub fn mongo_uri() -> Option<String> {
    match std::env::var("ZADIG_TEST_MONGODB_URI") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            if std::env::var("ZADIG_TEST_REQUIRE_MONGODB").as_deref() == Ok("1") {
                panic!("ZADIG_TEST_REQUIRE_MONGODB=1 but ZADIG_TEST_MONGODB_URI is not set");
            }
            eprintln!("skipped: ZADIG_TEST_MONGODB_URI is not set");
            None
        }
    }
}

/// A server under test.
pub struct TestApp {
    pub kind: Kind,
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub config: Config,
    server: Option<zadig_server::Server>,
    pub backend: Arc<dyn Backend>,
    _dir: tempfile::TempDir,
}

/// An HTTP answer: status and body (JSON when it parses, else a string value).
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    /// Assert the status, showing the body when it differs; returns the body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        &self.body
    }

    /// Assert a Zadig error JSON with this status whose description mentions `needle`.
    #[track_caller]
    pub fn expect_error(&self, status: u16, needle: &str) -> &Value {
        self.expect(status);
        for k in ["code", "description", "extra", "message", "type"] {
            assert!(
                self.body.get(k).is_some(),
                "error JSON lacks `{k}`: {}",
                self.text
            );
        }
        assert_eq!(self.body["type"], "error", "{}", self.text);
        let desc = self.body["description"].as_str().unwrap_or_default();
        assert!(
            desc.contains(needle),
            "description {desc:?} does not mention {needle:?}"
        );
        &self.body
    }
}

impl TestApp {
    pub async fn start(kind: Kind) -> Option<Self> {
        Self::start_with(kind, |_| {}).await
    }

    /// Start with a config adjusted by `tweak` (data dir, storage and admin token are set).
    pub async fn start_with(kind: Kind, tweak: impl FnOnce(&mut Config)) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::defaults();
        config.data_dir = dir.path().to_path_buf();
        config.admin_token = ADMIN_TOKEN.to_string();
        // Jobs are launched by the server binary's sandbox stages (this test binary has none).
        config.engine_sandbox_launcher = env!("CARGO_BIN_EXE_zadig-server").into();
        // Fixtures exchange files with jobs through temp dirs (data dirs under it stay hidden;
        // tests/it/sandbox.rs checks the default, where jobs write nowhere else).
        config.engine_sandbox_writable = vec![std::env::temp_dir()];
        match kind {
            Kind::Embedded => config.storage = StorageKind::Embedded,
            Kind::Mongo => {
                config.storage = StorageKind::Mongodb;
                config.mongodb_uri = mongo_uri()?;
                config.mongodb_database = format!("zt_{}", uuid::Uuid::new_v4().simple());
            }
        }
        tweak(&mut config);
        Some(Self::boot(kind, config, dir, ManualClock::starting_now()).await)
    }

    async fn boot(
        kind: Kind,
        config: Config,
        dir: tempfile::TempDir,
        clock: Arc<ManualClock>,
    ) -> Self {
        let backend = zadig_server::store::open(&config)
            .await
            .expect("open store");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server = zadig_server::start(
            config.clone(),
            backend.clone(),
            Arc::new(clock.clone()),
            listener,
        )
        .await
        .expect("start server");
        let base = format!("http://{}", server.addr);
        Self {
            kind,
            base,
            client: client(),
            clock,
            config,
            server: Some(server),
            backend,
            _dir: dir,
        }
    }

    /// The running server's state (for conformance tests that use the stores directly).
    pub fn state(&self) -> &zadig_server::state::AppState {
        &self.server.as_ref().expect("server running").state
    }

    /// Stop the server and start a new one on the same store and data dir (a restart).
    pub async fn restart(mut self) -> Self {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        let TestApp {
            kind,
            config,
            _dir,
            clock,
            ..
        } = self;
        Self::boot(kind, config, _dir, clock).await
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request with an explicit token (`None`: no token at all).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        send(&self.client, method, &self.url(path), token, body).await
    }

    /// A request with a raw body (for malformed JSON).
    pub async fn raw(&self, method: Method, path: &str, body: &str) -> Resp {
        let resp = self
            .client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request sent");
        into_resp(resp).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, Some(ADMIN_TOKEN), None).await
    }

    /// Assert that the list route `path` (with its other query parameters, if any; paging
    /// optional) refuses malformed paging with a 400 naming the field: `pageNum` 0, -1 or `x`
    /// and `pageSize` 0, -1 or over every route's cap, each alone and beside a valid partner.
    pub async fn expect_paging_errors(&self, path: &str) {
        let sep = if path.contains('?') { '&' } else { '?' };
        let bad = [
            ("pageNum", "pageSize=10", ["0", "-1", "x"]),
            ("pageSize", "pageNum=1", ["0", "-1", "5000"]),
        ];
        for (field, partner, values) in bad {
            for value in values {
                for query in [
                    format!("{field}={value}"),
                    format!("{partner}&{field}={value}"),
                ] {
                    let url = format!("{path}{sep}{query}");
                    let r = self.get(&url).await;
                    assert_eq!(r.status.as_u16(), 400, "{url}: {}", r.text);
                    r.expect_error(400, field);
                }
            }
        }
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(ADMIN_TOKEN), Some(body))
            .await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(ADMIN_TOKEN), Some(body))
            .await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(ADMIN_TOKEN), Some(body))
            .await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, Some(ADMIN_TOKEN), None)
            .await
    }

    /// Create a user through the API; returns (uid, token).
    pub async fn create_user(&self, account: &str, admin: bool) -> (String, String) {
        let r = self
            .post(
                "/openapi/users",
                serde_json::json!({"account": account, "name": account, "is_admin": admin}),
            )
            .await;
        let b = r.expect(200);
        (
            b["uid"].as_str().expect("uid").to_string(),
            b["api_token"].as_str().expect("token").to_string(),
        )
    }

    /// Create users through the API, `(account, is_admin)` each; returns their (uid, token).
    pub async fn create_users<const N: usize>(
        &self,
        users: [(&str, bool); N],
    ) -> [(String, String); N] {
        let mut made = Vec::with_capacity(N);
        for (account, admin) in users {
            made.push(self.create_user(account, admin).await);
        }
        made.try_into().expect("one (uid, token) a user")
    }

    /// Poll `f` until it returns `Some`, for at most `limit`; panics with `what` otherwise.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, limit: Duration, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Assert that each field of the object `want` equals the same field of `got`.
#[track_caller]
pub fn assert_fields(got: &Value, want: Value) {
    let want = want.as_object().expect("the expected fields, as an object");
    for (k, w) in want {
        assert_eq!(&got[k], w, "field `{k}` of {got}");
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// A request to `url` (any server: in this process or another) with an optional bearer token
/// and JSON body.
pub async fn send(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let mut req = client.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request sent");
    into_resp(resp).await
}

async fn into_resp(resp: reqwest::Response) -> Resp {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
    Resp {
        status,
        headers,
        body,
        text,
    }
}

/// Define a test that runs once per storage backend: `mod name { embedded, mongodb }`.
#[macro_export]
macro_rules! backend_test {
    ($(#[$m:meta])* async fn $name:ident($app:ident) $body:block) => {
        $(#[$m])*
        mod $name {
            #[allow(unused_imports, reason = "a test body may not use its parent module; expect would fail where it does")]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                let Some($app) = $crate::harness::TestApp::start($crate::harness::Kind::Embedded).await else { return };
                $body
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mongodb() {
                let Some($app) = $crate::harness::TestApp::start($crate::harness::Kind::Mongo).await else { return };
                $body
            }
        }
    };
}

/// Run `async fn name(kind: Kind)` — a test that starts its own server (a config tweak, a
/// separate process) — once per storage backend: `mod name { embedded, mongodb }`.
#[macro_export]
macro_rules! kind_test {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$name($crate::harness::Kind::Embedded).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mongodb() {
                super::$name($crate::harness::Kind::Mongo).await;
            }
        }
    };
}
