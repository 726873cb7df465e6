//! The delivery pipeline against a real OCI registry (`docker-registry` on a loopback port):
//! image copies (single image and multi-arch index) with equal digests, Helm charts pushed
//! as OCI artifacts and to a ChartMuseum API, an unreachable registry then a retry, delete
//! and restart during a copy, and versions copied from versions.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::backend_test;
use crate::delivery::{add_chart_repo, add_registry, assert_keys, deployment, wait_status};
use crate::delivery_registry::{Relay, TestRegistry, chart_files, free_port};
use crate::harness::TestApp;

/// Wait until the version's first image has `status`.
async fn wait_image_status(app: &TestApp, id: &str, status: &str) {
    app.wait_for(
        &format!("image of {id} to be {status}"),
        Duration::from_secs(30),
        || async move {
            let b = app
                .get(&format!("/openapi/delivery/releases/{id}"))
                .await
                .expect(200)
                .clone();
            (b["services"][0]["images"][0]["status"] == status).then_some(())
        },
    )
    .await;
}

/// Create a version of `kind` (`k8s` or `helm`); returns its id.
async fn release(app: &TestApp, kind: &str, body: Value) -> String {
    let r = app
        .post(&format!("/openapi/delivery/releases/{kind}"), body)
        .await;
    r.expect(200)["id"].as_str().expect("id").to_string()
}

/// Wait until the version's run is over (`success` or `failed`); returns the version.
async fn settled(app: &TestApp, id: &str) -> Value {
    wait_status(app, id, &["success", "failed"]).await
}

/// Retry the failed version `id` of project `p`.
async fn retry(app: &TestApp, id: &str) {
    app.post(
        "/openapi/delivery/releases/retry",
        json!({"id": id, "projectKey": "p"}),
    )
    .await
    .expect(200);
}

fn image(container: &str, source: &str, target: &str) -> Value {
    json!({"container_name": container, "image_name": container, "source_image": source,
        "source_image_tag": "", "target_image": target, "target_image_tag": "", "push_image": true})
}

backend_test! {
    async fn k8s_images_are_copied_with_equal_digests(app) {
        let Some(reg) = TestRegistry::start().await else { return app.stop().await };
        let host = reg.host();
        let single = reg.push_image("build/app", "20250908-1", "hello").await;
        let multi = reg.push_index("build/multi", "1.0", "multi").await;
        let reg_id = add_registry(&app, &format!("http://{host}"), "release").await;
        let src = format!("{host}/build/app:20250908-1");
        let body = json!({"project_key": "demo", "version_name": "v1", "source": "manual", "image_registry_id": reg_id,
            "services": [
                {"service_name": "app", "yaml_content": deployment("app", &src), "images": [
                    {"container_name": "app", "image_name": "app", "source_image": src, "source_image_tag": "20250908-1",
                     "target_image": format!("{host}/release/app:v1"), "target_image_tag": "v1", "push_image": true}]},
                {"service_name": "multi", "images": [
                    {"container_name": "multi", "image_name": "multi", "source_image": format!("{host}/build/multi"),
                     "source_image_tag": "1.0", "target_image": format!("{host}/release/multi"), "target_image_tag": "v1", "push_image": true}]}
            ]});
        let id = release(&app, "k8s", body).await;
        let v = settled(&app, &id).await;
        assert_eq!(v["status"], "success", "{v}");
        assert_eq!(v["error"], "");
        for s in v["services"].as_array().unwrap() {
            assert_eq!(s["images"][0]["status"], "passed", "{s}");
            assert_eq!(s["images"][0]["error"], "");
        }
        assert!(v["services"][0]["yaml_content"].as_str().unwrap().contains(&format!("image: {host}/release/app:v1")));

        // The registry API shows the same digests at the target.
        assert_eq!(reg.manifest_digest("release/app", "v1").await, Some(single.clone()));
        assert_eq!(reg.manifest_digest("release/multi", "v1").await, Some(multi.clone()));
        let index = reg.manifest_json("release/multi", "v1").await.unwrap();
        let children = index["manifests"].as_array().unwrap();
        assert_eq!(children.len(), 2);
        for c in children {
            let d = c["digest"].as_str().unwrap();
            assert_eq!(reg.manifest_digest("release/multi", d).await.as_deref(), Some(d));
            let m = reg.manifest_json("release/multi", d).await.unwrap();
            for blob in [&m["config"], &m["layers"][0]] {
                assert!(reg.blob("release/multi", blob["digest"].as_str().unwrap()).await.is_some(), "{blob}");
            }
        }
        // A second version to the same tags copies again (blobs already there) and succeeds.
        let again = json!({"project_key": "demo", "version_name": "v1-again", "source": "manual", "image_registry_id": reg_id,
            "services": [{"service_name": "app", "images": [image("app", &src, &format!("{host}/release/app:v1"))]}]});
        let id2 = release(&app, "k8s", again).await;
        assert_eq!(settled(&app, &id2).await["status"], "success");
        app.stop().await;
    }
}

/// The seed's Helm detail example, trimmed to one service.
fn seed_helm_detail() -> Value {
    json!({
        "version": "v1", "project_name": "multi-chart", "env_name": "dev", "production": false, "type": "HelmChart",
        "source": "from_env", "desc": "", "labels": [], "image_registry_id": "683047fe458904519c5f5c80",
        "chart_repo_name": "test",
        "services": [{
            "service_name": "service2", "chart_name": "general-chart", "original_chart_version": "",
            "chart_version": "3.4.6", "chart_status": "passed", "yaml_content": "a: b\n",
            "images": [{"container_name": "service2", "image_name": "service2",
                "source_image": "koderover.tencentcloudcr.com/koderover-demo/service2:latest", "source_image_tag": "latest",
                "target_image": "koderover.tencentcloudcr.com/koderover-demo/service2:123", "target_image_tag": "123",
                "image_path": {"image": "image.repository", "tag": "image.tag"}, "push_image": true,
                "status": "passed", "error": ""}],
            "error": ""
        }],
        "status": "success", "error": "", "created_by": "lilian", "created_at": 1753930701, "deleted_at": 0
    })
}

const SEED_VALUES: &str = "a: b\nc: d\nfullnameOverride: service2\nimage:\n  repository: koderover.tencentcloudcr.com/koderover-demo/service2\n  tag: latest\nimagePullSecretsName: default-registry-secret\nport: 20222\nreplicaCount: 1\n";

backend_test! {
    async fn helm_chart_lands_in_the_registry(app) {
        let Some(reg) = TestRegistry::start().await else { return app.stop().await };
        let host = reg.host();
        let src_digest = reg.push_image("koderover-demo/service2", "latest", "service2").await;
        let reg_id = add_registry(&app, &format!("http://{host}"), "koderover-demo").await;
        add_chart_repo(&app, "test", &format!("oci://{host}/charts"), true).await;
        let body = json!({"project_key": "multi-chart", "version_name": "v1", "source": "manual", "env_name": "dev",
            "production": false, "desc": "", "labels": [], "image_registry_id": reg_id, "chart_repo_name": "test",
            "services": [{"service_name": "service2", "chart_name": "general-chart", "chart_version": "3.4.6",
                "yaml_content": SEED_VALUES, "images": [{"container_name": "service2", "image_name": "service2",
                    "source_image": format!("{host}/koderover-demo/service2:latest"), "source_image_tag": "latest",
                    "target_image": format!("{host}/koderover-demo/service2:123"), "target_image_tag": "123",
                    "image_path": {"image": "image.repository", "tag": "image.tag"}, "push_image": true}]}]});
        let id = release(&app, "helm", body).await;
        let v = settled(&app, &id).await;
        assert_eq!(v["status"], "success", "{v}");
        assert_keys(&seed_helm_detail(), &v, "detail");
        let s = &v["services"][0];
        assert_eq!(s["chart_status"], "passed");
        assert_eq!(s["chart_name"], "general-chart");
        assert_eq!(s["images"][0]["image_path"], json!({"image": "image.repository", "tag": "image.tag"}));
        let values: Value = serde_yaml_ng::from_str(s["yaml_content"].as_str().unwrap()).unwrap();
        assert_eq!(values["image"]["repository"], json!(format!("{host}/koderover-demo/service2")));
        assert_eq!(values["image"]["tag"], json!("123"));
        assert_eq!(values["port"], json!(20222));
        assert_eq!(reg.manifest_digest("koderover-demo/service2", "123").await, Some(src_digest));

        // The chart is an OCI artifact with Helm's media types.
        let m = reg.manifest_json("charts/general-chart", "3.4.6").await.expect("chart manifest");
        assert_eq!(m["config"]["mediaType"], "application/vnd.cncf.helm.config.v1+json");
        assert_eq!(m["layers"][0]["mediaType"], "application/vnd.cncf.helm.chart.content.v1.tar+gzip");
        let config: Value = serde_json::from_slice(&reg.blob("charts/general-chart", m["config"]["digest"].as_str().unwrap()).await.unwrap()).unwrap();
        assert_eq!(config["name"], "general-chart");
        assert_eq!(config["version"], "3.4.6");
        let tgz = reg.blob("charts/general-chart", m["layers"][0]["digest"].as_str().unwrap()).await.unwrap();
        let files = chart_files(&tgz);
        assert!(files["Chart.yaml"].contains("name: general-chart") && files["Chart.yaml"].contains("version: 3.4.6"), "{files:?}");
        assert!(files["values.yaml"].contains(&format!("{host}/koderover-demo/service2")), "{files:?}");

        // The package is kept with the version as well.
        let dl = app.client.get(app.url(&format!("/openapi/delivery/releases/{id}/charts/service2?projectKey=multi-chart")))
            .bearer_auth(crate::harness::ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(dl.status(), 200);
        assert_eq!(dl.headers()["content-type"], "application/gzip");
        assert!(dl.headers()["content-disposition"].to_str().unwrap().contains("general-chart-3.4.6.tgz"));
        assert_eq!(dl.bytes().await.unwrap().to_vec(), tgz);
        app.stop().await;
    }
}

backend_test! {
    async fn unreachable_target_fails_then_retry_succeeds(app) {
        let Some(source) = TestRegistry::start().await else { return app.stop().await };
        let digest = source.push_image("build/app", "1", "retry me").await;
        add_registry(&app, &format!("http://{}", source.host()), "build").await;
        let port = free_port();
        let target = add_registry(&app, &format!("http://127.0.0.1:{port}"), "release").await;
        let body = json!({"project_key": "p", "version_name": "v1", "source": "manual", "image_registry_id": target,
            "services": [{"service_name": "app", "images": [
                image("app", &format!("{}/build/app:1", source.host()), &format!("127.0.0.1:{port}/release/app:v1"))]}]});
        let id = release(&app, "k8s", body).await;

        // Fails (within settled's 30 s) with the error on the image.
        let v = settled(&app, &id).await;
        assert_eq!(v["status"], "failed", "{v}");
        let im = &v["services"][0]["images"][0];
        assert_eq!(im["status"], "failed");
        let err = im["error"].as_str().unwrap();
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
        assert!(v["error"].as_str().unwrap().starts_with("1 error occurred:"), "{v}");
        // No silent background retries: the run is over and a failed version is not work.
        let state = app.state().clone();
        let id2 = id.clone();
        app.wait_for("the run to end", Duration::from_secs(10), || {
            let (state, id) = (state.clone(), id2.clone());
            async move { (!state.delivery.is_running(&id)).then_some(()) }
        })
        .await;
        let stored = state.delivery.versions.get(&id).await.unwrap().unwrap();
        assert!(!stored.is_pending() && stored.lease_until_ms == 0, "{stored:?}");

        // The registry comes back; of two racing retries exactly one is accepted.
        let Some(target_reg) = TestRegistry::start_on(port).await else { return app.stop().await };
        let retry = "/openapi/delivery/releases/retry";
        let by_query = format!("{retry}?id={id}&projectKey=p");
        let (a, b) = tokio::join!(
            app.post(retry, json!({"id": id, "projectKey": "p"})),
            app.post(&by_query, json!({}))
        );
        let mut codes = [a.status.as_u16(), b.status.as_u16()];
        codes.sort_unstable();
        assert_eq!(codes, [200, 409], "{} / {}", a.text, b.text);
        let now = app.get(&format!("/openapi/delivery/releases/{id}")).await.expect(200).clone();
        assert!(["retrying", "success"].contains(&now["status"].as_str().unwrap()), "{now}");
        let v = settled(&app, &id).await;
        assert_eq!(v["status"], "success", "{v}");
        assert_eq!(v["error"], "");
        assert_eq!(v["services"][0]["images"][0]["status"], "passed");
        assert_eq!(v["services"][0]["images"][0]["error"], "", "stale errors are cleared");
        assert_eq!(target_reg.manifest_digest("release/app", "v1").await, Some(digest));
        app.post(retry, json!({"id": id, "projectKey": "p"})).await.expect_error(409, "success");
        app.stop().await;
    }
}

/// A registry behind a paused relay, and a version whose copy hangs on the relay.
async fn hanging_copy(app: &TestApp, reg: &TestRegistry) -> (Relay, String) {
    reg.push_image("build/app", "1", "slow").await;
    let relay = Relay::start(free_port(), reg.port).await;
    add_registry(app, &format!("http://{}", reg.host()), "build").await;
    let target = add_registry(app, &format!("http://127.0.0.1:{}", relay.port), "release").await;
    let body = json!({"project_key": "p", "version_name": "v1", "source": "manual", "image_registry_id": target,
        "services": [{"service_name": "app", "images": [
            image("app", &format!("{}/build/app:1", reg.host()), &format!("127.0.0.1:{}/release/app:v1", relay.port))]}]});
    let id = release(app, "k8s", body).await;
    wait_image_status(app, &id, "running").await;
    let held = relay.held.clone();
    app.wait_for(
        "the copy to reach the relay",
        Duration::from_secs(10),
        || {
            let held = held.clone();
            async move { (held.load(Ordering::SeqCst) >= 1).then_some(()) }
        },
    )
    .await;
    (relay, id)
}

backend_test! {
    async fn delete_stops_a_running_copy(app) {
        let Some(reg) = TestRegistry::start().await else { return app.stop().await };
        let (relay, id) = hanging_copy(&app, &reg).await;
        assert!(app.state().delivery.is_running(&id));
        assert_eq!(app.get(&format!("/openapi/delivery/releases/{id}")).await.expect(200)["status"], "creating");
        app.delete(&format!("/openapi/delivery/releases/{id}?projectKey=p")).await.expect(200);
        let dropped = relay.dropped_while_held.clone();
        app.wait_for("the run to drop its connection", Duration::from_secs(10), || {
            let dropped = dropped.clone();
            async move { (dropped.load(Ordering::SeqCst) >= 1).then_some(()) }
        })
        .await;
        let state = app.state().clone();
        let id2 = id.clone();
        app.wait_for("the run to end", Duration::from_secs(10), || {
            let (state, id) = (state.clone(), id2.clone());
            async move { (!state.delivery.is_running(&id)).then_some(()) }
        })
        .await;
        app.get(&format!("/openapi/delivery/releases/{id}")).await.expect_error(404, &id);
        // Nothing was pushed.
        relay.open();
        assert_eq!(reg.manifest_digest("release/app", "v1").await, None);
        app.stop().await;
    }
}

backend_test! {
    async fn a_restart_resumes_the_run(app) {
        let Some(reg) = TestRegistry::start().await else { return app.stop().await };
        let (relay, id) = hanging_copy(&app, &reg).await;
        let app = app.restart().await;
        // The new server takes the version over at once (the old one gave its lease back).
        let held = relay.held.clone();
        app.wait_for("the resumed copy to reach the relay", Duration::from_secs(10), || {
            let held = held.clone();
            async move { (held.load(Ordering::SeqCst) >= 2).then_some(()) }
        })
        .await;
        relay.open();
        let v = settled(&app, &id).await;
        assert_eq!(v["status"], "success", "{v}");
        assert_eq!(reg.manifest_digest("release/app", "v1").await, reg.manifest_digest("build/app", "1").await);
        app.stop().await;
    }
}

backend_test! {
    async fn from_version_copies_what_the_original_delivered(app) {
        let Some(reg) = TestRegistry::start().await else { return app.stop().await };
        let host = reg.host();
        let digest = reg.push_image("build/app", "1", "original").await;
        let reg_id = add_registry(&app, &format!("http://{host}"), "release").await;
        add_chart_repo(&app, "charts", &format!("{host}/charts"), true).await;
        let src = format!("{host}/build/app:1");
        let v1 = json!({"project_key": "p", "version_name": "v1", "source": "manual", "image_registry_id": reg_id,
            "services": [{"service_name": "app", "yaml_content": deployment("app", &src),
                "images": [image("app", &src, &format!("{host}/release/app:v1"))]}]});
        let id1 = release(&app, "k8s", v1).await;
        assert_eq!(settled(&app, &id1).await["status"], "success");

        let v2 = json!({"project_key": "p", "version_name": "v2", "source": "from_version", "original_version_name": "v1",
            "image_registry_id": reg_id, "services": [{"service_name": "app", "images": [
                {"container_name": "app", "target_image": format!("{host}/release/app:v2"), "push_image": true}]}]});
        let id2 = release(&app, "k8s", v2).await;
        let v = settled(&app, &id2).await;
        assert_eq!(v["status"], "success", "{v}");
        let im = &v["services"][0]["images"][0];
        assert_eq!(im["source_image"], json!(format!("{host}/release/app:v1")));
        assert_eq!(im["image_name"], "app");
        assert_eq!(im["target_image_tag"], "v2");
        assert!(v["services"][0]["yaml_content"].as_str().unwrap().contains(&format!("image: {host}/release/app:v2")), "{v}");
        assert_eq!(reg.manifest_digest("release/app", "v2").await, Some(digest.clone()));
        let mut missing = json!({"project_key": "p", "version_name": "v3", "source": "from_version", "original_version_name": "v1",
            "image_registry_id": reg_id, "services": [{"service_name": "app", "images": [
                {"container_name": "other", "target_image": format!("{host}/release/app:v3"), "push_image": true}]}]});
        app.post("/openapi/delivery/releases/k8s", missing.clone()).await.expect_error(400, "services[0].images[0].container_name");
        missing["original_version_name"] = json!("v9");
        app.post("/openapi/delivery/releases/k8s", missing).await.expect_error(400, "original_version_name");

        // Helm: the new chart keeps the original's chart name, values and files.
        let h1 = json!({"project_key": "p", "version_name": "h1", "source": "manual", "image_registry_id": reg_id, "chart_repo_name": "charts",
            "services": [{"service_name": "app", "chart_name": "app-chart", "chart_version": "1.0.0", "yaml_content": "replicas: 2\n",
                "images": [{"container_name": "app", "image_name": "app", "source_image": src, "source_image_tag": "1",
                    "target_image": format!("{host}/release/app:h1"), "target_image_tag": "h1",
                    "image_path": {"repo": "image.registry", "image": "image.name", "tag": "image.tag"}, "push_image": true}]}]});
        let ih1 = release(&app, "helm", h1).await;
        assert_eq!(settled(&app, &ih1).await["status"], "success");
        let h2 = json!({"project_key": "p", "version_name": "h2", "source": "from_version", "original_version_name": "h1",
            "image_registry_id": reg_id, "chart_repo_name": "charts",
            "services": [{"service_name": "app", "chart_version": "1.1.0+build.7", "images": [
                {"container_name": "app", "target_image": format!("{host}/release/app:h2"), "push_image": true}]}]});
        let ih2 = release(&app, "helm", h2).await;
        let v = settled(&app, &ih2).await;
        assert_eq!(v["status"], "success", "{v}");
        let s = &v["services"][0];
        assert_eq!(s["chart_name"], "app-chart");
        assert_eq!(s["original_chart_version"], "1.0.0");
        assert_eq!(s["images"][0]["image_path"]["repo"], "image.registry");
        let values: Value = serde_yaml_ng::from_str(s["yaml_content"].as_str().unwrap()).unwrap();
        assert_eq!(values["replicas"], json!(2));
        assert_eq!(values["image"]["registry"], json!(format!("{host}/release")));
        assert_eq!(values["image"]["name"], json!("app"));
        assert_eq!(values["image"]["tag"], json!("h2"));
        let m = reg.manifest_json("charts/app-chart", "1.1.0_build.7").await.expect("chart pushed with + as _");
        let tgz = reg.blob("charts/app-chart", m["layers"][0]["digest"].as_str().unwrap()).await.unwrap();
        let files = chart_files(&tgz);
        assert!(files["Chart.yaml"].contains("version: 1.1.0+build.7"), "{files:?}");
        assert_eq!(reg.manifest_digest("release/app", "h2").await, Some(digest));
        app.stop().await;
    }
}

/// Uploads seen: (path, "content-type\nauthorization", body).
type Uploads = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// A ChartMuseum stand-in: records uploads to `/api/.../charts` and answers `status`.
struct ChartMuseum {
    port: u16,
    uploads: Uploads,
    status: Arc<AtomicU16>,
    task: tokio::task::JoinHandle<()>,
}

impl ChartMuseum {
    async fn start() -> Self {
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode, Uri};
        type Shared = (Uploads, Arc<AtomicU16>);
        async fn upload(
            State((uploads, status)): State<Shared>,
            uri: Uri,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> (StatusCode, String) {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let ct = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            uploads.lock().unwrap().push((
                uri.path().to_string(),
                format!("{ct}\n{auth}"),
                body.to_vec(),
            ));
            let code = StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap();
            (
                code,
                if code.is_success() {
                    "{\"saved\":true}".into()
                } else {
                    "{\"error\":\"file already exists\"}".into()
                },
            )
        }
        let uploads = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(201));
        let app = axum::Router::new()
            .route("/api/charts", axum::routing::post(upload))
            .route("/api/{org}/{repo}/charts", axum::routing::post(upload))
            .with_state((uploads.clone(), status.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            port,
            uploads,
            status,
            task,
        }
    }
}

impl Drop for ChartMuseum {
    fn drop(&mut self) {
        self.task.abort();
    }
}

backend_test! {
    async fn charts_are_pushed_to_a_chartmuseum_api(app) {
        let cm = ChartMuseum::start().await;
        app.post("/openapi/system/helm", json!({"repo_name": "museum", "url": format!("http://127.0.0.1:{}/org/stable", cm.port),
            "username": "bot", "password": "pw"})).await.expect(200);
        let body = |name: &str| json!({"project_key": "p", "version_name": name, "source": "manual", "chart_repo_name": "museum",
            "services": [{"service_name": "web", "chart_version": "0.1.0", "yaml_content": "replicas: 1\n", "images": []}]});
        let id = release(&app, "helm", body("v1")).await;
        let v = settled(&app, &id).await;
        assert_eq!(v["status"], "success", "{v}");
        {
            let uploads = cm.uploads.lock().unwrap();
            assert_eq!(uploads.len(), 1);
            let (path, meta, body) = &uploads[0];
            assert_eq!(path, "/api/org/stable/charts");
            assert!(meta.starts_with("multipart/form-data; boundary="), "{meta}");
            assert!(meta.ends_with("Basic Ym90OnB3"), "{meta}");
            let text = String::from_utf8_lossy(body);
            assert!(text.contains("name=\"chart\"; filename=\"web-0.1.0.tgz\""), "{text}");
        }
        // A repository that refuses the upload fails the chart and the version.
        cm.status.store(409, Ordering::SeqCst);
        let id = release(&app, "helm", body("v2")).await;
        let v = settled(&app, &id).await;
        assert_eq!(v["status"], "failed", "{v}");
        let s = &v["services"][0];
        assert_eq!(s["chart_status"], "failed");
        assert!(s["error"].as_str().unwrap().contains("409"), "{s}");
        assert!(v["error"].as_str().unwrap().contains("409"), "{v}");
        // Retry once the repository accepts it.
        cm.status.store(201, Ordering::SeqCst);
        retry(&app, &id).await;
        let v = settled(&app, &id).await;
        assert_eq!(v["status"], "success", "{v}");
        assert_eq!(v["services"][0]["error"], "");
        assert_eq!(cm.uploads.lock().unwrap().len(), 3);
        app.stop().await;
    }
}

backend_test! {
    async fn registry_credentials_are_used(app) {
        let Some(reg) = TestRegistry::start_with_auth().await else { return app.stop().await };
        let host = reg.host();
        let digest = reg.push_image("build/app", "1", "private").await;
        let (user, password, _) = crate::delivery_registry::HTPASSWD;
        let r = app.post("/openapi/system/registry", json!({"address": format!("http://{host}"), "provider": "native",
            "namespace": "release", "access_key": user, "secret_key": password})).await;
        let reg_id = r.expect(200)["id"].as_str().unwrap().to_string();
        let body = |name: &str| json!({"project_key": "p", "version_name": name, "source": "manual", "image_registry_id": reg_id,
            "services": [{"service_name": "app", "images": [
                image("app", &format!("{host}/build/app:1"), &format!("{host}/release/app:{name}"))]}]});
        let id = release(&app, "k8s", body("v1")).await;
        assert_eq!(settled(&app, &id).await["status"], "success");
        assert_eq!(reg.manifest_digest("release/app", "v1").await, Some(digest.clone()));

        // A wrong secret fails the copy with the registry's answer on the image.
        let update = |secret: &str| json!({"address": format!("http://{host}"), "provider": "native", "namespace": "release",
            "is_default": false, "secret_key": secret});
        app.put(&format!("/openapi/system/registry/{reg_id}"), update("wrong")).await.expect(200);
        let id = release(&app, "k8s", body("v2")).await;
        let v = settled(&app, &id).await;
        assert_eq!(v["status"], "failed", "{v}");
        let err = v["services"][0]["images"][0]["error"].as_str().unwrap().to_string();
        assert!(err.contains("401") || err.to_lowercase().contains("auth"), "{err}");
        assert!(!err.contains("wrong") && !v.to_string().contains(password), "no secret in errors: {err}");

        // Fixed credentials, then a retry.
        app.put(&format!("/openapi/system/registry/{reg_id}"), update(password)).await.expect(200);
        retry(&app, &id).await;
        assert_eq!(settled(&app, &id).await["status"], "success");
        assert_eq!(reg.manifest_digest("release/app", "v2").await, Some(digest));
        app.stop().await;
    }
}
