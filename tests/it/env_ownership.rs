//! Objects owned by one environment are not applied over by another (spec/environments.md
//! §1.5, apply step 6), against the Kubernetes API emulator on both backends: two
//! environments of two projects in one namespace (an admin's, the second adopting it), a
//! service of the second with a Deployment of the first's name refused with Zadig's text by
//! every route and by a deploy job, nothing of it applied and the first's object unchanged;
//! a cluster-scoped object owned across namespaces; re-applying into the owner passes; once
//! the owner is deleted, the other may apply. Two admins racing one new cluster-scoped object
//! into two namespaces: exactly one gets it.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_test;
use crate::clusters::add_cluster;
use crate::deploy_jobs::{deploy_job, ended, execute, job, workflow};
use crate::environments::seed_project;
use crate::harness::TestApp;
use crate::kube_emulator::Emulator;
use crate::projects::create_project;

const LIMIT: Duration = Duration::from_secs(90);

fn deployment(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n      - name: {name}\n        image: {image}\n"
    )
}

fn config_map(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n")
}

fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}

/// Save service `name` of `project` with `yaml`.
async fn service(app: &TestApp, project: &str, name: &str, yaml: String) {
    app.post(
        &format!("/openapi/service/yaml/raw?projectKey={project}"),
        json!({"service_name": name, "yaml": yaml, "variable_yaml": []}),
    )
    .await
    .expect(200);
}

/// Zadig's refusal of an object `kind/name` that service `svc` of environment `env` of
/// project `other` applied.
fn owned(kind_name: &str, svc: &str, env: &str) -> String {
    format!(
        "resource \"{kind_name}\" is already applied by service \"{svc}\" in environment \"{env}\" of project \"other\""
    )
}

/// The names of the services environment `env` of `demo` records.
async fn services_of(app: &TestApp, env: &str) -> Vec<String> {
    let d = app
        .get(&format!("/openapi/environments/{env}?projectKey=demo"))
        .await;
    d.expect(200)["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service_name"].as_str().unwrap().to_string())
        .collect()
}

/// Run demo's workflow `config` (a zadig-deploy of `plain`'s latest template into `dev`); the
/// task detail once it ended.
async fn deploy_plain_config(app: &TestApp) -> Value {
    let id = execute(
        app,
        "config",
        json!([{"job_name": "deploy", "job_type": "zadig-deploy",
        "parameters": {"env_name": "dev", "service_list": [{"service_name": "plain"}]}}]),
    )
    .await;
    ended(app, "config", id).await
}

backend_test! {
    async fn an_object_another_environment_applied_is_not_applied_over(app) {
        let Some(emu) = Emulator::start().await else { return };
        let c = add_cluster(&app, "emu", &emu.kubeconfig).await;
        // demo: `shop` (Deployment web, Service web, StatefulSet cache), `plain`, `nsgrab`;
        // other: `rival` (Deployment web, ConfigMap rival-cfg), `nsown`.
        seed_project(&app, false).await;
        create_project(&app, "other").await;
        service(&app, "other", "rival", format!("{}---\n{}", deployment("web", "nginx:1.20"), config_map("rival-cfg"))).await;
        service(&app, "other", "nsown", namespace("owned-ns")).await;
        service(&app, "demo", "plain", deployment("plain", "nginx:1.25")).await;
        service(&app, "demo", "nsgrab", namespace("owned-ns")).await;
        let env = |key: &str, ns: &str, adopt: bool, services: &[&str]| {
            let services: Vec<Value> = services.iter().map(|s| json!({"service_name": s})).collect();
            json!({"env_key": key, "cluster_id": c, "namespace": ns, "adopt_namespace": adopt, "services": services})
        };
        app.post("/openapi/environments?projectKey=other", env("first", "shared", false, &["rival", "nsown"]))
            .await.expect(200);
        app.post("/openapi/environments?projectKey=demo", env("dev", "shared", true, &["plain"])).await.expect(200);
        let web = || async {
            let o = emu.object("Deployment", "shared", "web").await?;
            Some(json!({"labels": o["metadata"]["labels"], "spec": o["spec"]}))
        };
        let web_before = web().await.expect("rival's Deployment");
        assert_eq!(web_before["labels"]["s-service"], "rival");
        let web_owned = owned("Deployment/web", "rival", "first");

        // Adding `shop` to demo's environment: 409 with Zadig's text, nothing of it applied.
        let add = "/openapi/environments/service/yaml?projectKey=demo";
        let r = app.post(add, json!({"env_key": "dev", "service_list": [{"service_name": "shop"}]})).await;
        let b = r.expect_error(409, &web_owned);
        assert_eq!((&b["code"], b["description"].as_str()), (&json!(6076), Some(web_owned.as_str())));
        assert!(emu.object("Service", "shared", "web").await.is_none());
        assert!(emu.object("StatefulSet", "shared", "cache").await.is_none());
        assert_eq!(web().await, Some(web_before.clone()));
        assert_eq!(services_of(&app, "dev").await, ["plain"]);
        // Creating another environment there with it: the same (creation's code), no record.
        let r = app.post("/openapi/environments?projectKey=demo", env("dev2", "shared", true, &["shop"])).await;
        assert_eq!(r.expect_error(409, &web_owned)["code"], 6074);
        app.get("/openapi/environments/dev2?projectKey=demo").await.expect(404);
        assert_eq!(web().await, Some(web_before.clone()));
        // A cluster-scoped object is owned across the cluster: not even from another namespace,
        // whose namespace this call would have made.
        let r = app.post("/openapi/environments?projectKey=demo", env("dev3", "elsewhere", false, &["nsgrab"])).await;
        r.expect_error(409, &owned("Namespace/owned-ns", "nsown", "first"));
        assert!(emu.object("Namespace", "", "elsewhere").await.is_none());
        assert_eq!(emu.object("Namespace", "", "owned-ns").await.unwrap()["metadata"]["labels"]["s-service"], "nsown");

        // Each environment re-applies its own objects.
        let update = |p: &str, e: &str, s: &str| (format!("/openapi/environments/{e}/services?projectKey={p}"),
            json!({"service_list": [{"service_name": s, "variable_kvs": []}]}));
        let (path, body) = update("demo", "dev", "plain");
        app.put(&path, body).await.expect(200);
        let (path, body) = update("other", "first", "rival");
        app.put(&path, body).await.expect(200);
        assert_eq!(web().await.unwrap()["labels"]["s-service"], "rival");

        // `plain`'s template now holds a Deployment web too: re-rendering it into demo's
        // environment is refused, through the route and through a deploy job.
        let yaml = format!("{}---\n{}", deployment("plain", "nginx:1.25"), deployment("web", "nginx:1.29"));
        app.put("/openapi/service/yaml/plain?projectKey=demo", json!({"type": "k8s", "yaml": yaml})).await.expect(200);
        let (path, body) = update("demo", "dev", "plain");
        app.put(&path, body).await.expect_error(409, &web_owned);
        workflow(&app, "config", vec![("deploy", vec![deploy_job("deploy", json!({"env": "dev", "source": "runtime",
            "deploy_contents": ["config"], "services": [{"service_name": "plain", "update_config": true}]}))])]).await;
        let d = deploy_plain_config(&app).await;
        assert_eq!(d["status"], "failed", "{d}");
        let e = job(&d, 0, "deploy")["error"].as_str().unwrap().to_string();
        assert!(e.contains(&web_owned), "{e}");
        assert_eq!(web().await, Some(web_before.clone()));
        assert_eq!(services_of(&app, "dev").await, ["plain"]);

        // Once the owner is deleted (with its objects), the others may apply them.
        app.delete("/openapi/environments/first?projectKey=other&isDelete=true").await.expect(200);
        app.wait_for("the owner's objects to go", LIMIT, || async {
            let gone = emu.object("Deployment", "shared", "web").await.is_none()
                && emu.object("Namespace", "", "owned-ns").await.is_none();
            gone.then_some(())
        }).await;
        let d = deploy_plain_config(&app).await;
        assert_eq!(d["status"], "passed", "{d}");
        let web_now = web().await.expect("applied by the deploy job");
        assert_eq!(web_now["labels"]["s-service"], "plain");
        assert_eq!(web_now["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.29");
        app.post("/openapi/environments?projectKey=demo", env("dev3", "elsewhere", false, &["nsgrab"])).await.expect(200);
        assert_eq!(emu.object("Namespace", "", "owned-ns").await.unwrap()["metadata"]["labels"]["s-service"], "nsgrab");
        app.stop().await;
    }
}

backend_test! {
    /// Two system admins applying the same new cluster-scoped object (a Namespace; the
    /// emulator has no ClusterRole) from two environments in two namespaces of one cluster at
    /// once — by creating the environments, or by adding a service to existing ones: exactly
    /// one gets it, the other is refused with Zadig's ownership text and records nothing.
    /// Holds whatever the timing (the lease of the cluster's cluster-scoped objects).
    async fn two_admins_racing_one_new_cluster_scoped_object_get_it_once(app) {
        let Some(emu) = Emulator::start().await else { return };
        let c = add_cluster(&app, "emu", &emu.kubeconfig).await;
        create_project(&app, "demo").await;
        create_project(&app, "other").await;
        let (_, root) = app.create_user("root", true).await;
        let env = |key: &str, ns: &str, services: Value| {
            json!({"env_key": key, "cluster_id": c, "namespace": ns, "services": services})
        };
        app.post("/openapi/environments?projectKey=demo", env("a", "ns-a", json!([]))).await.expect(200);
        app.post("/openapi/environments?projectKey=other", env("b", "ns-b", json!([]))).await.expect(200);
        for round in 0..6 {
            let (svc, grabbed) = (format!("grab{round}"), format!("grabbed-{round}"));
            for p in ["demo", "other"] {
                service(&app, p, &svc, namespace(&grabbed)).await;
            }
            let created = round % 2 == 0;
            let body = |p: &str, key: &str, ns: &str| if created {
                (format!("/openapi/environments?projectKey={p}"),
                 env(&format!("{key}{round}"), &format!("{ns}-{round}"), json!([{"service_name": svc}])))
            } else {
                (format!("/openapi/environments/service/yaml?projectKey={p}"),
                 json!({"env_key": key, "service_list": [{"service_name": svc}]}))
            };
            let (ra, rb) = (body("demo", "a", "ns-a"), body("other", "b", "ns-b"));
            let (a, b) = tokio::join!(
                app.post(&ra.0, ra.1.clone()),
                app.call(Method::POST, &rb.0, Some(&root), Some(rb.1.clone())),
            );
            let ((winner, winner_env), loser, (loser_project, loser_env)) =
                match (a.status.as_u16(), b.status.as_u16()) {
                    (200, 409) => (("demo", "a"), b, ("other", "b")),
                    (409, 200) => (("other", "b"), a, ("demo", "a")),
                    _ => panic!("round {round}: not exactly one winner: {} / {}", a.text, b.text),
                };
            let env_of = |key: &str| if created { format!("{key}{round}") } else { key.to_string() };
            let why = format!("resource \"Namespace/{grabbed}\" is already applied by service \"{svc}\" \
                in environment \"{}\" of project \"{winner}\"", env_of(winner_env));
            let code = if created { 6074 } else { 6076 };
            assert_eq!(loser.expect_error(409, &why)["code"], code, "round {round}");
            let detail = |p: &str, key: &str| format!("/openapi/environments/{key}?projectKey={p}");
            let won = app.get(&detail(winner, &env_of(winner_env))).await;
            assert!(won.expect(200)["services"].to_string().contains(&svc), "round {round}: {}", won.text);
            let lost = app.get(&detail(loser_project, &env_of(loser_env))).await;
            if created {
                lost.expect(404);
            } else {
                assert!(!lost.expect(200)["services"].to_string().contains(&svc), "round {round}: {}", lost.text);
            }
            let labels = emu.object("Namespace", "", &grabbed).await.expect("applied")["metadata"]["labels"].clone();
            assert_eq!(labels["s-product"], winner, "round {round}: {labels}");
        }
        app.stop().await;
    }
}
