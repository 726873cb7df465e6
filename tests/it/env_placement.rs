//! Where environments may go and what their services may hold (docs/security.md "Where
//! environments go" and "Cluster-scoped objects"), against the Kubernetes API emulator on both
//! backends. Every refusal names its field (or the service and object) and leaves the cluster
//! and the store as they were; the allowed paths still work.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_test;
use crate::environments::seed_project;
use crate::harness::{Resp, TestApp};
use crate::kube_emulator::Emulator;
use crate::projects::create_project;

const LIMIT: Duration = Duration::from_secs(60);

/// Register a cluster on `emu`; its id.
async fn cluster(
    app: &TestApp,
    emu: &Emulator,
    name: &str,
    production: bool,
    projects: Value,
) -> String {
    let r = app
        .post(
            "/openapi/system/cluster",
            json!({"name": name, "type": "kubeconfig", "kube_config": emu.kubeconfig,
                "production": production, "project_names": projects}),
        )
        .await;
    r.expect(200)["cluster"]["cluster_id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn call_as(app: &TestApp, token: &str, m: Method, path: &str, body: Value) -> Resp {
    app.call(m, path, Some(token), Some(body)).await
}

/// The emulator's objects with their labels and specs (not what its controllers make: pods,
/// replica sets, events, a namespace's `default` service account and `kube-root-ca.crt`): what
/// a refused call must not have changed.
async fn cluster_state(emu: &Emulator) -> Value {
    let mut v: Vec<Value> = emu
        .objects("", "")
        .await
        .into_iter()
        .filter(|o| !matches!(o["kind"].as_str(), Some("Pod" | "ReplicaSet" | "Event")))
        .filter(|o| {
            let n = o["metadata"]["name"].as_str();
            !matches!((o["kind"].as_str(), n), (Some("ServiceAccount"), Some("default")))
                && !matches!((o["kind"].as_str(), n), (Some("ConfigMap"), Some("kube-root-ca.crt")))
        })
        .map(|o| {
            json!({"kind": o["kind"], "namespace": o["metadata"]["namespace"], "name": o["metadata"]["name"],
                "labels": o["metadata"]["labels"], "spec": o["spec"], "data": o["data"]})
        })
        .collect();
    v.sort_by_key(Value::to_string);
    Value::Array(v)
}

/// The store as the routes show it: environments of `demo` and `other`, test and production,
/// and the services of `demo`.
async fn store_state(app: &TestApp) -> Value {
    let mut out = Vec::new();
    for p in ["demo", "other"] {
        for g in ["", "/production"] {
            out.push(
                app.get(&format!("/openapi/environments{g}?projectKey={p}"))
                    .await
                    .body,
            );
        }
        out.push(
            app.get(&format!("/openapi/service/yaml/services?projectKey={p}"))
                .await
                .body,
        );
    }
    for e in ["dev", "alice"] {
        out.push(
            app.get(&format!("/openapi/environments/{e}?projectKey=demo"))
                .await
                .body["services"]
                .clone(),
        );
    }
    Value::Array(out)
}

fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}

fn deployment(name: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n      - name: {name}\n        image: nginx:1.25\n"
    )
}

backend_test! {
    /// F3: a non-admin's test environment goes only on a cluster offered to the project that is
    /// not a production cluster, into a namespace that is not a system namespace, not a
    /// production environment's, not another project's, not one of an environment they may
    /// not change, and adopts an existing namespace only when the project's environments they
    /// may change already use it. Some rules hold for admins too.
    async fn environments_go_only_where_their_creator_may_deploy(app) {
        let Some(emu) = Emulator::start().await else { return };
        let c1 = cluster(&app, &emu, "emu", false, json!(["demo", "other"])).await;
        let prod_cluster = cluster(&app, &emu, "emu-prod", true, json!(["demo"])).await;
        let lonely = cluster(&app, &emu, "lonely", false, json!([])).await;
        seed_project(&app, false).await;
        create_project(&app, "other").await;
        let env = |key: &str, ns: &str, cluster: &str, adopt: bool, services: Value| json!({"env_key": key,
            "cluster_id": cluster, "namespace": ns, "adopt_namespace": adopt, "services": services});
        let shop = json!([{"service_name": "shop"}]);
        // The admin's environments: other/dev, demo/dev (with shop), production demo/prod.
        app.post("/openapi/environments?projectKey=other", env("dev", "other-dev", &c1, false, json!([]))).await.expect(200);
        app.post("/openapi/environments?projectKey=demo", env("dev", "demo-dev", &c1, false, shop.clone())).await.expect(200);
        app.post("/openapi/environments/production?projectKey=demo", env("prod", "demo-prod", &c1, false, json!([]))).await.expect(200);
        let (_, alice) = app.create_user("alice", false).await;
        let (_, mallory) = app.create_user("mallory", false).await;
        // Alice may make a test environment on a cluster offered to the project.
        call_as(&app, &alice, Method::POST, "/openapi/environments?projectKey=demo",
            env("alice", "demo-alice", &c1, false, shop.clone())).await.expect(200);
        app.wait_for("alice's service to run", LIMIT, || async {
            let d = app.call(Method::GET, "/openapi/environments/alice?projectKey=demo", Some(&alice), None).await;
            (d.body["services"][0]["status"] == "running").then_some(())
        }).await;

        let path = "/openapi/environments?projectKey=demo";
        let refused: Vec<(Value, u16, &str)> = vec![
            // Another project's environment namespace (audit F3's reproduction).
            (env("pwn", "other-dev", &c1, true, shop.clone()), 403, "`namespace`: namespace other-dev"),
            // A production environment's namespace.
            (env("pwn", "demo-prod", &c1, true, shop.clone()), 400, "production environment \"prod\""),
            // System namespaces.
            (env("pwn", "kube-system", &c1, true, shop.clone()), 400, "`namespace`: namespace kube-system is invalid"),
            (env("pwn", "kube-public", &c1, true, json!([])), 400, "`namespace`"),
            // A production cluster; a cluster not offered to the project.
            (env("pwn", "fresh", &prod_cluster, false, shop.clone()), 400, "`cluster_id`: cluster \"emu-prod\""),
            (env("pwn", "fresh", &lonely, false, shop.clone()), 403, "`cluster_id`: cluster \"lonely\""),
            // An existing namespace no environment of the project uses.
            (env("pwn", "default", &c1, true, shop.clone()), 403, "adopt_namespace"),
            // The namespace of an environment of the project that mallory may not change.
            (env("pwn", "demo-dev", &c1, true, json!([])), 403, "`namespace`: namespace demo-dev"),
            (env("pwn", "demo-alice", &c1, true, json!([])), 403, "environment \"alice\""),
        ];
        let cluster_before = cluster_state(&emu).await;
        let store_before = store_state(&app).await;
        for (body, status, needle) in refused {
            let r = call_as(&app, &mallory, Method::POST, path, body.clone()).await;
            r.expect_error(status, needle);
            assert_eq!(cluster_state(&emu).await, cluster_before, "the cluster changed after {body}");
            assert_eq!(store_state(&app).await, store_before, "the store changed after {body}");
        }
        assert!(emu.object("Namespace", "", "fresh").await.is_none());

        // Admins too: no test environment on a production cluster, in a production
        // environment's namespace or in a system namespace; nothing changes.
        let admin_refused: Vec<(Value, u16, &str)> = vec![
            (env("adm", "fresh", &prod_cluster, false, shop.clone()), 400, "`cluster_id`"),
            (env("adm", "demo-prod", &c1, true, shop.clone()), 400, "`namespace`"),
            (env("adm", "kube-system", &c1, true, json!([])), 400, "`namespace`"),
        ];
        for (body, status, needle) in admin_refused {
            app.post(path, body.clone()).await.expect_error(status, needle);
            assert_eq!(cluster_state(&emu).await, cluster_before, "the cluster changed after {body}");
            assert_eq!(store_state(&app).await, store_before, "the store changed after {body}");
        }
        // init/yaml's environments follow the same rules, before anything is stored.
        let init = |cluster: &str, ns: &str| json!({"project_name": "Shop", "project_key": "shop", "is_public": true,
            "description": "d", "service_list": [{"source": "yaml", "service_name": "shop", "yaml": deployment("web")}],
            "env_list": [{"env_key": "dev", "cluster_name": cluster, "namespace": ns}]});
        app.post("/openapi/projects/project/init/yaml", init("emu-prod", "shop-dev")).await
            .expect_error(400, "`env_list[0].cluster_name`");
        app.post("/openapi/projects/project/init/yaml", init("emu", "kube-system")).await
            .expect_error(400, "`env_list[0].namespace`");
        app.post("/openapi/projects/project/init/yaml", init("emu", "demo-prod")).await
            .expect_error(400, "`env_list[0].namespace`");
        app.get("/openapi/projects/project/detail?projectKey=shop").await.expect(404);
        assert_eq!(cluster_state(&emu).await, cluster_before);

        // Allowed: alice adopts the namespace her own environment uses; an admin adopts an
        // unmanaged namespace and puts a test environment on a cluster not offered to the
        // project; a production environment may go on the production cluster.
        call_as(&app, &alice, Method::POST, path, env("alice2", "demo-alice", &c1, true, json!([]))).await.expect(200);
        app.post(path, env("adm", "default", &c1, true, json!([]))).await.expect(200);
        app.post(path, env("adm2", "adm2", &lonely, false, json!([]))).await.expect(200);
        app.post("/openapi/environments/production?projectKey=demo", env("prod2", "demo-prod2", &prod_cluster, false, json!([])))
            .await.expect(200);
        assert!(emu.object("Namespace", "", "demo-prod2").await.is_some());
        app.stop().await;
    }
}

backend_test! {
    /// F4: cluster-scoped objects (here Namespaces) in a service are a system admin's: a
    /// non-admin can neither save them in a service nor have an environment apply or delete
    /// them; a refused apply changes nothing, naming the service and the object.
    async fn cluster_scoped_objects_are_applied_for_system_admins_only(app) {
        let Some(emu) = Emulator::start().await else { return };
        let c1 = cluster(&app, &emu, "emu", false, json!(["demo", "other"])).await;
        seed_project(&app, false).await;
        create_project(&app, "other").await;
        app.post("/openapi/environments?projectKey=other",
            json!({"env_key": "dev", "cluster_id": c1, "namespace": "other-dev", "services": []})).await.expect(200);
        let (_, mallory) = app.create_user("mallory", false).await;
        let svc = |name: &str, yaml: String| json!({"service_name": name, "yaml": yaml, "variable_yaml": []});
        let raw = "/openapi/service/yaml/raw?projectKey=demo";

        // Saving: refused for a non-admin (naming `yaml`, the service and the object).
        let cluster_before = cluster_state(&emu).await;
        call_as(&app, &mallory, Method::POST, raw, svc("nsgrab", namespace("other-dev"))).await
            .expect_error(403, "`yaml`: service \"nsgrab\" has the cluster-scoped object Namespace/other-dev");
        call_as(&app, &mallory, Method::POST, raw, svc("plain", deployment("plain"))).await.expect(200);
        call_as(&app, &mallory, Method::PUT, "/openapi/service/yaml/plain?projectKey=demo",
            json!({"type": "k8s", "yaml": format!("{}---\n{}", deployment("plain"), namespace("other-dev"))})).await
            .expect_error(403, "Namespace/other-dev");
        // An admin may save them.
        app.post(raw, svc("nsgrab", namespace("other-dev"))).await.expect(200);
        app.post(raw, svc("mixed", format!("{}---\n{}", deployment("mixed"), namespace("mixed-ns")))).await.expect(200);
        app.post(raw, svc("extra", format!("{}---\n{}", deployment("extra"), namespace("extra-ns")))).await.expect(200);

        // Applying for a non-admin: environment creation, adding services. Nothing changes,
        // not even the namespace the environment would have made.
        let path = "/openapi/environments?projectKey=demo";
        let store_before = store_state(&app).await;
        call_as(&app, &mallory, Method::POST, path, json!({"env_key": "m1", "cluster_id": c1, "namespace": "mallory-ns",
            "services": [{"service_name": "shop"}, {"service_name": "nsgrab"}]})).await
            .expect_error(403, "service \"nsgrab\" has the cluster-scoped object Namespace/other-dev");
        assert_eq!(cluster_state(&emu).await, cluster_before);
        assert_eq!(store_state(&app).await, store_before);
        call_as(&app, &mallory, Method::POST, path, json!({"env_key": "m1", "cluster_id": c1, "namespace": "mallory-ns",
            "services": [{"service_name": "plain"}]})).await.expect(200);
        let cluster_before = cluster_state(&emu).await;
        let m1 = || async { app.get("/openapi/environments/m1?projectKey=demo").await.body["services"].clone() };
        let m1_before = m1().await;
        call_as(&app, &mallory, Method::POST, "/openapi/environments/service/yaml?projectKey=demo",
            json!({"env_key": "m1", "service_list": [{"service_name": "shop"}, {"service_name": "mixed"}]})).await
            .expect_error(403, "service \"mixed\" has the cluster-scoped object Namespace/mixed-ns");
        assert_eq!(cluster_state(&emu).await, cluster_before);
        assert_eq!(m1().await, m1_before);
        assert!(emu.object("Deployment", "mallory-ns", "web").await.is_none());

        // Updating a service whose template an admin changed to hold a Namespace.
        app.put("/openapi/service/yaml/plain?projectKey=demo",
            json!({"type": "k8s", "yaml": format!("{}---\n{}", deployment("plain"), namespace("plain-ns"))})).await.expect(200);
        call_as(&app, &mallory, Method::PUT, "/openapi/environments/m1/services?projectKey=demo",
            json!({"service_list": [{"service_name": "plain", "variable_kvs": []}]})).await
            .expect_error(403, "Namespace/plain-ns");
        assert_eq!(cluster_state(&emu).await, cluster_before);
        assert_eq!(m1().await, m1_before);

        // An admin may add one to mallory's environment; mallory may then not delete it
        // (unless the objects are kept), nor delete the environment with its objects.
        app.post("/openapi/environments/service/yaml?projectKey=demo",
            json!({"env_key": "m1", "service_list": [{"service_name": "extra"}]})).await.expect(200);
        assert!(emu.object("Namespace", "", "extra-ns").await.is_some());
        assert!(emu.object("Deployment", "mallory-ns", "extra").await.is_some());
        let cluster_before = cluster_state(&emu).await;
        call_as(&app, &mallory, Method::DELETE, "/openapi/environments/service/yaml?projectKey=demo",
            json!({"env_key": "m1", "service_names": ["extra"]})).await
            .expect_error(403, "Namespace/extra-ns");
        let r = app.call(Method::DELETE, "/openapi/environments/m1?projectKey=demo&isDelete=true", Some(&mallory), None).await;
        r.expect_error(403, "Namespace/extra-ns");
        assert_eq!(cluster_state(&emu).await, cluster_before);
        call_as(&app, &mallory, Method::DELETE, "/openapi/environments/service/yaml?projectKey=demo",
            json!({"env_key": "m1", "service_names": ["extra"], "not_delete_resource": true})).await.expect(200);
        assert!(emu.object("Namespace", "", "extra-ns").await.is_some());

        // The admin applies and removes cluster-scoped objects.
        app.post(path, json!({"env_key": "adm", "cluster_id": c1, "namespace": "adm-ns",
            "services": [{"service_name": "mixed"}]})).await.expect(200);
        let ns = emu.object("Namespace", "", "mixed-ns").await.expect("applied for the admin");
        assert_eq!(ns["metadata"]["labels"]["s-service"], "mixed");
        app.call(Method::DELETE, "/openapi/environments/service/yaml?projectKey=demo", Some(crate::harness::ADMIN_TOKEN),
            Some(json!({"env_key": "adm", "service_names": ["mixed"]}))).await.expect(200);
        app.wait_for("the namespace to go", LIMIT, || async {
            emu.object("Namespace", "", "mixed-ns").await.is_none().then_some(())
        }).await;
        // mallory's own environment without them still works.
        call_as(&app, &mallory, Method::DELETE, "/openapi/environments/service/yaml?projectKey=demo",
            json!({"env_key": "m1", "service_names": ["plain"]})).await.expect(200);
        assert!(emu.object("Deployment", "mallory-ns", "plain").await.is_none());
        app.stop().await;
    }
}

/// Run mallory's `custom-deploy` workflow `custom` (Deployment `web` of namespace `m-ns` to
/// `image`) and wait for the task's end; its detail.
async fn custom_deploy(app: &TestApp, token: &str, image: &str) -> Value {
    let r = call_as(app, token, Method::POST, "/openapi/workflows/custom/task",
        json!({"project_key": "demo", "workflow_key": "custom", "parameters": [], "inputs": [
            {"job_name": "deploy", "job_type": "custom-deploy", "parameters": {"target_list": [
                {"workload_type": "Deployment", "workload_name": "web", "container_name": "web", "image_name": image}]}}]})).await;
    let id = r.expect(200)["task_id"].as_i64().unwrap();
    app.wait_for("the task to end", LIMIT, || async {
        let d = app
            .call(
                Method::GET,
                &format!("/openapi/workflows/custom/task?taskId={id}&workflowKey=custom"),
                Some(token),
                None,
            )
            .await
            .body;
        ["passed", "failed", "timeout", "cancelled"]
            .contains(&d["status"].as_str().unwrap_or_default())
            .then_some(d)
    })
    .await
}

backend_test! {
    /// A `custom-deploy` job of a non-admin deploys into the namespace of their own test
    /// environment; not once another project's environment shares it, nor once its cluster is
    /// marked production — and meanwhile the environment's routes are an admin's too.
    async fn custom_deploy_follows_where_environments_may_go(app) {
        let Some(emu) = Emulator::start().await else { return };
        let c1 = cluster(&app, &emu, "emu", false, json!(["demo"])).await;
        seed_project(&app, false).await;
        create_project(&app, "other").await;
        let (_, mallory) = app.create_user("mallory", false).await;
        call_as(&app, &mallory, Method::POST, "/openapi/environments?projectKey=demo", json!({"env_key": "m1",
            "cluster_id": c1, "namespace": "m-ns", "services": [{"service_name": "shop"}]})).await.expect(200);
        call_as(&app, &mallory, Method::POST, "/openapi/workflows/custom", json!({"name": "custom", "display_name": "custom",
            "project": "demo", "concurrency_limit": -1, "stages": [{"name": "s", "parallel": true, "jobs": [
                {"name": "deploy", "type": "custom-deploy", "spec": {"namespace": "m-ns", "cluster_id": c1,
                    "timeout": 0, "skip_check_run_status": true, "targets": []}}]}]})).await.expect(200);
        let image = || async {
            emu.object("Deployment", "m-ns", "web").await.unwrap()["spec"]["template"]["spec"]["containers"][0]["image"].clone()
        };
        let d = custom_deploy(&app, &mallory, "nginx:1.26").await;
        assert_eq!(d["status"], "passed", "{d}");
        assert_eq!(image().await, "nginx:1.26");

        // An admin puts another project's environment into the namespace: mallory's job is
        // refused and changes nothing.
        app.post("/openapi/environments?projectKey=other", json!({"env_key": "o1", "cluster_id": c1,
            "namespace": "m-ns", "adopt_namespace": true, "services": []})).await.expect(200);
        let d = custom_deploy(&app, &mallory, "nginx:1.27").await;
        assert_eq!(d["status"], "failed", "{d}");
        assert!(d.to_string().contains("user mallory may not deploy into namespace m-ns"), "{d}");
        assert!(d.to_string().contains("environment \\\"o1\\\" of project \\\"other\\\" is there"), "{d}");
        assert_eq!(image().await, "nginx:1.26");
        // Nor may she change her environment through the routes meanwhile (not even delete it
        // with its objects); an admin may.
        let restart = "/openapi/environments/m1/service/shop/restart?projectKey=demo";
        app.call(Method::POST, restart, Some(&mallory), None).await.expect_error(403, "environment \"o1\" of project \"other\"");
        app.call(Method::DELETE, "/openapi/environments/m1?projectKey=demo&isDelete=true", Some(&mallory), None).await
            .expect_error(403, "only system admins");
        assert!(emu.object("Deployment", "m-ns", "web").await.is_some());
        app.delete("/openapi/environments/o1?projectKey=other&isDelete=false").await.expect(200);

        // Its cluster marked production: refused too.
        app.put(&format!("/openapi/system/cluster/{c1}"), json!({"name": "emu", "production": true,
            "project_names": ["demo"]})).await.expect(200);
        let d = custom_deploy(&app, &mallory, "nginx:1.28").await;
        assert_eq!(d["status"], "failed", "{d}");
        assert!(d.to_string().contains("is a production cluster"), "{d}");
        assert_eq!(image().await, "nginx:1.26");
        app.call(Method::POST, restart, Some(&mallory), None).await.expect_error(403, "is a production cluster");
        app.put(&format!("/openapi/system/cluster/{c1}"), json!({"name": "emu", "production": false,
            "project_names": ["demo"]})).await.expect(200);
        let d = custom_deploy(&app, &mallory, "nginx:1.29").await;
        assert_eq!(d["status"], "passed", "{d}");
        assert_eq!(image().await, "nginx:1.29");
        app.call(Method::POST, restart, Some(&mallory), None).await.expect(200);
        app.stop().await;
    }
}

backend_test! {
    /// Two non-admins of two projects creating environments into the same new namespace at
    /// once: the creation that comes second (whichever it is) sees the first's environment and
    /// gets the placement refusal, never a second environment there. Holds whatever the
    /// timing: a round never has two winners, and its loser is refused by the placement rule.
    async fn two_projects_racing_for_one_new_namespace_get_it_once(app) {
        let Some(emu) = Emulator::start().await else { return };
        let c1 = cluster(&app, &emu, "emu", false, json!(["demo", "other"])).await;
        seed_project(&app, false).await;
        create_project(&app, "other").await;
        let (_, alice) = app.create_user("alice", false).await;
        let (_, bob) = app.create_user("bob", false).await;
        for round in 0..3 {
            let ns = format!("contested-{round}");
            let key = format!("e{round}");
            let body = |services: Value| json!({"env_key": key, "cluster_id": c1, "namespace": ns,
                "adopt_namespace": round == 2, "services": services});
            let (a, b) = tokio::join!(
                call_as(&app, &alice, Method::POST, "/openapi/environments?projectKey=demo",
                    body(json!([{"service_name": "shop"}]))),
                call_as(&app, &bob, Method::POST, "/openapi/environments?projectKey=other", body(json!([]))),
            );
            let (winner, loser, (loser_project, loser_user)) = match (a.status.as_u16(), b.status.as_u16()) {
                (200, _) => ("demo", b, ("other", "bob")),
                (_, 200) => ("other", a, ("demo", "alice")),
                _ => panic!("round {round}: nobody got namespace {ns}: {} / {}", a.text, b.text),
            };
            let b = loser.expect_error(403, &format!("`namespace`: namespace {ns} of cluster \"emu\""));
            let why = format!("is used by environment \"{key}\" of project \"{winner}\", which user {loser_user} may not change");
            assert!(b["description"].as_str().unwrap().contains(&why), "round {round}: {b}");
            app.get(&format!("/openapi/environments/{key}?projectKey={loser_project}")).await.expect(404);
            app.get(&format!("/openapi/environments/{key}?projectKey={winner}")).await.expect(200);
        }
        app.stop().await;
    }
}
