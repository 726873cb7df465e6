//! The Kubernetes API-server emulator (`../shared/tools/kube_emulator.py`, never copied into
//! the repository) as a test fixture: one process per test on `127.0.0.1:0` with TLS, its
//! kubeconfig, its side door (`/_emulator/state`), killed on drop.
//!
//! Found through `ZADIG_TEST_KUBE_EMULATOR`, else `$CARGO_MANIFEST_DIR/../shared/tools/…`.
//! When it is absent the test is skipped saying so, unless `ZADIG_TEST_REQUIRE_KUBE=1` (CI),
//! which makes that a failure.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub struct Emulator {
    child: Child,
    /// The kubeconfig the emulator wrote (server URL + bearer token).
    pub kubeconfig: String,
    /// `https://127.0.0.1:<port>`.
    pub base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

fn emulator_path() -> Option<PathBuf> {
    let path = match std::env::var("ZADIG_TEST_KUBE_EMULATOR") {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/kube_emulator.py"),
    };
    if path.is_file() {
        return Some(path);
    }
    let why = format!(
        "the Kubernetes API emulator is not at {} (set ZADIG_TEST_KUBE_EMULATOR)",
        path.display()
    );
    if std::env::var("ZADIG_TEST_REQUIRE_KUBE").as_deref() == Ok("1") {
        panic!("ZADIG_TEST_REQUIRE_KUBE=1 but {why}");
    }
    eprintln!("skipped: {why}");
    None
}

impl Emulator {
    /// Start an emulator, or `None` (skipped) when there is none.
    pub async fn start() -> Option<Self> {
        let path = emulator_path()?;
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("kubeconfig");
        let child = Command::new("python3")
            .arg(&path)
            .args(["--port", "0", "--tls", "--kubeconfig-out"])
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the kube emulator (python3)");
        let mut emu = Self {
            child,
            kubeconfig: String::new(),
            base: String::new(),
            client: reqwest::Client::builder()
                .no_proxy()
                .danger_accept_invalid_certs(true)
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            _dir: dir,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&out)
                && !text.is_empty()
            {
                emu.kubeconfig = text;
                break;
            }
            if let Ok(Some(status)) = emu.child.try_wait() {
                panic!("the kube emulator exited early: {status}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the kube emulator wrote no kubeconfig within 60s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let kc: Value = serde_yaml_ng::from_str(&emu.kubeconfig).expect("kubeconfig YAML");
        emu.base = kc["clusters"][0]["cluster"]["server"]
            .as_str()
            .expect("server URL")
            .trim_end_matches('/')
            .to_string();
        Some(emu)
    }

    /// The side door's state (`?query`): objects, resourceVersion, the job processes.
    async fn state(&self, query: &str) -> Value {
        self.client
            .get(format!("{}/_emulator/state{query}", self.base))
            .send()
            .await
            .expect("emulator state")
            .json()
            .await
            .expect("emulator state JSON")
    }

    /// The emulator's objects of `kind` (e.g. `Deployment`) in `namespace` (all when empty).
    pub async fn objects(&self, kind: &str, namespace: &str) -> Vec<Value> {
        let mut query = format!("?kind={kind}");
        if !namespace.is_empty() {
            query.push_str(&format!("&namespace={namespace}"));
        }
        let v = self.state(&query).await;
        v["objects"].as_array().cloned().unwrap_or_default()
    }

    /// The processes the stand-in kubelet started (`pod_uid`, `pid`, `running`, `returncode`).
    pub async fn processes(&self) -> Vec<Value> {
        let v = self.state("").await;
        v["processes"].as_array().cloned().unwrap_or_default()
    }

    /// Force the status of `kind`/`name` (frozen: the controller and kubelet leave it alone).
    pub async fn set_status(&self, kind: &str, namespace: &str, name: &str, status: Value) {
        let r = self
            .client
            .post(format!("{}/_emulator/set-status", self.base))
            .json(
                &serde_json::json!({"kind": kind, "namespace": namespace, "name": name,
                "status": status, "merge": false, "freeze": true}),
            )
            .send()
            .await
            .expect("emulator set-status");
        assert!(r.status().is_success(), "set-status: {}", r.status());
    }

    /// The API requests the emulator answered, oldest first (its last 500): `method`, `path`,
    /// `query`, `code`, `body`.
    pub async fn requests(&self) -> Vec<Value> {
        let url = format!("{}/_emulator/requests", self.base);
        let r = self
            .client
            .get(url)
            .send()
            .await
            .expect("emulator requests");
        let v: Value = r.json().await.expect("emulator requests JSON");
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// Forget the requests answered so far.
    pub async fn clear_requests(&self) {
        let url = format!("{}/_emulator/requests", self.base);
        let r = self
            .client
            .delete(url)
            .send()
            .await
            .expect("emulator requests");
        assert!(r.status().is_success(), "clear requests: {}", r.status());
    }

    /// A change by hand: `method` on the API path `path` (`/apis/apps/v1/namespaces/…`) with
    /// the kubeconfig's token; the status.
    pub async fn api(&self, method: reqwest::Method, path: &str) -> u16 {
        self.api_with(method, path, None).await
    }

    /// [`Self::api`] with a JSON `body` (e.g. a `POST` creating an object).
    pub async fn api_with(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> u16 {
        let kc: Value = serde_yaml_ng::from_str(&self.kubeconfig).expect("kubeconfig YAML");
        let token = kc["users"][0]["user"]["token"].as_str().expect("token");
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.expect("emulator API");
        r.status().as_u16()
    }

    /// The object `kind`/`name` in `namespace`, if any.
    pub async fn object(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        self.objects(kind, namespace)
            .await
            .into_iter()
            .find(|o| o["metadata"]["name"] == name)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
