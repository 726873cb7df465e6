//! `zadig_server::build::resolve_for_job`: the contract with the workflow engine. Builds are
//! created through the API, then resolved the way a zadig-build job does.

use serde_json::json;
use zadig_server::build::resolve_for_job;

use crate::backend_test;
use crate::build::{demo_template, seed_build, seed_template_build};

backend_test! {
    async fn recipe_of_a_normal_build(app) {
        app.post("/openapi/build?projectKey=yaml", seed_build()).await.expect(200);
        let r = resolve_for_job(app.state(), "yaml", "api-test", "service1", "service1").await.unwrap();
        assert_eq!(r.build_name, "api-test");
        assert_eq!(r.script, seed_build()["build_script"].as_str().unwrap());
        assert_eq!(r.script_type, "shell");
        assert_eq!(r.infrastructure, "kubernetes");
        assert_eq!(r.build_os, "ubuntu 20.04");
        assert_eq!(r.installs, vec![("go".to_string(), "1.20.7".to_string())]);
        assert_eq!(r.timeout_minutes, 30);
        assert_eq!(r.outputs, vec!["bb".to_string()]);
        assert_eq!(r.template_name, "");
        // Values in clear, credentials included; a multi-select is its selection joined by `,`.
        let vars: Vec<(&str, &str, bool)> = r.vars.iter().map(|v| (v.key.as_str(), v.value.as_str(), v.is_credential)).collect();
        assert_eq!(vars, vec![("aa", "a,b", false), ("bb", "abc123", true)]);
        assert_eq!(r.repos.len(), 1);
        assert_eq!(r.repos[0]["repo_name"], "multi-service-demo");
        assert_eq!(r.repos[0]["repo_owner"], "kr-test-org1");
        assert_eq!(r.repos[0]["branch"], "main");
        assert_eq!(r.repos[0]["codehost_name"], "gitlab");
        let docker = r.docker_build.expect("image step");
        assert_eq!(docker.docker_file, "$REPONAME_0/Dockerfile");
        assert_eq!(docker.work_dir, "$REPONAME_0");

        // A build without advanced settings gets the default timeout.
        app.post("/openapi/build", json!({
            "name": "plain", "project_key": "yaml", "build_script": "echo hi",
            "services": [{"service_name": "s", "service_module": "m"}]
        })).await.expect(200);
        let r = resolve_for_job(app.state(), "yaml", "plain", "s", "m").await.unwrap();
        assert_eq!(r.timeout_minutes, 60);
        assert!(r.outputs.is_empty() && r.repos.is_empty() && r.vars.is_empty() && r.docker_build.is_none());

        // Unknown build, or a build of another project → 404.
        let e = resolve_for_job(app.state(), "yaml", "nope", "s", "m").await.unwrap_err();
        assert_eq!(e.status().as_u16(), 404);
        let e = resolve_for_job(app.state(), "other", "api-test", "s", "m").await.unwrap_err();
        assert_eq!(e.status().as_u16(), 404);
        app.stop().await;
    }
}

backend_test! {
    async fn recipe_of_a_template_build(app) {
        app.post("/openapi/templates/build", demo_template()).await.expect(200);
        let mut body = seed_template_build();
        body["target_services"].as_array_mut().unwrap().push(json!({
            "service_name": "zadigx", "service_module": "portal",
            "repo_info": [{"codehost_name": "github-demo", "repo_namespace": "kr", "repo_name": "portal", "branch": "dev"}],
            "inputs": [{"key": "level", "value": "high"}, {"key": "undeclared", "value": "dropped"}]
        }));
        app.post("/openapi/build?source=template", body).await.expect(200);

        let r = resolve_for_job(app.state(), "demo", "demo-build", "zadigx", "aslan").await.unwrap();
        assert_eq!(r.template_name, "demo-template");
        assert_eq!(r.script, demo_template()["scripts"].as_str().unwrap());
        assert_eq!(r.timeout_minutes, 45);
        assert_eq!(r.build_os, "ubuntu 22.04");
        assert_eq!(r.outputs, vec!["VERSION".to_string()]);
        assert_eq!(r.repos[0]["repo_name"], "zadig");
        let vars: Vec<(&str, &str, bool)> = r.vars.iter().map(|v| (v.key.as_str(), v.value.as_str(), v.is_credential)).collect();
        assert_eq!(vars, vec![("name", "admin", false), ("password", "zadigx", true), ("level", "low", false)]);

        // The other service: its own repos; inputs merged over the template's defaults, keys the
        // template does not define dropped (spec/build.md §6.1).
        let r = resolve_for_job(app.state(), "demo", "demo-build", "zadigx", "portal").await.unwrap();
        assert_eq!(r.repos[0]["repo_name"], "portal");
        assert_eq!(r.repos[0]["branch"], "dev");
        let vars: Vec<(&str, &str)> = r.vars.iter().map(|v| (v.key.as_str(), v.value.as_str())).collect();
        assert_eq!(vars, vec![("name", "guest"), ("password", "secret0"), ("level", "high")]);

        // A variable added to the template later reaches the build with its default.
        let mut tpl = demo_template();
        tpl["pre_build"]["envs"].as_array_mut().unwrap().push(json!({"key": "extra", "value": "x1"}));
        tpl["pre_build"]["envs"][1]["value"] = json!("********");
        app.put("/openapi/templates/build/demo-template", tpl).await.expect(200);
        let r = resolve_for_job(app.state(), "demo", "demo-build", "zadigx", "portal").await.unwrap();
        let vars: Vec<(&str, &str)> = r.vars.iter().map(|v| (v.key.as_str(), v.value.as_str())).collect();
        assert_eq!(vars, vec![("name", "guest"), ("password", "secret0"), ("level", "high"), ("extra", "x1")]);
        app.stop().await;
    }
}
