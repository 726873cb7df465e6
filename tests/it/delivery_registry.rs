//! Test support for delivery versions: a real OCI registry (Debian's `docker-registry`, the
//! CNCF distribution server) on a loopback port, test images built from a few bytes and
//! pushed through the registry API, and a TCP relay that can hold connections (to keep a copy
//! "running" as long as a test needs).

use std::io::Write;
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn registry_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("ZADIG_TEST_DOCKER_REGISTRY") {
        return Some(PathBuf::from(p));
    }
    let default = PathBuf::from("/usr/bin/docker-registry");
    if default.exists() {
        return Some(default);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("docker-registry"))
            .find(|p| p.exists())
    })
}

pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A `docker-registry` child process serving `127.0.0.1:<port>` from a temp dir. Killed on
/// drop (also when the test panics).
pub struct TestRegistry {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    client: reqwest::Client,
    /// Basic credentials the registry requires (htpasswd), if any.
    auth: Option<(String, String)>,
}

/// `robot:s3cret-pw` as an htpasswd line (bcrypt).
pub const HTPASSWD: (&str, &str, &str) = (
    "robot",
    "s3cret-pw",
    "robot:$2b$04$b91dU3mgda7WGgH3NBwCJ.GcqFPFUcOfRUZ2lp42EKREjAgrqq0tG",
);

/// `AWS:ecr-l0gin-pw` (the user and password an ECR login gives) as an htpasswd line; a
/// registry started with auth accepts it besides [`HTPASSWD`].
pub const ECR_HTPASSWD: (&str, &str, &str) = (
    "AWS",
    "ecr-l0gin-pw",
    "AWS:$2b$04$dggUmxpf.oA/Nn3vrWe46OeyzOlD89XlzZNm8pXpZguz2FiYJ0a2W",
);

impl TestRegistry {
    /// Start on a free port; `None` (test skipped) when the binary is missing, unless CI
    /// (`ZADIG_TEST_REQUIRE_MONGODB=1`) requires everything to run.
    pub async fn start() -> Option<Self> {
        Self::start_on(free_port()).await
    }

    pub async fn start_on(port: u16) -> Option<Self> {
        Self::launch(port, None).await
    }

    /// Start on a free port, requiring [`HTPASSWD`]'s basic credentials.
    pub async fn start_with_auth() -> Option<Self> {
        Self::launch(
            free_port(),
            Some((HTPASSWD.0.to_string(), HTPASSWD.1.to_string())),
        )
        .await
    }

    async fn launch(port: u16, auth: Option<(String, String)>) -> Option<Self> {
        if registry_binary().is_none() {
            if std::env::var("ZADIG_TEST_REQUIRE_MONGODB").as_deref() == Ok("1") {
                panic!(
                    "docker-registry is not installed (apt-get install docker-registry); CI requires it"
                );
            }
            eprintln!("skipped: docker-registry is not installed");
            return None;
        }
        let mut r = Self {
            port,
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
            client: crate::harness::client(),
            auth,
        };
        r.run().await;
        Some(r)
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn run(&mut self) {
        let bin = registry_binary().expect("docker-registry");
        let config = self.dir.path().join("config.yml");
        let data = self.dir.path().join("data");
        let mut f = std::fs::File::create(&config).expect("config");
        write!(
            f,
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{}\n  secret: zadig-test-secret\n",
            data.display(),
            self.port
        )
        .expect("write config");
        if self.auth.is_some() {
            let htpasswd = self.dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{}\n{}\n", HTPASSWD.2, ECR_HTPASSWD.2))
                .expect("htpasswd");
            write!(
                f,
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                htpasswd.display()
            )
            .expect("write config");
        }
        let log = std::fs::File::create(self.dir.path().join("registry.log")).expect("log");
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let url = format!("http://{}/v2/", self.host());
        for _ in 0..750 {
            if let Ok(r) = self.req(reqwest::Method::GET, url.clone()).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                let log = std::fs::read_to_string(self.dir.path().join("registry.log"))
                    .unwrap_or_default();
                panic!("docker-registry exited ({status}): {log}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("docker-registry did not answer on {url} within 15s");
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn req(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        let r = self.client.request(method, url);
        match &self.auth {
            Some((u, p)) => r.basic_auth(u, Some(p)),
            None => r,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host())
    }

    /// A request to `path` on this registry.
    fn at(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.req(method, self.url(path))
    }

    /// Send `req`; panics naming `what` when the registry cannot be reached.
    async fn send(req: reqwest::RequestBuilder, what: &str) -> reqwest::Response {
        req.send().await.unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// Send `req` and assert the registry answered `status` (its answer shown otherwise).
    async fn expect(req: reqwest::RequestBuilder, status: u16, what: &str) -> reqwest::Response {
        let r = Self::send(req, what).await;
        let got = r.status();
        if got != status {
            panic!("{what}: {got} {}", r.text().await.unwrap_or_default());
        }
        r
    }

    /// Upload a blob (monolithic); returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = digest_of(data);
        let start = self.at(reqwest::Method::POST, &format!("/v2/{repo}/blobs/uploads/"));
        let r = Self::expect(start, 202, "start upload").await;
        let location = r.headers()["location"]
            .to_str()
            .expect("location")
            .to_string();
        let location = if location.starts_with('/') {
            self.url(&location)
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let upload = self
            .req(
                reqwest::Method::PUT,
                format!("{location}{sep}digest={digest}"),
            )
            .header("content-type", "application/octet-stream")
            .body(data.to_vec());
        Self::expect(upload, 201, "upload").await;
        digest
    }

    /// Push a manifest; returns its digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let push = self
            .at(
                reqwest::Method::PUT,
                &format!("/v2/{repo}/manifests/{reference}"),
            )
            .header("content-type", media_type)
            .body(body.to_vec());
        Self::expect(push, 201, "push manifest").await;
        digest_of(body)
    }

    /// A small single-platform image: an OCI config and one gzipped tar layer made from
    /// `content`. Returns the manifest digest.
    pub async fn push_image(&self, repo: &str, tag: &str, content: &str) -> String {
        let (manifest, _) = self.image_manifest(repo, content, "amd64").await;
        self.push_manifest(repo, tag, OCI_MANIFEST, &manifest).await
    }

    async fn image_manifest(&self, repo: &str, content: &str, arch: &str) -> (Vec<u8>, String) {
        let layer = layer_tgz(content);
        let layer_digest = self.push_blob(repo, &layer).await;
        let diff_id = digest_of(&gunzip(&layer));
        let config = serde_json::to_vec(&json!({
            "architecture": arch, "os": "linux",
            "config": {"Cmd": ["/hello"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }))
        .expect("config");
        let config_digest = self.push_blob(repo, &config).await;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer.len()}],
        }))
        .expect("manifest");
        let digest = digest_of(&manifest);
        (manifest, digest)
    }

    /// A two-platform image (an OCI index over amd64 and arm64 images). Returns the index
    /// digest.
    pub async fn push_index(&self, repo: &str, tag: &str, content: &str) -> String {
        let mut entries = Vec::new();
        for arch in ["amd64", "arm64"] {
            let (m, d) = self
                .image_manifest(repo, &format!("{content}-{arch}"), arch)
                .await;
            self.push_manifest(repo, &d, OCI_MANIFEST, &m).await;
            entries.push(
                json!({"mediaType": OCI_MANIFEST, "digest": d, "size": m.len(),
                "platform": {"architecture": arch, "os": "linux"}}),
            );
        }
        let index = serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}),
        )
        .expect("index");
        self.push_manifest(repo, tag, OCI_INDEX, &index).await
    }

    /// The digest a manifest has at `repo:reference`, or `None` when it is not there.
    pub async fn manifest_digest(&self, repo: &str, reference: &str) -> Option<String> {
        self.manifest(repo, reference)
            .await
            .map(|(_, body)| digest_of(&body))
    }

    /// `(content type, bytes)` of a manifest.
    pub async fn manifest(&self, repo: &str, reference: &str) -> Option<(String, Vec<u8>)> {
        let get = self
            .at(
                reqwest::Method::GET,
                &format!("/v2/{repo}/manifests/{reference}"),
            )
            .header("accept", ACCEPT);
        let r = Self::send(get, "get manifest").await;
        if r.status() == 404 {
            return None;
        }
        assert_eq!(r.status(), 200);
        let ct = r.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .to_string();
        Some((ct, r.bytes().await.expect("body").to_vec()))
    }

    pub async fn blob(&self, repo: &str, digest: &str) -> Option<Vec<u8>> {
        let get = self.at(reqwest::Method::GET, &format!("/v2/{repo}/blobs/{digest}"));
        let r = Self::send(get, "get blob").await;
        r.status().is_success().then_some(())?;
        Some(r.bytes().await.expect("blob").to_vec())
    }

    /// The parsed manifest JSON at `repo:reference`.
    pub async fn manifest_json(&self, repo: &str, reference: &str) -> Option<Value> {
        let (_, body) = self.manifest(repo, reference).await?;
        serde_json::from_slice(&body).ok()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn layer_tgz(content: &str) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o755);
    h.set_mtime(1);
    tar.append_data(&mut h, "hello", content.as_bytes())
        .expect("tar");
    tar.into_inner().expect("tar").finish().expect("gzip")
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

/// Files (path relative to the chart directory → text) of a chart package.
pub fn chart_files(tgz: &[u8]) -> std::collections::BTreeMap<String, String> {
    use std::io::Read;
    let mut out = std::collections::BTreeMap::new();
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    for e in a.entries().expect("entries") {
        let mut e = e.expect("entry");
        let path = e.path().expect("path").to_string_lossy().into_owned();
        let rel = path
            .split_once('/')
            .map(|(_, r)| r.to_string())
            .unwrap_or(path);
        let mut s = String::new();
        e.read_to_string(&mut s).expect("read");
        out.insert(rel, s);
    }
    out
}

/// A TCP relay in front of `backend` that holds new connections while "paused" and forwards
/// them once released. Counts connections that were closed by the client while held.
pub struct Relay {
    pub port: u16,
    release: watch::Sender<bool>,
    pub held: Arc<AtomicUsize>,
    pub dropped_while_held: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Listen on `port` and relay to `127.0.0.1:backend`, starting paused.
    pub async fn start(port: u16, backend: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("relay bind");
        let (release, rx) = watch::channel(false);
        let held = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (h, d) = (held.clone(), dropped.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let mut rx = rx.clone();
                let (h, d) = (h.clone(), d.clone());
                tokio::spawn(async move {
                    // Bytes the client sent while held, forwarded on release.
                    let mut sent = Vec::new();
                    if !*rx.borrow() {
                        h.fetch_add(1, Ordering::SeqCst);
                        let mut buf = [0u8; 4096];
                        loop {
                            tokio::select! {
                                changed = rx.changed() => {
                                    if changed.is_err() || *rx.borrow() { break; }
                                }
                                r = client.read(&mut buf) => match r {
                                    Ok(0) | Err(_) => {
                                        d.fetch_add(1, Ordering::SeqCst);
                                        return;
                                    }
                                    Ok(n) => sent.extend_from_slice(&buf[..n]),
                                },
                            }
                        }
                    }
                    if let Ok(mut server) = TcpStream::connect(("127.0.0.1", backend)).await
                        && server.write_all(&sent).await.is_ok()
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self {
            port,
            release,
            held,
            dropped_while_held: dropped,
            task,
        }
    }

    /// Forward held and future connections.
    pub fn open(&self) {
        let _ = self.release.send(true);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
