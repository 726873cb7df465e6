//! The environment flow against a real Kubernetes cluster, when `ZADIG_TEST_KUBECONFIG`
//! names a kubeconfig file (kind, k3d, …: see README "Testing against a real cluster");
//! skipped otherwise, saying so. It creates namespace `zadig-it-<random>` and deletes it.
//! Besides the environment routes, a workflow's `zadig-deploy` job deploys an image and waits
//! for the real rollout, and — when `ZADIG_TEST_AGENT_IMAGE` names an image holding this
//! `zadig-server` (built from the Dockerfile and loaded into the cluster, e.g. `kind load
//! docker-image`) — a zadig-build job runs as a Kubernetes Job in the test namespace, its agent
//! copied in by the init container, in `ZADIG_TEST_JOB_IMAGE` (default `debian:bookworm-slim`).
//! The kubeconfig must carry its credentials inline (as kind's and k3d's do).

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use serde_json::json;

use crate::clusters::add_cluster;
use crate::deploy_jobs::{
    build_ship, create_web_build, deploy_input, deploy_job, detail, execute, workflow,
};
use crate::environments::{apply_shop, seed_project};
use crate::harness::{Kind, TestApp};
use crate::kind_test;

const LIMIT: Duration = Duration::from_secs(300);

fn kubeconfig() -> Option<String> {
    match std::env::var("ZADIG_TEST_KUBECONFIG") {
        Ok(p) if !p.is_empty() => Some(
            std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("ZADIG_TEST_KUBECONFIG={p}: {e}")),
        ),
        _ => {
            eprintln!(
                "skipped: ZADIG_TEST_KUBECONFIG is not set (no real cluster to test against)"
            );
            None
        }
    }
}

async fn real_cluster_flow(kind: Kind) {
    let Some(kc) = kubeconfig() else { return };
    let ns = format!(
        "zadig-it-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let agent = std::env::var("ZADIG_TEST_AGENT_IMAGE").unwrap_or_default();
    let job_image = std::env::var("ZADIG_TEST_JOB_IMAGE")
        .unwrap_or_else(|_| "debian:bookworm-slim".to_string());
    let Some(app) = TestApp::start_with(kind, |c| {
        c.engine_kube_agent_image = agent.clone();
        c.engine_kube_namespace = ns.clone();
        c.engine_kube_images
            .insert("ubuntu 20.04".into(), job_image);
    })
    .await
    else {
        return;
    };
    let cfg = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&kc).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(cfg).unwrap();
    let cluster = add_cluster(&app, "real", &kc).await;
    seed_project(&app, false).await;
    app.post(
        "/openapi/environments?projectKey=demo",
        json!({"env_key": "dev", "cluster_id": cluster, "namespace": ns}),
    )
    .await
    .expect(200);
    apply_shop(&app, LIMIT).await;
    let pods = app
        .get("/openapi/environments/dev/service/shop/pods?projectKey=demo")
        .await;
    assert!(!pods.expect(200)["pods"].as_array().unwrap().is_empty());
    app.post("/openapi/environments/image/deployment/dev",
        json!({"product_name": "demo", "service_name": "shop", "name": "web", "container_name": "web",
            "image": "nginx:1.27"})).await.expect(200);
    let deps: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let d = deps.get("web").await.unwrap();
    let image = d.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("nginx:1.27"));
    app.post(
        "/openapi/environments/scale",
        json!({"project_key": "demo", "env_key": "dev", "service_name": "shop",
        "workload_name": "web", "workload_type": "Deployment", "target_replicas": 2}),
    )
    .await
    .expect(200);
    assert_eq!(
        deps.get("web").await.unwrap().spec.unwrap().replicas,
        Some(2)
    );
    app.post(
        "/openapi/environments/dev/service/shop/restart?projectKey=demo",
        json!({}),
    )
    .await
    .expect(200);
    // A deploy job: the image set and the rollout waited for on the real cluster.
    workflow(
        &app,
        "ship",
        vec![(
            "deploy",
            vec![deploy_job(
                "deploy",
                json!({"env": "dev", "deploy_contents": ["image"]}),
            )],
        )],
    )
    .await;
    let id = execute(&app, "ship", deploy_input("deploy", "nginx:1.27-alpine")).await;
    let d = app
        .wait_for("the deploy task to end", LIMIT, || async {
            let d = detail(&app, "ship", id).await;
            ["passed", "failed", "timeout", "cancelled"]
                .contains(&d["status"].as_str().unwrap_or_default())
                .then_some(d)
        })
        .await;
    assert_eq!(d["status"], "passed", "{d}");
    let d = deps.get("web").await.unwrap();
    let image = d.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("nginx:1.27-alpine"));
    if agent.is_empty() {
        eprintln!("build job on the real cluster skipped: ZADIG_TEST_AGENT_IMAGE is not set");
    } else {
        build_on_the_cluster(&app).await;
    }
    app.delete("/openapi/environments/dev?projectKey=demo&isDelete=true")
        .await
        .expect(200);
    let nss: Api<Namespace> = Api::all(client);
    app.wait_for("the namespace to go", LIMIT, || async {
        nss.get_opt(&ns).await.unwrap().is_none().then_some(())
    })
    .await;
    app.stop().await;
}
kind_test!(real_cluster_flow);

/// A zadig-build job on the registered cluster `real` passes with its output and its log.
async fn build_on_the_cluster(app: &TestApp) {
    create_web_build(
        app,
        "echo \"building $IMAGE on $(hostname)\"\nVERSION_OUT=v1",
        json!({"cluster_name": "real", "outputs": ["VERSION_OUT"]}),
    )
    .await;
    let id = build_ship(app, "build", false).await;
    let d = app
        .wait_for("the build task to end", LIMIT, || async {
            let d = detail(app, "build", id).await;
            ["passed", "failed", "timeout", "cancelled"]
                .contains(&d["status"].as_str().unwrap_or_default())
                .then_some(d)
        })
        .await;
    assert_eq!(d["status"], "passed", "{d}");
    let job = d["stages"][0]["jobs"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let log = app
        .get(&format!("/openapi/logs/log/v4/workflow/build/{id}/{job}"))
        .await
        .text;
    assert!(
        log.contains("as Kubernetes Job") && log.contains("building web:"),
        "{log}"
    );
}
