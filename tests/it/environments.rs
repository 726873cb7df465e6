//! Environments (`/openapi/environments`, spec/environments.md §5) against the Kubernetes
//! API emulator, on both backends: a cluster registered by kubeconfig, a project with a
//! two-workload YAML service, an environment created (namespace labelled), the service
//! applied (server-side apply, Zadig's labels), detail and pods read live, image, scale and
//! restarts seen in the emulator, the environment deleted with its objects and namespace.

use std::time::Duration;

use serde_json::{Value, json};

use crate::backend_test;
use crate::clusters::add_cluster;
use crate::harness::TestApp;
use crate::kube_emulator::Emulator;
use crate::projects::create_project;

const LIMIT: Duration = Duration::from_secs(60);

/// A Deployment (image and replicas from variables), its Service and a StatefulSet.
pub fn shop_yaml() -> &'static str {
    "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {{.replicas}}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: {{.image}}
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: cache
spec:
  serviceName: cache
  replicas: 1
  selector:
    matchLabels:
      app: cache
  template:
    metadata:
      labels:
        app: cache
    spec:
      containers:
      - name: cache
        image: redis:7.2
"
}

/// Project `demo` with service `shop` (test and, when `production`, production too).
pub async fn seed_project(app: &TestApp, production: bool) {
    create_project(app, "demo").await;
    let body = json!({"service_name": "shop", "yaml": shop_yaml(), "variable_yaml": [
        {"key": "image", "value": "nginx:1.25", "type": "string"},
        {"key": "replicas", "value": "1", "type": "string"}]});
    app.post("/openapi/service/yaml/raw?projectKey=demo", body.clone())
        .await
        .expect(200);
    if production {
        app.post("/openapi/service/yaml/production/raw?projectKey=demo", body)
            .await
            .expect(200);
    }
}

/// A Kubernetes API emulator and its cluster, and project `demo` with service `shop` (see
/// [`seed_project`]); `None` without the emulator.
async fn emulated_project(app: &TestApp, production: bool) -> Option<(Emulator, String)> {
    let emu = Emulator::start().await?;
    let cluster = add_cluster(app, "emu", &emu.kubeconfig).await;
    seed_project(app, production).await;
    Some((emu, cluster))
}

/// A cluster on `emu`, project `demo` with service `shop`, and env `dev` in namespace
/// `demo-dev`; the cluster id.
pub async fn seed_env(app: &TestApp, emu: &Emulator) -> String {
    seed_env_at(app, &emu.kubeconfig).await
}

/// [`seed_env`] on the cluster of `kubeconfig` (an emulator behind a proxy).
pub async fn seed_env_at(app: &TestApp, kubeconfig: &str) -> String {
    let cluster = add_cluster(app, "emu", kubeconfig).await;
    seed_project(app, false).await;
    app.post(
        "/openapi/environments?projectKey=demo",
        json!({"env_key": "dev", "cluster_id": cluster, "namespace": "demo-dev", "services": []}),
    )
    .await
    .expect(200);
    cluster
}

/// Apply service `shop` into env `dev` of project `demo` and wait (at most `limit`) until it
/// runs.
pub async fn apply_shop(app: &TestApp, limit: Duration) {
    app.post(
        "/openapi/environments/service/yaml?projectKey=demo",
        json!({"env_key": "dev", "service_list": [{"service_name": "shop"}]}),
    )
    .await
    .expect(200);
    app.wait_for("the service to run", limit, || async {
        let d = app.get("/openapi/environments/dev?projectKey=demo").await;
        (d.expect(200)["services"][0]["status"] == "running").then_some(())
    })
    .await;
}

/// Delete namespace `ns` in the emulator by hand (as a user, or a cluster rebuilt empty) and
/// wait until it and its objects are gone.
pub async fn delete_namespace_by_hand(app: &TestApp, emu: &Emulator, ns: &str) {
    let path = format!("/api/v1/namespaces/{ns}");
    let status = emu.api(reqwest::Method::DELETE, &path).await;
    assert!(
        (200..300).contains(&status),
        "deleting namespace {ns}: {status}"
    );
    app.wait_for("the namespace and its objects to go", LIMIT, || async {
        let gone =
            emu.objects("", ns).await.is_empty() && emu.object("Namespace", "", ns).await.is_none();
        gone.then_some(())
    })
    .await;
}

async fn wait_running(app: &TestApp, path: &str) -> Value {
    app.wait_for("the service to run", LIMIT, || async {
        let d = app.get(path).await;
        let d = d.expect(200).clone();
        (d["services"][0]["status"] == "running").then_some(d)
    })
    .await
}

backend_test! {
    async fn the_environment_flow(app) {
        let Some((emu, cluster)) = emulated_project(&app, false).await else { return };

        // Global variable values must be the project's (it defines none): refused before
        // the cluster is touched.
        let r = app.post("/openapi/environments?projectKey=demo", json!({"env_key": "dev",
            "cluster_id": cluster, "namespace": "demo-dev", "global_variables": [{"key": "ghost", "value": "1"}]})).await;
        r.expect_error(400, "ghost");
        assert!(emu.object("Namespace", "", "demo-dev").await.is_none());

        // Create: the namespace is made with Zadig's labels.
        app.post("/openapi/environments?projectKey=demo",
            json!({"env_key": "dev", "env_name": "ignored", "cluster_id": cluster, "namespace": "demo-dev"}))
            .await.expect(200);
        let ns = emu.object("Namespace", "", "demo-dev").await.expect("namespace created");
        assert_eq!(ns["metadata"]["labels"]["createdBy"], "koderover");
        assert_eq!(ns["metadata"]["labels"]["s-product"], "demo");
        let r = app.post("/openapi/environments?projectKey=demo",
            json!({"env_key": "dev", "cluster_id": cluster, "namespace": "demo-dev2"})).await;
        assert_eq!(r.expect_error(409, "dev")["code"], 6074);
        let r = app.post("/openapi/environments?projectKey=demo",
            json!({"env_key": "qa", "cluster_id": cluster, "namespace": "demo-dev"})).await;
        r.expect_error(409, "adopt_namespace");

        // The list in Zadig's shape (the Python CLI's call).
        let list = app.get("/openapi/environments?projectKey=demo").await;
        let mut e = list.expect(200)[0].clone();
        assert!(e["update_time"].as_i64().unwrap() > 0);
        e["update_time"] = json!(0);
        assert_eq!(e, json!({"env_key": "dev", "cluster_id": cluster, "namespace": "demo-dev", "production": false,
            "registry_id": "", "status": "success", "update_by": "admin", "update_time": 0}));

        // Apply the service: every object server-side applied with Zadig's labels.
        app.post("/openapi/environments/service/yaml?projectKey=demo",
            json!({"env_key": "dev", "service_list": [{"service_name": "shop",
                "variable_kvs": [{"key": "replicas", "value": "2", "use_global_variable": true}]}]})).await.expect(200);
        let dep = emu.object("Deployment", "demo-dev", "web").await.expect("deployment applied");
        assert_eq!(dep["spec"]["replicas"], 2);
        assert_eq!(dep["metadata"]["labels"]["s-product"], "demo");
        assert_eq!(dep["metadata"]["labels"]["s-service"], "shop");
        assert_eq!(dep["spec"]["template"]["metadata"]["labels"]["s-service"], "shop");
        let managers: Vec<&str> = dep["metadata"]["managedFields"].as_array().unwrap().iter()
            .filter_map(|m| m["manager"].as_str()).collect();
        assert!(managers.iter().all(|m| *m == "zadig-server"), "{managers:?}");
        assert!(emu.object("StatefulSet", "demo-dev", "cache").await.is_some());
        assert!(emu.object("Service", "demo-dev", "web").await.is_some());
        let r = app.post("/openapi/environments/service/yaml?projectKey=demo",
            json!({"env_key": "dev", "service_list": [{"service_name": "shop"}]})).await;
        r.expect_error(409, "already exist");
        let r = app.post("/openapi/environments/service/yaml?projectKey=demo",
            json!({"env_key": "dev", "service_list": [{"service_name": "nope"}]})).await;
        r.expect_error(400, "nope");

        // Detail: live status once the emulator's controller has the pods ready.
        let d = wait_running(&app, "/openapi/environments/dev?projectKey=demo").await;
        assert_eq!(d["project_key"], "demo");
        assert_eq!(d["namespace"], "demo-dev");
        let svc = &d["services"][0];
        assert_eq!((svc["service_name"].as_str(), svc["type"].as_str(), svc["deploy_strategy"].as_str()),
            (Some("shop"), Some("k8s"), Some("deploy")));
        assert_eq!(svc["containers"], json!([
            {"name": "web", "type": "", "image": "nginx:1.25", "image_name": "nginx"},
            {"name": "cache", "type": "", "image": "redis:7.2", "image_name": "redis"}]));
        // The variables it was rendered with (Zadig's RenderVariableKV): the value sent over
        // the template's variable; `use_global_variable` dropped, the env has no such global.
        assert_eq!(svc["variable_kvs"], json!([
            {"key": "image", "value": "nginx:1.25", "type": "string", "options": [], "desc": "",
                "use_global_variable": false, "is_reference_variable": false},
            {"key": "replicas", "value": "2", "type": "string", "options": [], "desc": "",
                "use_global_variable": false, "is_reference_variable": false}]));

        // Service detail and pods, read live.
        let sd = app.get("/openapi/environments/dev/services/shop?projectKey=demo").await;
        let sd = sd.expect(200);
        let web = sd["scales"].as_array().unwrap().iter().find(|s| s["name"] == "web").unwrap();
        assert_eq!((web["type"].as_str(), web["replicas"].as_i64()), (Some("Deployment"), Some(2)));
        assert_eq!(web["images"], json!([{"name": "web", "image": "nginx:1.25", "image_name": "nginx"}]));
        assert_eq!(web["pods"].as_array().unwrap().len(), 2);
        assert_eq!(web["pods"][0]["status"], "Running");
        assert_eq!(web["pods"][0]["kind"], "ReplicaSet");
        assert_eq!(web["pods"][0]["containers"][0]["status"], "running");
        let only = app.get("/openapi/environments/dev/services/shop?projectKey=demo&workLoadType=StatefulSet").await;
        assert_eq!(only.expect(200)["scales"].as_array().unwrap().len(), 1);
        let pods = app.get("/openapi/environments/dev/service/shop/pods?projectKey=demo").await;
        let pods = pods.expect(200)["pods"].as_array().unwrap().clone();
        assert_eq!(pods.len(), 3);
        let web_pod = pods.iter().find(|p| p["workload_name"] == "web").unwrap().clone();
        assert_eq!(web_pod["images"], json!(["nginx:1.25"]));
        assert_eq!(web_pod["workload_type"], "Deployment");

        // The YAML applied (text/plain).
        let y = app.get("/openapi/environments/service/yaml?projectKey=demo&envName=dev&serviceName=shop").await;
        y.expect(200);
        assert!(y.headers["content-type"].to_str().unwrap().starts_with("text/plain"));
        assert!(y.text.contains("namespace: demo-dev") && y.text.contains("s-service: shop"), "{}", y.text);

        // Image update: seen in the emulator's Deployment and in the env.
        app.post("/openapi/environments/image/deployment/dev",
            json!({"product_name": "demo", "service_name": "shop", "name": "web", "container_name": "web",
                "image": "nginx:1.27"})).await.expect(200);
        let dep = emu.object("Deployment", "demo-dev", "web").await.unwrap();
        assert_eq!(dep["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.27");
        let d = app.get("/openapi/environments/dev?projectKey=demo").await;
        assert_eq!(d.expect(200)["services"][0]["containers"][0]["image"], "nginx:1.27");
        let r = app.post("/openapi/environments/image/deployment/dev",
            json!({"product_name": "demo", "service_name": "shop", "name": "web", "container_name": "sidecar",
                "image": "x:1"})).await;
        assert_eq!(r.expect_error(404, "sidecar")["code"], 6082);
        let dep = emu.object("Deployment", "demo-dev", "web").await.unwrap();
        assert_eq!(dep["spec"]["template"]["spec"]["containers"].as_array().unwrap().len(), 1);
        app.post("/openapi/environments/image/statefulset/dev",
            json!({"product_name": "demo", "service_name": "shop", "name": "cache", "container_name": "cache",
                "image": "redis:7.4"})).await.expect(200);
        let sts = emu.object("StatefulSet", "demo-dev", "cache").await.unwrap();
        assert_eq!(sts["spec"]["template"]["spec"]["containers"][0]["image"], "redis:7.4");

        // Scale.
        app.post("/openapi/environments/scale", json!({"project_key": "demo", "env_key": "dev", "service_name": "shop",
            "workload_name": "web", "workload_type": "Deployment", "target_replicas": 3})).await.expect(200);
        assert_eq!(emu.object("Deployment", "demo-dev", "web").await.unwrap()["spec"]["replicas"], 3);
        let r = app.post("/openapi/environments/scale", json!({"project_key": "demo", "env_key": "dev", "service_name": "shop",
            "workload_name": "nope", "workload_type": "Deployment", "target_replicas": 1})).await;
        assert_eq!(r.expect_error(404, "nope")["code"], 6081);
        let r = app.post("/openapi/environments/scale", json!({"project_key": "demo", "env_key": "dev", "service_name": "shop",
            "workload_name": "web", "workload_type": "Deployment", "target_replicas": -1})).await;
        r.expect_error(400, "target_replicas");

        // Restart the service: a new restartedAt on every workload's pod template.
        app.post("/openapi/environments/dev/service/shop/restart?projectKey=demo", json!({})).await.expect(200);
        for (kind, name) in [("Deployment", "web"), ("StatefulSet", "cache")] {
            let o = emu.object(kind, "demo-dev", name).await.unwrap();
            assert!(o["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_string(), "{o}");
        }
        // The image and replica changes survive the restart's apply.
        let dep = emu.object("Deployment", "demo-dev", "web").await.unwrap();
        assert_eq!((dep["spec"]["replicas"].as_i64(), dep["spec"]["template"]["spec"]["containers"][0]["image"].as_str()),
            (Some(3), Some("nginx:1.27")));

        // Restart a pod: it is deleted (its controller makes another). Picked once the
        // rollouts above are done, among the pods not already going.
        wait_running(&app, "/openapi/environments/dev?projectKey=demo").await;
        let pod = app.wait_for("a settled web pod", LIMIT, || async {
            emu.objects("Pod", "demo-dev").await.into_iter().find(|p| {
                p["metadata"]["deletionTimestamp"].is_null()
                    && p["metadata"]["labels"]["app"] == "web"
                    && p["status"]["phase"] == "Running"
            }).and_then(|p| p["metadata"]["name"].as_str().map(String::from))
        }).await;
        app.post(&format!("/openapi/environments/dev/pod/{pod}/restart?projectKey=demo"), json!({})).await.expect(200);
        app.wait_for("the pod to go", LIMIT, || async {
            emu.object("Pod", "demo-dev", &pod).await.is_none().then_some(())
        }).await;
        let r = app.post("/openapi/environments/dev/pod/nope/restart?projectKey=demo", json!({})).await;
        assert_eq!(r.expect_error(404, "nope")["code"], 6153);

        // Delete: the namespace's objects and the namespace go.
        let r = app.delete("/openapi/environments/dev?projectKey=demo").await;
        r.expect_error(400, "isDelete");
        app.delete("/openapi/environments/dev?projectKey=demo&isDelete=true").await.expect(200);
        assert!(emu.object("Deployment", "demo-dev", "web").await.is_none());
        app.wait_for("the namespace and its objects to go", LIMIT, || async {
            (emu.objects("", "demo-dev").await.is_empty() && emu.object("Namespace", "", "demo-dev").await.is_none())
                .then_some(())
        }).await;
        assert_eq!(app.get("/openapi/environments?projectKey=demo").await.expect(200), &json!([]));
        let r = app.get("/openapi/environments/dev?projectKey=demo").await;
        assert_eq!(r.expect_error(404, "dev")["code"], 6078);
    }
}

backend_test! {
    async fn create_with_services_adopt_and_remove(app) {
        let Some((emu, cluster)) = emulated_project(&app, false).await else { return };

        // An existing namespace is used only when told, and stays when the env goes.
        app.post("/openapi/environments?projectKey=demo",
            json!({"env_key": "dev", "cluster_id": cluster, "namespace": "default", "adopt_namespace": true,
                "services": [{"service_name": "shop", "containers": [{"name": "web", "image": "nginx:1.26"}]}]}))
            .await.expect(200);
        let dep = emu.object("Deployment", "default", "web").await.expect("applied at creation");
        assert_eq!(dep["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.26");
        assert!(emu.object("Namespace", "", "default").await.unwrap()["metadata"]["labels"]["createdBy"].is_null());

        // A service that does not render stores nothing and leaves nothing behind.
        let r = app.post("/openapi/environments?projectKey=demo",
            json!({"env_key": "qa", "cluster_id": cluster, "namespace": "demo-qa", "services": [{"service_name": "nope"}]})).await;
        r.expect_error(400, "nope");
        assert!(emu.object("Namespace", "", "demo-qa").await.is_none());

        // Remove the service: its objects go, the env stays.
        app.call(reqwest::Method::DELETE, "/openapi/environments/service/yaml?projectKey=demo",
            Some(crate::harness::ADMIN_TOKEN), Some(json!({"env_key": "dev", "service_names": ["shop"]}))).await.expect(200);
        assert!(emu.object("Deployment", "default", "web").await.is_none());
        assert!(emu.object("Service", "default", "web").await.is_none());
        let d = app.get("/openapi/environments/dev?projectKey=demo").await;
        assert_eq!(d.expect(200)["services"], json!([]));
        let r = app.get("/openapi/environments/dev/services/shop?projectKey=demo").await;
        r.expect_error(404, "shop");

        // Delete with isDelete=false: the adopted namespace stays untouched.
        app.delete("/openapi/environments/dev?projectKey=demo&isDelete=false").await.expect(200);
        assert!(emu.object("Namespace", "", "default").await.is_some());

        // Unknown project: 404; sub-envs and env configs: 400.
        let r = app.post("/openapi/environments?projectKey=ghost",
            json!({"env_key": "dev", "cluster_id": cluster, "namespace": "x"})).await;
        r.expect_error(404, "ghost");
        let r = app.post("/openapi/environments?projectKey=demo",
            json!({"env_key": "dev", "cluster_id": cluster, "namespace": "x", "sub_env": {"enable": true, "base_env": "a"}})).await;
        r.expect_error(400, "sub_env");
        let r = app.post("/openapi/environments?projectKey=demo",
            json!({"env_key": "Dev_1", "cluster_id": cluster, "namespace": "x"})).await;
        r.expect_error(400, "env_key");
        let r = app.get("/openapi/environments").await;
        r.expect_error(400, "projectKey");
    }
}

backend_test! {
    async fn production_environments(app) {
        let Some((emu, cluster)) = emulated_project(&app, true).await else { return };
        let r = app.post("/openapi/environments/production?projectKey=demo",
            json!({"env_key": "prod", "cluster_id": cluster, "namespace": "kube-system"})).await;
        r.expect_error(400, "kube-system");
        app.post("/openapi/environments/production?projectKey=demo",
            json!({"env_key": "prod", "env_name": "生产", "cluster_id": cluster, "namespace": "demo-prod"}))
            .await.expect(200);
        let list = app.get("/openapi/environments/production?projectKey=demo").await;
        assert_eq!(list.expect(200)[0]["envName"], "生产");
        assert_eq!(app.get("/openapi/environments?projectKey=demo").await.expect(200), &json!([]));
        app.get("/openapi/environments/prod?projectKey=demo").await.expect_error(404, "prod");

        app.post("/openapi/environments/production/service/yaml?projectKey=demo",
            json!({"env_key": "prod", "service_list": [{"service_name": "shop"}]})).await.expect(200);
        let dep = emu.object("Deployment", "demo-prod", "web").await.unwrap();
        assert!(dep["metadata"]["labels"]["s-product"].is_null(), "production objects carry no Zadig labels: {dep}");
        let d = app.get("/openapi/environments/production/prod?projectKey=demo").await;
        assert_eq!(d.expect(200)["env_name"], "生产");
        app.get("/openapi/environments/production/prod/services/shop?projectKey=demo").await.expect(200);
        app.get("/openapi/environments/production/service/yaml?projectKey=demo&envName=prod&serviceName=shop").await.expect(200);
        app.put("/openapi/environments/production/prod/services?projectKey=demo", json!({"service_list": [
            {"service_name": "shop", "variable_kvs": [{"key": "replicas", "value": "2"}]}]})).await.expect(200);
        let dep = emu.object("Deployment", "demo-prod", "web").await.unwrap();
        assert_eq!(dep["spec"]["replicas"], 2);
        assert!(dep["metadata"]["labels"]["s-product"].is_null(), "{dep}");
        // The image and scale routes are the test group's: a production environment is not
        // theirs, answered with their own codes (spec §5.14, §5.15), and left alone.
        let r = app.post("/openapi/environments/image/deployment/prod", json!({"product_name": "demo",
            "service_name": "shop", "name": "web", "container_name": "web", "image": "nginx:1.27"})).await;
        assert_eq!(r.expect_error(404, "prod")["code"], 6082);
        let r = app.post("/openapi/environments/scale", json!({"project_key": "demo", "env_key": "prod",
            "service_name": "shop", "workload_name": "web", "workload_type": "Deployment", "target_replicas": 3})).await;
        assert_eq!(r.expect_error(404, "prod")["code"], 6081);
        let dep = emu.object("Deployment", "demo-prod", "web").await.unwrap();
        assert_eq!((dep["spec"]["replicas"].as_i64(), dep["spec"]["template"]["spec"]["containers"][0]["image"].as_str()),
            (Some(2), Some("nginx:1.25")));

        // Deleting a production env keeps its objects (spec §5.10).
        app.delete("/openapi/environments/production/prod?projectKey=demo").await.expect(200);
        assert!(emu.object("Deployment", "demo-prod", "web").await.is_some());
        assert_eq!(app.get("/openapi/environments/production?projectKey=demo").await.expect(200), &json!([]));
    }
}

backend_test! {
    async fn init_yaml_creates_environments_and_global_variables(app) {
        let Some(emu) = Emulator::start().await else { return };
        add_cluster(&app, "emu", &emu.kubeconfig).await;
        let body = json!({"project_name": "Shop", "project_key": "shop", "is_public": true, "description": "d",
            "service_list": [{"source": "yaml", "service_name": "shop", "yaml": shop_yaml(),
                "variable_yaml": [{"key": "image", "value": "nginx:1.25"}, {"key": "replicas", "value": "1"}]}],
            "env_list": [{"env_key": "dev", "cluster_name": "emu", "namespace": "shop-dev"}]});
        let mut bad = body.clone();
        bad["env_list"][0]["cluster_name"] = json!("nowhere");
        app.post("/openapi/projects/project/init/yaml", bad).await.expect_error(400, "env_list[0].cluster_name");
        app.get("/openapi/projects/project/detail?projectKey=shop").await.expect(404);
        app.post("/openapi/projects/project/init/yaml", body).await.expect(200);
        let dep = emu.object("Deployment", "shop-dev", "web").await.expect("env created with the project's services");
        assert_eq!(dep["metadata"]["labels"]["s-product"], "shop");

        // Global variables: unknown keys are refused; values are stored and read back.
        let r = app.put("/openapi/environments/dev/variable?projectKey=shop",
            json!({"global_variables": [{"key": "nope", "value": "1"}]})).await;
        r.expect_error(400, "nope");
        let r = app.put("/openapi/environments/dev/variable?projectKey=shop",
            json!({"global_variables": [{"value": "1"}]})).await;
        r.expect_error(400, "global_variables[0]");
        app.put("/openapi/environments/dev/variable?projectKey=shop", json!({"global_variables": []})).await.expect(200);
        assert_eq!(app.get("/openapi/environments/dev/variable?projectKey=shop").await.expect(200), &json!([]));

        // A project with environments is not deleted.
        let r = app.delete("/openapi/projects/project?projectKey=shop&isDelete=false").await;
        r.expect_error(409, "dev");
    }
}

backend_test! {
    /// Earlier versions stored E2's `global_variables` unchecked. An entry that does not decode
    /// (no `key`) made the environment unreadable; the next start moves such entries, verbatim,
    /// to `legacy_global_variables` and keeps the rest.
    async fn global_variables_an_earlier_version_stored_unchecked_are_set_aside_at_start_up(app) {
        use zadig_server::store::{Filter, Update};
        let Some(emu) = Emulator::start().await else { return };
        seed_env(&app, &emu).await;
        let bad = json!({"value": "no key"});
        let good = json!({"key": "replicas", "value": "2", "type": "string", "options": [], "desc": "",
            "related_services": []});
        let envs = app.backend.collection("environments");
        let set = Update::new().set("global_variables", json!([bad, good]));
        assert!(envs.update_one(&Filter::eq("env_key", "dev"), &set).await.unwrap());
        app.get("/openapi/environments/dev/variable?projectKey=demo").await.expect(500);
        // This server recorded at its start that the repair was done; an earlier version had
        // no such record.
        let done = Filter::id("environments.legacy_global_variables");
        assert_eq!(app.backend.collection("migrations").delete_many(&done).await.unwrap(), 1);

        let app = app.restart().await;
        let vars = app.get("/openapi/environments/dev/variable?projectKey=demo").await;
        assert_eq!(vars.expect(200), &json!([good]));
        app.get("/openapi/environments?projectKey=demo").await.expect(200);
        let envs = app.backend.collection("environments");
        let raw = envs.find_one(&Filter::eq("env_key", "dev")).await.unwrap().unwrap();
        assert_eq!(raw["legacy_global_variables"], json!([bad]));
        let record = app.backend.collection("migrations").find_one(&done).await.unwrap().unwrap();
        assert_eq!(record["repaired"], 1);
        // Set aside once: another start changes nothing.
        let app = app.restart().await;
        let again = app.backend.collection("environments").find_one(&Filter::All).await.unwrap().unwrap();
        assert_eq!(again, raw);
    }
}

backend_test! {
    /// A value of the wrong type inside a variable list is a 400 naming the field itself
    /// (`…variable_kvs[0].key`, not the item), on every route that takes one; the body is
    /// decoded before anything is looked up.
    async fn a_mistyped_variable_names_its_field(app) {
        let kvs = |kv: Value| json!({"service_list": [{"service_name": "many", "variable_kvs": [kv]}]});
        let add = |kv: Value| json!({"env_key": "dev", "service_list": [{"service_name": "many", "variable_kvs": [kv]}]});
        let globals = |kv: Value| json!({"global_variables": [kv]});
        let create = |kv: Value| json!({"env_key": "dev", "namespace": "n", "global_variables": [kv],
            "services": [{"service_name": "many", "variable_kvs": [kv]}]});
        let bad_key = json!({"key": 5, "value": "x", "type": "string"});
        let bad_option = json!({"key": "k", "options": [1]});
        let bad_options = json!({"key": "k", "options": "a"});
        let bad_flag = json!({"key": "k", "use_global_variable": "yes"});
        type Body = Box<dyn Fn(Value) -> Value>;
        let routes: Vec<(reqwest::Method, &str, Body, &str)> = vec![
            (reqwest::Method::PUT, "/openapi/environments/dev/services", Box::new(kvs), "service_list[0].variable_kvs[0]"),
            (reqwest::Method::PUT, "/openapi/environments/production/dev/services", Box::new(kvs), "service_list[0].variable_kvs[0]"),
            (reqwest::Method::POST, "/openapi/environments/service/yaml", Box::new(add), "service_list[0].variable_kvs[0]"),
            (reqwest::Method::POST, "/openapi/environments/production/service/yaml", Box::new(add), "service_list[0].variable_kvs[0]"),
            (reqwest::Method::PUT, "/openapi/environments/dev/variable", Box::new(globals), "global_variables[0]"),
            (reqwest::Method::PUT, "/openapi/environments/production/dev/variable", Box::new(globals), "global_variables[0]"),
            (reqwest::Method::POST, "/openapi/environments", Box::new(create), "global_variables[0]"),
        ];
        for (method, path, body, at) in &routes {
            let path = format!("{path}?projectKey=demo");
            for (kv, field) in [(&bad_key, ".key"), (&bad_option, ".options[0]"), (&bad_options, ".options")] {
                let r = app.call(method.clone(), &path, Some(crate::harness::ADMIN_TOKEN), Some(body(kv.clone()))).await;
                r.expect_error(400, &format!("invalid request body: field `{at}{field}`: invalid type"));
            }
            if at.contains("variable_kvs") {
                let r = app.call(method.clone(), &path, Some(crate::harness::ADMIN_TOKEN), Some(body(bad_flag.clone()))).await;
                r.expect_error(400, &format!("field `{at}.use_global_variable`"));
            }
        }
        // Well-typed, the same bodies get as far as the missing project.
        app.put("/openapi/environments/dev/services?projectKey=demo",
            kvs(json!({"key": "k", "value": 1, "options": null, "use_global_variable": null}))).await.expect(404);
    }
}

backend_test! {
    /// E18: services are rendered again at their templates' latest revisions with the values
    /// given (the others keep the environment's), keeping the images set through the API.
    async fn updating_services_renders_them_again_with_new_values(app) {
        let Some(emu) = Emulator::start().await else { return };
        seed_env(&app, &emu).await;
        apply_shop(&app, LIMIT).await;
        app.post("/openapi/environments/image/deployment/dev",
            json!({"product_name": "demo", "service_name": "shop", "name": "web", "container_name": "web",
                "image": "nginx:1.27"})).await.expect(200);
        // A new revision of the template adds a ConfigMap; the environment still runs the old one.
        let yaml = format!("{}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n",
            shop_yaml());
        app.put("/openapi/service/yaml/shop?projectKey=demo", json!({"type": "k8s", "yaml": yaml})).await.expect(200);
        assert!(emu.object("ConfigMap", "demo-dev", "settings").await.is_none());

        // Refused, nothing changes.
        let path = "/openapi/environments/dev/services?projectKey=demo";
        app.put(path, json!({"service_list": []})).await.expect_error(400, "service_list");
        let r = app.put(path, json!({"service_list": [{"service_name": "ghost"}]})).await;
        assert_eq!(r.expect_error(404, "ghost")["code"], 6076);
        app.put(path, json!({"service_list": [{"service_name": "shop"}, {"service_name": "shop"}]})).await
            .expect_error(400, "service_list[1].service_name");
        app.put(path, json!({"service_list": [{"service_name": "shop", "variable_kvs": [{"value": "2"}]}]})).await
            .expect_error(400, "service_list[0].variable_kvs[0]");
        app.put("/openapi/environments/production/dev/services?projectKey=demo",
            json!({"service_list": [{"service_name": "shop"}]})).await.expect(404);
        assert!(emu.object("ConfigMap", "demo-dev", "settings").await.is_none());

        app.put(path, json!({"service_list": [{"service_name": "shop",
            "variable_kvs": [{"key": "replicas", "value": "2"}]}]})).await.expect(200);
        let dep = emu.object("Deployment", "demo-dev", "web").await.unwrap();
        assert_eq!(dep["spec"]["replicas"], 2);
        assert_eq!(dep["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.27");
        assert_eq!(emu.object("ConfigMap", "demo-dev", "settings").await.unwrap()["data"]["mode"], "fast");
        let d = app.get("/openapi/environments/dev?projectKey=demo").await;
        let svc = &d.expect(200)["services"][0];
        let value = |k: &str| svc["variable_kvs"].as_array().unwrap().iter()
            .find(|v| v["key"] == k).map(|v| v["value"].clone());
        assert_eq!(value("replicas"), Some(json!("2")));
        assert_eq!(value("image"), Some(json!("nginx:1.25")));
        assert_eq!(svc["containers"][0]["image"], "nginx:1.27");
        // The ConfigMap is now the service's: removing the service deletes it.
        app.call(reqwest::Method::DELETE, "/openapi/environments/service/yaml?projectKey=demo",
            Some(crate::harness::ADMIN_TOKEN), Some(json!({"env_key": "dev", "service_names": ["shop"]}))).await.expect(200);
        assert!(emu.object("ConfigMap", "demo-dev", "settings").await.is_none());
    }
}

backend_test! {
    /// E18 applies services one after another: when one fails, the ones before it stay
    /// updated (in the cluster and in the record) and the error names both.
    async fn a_failed_service_update_keeps_the_ones_updated_before_it(app) {
        let Some(emu) = Emulator::start().await else { return };
        seed_env(&app, &emu).await;
        let api = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  replicas: {{.replicas}}\n  selector:\n    matchLabels:\n      app: api\n  template:\n    metadata:\n      labels:\n        app: api\n    spec:\n      containers:\n      - name: api\n        image: nginx:1.25\n";
        app.post("/openapi/service/yaml/raw?projectKey=demo", json!({"service_name": "api", "yaml": api,
            "variable_yaml": [{"key": "replicas", "value": "1", "type": "string"}]})).await.expect(200);
        app.post("/openapi/environments/service/yaml?projectKey=demo",
            json!({"env_key": "dev", "service_list": [{"service_name": "shop"}, {"service_name": "api"}]})).await.expect(200);

        let r = app.put("/openapi/environments/dev/services?projectKey=demo", json!({"service_list": [
            {"service_name": "shop", "variable_kvs": [{"key": "replicas", "value": "2"}]},
            {"service_name": "api", "variable_kvs": [{"key": "replicas", "value": "[oops"}]}]})).await;
        let text = r.expect_error(400, "\"api\"")["description"].as_str().unwrap().to_string();
        assert!(text.contains("updated before it: [\"shop\"]"), "{text}");
        assert_eq!(emu.object("Deployment", "demo-dev", "web").await.unwrap()["spec"]["replicas"], 2);
        assert_eq!(emu.object("Deployment", "demo-dev", "api").await.unwrap()["spec"]["replicas"], 1);
        let d = app.get("/openapi/environments/dev?projectKey=demo").await;
        let replicas = |svc: &str| d.body["services"].as_array().unwrap().iter()
            .find(|s| s["service_name"] == svc).unwrap()["variable_kvs"].as_array().unwrap().iter()
            .find(|v| v["key"] == "replicas").unwrap()["value"].clone();
        assert_eq!(replicas("shop"), "2");
        assert_eq!(replicas("api"), "1");
    }
}

backend_test! {
    /// `/image/job`: a Job's pod template cannot change, so the Job is created again with the
    /// new image (and runs again); the record keeps the image.
    async fn a_job_image_is_set_by_creating_the_job_again(app) {
        let Some(emu) = Emulator::start().await else { return };
        seed_env(&app, &emu).await;
        let yaml = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: migrate\n        image: busybox:1.36\n        command: [\"echo\", \"migrated\"]\n";
        app.post("/openapi/service/yaml/raw?projectKey=demo", json!({"service_name": "migrate", "yaml": yaml}))
            .await.expect(200);
        app.post("/openapi/environments/service/yaml?projectKey=demo",
            json!({"env_key": "dev", "service_list": [{"service_name": "migrate"}]})).await.expect(200);
        let before = emu.object("Job", "demo-dev", "migrate").await.unwrap();

        let path = "/openapi/environments/image/job/dev";
        let body = |name: &str, container: &str| json!({"product_name": "demo", "service_name": "migrate",
            "name": name, "container_name": container, "image": "busybox:1.37"});
        assert_eq!(app.post(path, body("migrate", "sidecar")).await.expect_error(404, "sidecar")["code"], 6082);
        assert_eq!(app.post(path, body("other", "migrate")).await.expect_error(404, "other")["code"], 6082);
        assert_eq!(emu.object("Job", "demo-dev", "migrate").await.unwrap()["metadata"]["uid"], before["metadata"]["uid"]);

        app.post(path, body("migrate", "migrate")).await.expect(200);
        let job = emu.object("Job", "demo-dev", "migrate").await.unwrap();
        assert_eq!(job["spec"]["template"]["spec"]["containers"][0]["image"], "busybox:1.37");
        assert_ne!(job["metadata"]["uid"], before["metadata"]["uid"], "the Job was not created again");
        assert_eq!(job["metadata"]["labels"]["s-service"], "migrate");
        let d = app.get("/openapi/environments/dev?projectKey=demo").await;
        let svc = d.expect(200)["services"].as_array().unwrap().iter().find(|s| s["service_name"] == "migrate").unwrap().clone();
        assert_eq!(svc["containers"][0]["image"], "busybox:1.37");
        // The same image again changes nothing: the Job is left alone.
        app.post(path, body("migrate", "migrate")).await.expect(200);
        assert_eq!(emu.object("Job", "demo-dev", "migrate").await.unwrap()["metadata"]["uid"], job["metadata"]["uid"]);
    }
}

backend_test! {
    /// `/image/cronjob`: a CronJob container's image is set in the cluster and in the record.
    async fn a_cronjob_image_is_set_through_the_api(app) {
        let Some(emu) = Emulator::start().await else { return };
        seed_env(&app, &emu).await;
        let yaml = "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: nightly\nspec:\n  schedule: \"0 3 * * *\"\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: OnFailure\n          containers:\n          - name: report\n            image: busybox:1.36\n";
        app.post("/openapi/service/yaml/raw?projectKey=demo", json!({"service_name": "nightly", "yaml": yaml}))
            .await.expect(200);
        app.post("/openapi/environments/service/yaml?projectKey=demo",
            json!({"env_key": "dev", "service_list": [{"service_name": "nightly"}]})).await.expect(200);

        let path = "/openapi/environments/image/cronjob/dev";
        let body = |name: &str, container: &str| json!({"product_name": "demo", "service_name": "nightly",
            "name": name, "container_name": container, "image": "busybox:1.37"});
        assert_eq!(app.post(path, body("nightly", "sidecar")).await.expect_error(404, "sidecar")["code"], 6082);
        assert_eq!(app.post(path, body("weekly", "report")).await.expect_error(404, "weekly")["code"], 6082);
        app.post("/openapi/environments/image/deployment/dev", body("nightly", "report")).await
            .expect_error(404, "Deployment");

        app.post(path, body("nightly", "report")).await.expect(200);
        let cj = emu.object("CronJob", "demo-dev", "nightly").await.unwrap();
        assert_eq!(cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"], "busybox:1.37");
        let d = app.get("/openapi/environments/dev?projectKey=demo").await;
        let svc = d.expect(200)["services"].as_array().unwrap().iter().find(|s| s["service_name"] == "nightly").unwrap().clone();
        assert_eq!(svc["containers"][0]["image"], "busybox:1.37");
    }
}

backend_test! {
    /// Changes of one environment through two replicas on one store take turns (a store lease
    /// held from reading the record to saving it): none is refused after it changed the
    /// cluster, and the record ends as the cluster is.
    async fn two_replicas_change_one_environment_in_turn(app) {
        let Some(emu) = Emulator::start().await else { return };
        seed_env(&app, &emu).await;
        apply_shop(&app, LIMIT).await;
        let backend = zadig_server::store::open(&app.config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let clock: std::sync::Arc<dyn zadig_server::clock::Clock> = std::sync::Arc::new(app.clock.clone());
        let second = zadig_server::start(app.config.clone(), backend, clock, listener).await.unwrap();
        let client = crate::harness::client();
        let basic = format!("http://{}/openapi/environments/dev?projectKey=demo", second.addr);
        let on_second = (0..6).map(|_| crate::harness::send(&client, reqwest::Method::PUT, &basic,
            Some(crate::harness::ADMIN_TOKEN), Some(json!({"registry_id": ""}))));
        let on_first = async {
            for n in 2..5 {
                app.put("/openapi/environments/dev/services?projectKey=demo", json!({"service_list": [
                    {"service_name": "shop", "variable_kvs": [{"key": "replicas", "value": n.to_string()}]}]}))
                    .await.expect(200);
            }
        };
        let ((), basics) = tokio::join!(on_first, futures::future::join_all(on_second));
        for r in basics {
            r.expect(200);
        }
        let d = app.get("/openapi/environments/dev?projectKey=demo").await;
        let replicas = d.expect(200)["services"][0]["variable_kvs"].as_array().unwrap().iter()
            .find(|v| v["key"] == "replicas").map(|v| v["value"].clone());
        assert_eq!(replicas, Some(json!("4")));
        assert_eq!(emu.object("Deployment", "demo-dev", "web").await.unwrap()["spec"]["replicas"], 4);
        second.shutdown().await;
        app.stop().await;
    }
}

backend_test! {
    /// A call that fails part-way puts back what it changed: objects it created are deleted,
    /// objects that were there before (another service's) are applied again as they were —
    /// never deleted; a service re-rendered with values one of its objects refuses is put back.
    async fn a_failed_apply_puts_back_what_was_there(app) {
        let Some(emu) = Emulator::start().await else { return };
        seed_env(&app, &emu).await;
        let cm = |name: &str, value: &str| format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  a: \"{value}\"\n");
        let service = |name: &str, yaml: String, vars: Value| {
            let app = &app;
            let body = json!({"service_name": name, "yaml": yaml, "variable_yaml": vars});
            async move { app.post("/openapi/service/yaml/raw?projectKey=demo", body).await.expect(200); }
        };
        service("first", format!("{}---\n{}", cm("cfg", "{{.a}}"), cm("{{.extra}}", "x")),
            json!([{"key": "a", "value": "1", "type": "string"}, {"key": "extra", "value": "first-extra", "type": "string"}])).await;
        service("second", format!("{}---\n{}", cm("cfg", "7"), cm("{{.cm}}", "x")),
            json!([{"key": "cm", "value": "Bad_Name", "type": "string"}])).await;
        let add = |name: &str| json!({"env_key": "dev", "service_list": [{"service_name": name}]});
        app.post("/openapi/environments/service/yaml?projectKey=demo", add("first")).await.expect(200);
        let data = || async { emu.object("ConfigMap", "demo-dev", "cfg").await.map(|c| c["data"]["a"].clone()) };
        assert_eq!(data().await, Some(json!("1")));

        // `second` changes `cfg`, then one of its objects is refused: `cfg` is first's again.
        let r = app.post("/openapi/environments/service/yaml?projectKey=demo", add("second")).await;
        assert!(r.status.is_client_error(), "{}", r.text);
        assert_eq!(data().await, Some(json!("1")));

        // Re-rendered with values its second object refuses, `first` is put back as it was.
        let r = app.put("/openapi/environments/dev/services?projectKey=demo", json!({"service_list": [
            {"service_name": "first", "variable_kvs": [{"key": "a", "value": "2"}, {"key": "extra", "value": "Bad_Name"}]}]})).await;
        assert!(r.status.is_client_error(), "{}", r.text);
        assert_eq!(data().await, Some(json!("1")));
        assert!(emu.object("ConfigMap", "demo-dev", "first-extra").await.is_some());
        app.stop().await;
    }
}

backend_test! {
    /// An environment whose namespace was deleted behind its back (by hand, a cluster rebuilt)
    /// is repaired by its next change, as Zadig re-ensures the namespace (spec §5.7, §5.8 step
    /// 4): E18 and E6, test and production, make it again with Zadig's labels and apply into
    /// it; a change that then fails deletes the namespace it made; a namespace someone else
    /// made meanwhile is used as it is, never labelled.
    async fn a_deleted_namespace_is_made_again_by_the_next_change(app) {
        let Some((emu, cluster)) = emulated_project(&app, true).await else { return };
        let extra = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  a: \"1\"\n";
        for group in ["", "/production"] {
            app.post(&format!("/openapi/service/yaml{group}/raw?projectKey=demo"),
                json!({"service_name": "extra", "yaml": extra})).await.expect(200);
        }
        for (group, env, ns) in [("", "dev", "demo-dev"), ("/production", "prod", "demo-prod")] {
            let services = format!("/openapi/environments{group}/{env}/services?projectKey=demo");
            let add = format!("/openapi/environments{group}/service/yaml?projectKey=demo");
            let replicas = |n: &str| json!({"service_list": [{"service_name": "shop",
                "variable_kvs": [{"key": "replicas", "value": n}]}]});
            app.post(&format!("/openapi/environments{group}?projectKey=demo"),
                json!({"env_key": env, "cluster_id": cluster, "namespace": ns})).await.expect(200);
            app.post(&add, json!({"env_key": env, "service_list": [{"service_name": "shop"}]})).await.expect(200);
            delete_namespace_by_hand(&app, &emu, ns).await;

            // E18: the namespace is back, labelled as at creation, with every object.
            app.put(&services, replicas("2")).await.expect(200);
            let made = emu.object("Namespace", "", ns).await.expect("namespace made again");
            assert_eq!(made["metadata"]["labels"]["createdBy"], "koderover", "{made}");
            assert_eq!(made["metadata"]["labels"]["s-product"], "demo", "{made}");
            assert_eq!(emu.object("Deployment", ns, "web").await.expect("web")["spec"]["replicas"], 2);
            assert!(emu.object("StatefulSet", ns, "cache").await.is_some());
            assert!(emu.object("Service", ns, "web").await.is_some());
            wait_running(&app, &format!("/openapi/environments{group}/{env}?projectKey=demo")).await;

            // E6 likewise.
            delete_namespace_by_hand(&app, &emu, ns).await;
            app.post(&add, json!({"env_key": env, "service_list": [{"service_name": "extra"}]})).await.expect(200);
            assert!(emu.object("Namespace", "", ns).await.is_some());
            assert!(emu.object("ConfigMap", ns, "extra").await.is_some());

            // A change that fails deletes the namespace it made: the cluster is as it found it.
            delete_namespace_by_hand(&app, &emu, ns).await;
            app.put(&services, replicas("[oops")).await.expect_error(400, "shop");
            app.wait_for("the namespace made to go again", LIMIT, || async {
                emu.object("Namespace", "", ns).await.is_none().then_some(())
            }).await;

            // A namespace someone else made meanwhile is used, never labelled nor taken over.
            let theirs = json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"owner": "someone"}}});
            let status = emu.api_with(reqwest::Method::POST, "/api/v1/namespaces", Some(theirs)).await;
            assert_eq!(status, 201);
            app.put(&services, replicas("1")).await.expect(200);
            let labels = emu.object("Namespace", "", ns).await.unwrap()["metadata"]["labels"].clone();
            assert_eq!(labels["owner"], "someone", "{labels}");
            assert!(labels["createdBy"].is_null() && labels["s-product"].is_null(), "{labels}");
            assert_eq!(emu.object("Deployment", ns, "web").await.expect("web")["spec"]["replicas"], 1);
        }
    }
}
