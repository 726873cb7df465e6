//! Delivery-version benchmark: prints figures, asserts nothing.
//!
//! Starts two real registries (Debian's `docker-registry`) on loopback ports and the server
//! on the embedded store, then measures:
//! 1. one 64 MiB image copied between the registries (streamed blob copy) — MB/s;
//! 2. a version of 20 services with one small image each — images per second;
//! 3. a version of 20 small images within one registry (cross-repository mounts);
//! 4. API: creating 300 versions (no pushes) — create latency and list latency.
//!
//! Run: `cargo bench --bench delivery` (release) or `cargo test --bench delivery` (debug).

use std::io::Write;
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zadig_server::config::StorageKind;

mod common;
use common::Api;

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

struct Registry {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_registry(http: &reqwest::Client) -> Option<Registry> {
    let bin = PathBuf::from("/usr/bin/docker-registry");
    if !bin.exists() {
        return None;
    }
    let dir = tempfile::tempdir().ok()?;
    let port = free_port();
    let config = dir.path().join("config.yml");
    let mut f = std::fs::File::create(&config).ok()?;
    write!(
        f,
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: bench\n",
        dir.path().join("data").display()
    )
    .ok()?;
    let child = Command::new(bin)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let reg = Registry {
        port,
        child,
        _dir: dir,
    };
    for _ in 0..300 {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/v2/"))
            .send()
            .await
            && r.status().is_success()
        {
            return Some(reg);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

async fn push_blob(http: &reqwest::Client, port: u16, repo: &str, data: Vec<u8>) -> String {
    let d = digest(&data);
    let r = http
        .post(format!("http://127.0.0.1:{port}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .expect("upload start");
    let loc = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let loc = if loc.starts_with('/') {
        format!("http://127.0.0.1:{port}{loc}")
    } else {
        loc
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = http
        .put(format!("{loc}{sep}digest={d}"))
        .body(data)
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 201);
    d
}

/// An image with one layer of `size` random bytes; returns the manifest digest.
async fn push_image(
    http: &reqwest::Client,
    port: u16,
    repo: &str,
    tag: &str,
    size: usize,
) -> String {
    let mut layer = vec![0u8; size];
    rand::rng().fill_bytes(&mut layer);
    let layer_len = layer.len();
    let layer_digest = push_blob(http, port, repo, layer).await;
    let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}))
        .expect("config");
    let config_len = config.len();
    let config_digest = push_blob(http, port, repo, config).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_len},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_len}],
    }))
    .expect("manifest");
    let d = digest(&manifest);
    let r = http
        .put(format!("http://127.0.0.1:{port}/v2/{repo}/manifests/{tag}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest)
        .send()
        .await
        .expect("manifest");
    assert_eq!(r.status(), 201);
    d
}

/// What this bench asks of the API beyond [`Api::call`].
trait DeliveryApi {
    async fn registry(&self, port: u16, ns: &str) -> String;
    async fn run_version(&self, body: Value) -> Duration;
}

impl DeliveryApi for Api {
    async fn registry(&self, port: u16, ns: &str) -> String {
        let v = self
            .post(
                "/openapi/system/registry",
                json!({"address": format!("http://127.0.0.1:{port}"), "provider": "native", "namespace": ns}),
            )
            .await;
        v["id"].as_str().expect("id").to_string()
    }

    /// Create a version and wait for its outcome; returns the elapsed time.
    async fn run_version(&self, body: Value) -> Duration {
        let start = Instant::now();
        let v = self.post("/openapi/delivery/releases/k8s", body).await;
        let id = v["id"].as_str().expect("id").to_string();
        loop {
            let d = self.get(&format!("/openapi/delivery/releases/{id}")).await;
            match d["status"].as_str() {
                Some("success") => return start.elapsed(),
                Some("failed") => panic!("version failed: {d}"),
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench());
}

async fn bench() {
    let mode = common::mode();
    println!("delivery benchmark ({mode} build, embedded store, loopback registries)");
    let http = common::client();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = common::start(common::config(StorageKind::Embedded, dir.path())).await;
    let api = Api::of(&server);

    match (start_registry(&http).await, start_registry(&http).await) {
        (Some(a), Some(b)) => {
            let _src = api.registry(a.port, "build").await;
            let dst = api.registry(b.port, "release").await;
            let image = |svc: &str, src: String, dst: String| {
                json!({"service_name": svc, "images": [{"container_name": svc, "image_name": svc,
                    "source_image": src, "target_image": dst, "push_image": true}]})
            };
            // Copy `services` into the registry `to` as the version `name`: how long it took.
            let copy = |name: &str, to: &str, services: Vec<Value>| {
                api.run_version(json!({"project_key": "bench", "version_name": name,
                    "source": "manual", "image_registry_id": to, "services": services}))
            };
            // The 20 small images `build/s{i}:1` of `a`, to `release/s{i}:1` of `port`.
            let twenty = |port: u16| -> Vec<Value> {
                (0..20)
                    .map(|i| {
                        image(
                            &format!("s{i}"),
                            format!("127.0.0.1:{}/build/s{i}:1", a.port),
                            format!("127.0.0.1:{port}/release/s{i}:1"),
                        )
                    })
                    .collect()
            };
            let per_image = |what: &str, t: Duration| {
                println!(
                    "copy 20 small images {:<19} {:>7.1} ms  ({:.1} images/s)",
                    format!("{what}:"),
                    t.as_secs_f64() * 1e3,
                    20.0 / t.as_secs_f64()
                );
            };

            // 1. One 64 MiB layer across registries.
            const BIG: usize = 64 << 20;
            push_image(&http, a.port, "build/big", "1", BIG).await;
            let big = image(
                "big",
                format!("127.0.0.1:{}/build/big:1", a.port),
                format!("127.0.0.1:{}/release/big:1", b.port),
            );
            let t = copy("big", &dst, vec![big]).await;
            println!(
                "copy 64 MiB image between registries: {:>8.1} ms  ({:.1} MB/s)",
                t.as_secs_f64() * 1e3,
                (BIG as f64 / 1e6) / t.as_secs_f64()
            );

            // 2. 20 small images across registries.
            for i in 0..20 {
                push_image(&http, a.port, &format!("build/s{i}"), "1", 4096).await;
            }
            per_image(
                "between registries",
                copy("small", &dst, twenty(b.port)).await,
            );

            // 3. 20 small images within one registry (mounts).
            let same = api.registry(a.port, "release").await;
            per_image(
                "within a registry",
                copy("mount", &same, twenty(a.port)).await,
            );
        }
        _ => println!("docker-registry not installed: copy figures skipped"),
    }

    // 4. API latency: 300 creates (nothing to push), then list pages.
    let mut creates = Vec::new();
    let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: r.example.com/ns/web:1\n";
    for i in 0..300 {
        let body = json!({"project_key": "api", "version_name": format!("v{i}"), "source": "manual",
            "services": [{"service_name": "web", "yaml_content": yaml, "images": [{"container_name": "web", "image_name": "web",
                "source_image": "r.example.com/ns/web:1", "target_image": "r.example.com/ns/web:2", "push_image": false}]}]});
        let t = Instant::now();
        api.post("/openapi/delivery/releases/k8s", body).await;
        creates.push(t.elapsed());
    }
    common::print_p50_p99("create version (300, no push)", creates);
    let mut lists = Vec::new();
    for page in 1..=50 {
        let t = Instant::now();
        api.get(&format!(
            "/openapi/delivery/releases?projectKey=api&pageNum={}&pageSize=20",
            page % 15 + 1
        ))
        .await;
        lists.push(t.elapsed());
    }
    common::print_p50_p99("list page of 20 (of 300)", lists);
    server.shutdown().await;
}
