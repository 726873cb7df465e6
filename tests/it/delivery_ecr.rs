//! ECR registries: the registry's AWS keys are exchanged for a login with a SigV4-signed
//! `GetAuthorizationToken` call (against a local stand-in of the ECR API, set with
//! `delivery_ecr_endpoint`), cached, and used for image copies and build jobs' docker login; a
//! refused exchange fails the image naming ECR.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::build::create_shell_build;
use crate::delivery::wait_status;
use crate::delivery_registry::{ECR_HTPASSWD, TestRegistry};
use crate::engine::{freestyle, queue_stage, stage, wait_status as engine_wait};
use crate::harness::{Kind, TestApp};

/// The `Authorization` headers the stand-in was called with.
type Calls = Arc<Mutex<Vec<String>>>;

/// A stand-in of ECR's API: answers `GetAuthorizationToken` with the test registry's login
/// for key `AKIATEST`, and AWS's error for any other key.
struct FakeEcr {
    url: String,
    calls: Calls,
    task: tokio::task::JoinHandle<()>,
}

impl FakeEcr {
    async fn start() -> Self {
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode};
        async fn token(State(calls): State<Calls>, headers: HeaderMap) -> (StatusCode, String) {
            let h = |k: &str| {
                headers
                    .get(k)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            let auth = h("authorization");
            calls.lock().unwrap().push(auth.clone());
            let well_formed = h("x-amz-target")
                == "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"
                && h("content-type") == "application/x-amz-json-1.1"
                && h("x-amz-date").len() == 16
                && auth.contains("/us-east-1/ecr/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=");
            if !well_formed {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({"__type": "IncompleteSignatureException", "message": auth}).to_string(),
                );
            }
            if !auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIATEST/") {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({"__type": "UnrecognizedClientException",
                    "message": "The security token included in the request is invalid."})
                    .to_string(),
                );
            }
            let login = format!("{}:{}", ECR_HTPASSWD.0, ECR_HTPASSWD.1);
            let expires = chrono::Utc::now().timestamp() + 12 * 3600;
            (
                StatusCode::OK,
                json!({"authorizationData": [{
                "authorizationToken": base64::engine::general_purpose::STANDARD.encode(login),
                "expiresAt": expires as f64 + 0.5,
                "proxyEndpoint": "https://123456789012.dkr.ecr.us-east-1.amazonaws.com"}]})
                .to_string(),
            )
        }
        let calls = Calls::default();
        let app = axum::Router::new()
            .route("/", axum::routing::post(token))
            .with_state(calls.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, calls, task }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for FakeEcr {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn ecr_keys_are_exchanged_for_a_login(kind: Kind) {
    let Some(reg) = TestRegistry::start_with_auth().await else {
        return;
    };
    let ecr = FakeEcr::start().await;
    let endpoint = ecr.url.clone();
    let Some(app) = TestApp::start_with(kind, |c| c.delivery_ecr_endpoint = endpoint).await else {
        return;
    };
    let host = reg.host();
    let digest = reg.push_image("build/app", "1", "on-ecr").await;
    let registry = |access_key: &str| {
        json!({"address": format!("http://{host}"), "provider": "ecr", "namespace": "release",
        "region": "us-east-1", "access_key": access_key, "secret_key": "aws-s3cret-key"})
    };
    let r = app
        .post("/openapi/system/registry", registry("AKIATEST"))
        .await;
    let reg_id = r.expect(200)["id"].as_str().unwrap().to_string();
    let version = |name: &str| {
        json!({"project_key": "p", "version_name": name, "source": "manual", "image_registry_id": reg_id,
        "services": [{"service_name": "app", "images": [{"container_name": "app", "image_name": "app",
            "source_image": format!("{host}/build/app:1"), "source_image_tag": "", "push_image": true,
            "target_image": format!("{host}/release/app:{name}"), "target_image_tag": ""}]}]})
    };
    let create = |name: &str| {
        let body = version(name);
        let app = &app;
        async move {
            app.post("/openapi/delivery/releases/k8s", body)
                .await
                .expect(200)["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };

    // The source and the target are on the ECR registry: one exchange serves both.
    let id = create("v1").await;
    let v = wait_status(&app, &id, &["success", "failed"]).await;
    assert_eq!(v["status"], "success", "{v}");
    assert_eq!(
        reg.manifest_digest("release/app", "v1").await,
        Some(digest.clone())
    );
    let calls = ecr.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(
        !calls[0].contains("aws-s3cret-key"),
        "the secret key is never sent"
    );
    // The login is cached until shortly before it expires.
    let id = create("v2").await;
    assert_eq!(
        wait_status(&app, &id, &["success", "failed"]).await["status"],
        "success"
    );
    assert_eq!(ecr.calls().len(), 1);

    // A build job pushing to the ECR registry logs in with the exchanged login (cached).
    let script = "echo \"login $DOCKER_REGISTRY_AK $DOCKER_REGISTRY_SK\"";
    create_shell_build(&app, "demo", "ecr-build", script, ("app", "app"), json!({})).await;
    let mut build = freestyle("app-app-build", "");
    build.key = "build".into();
    build.origin_name = "build".into();
    build.job_type = "zadig-build".into();
    build.spec = json!({"service_name": "app", "service_module": "app", "build_name": "ecr-build",
        "image_name": "app", "docker_registry_id": reg_id});
    let tid = queue_stage(&app, "ecr-wf", stage("build", true, vec![build])).await;
    let t = engine_wait(&app, "ecr-wf", tid, &["passed", "failed"]).await;
    assert_eq!(t.status, "passed", "{:?}", t.stages[0].jobs[0].error);
    let log = app
        .get(&format!(
            "/openapi/logs/log/v4/workflow/ecr-wf/{tid}/app-app-build"
        ))
        .await;
    assert!(log.text.contains("login AWS ********"), "{}", log.text);
    assert!(!log.text.contains(ECR_HTPASSWD.1));
    assert_eq!(ecr.calls().len(), 1);

    // Keys ECR refuses: the image fails naming ECR and AWS's answer, without the secret.
    app.put(
        &format!("/openapi/system/registry/{reg_id}"),
        registry("AKIAWRONG"),
    )
    .await
    .expect(200);
    let id = create("v3").await;
    let v: Value = wait_status(&app, &id, &["success", "failed"]).await;
    assert_eq!(v["status"], "failed", "{v}");
    let err = v["services"][0]["images"][0]["error"].as_str().unwrap();
    assert!(
        err.contains("cannot get an ECR login for region us-east-1"),
        "{err}"
    );
    assert!(err.contains("UnrecognizedClientException"), "{err}");
    assert!(!v.to_string().contains("aws-s3cret-key"));
    app.stop().await;
}

crate::kind_test!(ecr_keys_are_exchanged_for_a_login);
