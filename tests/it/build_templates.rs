//! Build templates (`/openapi/templates/build`, our extension; Zadig's template document of
//! spec/build.md §3.7), on both backends.

use serde_json::json;

use crate::backend_test;
use crate::build::{Mutation, demo_template, seed_build};
use crate::harness::assert_fields;

backend_test! {
    async fn template_crud(app) {
        let r = app.post("/openapi/templates/build", demo_template()).await;
        assert_eq!(r.expect(200), &json!({"message": "success"}));
        app.post("/openapi/templates/build", demo_template()).await.expect_error(409, "demo-template");

        let t = app.get("/openapi/templates/build/demo-template").await;
        let t = t.expect(200).clone();
        assert_eq!(t["id"].as_str().unwrap().len(), 24);
        assert_fields(&t, json!({
            "name": "demo-template", "script_type": "shell", "scripts": demo_template()["scripts"],
            "infrastructure": "kubernetes", "timeout": 45, "update_by": "admin"
        }));
        assert_eq!(t["pre_build"]["build_os"], "ubuntu 22.04");
        assert_eq!(t["pre_build"]["installs"], json!([{"name": "go", "version": "1.22"}]));
        let envs = t["pre_build"]["envs"].as_array().unwrap();
        assert_eq!(envs.len(), 3);
        assert_eq!(envs[0]["key"], "name");
        assert_eq!(envs[0]["value"], "guest");
        assert_eq!(envs[1]["is_credential"], true);
        assert_eq!(envs[1]["value"], "********");
        assert!(!app.get("/openapi/templates/build/demo-template").await.text.contains("secret0"));
        let outs: Vec<&str> = t["outputs"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
        assert_eq!(outs, vec!["IMAGE", "PKG_FILE", "VERSION"]);
        assert!(t.get("version").is_none() && t.get("deleting_until_ms").is_none(), "internal fields leaked: {t}");

        // A second template, in the seed's build form (the newest Zadig OpenAPI template input).
        let mut seedish = seed_build();
        let obj = seedish.as_object_mut().unwrap();
        for k in ["project_key", "repo_info", "services"] {
            obj.remove(k);
        }
        obj.insert("name".into(), json!("seed-form"));
        app.post("/openapi/templates/build", seedish).await.expect(200);
        let s = app.get("/openapi/templates/build/seed-form").await;
        let s = s.expect(200).clone();
        assert_eq!(s["scripts"], seed_build()["build_script"]);
        assert_eq!(s["timeout"], 30);
        assert_eq!(s["pre_build"]["build_os"], "ubuntu 20.04");
        assert_eq!(s["pre_build"]["cluster_name"], "local-20250523164625");
        assert_eq!(s["pre_build"]["envs"][0]["key"], "aa");
        assert_eq!(s["pre_build"]["envs"][1]["value"], "********");
        assert_eq!(s["post_build"]["docker_build"]["docker_file"], "$REPONAME_0/Dockerfile");
        assert_eq!(s["cache_enable"], true);
        assert_eq!(s["cache_user_dir"], "$WORKSPACE");

        let list = app.get("/openapi/templates/build").await;
        let list = list.expect(200);
        assert_eq!(list["total"], 2);
        let names: Vec<&str> = list["build_templates"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&"demo-template") && names.contains(&"seed-form"));
        for k in ["id", "name", "infrastructure", "update_time", "update_by"] {
            assert!(list["build_templates"][0].get(k).is_some(), "{k} missing");
        }
        let one = app.get("/openapi/templates/build?pageNum=2&pageSize=1").await;
        assert_eq!(one.expect(200)["build_templates"].as_array().unwrap().len(), 1);
        app.expect_paging_errors("/openapi/templates/build").await;

        // PUT replaces the document; the masked credential sent back keeps its value.
        let mut upd = t.clone();
        upd["scripts"] = json!("echo replaced");
        upd["pre_build"]["envs"][0]["value"] = json!("guest2");
        app.put("/openapi/templates/build/demo-template", upd.clone()).await.expect(200);
        app.post("/openapi/build?source=template", json!({
            "name": "uses-it", "project_key": "p", "template_name": "demo-template",
            "target_services": [{"service_name": "s", "service_module": "m"}]
        })).await.expect(200);
        let recipe = zadig_server::build::resolve_for_job(app.state(), "p", "uses-it", "s", "m").await.unwrap();
        assert_eq!(recipe.script, "echo replaced");
        let vals: Vec<&str> = recipe.vars.iter().map(|v| v.value.as_str()).collect();
        assert_eq!(vals, vec!["guest2", "secret0", "low"]);
        assert_eq!(recipe.template_name, "demo-template");

        // Rename through PUT; the build follows (it references the template by id).
        upd["name"] = json!("renamed");
        app.put("/openapi/templates/build/demo-template", upd.clone()).await.expect(200);
        app.get("/openapi/templates/build/demo-template").await.expect_error(404, "demo-template");
        let d = app.get("/openapi/build/uses-it/detail?projectKey=p").await;
        assert_eq!(d.expect(200)["template_name"], "renamed");
        upd["name"] = json!("seed-form");
        app.put("/openapi/templates/build/renamed", upd.clone()).await.expect_error(409, "seed-form");
        app.put("/openapi/templates/build/nope", upd).await.expect_error(404, "nope");

        // Delete: refused while used, then fine; unknown → 404.
        app.delete("/openapi/templates/build/renamed").await.expect_error(409, "p/uses-it");
        app.delete("/openapi/build?name=uses-it&projectKey=p").await.expect(200);
        let r = app.delete("/openapi/templates/build/renamed").await;
        assert_eq!(r.expect(200), &json!({"message": "success"}));
        app.get("/openapi/templates/build/renamed").await.expect(404);
        app.delete("/openapi/templates/build/renamed").await.expect_error(404, "renamed");
        app.stop().await;
    }
}

backend_test! {
    async fn template_validation(app) {
        let cases: Vec<Mutation> = vec![
            ("name", Box::new(|t| { t.as_object_mut().unwrap().remove("name"); })),
            ("scripts", Box::new(|t| { t.as_object_mut().unwrap().remove("scripts"); })),
            ("script_type", Box::new(|t| t["script_type"] = json!("zsh"))),
            ("infrastructure", Box::new(|t| t["infrastructure"] = json!("cloud"))),
            ("timeout", Box::new(|t| t["timeout"] = json!(-3))),
            ("pre_build.envs[0].type", Box::new(|t| t["pre_build"]["envs"][0]["type"] = json!("number"))),
            ("pre_build.envs[2].value", Box::new(|t| t["pre_build"]["envs"][2]["value"] = json!("mid"))),
            ("pre_build.envs[1].key", Box::new(|t| t["pre_build"]["envs"][1]["key"] = json!("name"))),
            ("pre_build.installs[0].name", Box::new(|t| t["pre_build"]["installs"] = json!([{"version": "1"}]))),
            ("pre_build.res_req_spec.memory_limit", Box::new(|t| t["pre_build"]["res_req_spec"] = json!({"memory_limit": -1}))),
            ("post_build.docker_build.source", Box::new(|t| t["post_build"] = json!({"docker_build": {"source": "ftp"}}))),
            ("outputs[0]", Box::new(|t| t["outputs"] = json!(["a b"]))),
            ("parameters[0].type", Box::new(|t| t["parameters"] = json!([{"key": "x", "type": "file"}]))),
            ("advanced_settings.timeout", Box::new(|t| t["advanced_settings"] = json!({"timeout": -1}))),
            ("pre_build.envs", Box::new(|t| t["pre_build"]["envs"] = json!({"key": "x"}))),
        ];
        for (field, mutate) in &cases {
            let mut body = demo_template();
            mutate(&mut body);
            app.post("/openapi/templates/build", body.clone()).await.expect_error(400, field);
        }
        app.raw(reqwest::Method::POST, "/openapi/templates/build", "[]").await.expect_error(400, "object");
        app.raw(reqwest::Method::POST, "/openapi/templates/build", "{\"name\": 1}").await.expect_error(400, "name");
        assert_eq!(app.get("/openapi/templates/build").await.expect(200)["total"], 0);
        // `build_script` is accepted for `scripts`.
        let mut alias = demo_template();
        let script = alias.as_object_mut().unwrap().remove("scripts").unwrap();
        alias["build_script"] = script.clone();
        app.post("/openapi/templates/build", alias.clone()).await.expect(200);
        assert_eq!(app.get("/openapi/templates/build/demo-template").await.expect(200)["scripts"], script);
        // Update checks the same rules and keeps the stored template on failure.
        alias["script_type"] = json!("zsh");
        app.put("/openapi/templates/build/demo-template", alias).await.expect_error(400, "script_type");
        assert_eq!(app.get("/openapi/templates/build/demo-template").await.expect(200)["script_type"], "shell");
        app.stop().await;
    }
}
