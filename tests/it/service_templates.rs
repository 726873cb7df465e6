//! K8s YAML services (`/openapi/service/yaml`, spec/environments.md §4) and their production
//! variants, on both backends: containers read from the workloads, revisions, variables,
//! rendering through the API the environments use, 400s naming the field and document.

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_test;
use crate::harness::assert_fields;
use crate::projects::create_project;

/// A service of two workloads: a Deployment (an init container and a container whose image is
/// a variable) and a StatefulSet, with a Service between them.
pub fn two_workloads(name: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {{{{.replicas}}}}
  template:
    spec:
      initContainers:
      - name: {name}-init
        image: busybox:1.36
      containers:
      - name: {name}
        image: {{{{.image}}}}
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  ports:
  - port: {{{{.port}}}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {name}-cache
spec:
  template:
    spec:
      containers:
      - name: cache
        image: registry.example.com/lib/redis:7.2
"
    )
}

fn create_body(name: &str) -> Value {
    json!({"service_name": name, "yaml": two_workloads(name), "production": true,
        "variable_yaml": [{"key": "image", "value": "registry.example.com/team/web:1.0", "type": "string",
            "options": [], "desc": "the web image"}]})
}

backend_test! {
    async fn create_list_detail_update_delete(app) {
        create_project(&app, "demo").await;
        let r = app.post("/openapi/service/yaml/raw?projectKey=demo", create_body("web")).await;
        assert_eq!(r.expect(200), &json!({"message": "success"}));
        let r = app.post("/openapi/service/yaml/raw?projectKey=demo", create_body("web")).await;
        assert_eq!(r.expect_error(409, "web")["code"], 6040);

        let list = app.get("/openapi/service/yaml/services?projectKey=demo").await;
        assert_eq!(list.expect(200), &json!([{"service_name": "web", "source": "spock", "type": "k8s", "containers": [
            {"name": "web-init", "image": "busybox:1.36", "image_name": "busybox"},
            {"name": "web", "image": "registry.example.com/team/web:1.0", "image_name": "web"},
            {"name": "cache", "image": "registry.example.com/lib/redis:7.2", "image_name": "redis"}]}]));

        let d = app.get("/openapi/service/yaml/web?projectKey=demo").await;
        let d = d.expect(200).clone();
        assert_fields(&d, json!({
            "service_name": "web", "source": "spock", "type": "k8s", "template_name": "",
            "created_by": "admin", "yaml": two_workloads("web"), "revision": 1
        }));
        assert_eq!(d["containers"][0], json!({"name": "web-init", "type": "init", "image": "busybox:1.36", "image_name": "busybox"}));
        assert_eq!(d["containers"][1]["type"], "");
        // The caller's variable first, then the keys the YAML uses, in first-use order.
        let kvs = d["service_variable_kvs"].as_array().unwrap();
        let keys: Vec<&str> = kvs.iter().map(|k| k["key"].as_str().unwrap()).collect();
        assert_eq!(keys, vec!["image", "replicas", "port"]);
        assert_eq!(kvs[0]["desc"], "the web image");
        assert_eq!(kvs[1], json!({"key": "replicas", "value": "", "type": "string", "options": [], "desc": ""}));

        // Variables: values of stored keys change in place; unknown keys are ignored.
        let r = app.put("/openapi/service/yaml/web/variable?projectKey=demo", json!({"service_variable_kvs": [
            {"key": "replicas", "value": 3, "type": "string"}, {"key": "port", "value": "8080"},
            {"key": "image", "value": "registry.example.com/team/web:2.0"}, {"key": "ghost", "value": "x"}]})).await;
        r.expect(200);
        let d = app.get("/openapi/service/yaml/web?projectKey=demo").await;
        let d = d.expect(200).clone();
        assert_eq!(d["revision"], 1, "variables change the revision in place");
        assert_eq!(d["containers"][1]["image"], "registry.example.com/team/web:2.0");
        assert_eq!(d["service_variable_kvs"].as_array().unwrap().len(), 3);

        // What an environment applies: strict rendering, one object per document.
        let t = zadig_server::service_template::get(app.state(), "demo", "web", false).await.unwrap().unwrap();
        let objs = zadig_server::service_template::render(&t, &[]).unwrap();
        assert_eq!(objs.len(), 3);
        assert_eq!(objs[0]["spec"]["replicas"], 3);
        assert_eq!(objs[0]["spec"]["template"]["spec"]["containers"][0]["image"], "registry.example.com/team/web:2.0");
        assert_eq!(objs[1]["spec"]["ports"][0]["port"], 8080);
        assert_eq!(objs[2]["kind"], "StatefulSet");
        let over: Vec<zadig_server::service_template::ServiceVariableKV> = serde_json::from_value(json!([{"key": "replicas", "value": "5"}])).unwrap();
        let objs = zadig_server::service_template::render(&t, &over).unwrap();
        assert_eq!(objs[0]["spec"]["replicas"], 5);

        // New YAML: a new revision; old variables kept, new keys added.
        let yaml = format!("{}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-config\ndata:\n  level: \"{{{{.log_level}}}}\"\n", two_workloads("web"));
        app.put("/openapi/service/yaml/web?projectKey=demo", json!({"type": "k8s", "yaml": yaml})).await.expect(200);
        let d = app.get("/openapi/service/yaml/web?projectKey=demo").await;
        let d = d.expect(200).clone();
        assert_eq!(d["revision"], 2);
        assert_eq!(d["yaml"], yaml);
        let keys: Vec<&str> = d["service_variable_kvs"].as_array().unwrap().iter().map(|k| k["key"].as_str().unwrap()).collect();
        assert_eq!(keys, vec!["image", "replicas", "port", "log_level"]);
        assert_eq!(d["service_variable_kvs"][1]["value"], 3);
        let list = app.get("/openapi/service/yaml/services?projectKey=demo").await;
        assert_eq!(list.expect(200).as_array().unwrap().len(), 1, "one item per service, not per revision");
        let first = zadig_server::service_template::get_revision(app.state(), "demo", "web", false, 1).await.unwrap().unwrap();
        assert_eq!(first.yaml, two_workloads("web"));

        // Delete: gone from list and detail, an environment's revision stays readable.
        app.delete("/openapi/service/yaml/web?projectKey=demo").await.expect(200);
        app.get("/openapi/service/yaml/web?projectKey=demo").await.expect_error(404, "web");
        assert_eq!(app.get("/openapi/service/yaml/services?projectKey=demo").await.expect(200), &json!([]));
        app.delete("/openapi/service/yaml/web?projectKey=demo").await.expect_error(404, "web");
        assert!(zadig_server::service_template::get_revision(app.state(), "demo", "web", false, 2).await.unwrap().is_some());
        let p = zadig_server::project::get(app.state(), "demo").await.unwrap().unwrap();
        assert!(p.services.is_empty(), "{:?}", p.services);
        // Created again: the next revision.
        app.post("/openapi/service/yaml/raw?projectKey=demo", create_body("web")).await.expect(200);
        assert_eq!(app.get("/openapi/service/yaml/web?projectKey=demo").await.expect(200)["revision"], 3);
        app.stop().await;
    }
}

backend_test! {
    async fn production_services_are_separate(app) {
        create_project(&app, "demo").await;
        app.post("/openapi/service/yaml/production/raw?projectKey=demo", create_body("web")).await.expect(200);
        assert_eq!(app.get("/openapi/service/yaml/services?projectKey=demo").await.expect(200), &json!([]));
        let list = app.get("/openapi/service/yaml/production/services?projectKey=demo").await;
        assert_eq!(list.expect(200).as_array().unwrap().len(), 1);
        app.get("/openapi/service/yaml/web?projectKey=demo").await.expect(404);
        let d = app.get("/openapi/service/yaml/production/web?projectKey=demo").await;
        assert_eq!(d.expect(200)["production"], true);
        // The same name as a test service is another service.
        app.post("/openapi/service/yaml/raw?projectKey=demo", create_body("web")).await.expect(200);
        app.put("/openapi/service/yaml/production/web?projectKey=demo",
            json!({"type": "k8s", "yaml": two_workloads("web").replace("redis:7.2", "redis:7.4")})).await.expect(200);
        app.put("/openapi/service/yaml/production/web/variable?projectKey=demo",
            json!({"service_variable_kvs": [{"key": "port", "value": "80"}]})).await.expect(200);
        let d = app.get("/openapi/service/yaml/production/web?projectKey=demo").await;
        let d = d.expect(200).clone();
        assert_eq!(d["revision"], 2);
        assert_eq!(d["containers"][2]["image"], "registry.example.com/lib/redis:7.4");
        let t = app.get("/openapi/service/yaml/web?projectKey=demo").await;
        assert_eq!(t.expect(200)["containers"][2]["image"], "registry.example.com/lib/redis:7.2");
        let p = zadig_server::project::get(app.state(), "demo").await.unwrap().unwrap();
        assert_eq!(p.production_services, vec![vec!["web".to_string()]]);
        assert_eq!(p.services, vec![vec!["web".to_string()]]);
        app.delete("/openapi/service/yaml/production/web?projectKey=demo").await.expect(200);
        app.get("/openapi/service/yaml/production/web?projectKey=demo").await.expect(404);
        app.get("/openapi/service/yaml/web?projectKey=demo").await.expect(200);
        app.stop().await;
    }
}

backend_test! {
    async fn bad_input_is_a_400_naming_the_field(app) {
        create_project(&app, "demo").await;
        let raw = "/openapi/service/yaml/raw?projectKey=demo";
        let with = |k: &str, v: Value| { let mut b = create_body("web"); b[k] = v; b };
        let cases = [
            (with("service_name", json!("")), "service_name"),
            (with("service_name", json!("bad name")), "service_name"),
            (with("yaml", json!("")), "yaml"),
            (with("yaml", json!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\nkind: [\n")), "document 2 (line 6)"),
            (with("yaml", json!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nmetadata:\n  name: b\n")), "`kind` is required"),
            (with("yaml", json!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {}\n")), "metadata.name"),
            (with("yaml", json!("a: {{ .x\n")), "line 1"),
            (with("yaml", json!("{{if .x}}\napiVersion: v1\n")), "end"),
            (with("yaml", json!("{{ printf \"%s\" .x }}")), "printf"),
            (with("yaml", json!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  template:\n    spec:\n      containers:\n      - name: d\n")),
                "spec.template.spec.containers[0].image"),
            (with("variable_yaml", json!([{"key": "", "value": "1"}])), "variable_yaml[0].key"),
            (with("variable_yaml", json!([{"key": "on", "value": "maybe", "type": "bool"}])), "variable_yaml[0].value"),
            (with("variable_yaml", json!([{"key": "e", "value": "c", "type": "enum", "options": ["a", "b"]}])), "options: [a b]"),
            (with("variable_yaml", json!([{"key": "x", "value": "1", "type": "number"}])), "variable_yaml[0].type"),
            (with("variable_yaml", json!("image: x")), "variable_yaml"),
            // A value of the wrong type names the field inside the item.
            (with("variable_yaml", json!([{"key": 5, "value": "1"}])), "field `variable_yaml[0].key`"),
            (with("variable_yaml", json!([{"key": "e", "options": "a"}])), "field `variable_yaml[0].options`"),
            (with("variable_yaml", json!([{"key": "e", "options": [1]}])), "field `variable_yaml[0].options[0]`"),
        ];
        for (body, needle) in cases {
            let r = app.post(raw, body.clone()).await;
            r.expect_error(400, needle);
        }
        app.raw(Method::POST, raw, "{\"service_name\": ").await.expect_error(400, "JSON");
        app.post("/openapi/service/yaml/raw", create_body("web")).await.expect_error(400, "projectKey");
        // Unknown project: 404 (Zadig stores an orphan service).
        app.post("/openapi/service/yaml/raw?projectKey=nope", create_body("web")).await.expect_error(404, "nope");
        app.get("/openapi/service/yaml/services?projectKey=nope").await.expect_error(404, "nope");
        app.get("/openapi/service/yaml/web?projectKey=nope").await.expect_error(404, "nope");
        assert_eq!(app.get("/openapi/service/yaml/services?projectKey=demo").await.expect(200), &json!([]));

        app.post(raw, create_body("web")).await.expect(200);
        let put = "/openapi/service/yaml/web?projectKey=demo";
        app.put(put, json!({"yaml": two_workloads("web")})).await.expect_error(400, "type");
        app.put(put, json!({"type": "helm", "yaml": two_workloads("web")})).await.expect_error(400, "type");
        app.put(put, json!({"type": "k8s", "yaml": ""})).await.expect_error(400, "yaml");
        app.put(put, json!({"type": "k8s", "yaml": "kind: [\n"})).await.expect_error(400, "document 1 (line 1)");
        app.put("/openapi/service/yaml/ghost?projectKey=demo", json!({"type": "k8s", "yaml": two_workloads("ghost")})).await.expect_error(404, "ghost");
        let var = "/openapi/service/yaml/web/variable?projectKey=demo";
        app.put(var, json!({})).await.expect_error(400, "service_variable_kvs");
        app.put(var, json!({"service_variable_kvs": [{"key": "replicas", "value": "x", "type": "bool"}]})).await.expect_error(400, "service_variable_kvs[0].value");
        for (kv, field) in [(json!({"key": {"a": 1}}), "[0].key"), (json!({"key": "k", "options": [true]}), "[0].options[0]")] {
            for var in [var, "/openapi/service/yaml/production/web/variable?projectKey=demo"] {
                app.put(var, json!({"service_variable_kvs": [kv]})).await
                    .expect_error(400, &format!("field `service_variable_kvs{field}`"));
            }
        }
        // A value that breaks the rendered YAML is refused, naming the document.
        app.put(var, json!({"service_variable_kvs": [{"key": "replicas", "value": "[unclosed"}]})).await.expect_error(400, "document 1");
        app.put("/openapi/service/yaml/ghost/variable?projectKey=demo", json!({"service_variable_kvs": []})).await.expect_error(404, "ghost");
        let d = app.get("/openapi/service/yaml/web?projectKey=demo").await;
        assert_eq!(d.expect(200)["revision"], 1, "refused updates stored nothing");
        app.stop().await;
    }
}

backend_test! {
    async fn concurrent_creates_store_one_service(app) {
        create_project(&app, "demo").await;
        let raw = "/openapi/service/yaml/raw?projectKey=demo";
        let (a, b, c, d) = tokio::join!(
            app.post(raw, create_body("web")),
            app.post(raw, create_body("web")),
            app.post(raw, create_body("web")),
            app.post(raw, create_body("web")),
        );
        let statuses: Vec<u16> = [a, b, c, d].iter().map(|r| r.status.as_u16()).collect();
        // Usually one 200 and three 409s; two creates whose revisions are stored out of counter
        // order may both succeed (then the later one is a second revision of the same service).
        assert!(statuses.contains(&200), "{statuses:?}");
        assert!(statuses.iter().all(|s| *s == 200 || *s == 409), "{statuses:?}");
        let list = app.get("/openapi/service/yaml/services?projectKey=demo").await;
        assert_eq!(list.expect(200).as_array().unwrap().len(), 1);
        app.stop().await;
    }
}
