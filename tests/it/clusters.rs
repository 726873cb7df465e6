//! Clusters (`/openapi/system/cluster`, spec/environments.md §3) on both backends: register
//! by kubeconfig (never shown again), list in Zadig's shape, update, delete; kubeconfigs that
//! would run commands or read the server's files are refused; an unreachable cluster is a 409
//! naming it on the route that needed it and nothing is stored; a changed cluster gets a new
//! client.

use serde_json::{Value, json};

use crate::backend_test;
use crate::harness::TestApp;
use crate::kube_emulator::Emulator;
use crate::projects::create_project;

/// A kubeconfig for `server` with a bearer token.
pub fn kubeconfig(server: &str, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: {server}
    insecure-skip-tls-verify: true
users:
- name: u
  user:
    token: {token}
contexts:
- name: ctx
  context:
    cluster: c
    user: u
current-context: ctx
"
    )
}

/// A port nobody listens on.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Register cluster `name` with `kube_config`; its id.
pub async fn add_cluster(app: &TestApp, name: &str, kube_config: &str) -> String {
    let r = app
        .post(
            "/openapi/system/cluster",
            json!({"name": name, "description": "d", "type": "kubeconfig", "kube_config": kube_config,
                "project_names": ["demo"]}),
        )
        .await;
    r.expect(200)["cluster"]["cluster_id"]
        .as_str()
        .unwrap()
        .to_string()
}

backend_test! {
    async fn register_list_update_delete(app) {
        let kc = kubeconfig("https://127.0.0.1:9", "MARKER-token-never-shown");
        let r = app.post("/openapi/system/cluster", json!({"name": "prod-1", "description": "first", "provider": 4,
            "type": "kubeconfig", "kube_config": kc, "project_names": ["demo"]})).await;
        let b = r.expect(200).clone();
        assert!(!r.text.contains("MARKER-token"), "{}", r.text);
        let id = b["cluster"]["cluster_id"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 24);
        assert_eq!(b["agent_cmd"], "");
        let list = app.get("/openapi/system/cluster").await;
        assert!(!list.text.contains("MARKER-token"), "{}", list.text);
        let mut c = list.expect(200)[0].clone();
        assert!(c["created_time"].as_i64().unwrap() > 0);
        c["created_time"] = json!(0);
        assert_eq!(c, json!({"cluster_id": id, "name": "prod-1", "production": false, "description": "first",
            "provider": 4, "provider_name": "Amazon EKS", "created_by": "admin(openAPI)", "created_time": 0,
            "local": false, "status": "normal", "type": "kubeconfig", "project_names": ["demo"]}));
        assert_eq!(app.get("/openapi/system/cluster?projectName=demo").await.expect(200).as_array().unwrap().len(), 1);
        assert_eq!(app.get("/openapi/system/cluster?projectName=other").await.expect(200), &json!([]));

        // Duplicate name: 409 with Zadig's code.
        let r = app.post("/openapi/system/cluster", json!({"name": "prod-1", "type": "kubeconfig", "kube_config": kc})).await;
        assert_eq!(r.expect_error(409, "prod-1")["code"], 6641);

        // Update: name and projects; the kubeconfig is kept when absent.
        app.put(&format!("/openapi/system/cluster/{id}"), json!({"name": "prod-2", "description": "x", "project_names": []}))
            .await.expect(200);
        let c = app.get("/openapi/system/cluster").await.expect(200)[0].clone();
        assert_eq!((c["name"].as_str(), c["project_names"].clone()), (Some("prod-2"), json!([])));
        let stored = app.state().clusters.store.get(&id).await.unwrap().unwrap();
        assert_eq!(stored.kube_config, kc);
        let other = app.post("/openapi/system/cluster", json!({"name": "other", "type": "kubeconfig", "kube_config": kc}))
            .await.expect(200)["cluster"]["cluster_id"].as_str().unwrap().to_string();
        let r = app.put(&format!("/openapi/system/cluster/{other}"), json!({"name": "prod-2"})).await;
        assert_eq!(r.expect_error(409, "prod-2")["code"], 6642);
        let r = app.put("/openapi/system/cluster/0123456789abcdef00000000", json!({"name": "x"})).await;
        assert_eq!(r.expect_error(404, "0123456789abcdef00000000")["code"], 6643);

        // Delete.
        app.delete(&format!("/openapi/system/cluster/{other}")).await.expect(200);
        let r = app.delete(&format!("/openapi/system/cluster/{other}")).await;
        assert_eq!(r.expect_error(404, &other)["code"], 6643);
        assert_eq!(app.get("/openapi/system/cluster").await.expect(200).as_array().unwrap().len(), 1);
    }
}

backend_test! {
    async fn bad_clusters_are_a_400_naming_the_field(app) {
        let good = kubeconfig("https://127.0.0.1:9", "t");
        let with_user = |user: &str| good.replace("    token: t\n", user);
        let cases: Vec<(Value, &str)> = vec![
            (json!({"name": "", "kube_config": good}), "name"),
            (json!({"name": "bad name", "kube_config": good}), "name"),
            (json!({"name": "a".repeat(101), "kube_config": good}), "name"),
            (json!({"name": "c", "kube_config": good, "provider": 9}), "provider"),
            (json!({"name": "c", "type": "agent", "kube_config": good}), "agent"),
            (json!({"name": "c", "type": "local"}), "local cluster"),
            (json!({"name": "c", "type": "kubeconfig"}), "kube_config"),
            (json!({"name": "c", "kube_config": "not: [yaml"}), "kube_config"),
            (json!({"name": "c", "kube_config": "apiVersion: v1\nkind: Config\n"}), "kube_config"),
            (json!({"name": "c", "kube_config": with_user("    exec:\n      command: /bin/sh\n      apiVersion: client.authentication.k8s.io/v1\n")}), "exec"),
            (json!({"name": "c", "kube_config": with_user("    tokenFile: /etc/shadow\n")}), "tokenFile"),
            (json!({"name": "c", "kube_config": good.replace("    insecure-skip-tls-verify: true\n", "    certificate-authority: /etc/ssl/ca.pem\n")}), "certificate-authority"),
        ];
        for (body, needle) in cases {
            let r = app.post("/openapi/system/cluster", body.clone()).await;
            r.expect_error(400, needle);
        }
        assert_eq!(app.get("/openapi/system/cluster").await.expect(200), &json!([]));
    }
}

backend_test! {
    async fn an_unreachable_cluster_is_a_409_naming_it_and_nothing_is_stored(app) {
        create_project(&app, "demo").await;
        let dead = kubeconfig(&format!("https://127.0.0.1:{}", closed_port()), "t");
        let id = add_cluster(&app, "gone", &dead).await;
        let body = json!({"env_key": "dev", "cluster_id": id, "namespace": "demo-dev"});
        let r = app.post("/openapi/environments?projectKey=demo", body.clone()).await;
        assert_eq!(r.expect_error(409, "\"gone\"")["code"], 6074, "{}", r.text);
        assert!(r.body["description"].as_str().unwrap().contains("unreachable"), "{}", r.text);
        assert_eq!(app.get("/openapi/environments?projectKey=demo").await.expect(200), &json!([]));

        // An unknown cluster id is the body's fault.
        let r = app.post("/openapi/environments?projectKey=demo",
            json!({"env_key": "dev", "cluster_id": "0123456789abcdef00000000", "namespace": "demo-dev"})).await;
        r.expect_error(400, "cluster_id");

        // The local cluster exists only when the server runs in one: a 409 saying what lacks.
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
            let r = app.post("/openapi/environments?projectKey=demo",
                json!({"env_key": "dev", "cluster_id": "0123456789abcdef12345678", "namespace": "demo-dev"})).await;
            assert_eq!(r.expect_error(409, "KUBERNETES_SERVICE_HOST")["code"], 6074);
        }
        assert_eq!(app.get("/openapi/environments?projectKey=demo").await.expect(200), &json!([]));

        // The same cluster, pointed at a live API server: the client is rebuilt, the env made.
        let Some(emu) = Emulator::start().await else { return };
        app.put(&format!("/openapi/system/cluster/{id}"), json!({"name": "gone", "kube_config": emu.kubeconfig}))
            .await.expect(200);
        app.post("/openapi/environments?projectKey=demo", body).await.expect(200);
        assert!(emu.object("Namespace", "", "demo-dev").await.is_some());

        // A cluster in use cannot be unregistered.
        let r = app.delete(&format!("/openapi/system/cluster/{id}")).await;
        assert_eq!(r.expect_error(409, "demo/dev")["code"], 6644);
    }
}

backend_test! {
    /// Every environment route that reaches an unreachable cluster answers 409 with the route's
    /// Zadig code (6074 create, 6076 update, 6077 delete, 6078 detail, 6080 restart, 6081
    /// scale, 6082 image, 6083 service, 6153 pod) and changes nothing.
    async fn an_unreachable_cluster_answers_the_route_code(app) {
        use reqwest::Method;
        let Some(emu) = Emulator::start().await else { return };
        let id = crate::environments::seed_env(&app, &emu).await;
        crate::environments::apply_shop(&app, std::time::Duration::from_secs(60)).await;
        app.post("/openapi/service/yaml/raw?projectKey=demo", json!({"service_name": "extra",
            "yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  a: b\n"})).await.expect(200);
        let dead = kubeconfig(&format!("https://127.0.0.1:{}", closed_port()), "t");
        app.put(&format!("/openapi/system/cluster/{id}"), json!({"name": "emu", "kube_config": dead})).await.expect(200);

        let q = "?projectKey=demo";
        let cases: Vec<(Method, String, Option<Value>, i64)> = vec![
            (Method::GET, format!("/openapi/environments/dev{q}"), None, 6078),
            (Method::GET, format!("/openapi/environments/dev/services/shop{q}"), None, 6083),
            (Method::GET, format!("/openapi/environments/dev/service/shop/pods{q}"), None, 6083),
            (Method::POST, format!("/openapi/environments/dev/service/shop/restart{q}"), None, 6080),
            (Method::POST, format!("/openapi/environments/dev/pod/web-0/restart{q}"), None, 6153),
            (Method::POST, "/openapi/environments/scale".into(), Some(json!({"project_key": "demo", "env_key": "dev",
                "service_name": "shop", "workload_name": "web", "workload_type": "Deployment", "target_replicas": 3})), 6081),
            (Method::POST, "/openapi/environments/image/deployment/dev".into(), Some(json!({"product_name": "demo",
                "service_name": "shop", "name": "web", "container_name": "web", "image": "nginx:1.27"})), 6082),
            (Method::POST, format!("/openapi/environments/service/yaml{q}"),
                Some(json!({"env_key": "dev", "service_list": [{"service_name": "extra"}]})), 6076),
            (Method::PUT, format!("/openapi/environments/dev/services{q}"), Some(json!({"service_list": [
                {"service_name": "shop", "variable_kvs": [{"key": "replicas", "value": "2"}]}]})), 6076),
            (Method::DELETE, format!("/openapi/environments/service/yaml{q}"),
                Some(json!({"env_key": "dev", "service_names": ["shop"]})), 6076),
            (Method::POST, format!("/openapi/environments{q}"),
                Some(json!({"env_key": "qa", "cluster_id": id, "namespace": "demo-qa"})), 6074),
            (Method::DELETE, format!("/openapi/environments/dev{q}&isDelete=true"), None, 6077),
        ];
        for (method, path, body, code) in cases {
            let r = app.call(method.clone(), &path, Some(crate::harness::ADMIN_TOKEN), body).await;
            let e = r.expect_error(409, "\"emu\"");
            assert_eq!(e["code"], code, "{method} {path}: {}", r.text);
            assert!(e["description"].as_str().unwrap().contains("unreachable"), "{method} {path}: {}", r.text);
        }

        // Nothing changed: the environment is as it was once the cluster answers again.
        app.put(&format!("/openapi/system/cluster/{id}"), json!({"name": "emu", "kube_config": emu.kubeconfig}))
            .await.expect(200);
        let d = app.get(&format!("/openapi/environments/dev{q}")).await;
        let services = &d.expect(200)["services"];
        assert_eq!(services.as_array().unwrap().len(), 1, "{services}");
        assert_eq!(services[0]["containers"][0]["image"], "nginx:1.25");
        let dep = emu.object("Deployment", "demo-dev", "web").await.unwrap();
        assert_eq!(dep["spec"]["replicas"], 1);
        assert!(emu.object("ConfigMap", "demo-dev", "extra").await.is_none());
        let envs = app.get(&format!("/openapi/environments{q}")).await;
        assert_eq!(envs.expect(200).as_array().unwrap().len(), 1);
    }
}
