//! Projects (`/openapi/projects/project`, spec/environments.md §2) on both backends: the
//! Python CLI's calls in Zadig's shapes, create/init/detail/delete/global variables, honest
//! statuses.

use serde_json::{Value, json};

use crate::backend_test;
use crate::harness::{TestApp, assert_fields};
use crate::service_templates::two_workloads;

/// Create K8s YAML project `key` (display name `Project <key>`) as the admin.
pub async fn create_project(app: &TestApp, key: &str) {
    app.post(
        "/openapi/projects/project",
        json!({"project_name": format!("Project {key}"), "project_key": key, "is_public": true,
            "description": format!("about {key}"), "project_type": "yaml"}),
    )
    .await
    .expect(200);
}

backend_test! {
    async fn python_cli_lists_and_reads_projects(app) {
        // The CLI's first call works before any project exists.
        let r = app.get("/openapi/projects/project?pageNum=1&pageSize=20").await;
        assert_eq!(r.expect(200), &json!({"total": 0, "projects": []}));

        create_project(&app, "demo").await;
        app.clock.advance(std::time::Duration::from_secs(5));
        create_project(&app, "second").await;
        let r = app.get("/openapi/projects/project?pageNum=1&pageSize=20").await;
        let b = r.expect(200);
        assert_eq!(b["total"], 2);
        // Most recently updated first; Zadig's item keys exactly.
        assert_eq!(b["projects"][0], json!({"project_name": "Project second", "project_key": "second",
            "description": "about second", "deploy_type": "k8s"}));
        assert_eq!(b["projects"][1]["project_key"], "demo");
        let page2 = app.get("/openapi/projects/project?pageNum=2&pageSize=1").await;
        let page2 = page2.expect(200);
        assert_eq!(page2["total"], 2);
        assert_eq!(page2["projects"].as_array().unwrap().len(), 1);
        assert_eq!(page2["projects"][0]["project_key"], "demo");
        // Defaults, and the 400s Zadig answers with a storage error.
        assert_eq!(app.get("/openapi/projects/project").await.expect(200)["total"], 2);
        app.expect_paging_errors("/openapi/projects/project").await;

        let d = app.get("/openapi/projects/project/detail?projectKey=demo").await;
        let d = d.expect(200);
        assert_fields(d, json!({
            "project_name": "Project demo", "project_key": "demo", "is_public": true,
            "desc": "about demo", "deploy_type": "k8s", "created_by": "admin"
        }));
        assert!(d["create_time"].as_i64().unwrap() > 0);

        // A non-admin reads them too.
        let (_, bob) = app.create_user("bob", false).await;
        let r = app.call(reqwest::Method::GET, "/openapi/projects/project?pageNum=1&pageSize=20", Some(&bob), None).await;
        assert_eq!(r.expect(200)["total"], 2);

        app.get("/openapi/projects/project/detail?projectKey=nope").await.expect_error(404, "nope");
        app.get("/openapi/projects/project/detail").await.expect_error(400, "projectKey");
        app.stop().await;
    }
}

backend_test! {
    async fn create_checks_fields_and_duplicates(app) {
        let base = json!({"project_name": "Demo", "project_key": "demo", "is_public": false,
            "description": "", "project_type": "yaml"});
        let with = |k: &str, v: Value| { let mut b = base.clone(); b[k] = v; b };
        for (body, status, needle) in [
            (with("project_name", json!("")), 400, "project_name"),
            (with("project_key", json!("Demo_X")), 400, "project_key"),
            (with("project_key", json!("")), 400, "project_key"),
            (with("project_type", json!("weird")), 400, "project_type"),
            (with("project_type", json!("helm")), 400, "not supported"),
            (with("project_type", json!("vm")), 400, "project_type"),
            (with("is_public", json!("yes")), 400, "is_public"),
        ] {
            app.post("/openapi/projects/project", body.clone()).await.expect_error(status, needle);
        }
        app.post("/openapi/projects/project/init/helm", json!({})).await.expect_error(400, "Helm");
        assert_eq!(app.get("/openapi/projects/project").await.expect(200)["total"], 0);

        app.post("/openapi/projects/project", base.clone()).await.expect(200);
        let r = app.post("/openapi/projects/project", with("project_name", json!("Other"))).await;
        assert_eq!(r.expect_error(409, "project_key")["code"], 6060);
        let r = app.post("/openapi/projects/project", with("project_key", json!("other"))).await;
        assert_eq!(r.expect_error(409, "project_name")["code"], 6060);

        let g = app.get("/openapi/projects/project/globalVariable?projectKey=demo").await;
        assert_eq!(g.expect(200), &json!({"variables": [], "production_variables": []}));
        app.get("/openapi/projects/project/globalVariable?projectKey=nope").await.expect_error(404, "nope");
        app.stop().await;
    }
}

backend_test! {
    async fn init_yaml_creates_the_project_and_its_services(app) {
        let body = json!({"project_name": "Shop", "project_key": "shop", "is_public": true, "description": "d",
            "service_list": [
                {"source": "yaml", "service_name": "web", "yaml": two_workloads("web"),
                 "variable_yaml": [{"key": "replicas", "value": "2"}]},
                {"source": "yaml", "service_name": "db", "yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: db\n"}],
            "env_list": []});
        // Nothing is stored when one service is bad.
        let mut bad = body.clone();
        bad["service_list"][1]["yaml"] = json!("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [\n");
        app.post("/openapi/projects/project/init/yaml", bad).await.expect_error(400, "service_list[1].yaml");
        let mut tpl = body.clone();
        tpl["service_list"][0]["source"] = json!("template");
        app.post("/openapi/projects/project/init/yaml", tpl).await.expect_error(400, "service_list[0].source");
        let mut envs = body.clone();
        envs["env_list"] = json!([{"env_key": "dev", "cluster_name": "local", "namespace": "shop-dev"}]);
        app.post("/openapi/projects/project/init/yaml", envs).await.expect_error(400, "env_list");
        let mut none = body.clone();
        none["service_list"] = json!([]);
        app.post("/openapi/projects/project/init/yaml", none).await.expect_error(400, "service_list");
        app.get("/openapi/projects/project/detail?projectKey=shop").await.expect(404);

        app.post("/openapi/projects/project/init/yaml", body).await.expect(200);
        app.get("/openapi/projects/project/detail?projectKey=shop").await.expect(200);
        let list = app.get("/openapi/service/yaml/services?projectKey=shop").await;
        let names: Vec<&str> = list.expect(200).as_array().unwrap().iter().map(|s| s["service_name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["db", "web"]);
        let web = app.get("/openapi/service/yaml/web?projectKey=shop").await;
        assert_eq!(web.expect(200)["service_variable_kvs"][0], json!({"key": "replicas", "value": "2",
            "type": "string", "options": [], "desc": ""}));
        let p = zadig_server::project::get(app.state(), "shop").await.unwrap().unwrap();
        assert_eq!(p.services, vec![vec!["web".to_string(), "db".to_string()]]);
        app.stop().await;
    }
}

backend_test! {
    async fn delete_removes_the_project_and_its_services(app) {
        create_project(&app, "demo").await;
        app.post("/openapi/service/yaml/raw?projectKey=demo", json!({"service_name": "web", "yaml": two_workloads("web")})).await.expect(200);
        app.post("/openapi/service/yaml/production/raw?projectKey=demo", json!({"service_name": "web", "yaml": two_workloads("web")})).await.expect(200);
        app.delete("/openapi/projects/project?projectKey=demo&isDelete=maybe").await.expect_error(400, "isDelete");
        app.delete("/openapi/projects/project?projectKey=nope&isDelete=false").await.expect_error(404, "nope");
        app.delete("/openapi/projects/project").await.expect_error(400, "projectKey");
        app.delete("/openapi/projects/project?projectKey=demo&isDelete=true").await.expect(200);
        app.get("/openapi/projects/project/detail?projectKey=demo").await.expect(404);
        assert!(zadig_server::service_template::list(app.state(), "demo", false).await.unwrap().is_empty());
        assert!(zadig_server::service_template::list(app.state(), "demo", true).await.unwrap().is_empty());
        // The key is free again, and a new project starts without the old services.
        create_project(&app, "demo").await;
        assert_eq!(app.get("/openapi/service/yaml/services?projectKey=demo").await.expect(200), &json!([]));
        // Other areas still accept keys that are no project (DESIGN §5).
        app.get("/openapi/workflows?projectKey=no-such-project").await.expect(200);
        app.stop().await;
    }
}
