//! The environment flow against a real Kubernetes cluster, when `ZADIG_TEST_KUBECONFIG`
//! names a kubeconfig file (kind, k3d, …: see README "Testing against a real cluster");
//! skipped otherwise, saying so. It creates namespace `zadig-it-<random>` and deletes it.
//! Besides the environment routes, a workflow's `zadig-deploy` job deploys an image and waits
//! for the real rollout.
//! The kubeconfig must carry its credentials inline (as kind's and k3d's do).

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use serde_json::json;

use crate::clusters::add_cluster;
use crate::deploy_jobs::{deploy_input, deploy_job, detail, execute, workflow};
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
    let Some(app) = TestApp::start(kind).await else {
        return;
    };
    let cfg = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&kc).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(cfg).unwrap();
    let ns = format!(
        "zadig-it-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
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
