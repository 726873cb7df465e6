//! Builds (`/openapi/build`, seed 004, spec/build.md): every route with the seed bodies and the
//! errors of spec §10 we keep, on both backends.

use reqwest::Method;
use serde_json::{Value, json};

use zadig_server::clock::Clock;

use crate::backend_test;
use crate::harness::{ADMIN_TOKEN, TestApp, assert_fields};

/// Seed 004 "Create Build" body, verbatim.
pub fn seed_build() -> Value {
    json!({
        "build_os": "ubuntu 20.04",
        "build_script": "#!/bin/bash\nset -e\necho 'hello from api'\ncd $REPONAME_0\nmake build-$SERVICE",
        "docker_build_step": {
            "build_args": "--build-arg service=$SERVICE",
            "build_context_dir": "$REPONAME_0",
            "dockerfile_directory": "$REPONAME_0/Dockerfile",
            "dockerfile_source": "local",
            "enable_buildkit": true,
            "platforms": "linux/amd64",
            "template_name": ""
        },
        "infrastructure": "kubernetes",
        "installs": [{"name": "go", "version": "1.20.7"}],
        "name": "api-test",
        "parameters": [
            {
                "choice_option": ["a", "b", "c"],
                "choice_value": ["a", "b"],
                "default_value": "a",
                "description": "a multi-select var",
                "is_credential": false,
                "key": "aa",
                "type": "multi-select"
            },
            {
                "default_value": "abc123",
                "description": "a string values",
                "is_credential": true,
                "key": "bb",
                "type": "string"
            }
        ],
        "project_key": "yaml",
        "repo_info": [{
            "branch": "main",
            "codehost_name": "gitlab",
            "repo_name": "multi-service-demo",
            "repo_namespace": "kr-test-org1"
        }],
        "script_type": "shell",
        "services": [
            {"service_module": "service1", "service_name": "service1"},
            {"service_module": "service2", "service_name": "service2"}
        ],
        "advanced_settings": {
            "cache_setting": {"cache_dir": "$WORKSPACE", "enabled": true},
            "cluster_name": "local-20250523164625",
            "custom_annotations": [{"key": "test-a", "value": "abc"}],
            "custom_labels": [{"key": "test-a", "value": "abc"}],
            "outputs": ["bb"],
            "privileged_mode": false,
            "resource_spec": {"cpu_limit": 1000, "cpu_req": 100, "memory_limit": 2000, "memory_req": 200},
            "storages": {
                "enabled": true,
                "storages_properties": [{
                    "access_mode": "ReadOnlyMany",
                    "is_temporary": true,
                    "mount_path": "/workspace",
                    "provision_type": "dynamic",
                    "pvc": "share-storage-cfs-10",
                    "storage_class": "cfs",
                    "storage_size_in_gib": 2,
                    "subpath": "$PROJECT"
                }]
            },
            "strategy_name": "优先调度",
            "timeout": 30,
            "use_host_docker_daemon": false
        }
    })
}

/// Seed 004 "Create Build from Template" body, verbatim.
pub fn seed_template_build() -> Value {
    json!({
        "name": "demo-build",
        "project_key": "demo",
        "template_name": "demo-template",
        "target_services": [{
            "service_module": "aslan",
            "service_name": "zadigx",
            "repo_info": [{
                "codehost_name": "github-demo",
                "repo_namespace": "kr-test-org",
                "repo_name": "zadig",
                "branch": "main"
            }],
            "inputs": [
                {"key": "name", "value": "admin"},
                {"key": "password", "value": "zadigx"}
            ]
        }]
    })
}

/// A template (Zadig's document form) with the variables seed 004's template example uses.
pub fn demo_template() -> Value {
    json!({
        "name": "demo-template",
        "script_type": "shell",
        "scripts": "#!/bin/bash\necho \"building $SERVICE as $name\"",
        "infrastructure": "kubernetes",
        "timeout": 45,
        "pre_build": {
            "build_os": "ubuntu 22.04",
            "installs": [{"name": "go", "version": "1.22"}],
            "envs": [
                {"key": "name", "value": "guest", "type": "string", "description": "user"},
                {"key": "password", "value": "secret0", "type": "string", "is_credential": true},
                {"key": "level", "value": "low", "type": "choice", "choice_option": ["low", "high"]}
            ]
        },
        "outputs": [{"name": "VERSION", "description": "built version"}]
    })
}

/// A named change to a valid body that makes it invalid.
pub type Mutation = (&'static str, Box<dyn Fn(&mut Value)>);

fn assert_error_code(body: &Value, code: i64) {
    assert_eq!(body["code"], code, "{body}");
}

/// Create build `name` of `project` on Kubernetes (`ubuntu 20.04`, no installs) running the
/// shell `script` for `service` (service name, module); `extra` adds fields (parameters,
/// advanced settings).
pub async fn create_shell_build(
    app: &TestApp,
    project: &str,
    name: &str,
    script: &str,
    (service, module): (&str, &str),
    extra: Value,
) {
    let mut body = json!({"name": name, "project_key": project, "infrastructure": "kubernetes",
        "build_os": "ubuntu 20.04", "installs": [], "script_type": "shell", "build_script": script,
        "services": [{"service_name": service, "service_module": module}]});
    for (k, v) in extra.as_object().expect("extra fields, as an object") {
        body[k] = v.clone();
    }
    app.post(&format!("/openapi/build?projectKey={project}"), body)
        .await
        .expect(200);
}

backend_test! {
    async fn create_list_detail_seed_build(app) {
        let r = app.post("/openapi/build?projectKey=yaml", seed_build()).await;
        assert_eq!(r.expect(200), &json!({"message": "success"}));

        let list = app.get("/openapi/build?projectKey=yaml&pageNum=1&pageSize=20").await;
        let list = list.expect(200);
        assert_eq!(list["total"], 1);
        let b = &list["builds"][0];
        assert_fields(b, json!({
            "name": "api-test", "project_key": "yaml", "source": "zadig", "update_by": "admin",
            "update_time": app.clock.now()
        }));
        assert_eq!(b["target_services"], json!([
            {"service_name": "service1", "service_module": "service1"},
            {"service_name": "service2", "service_module": "service2"}
        ]));

        let d = app.get("/openapi/build/api-test/detail?projectKey=yaml&serviceName=service1&serviceModule=service1").await;
        let d = d.expect(200).clone();
        assert_fields(&d, json!({
            "name": "api-test", "project_key": "yaml", "source": "zadig", "template_name": "",
            "update_by": "admin", "build_script": seed_build()["build_script"]
        }));
        let repo = &d["repos"][0];
        assert_eq!(repo["repo_owner"], "kr-test-org1");
        assert_eq!(repo["repo_name"], "multi-service-demo");
        assert_eq!(repo["branch"], "main");
        assert_eq!(repo["codehost_name"], "gitlab");
        for k in ["source", "remote_name", "checkout_path", "submodules", "hidden", "address"] {
            assert!(repo.get(k).is_some(), "repos[0] lacks {k}: {repo}");
        }
        assert_eq!(d["build_env"]["basic_image_label"], "ubuntu 20.04");
        assert_eq!(d["build_env"]["installs"], json!([{"name": "go", "version": "1.20.7"}]));
        let adv = &d["advanced_settings"];
        assert_eq!(adv.as_object().unwrap().len(), 11, "{adv}");
        assert_fields(adv, json!({
            "timeout": 30, "cluster_name": "local-20250523164625", "strategy_name": "优先调度",
            "cache_setting": {"enabled": true, "cache_dir": "$WORKSPACE"},
            "resource_spec": {"cpu_limit": 1000, "memory_limit": 2000, "cpu_req": 100, "memory_req": 200, "gpu_limit": ""}
        }));
        assert_eq!(adv["storages"]["storages_properties"][0]["storage_class"], "cfs");
        assert_eq!(adv["custom_labels"], json!([{"key": "test-a", "value": "abc"}]));
        assert_eq!(adv["outputs"], json!(["bb"]));
        assert_eq!(adv["use_host_docker_daemon"], false);
        assert_eq!(adv["privileged_mode"], false);
        let params = d["parameters"].as_array().unwrap();
        assert_eq!(params.len(), 2);
        assert_eq!(params[0]["key"], "aa");
        assert_eq!(params[0]["type"], "multi-select");
        assert_eq!(params[0]["value"], "a");
        assert_eq!(params[0]["choice_option"], json!(["a", "b", "c"]));
        assert_eq!(params[0]["choice_value"], json!(["a", "b"]));
        assert_eq!(params[1]["key"], "bb");
        assert_eq!(params[1]["is_credential"], true);
        assert_eq!(params[1]["value"], "********");
        assert!(!app.get("/openapi/build/api-test/detail?projectKey=yaml").await.text.contains("abc123"),
            "a credential value leaked");
        let names: Vec<&str> = d["outputs"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["IMAGE", "PKG_FILE", "bb"]);
        let docker = &d["post_build"]["docker_build"];
        assert_fields(docker, json!({
            "work_dir": "$REPONAME_0", "docker_file": "$REPONAME_0/Dockerfile",
            "build_args": "--build-arg service=$SERVICE", "source": "local",
            "enable_buildkit": true, "platform": "linux/amd64"
        }));
        assert!(d["post_build"]["object_storage_upload"].is_null());
        assert_eq!(d["post_build"]["scripts"], "");

        // The seed's query form works without serviceName/serviceModule too (spec §8 step 2).
        app.get("/openapi/build/api-test/detail?projectKey=yaml").await.expect(200);
        app.stop().await;
    }
}

backend_test! {
    async fn seed_and_code_shapes_are_both_accepted(app) {
        // The seed's table types: installs as a string, docker_build_step/advanced_settings as
        // one-element arrays, enable_buildkit as a string; the project from the query only.
        let mut body = seed_build();
        body["name"] = json!("shapes");
        body.as_object_mut().unwrap().remove("project_key");
        body["installs"] = json!("go 1.20.7, node:18");
        body["docker_build_step"] = json!([{"dockerfile_source": "local", "build_context_dir": ".", "dockerfile_directory": "Dockerfile", "enable_buildkit": "false"}]);
        let adv = body["advanced_settings"].clone();
        body["advanced_settings"] = json!([adv]);
        app.post("/openapi/build?projectKey=p1", body).await.expect(200);
        let d = app.get("/openapi/build/shapes/detail?projectKey=p1").await;
        let d = d.expect(200);
        assert_eq!(d["build_env"]["installs"], json!([{"name": "go", "version": "1.20.7"}, {"name": "node", "version": "18"}]));
        assert_eq!(d["post_build"]["docker_build"]["enable_buildkit"], false);
        assert_eq!(d["advanced_settings"]["timeout"], 30);

        // A minimal build: defaults of spec §4.3 (no advanced settings).
        app.post("/openapi/build", json!({
            "name": "minimal", "project_key": "p1", "build_script": "echo hi",
            "services": [{"service_name": "s", "service_module": "m"}],
            "repo_info": null, "parameters": null, "docker_build_step": null, "advanced_settings": []
        })).await.expect(200);
        let d = app.get("/openapi/build/minimal/detail?projectKey=p1").await;
        let d = d.expect(200);
        assert_eq!(d["advanced_settings"]["timeout"], 60);
        assert_eq!(d["advanced_settings"]["resource_spec"]["cpu_limit"], 1000);
        assert_eq!(d["advanced_settings"]["resource_spec"]["memory_limit"], 512);
        assert_eq!(d["repos"], json!([]));
        assert_eq!(d["parameters"], json!([]));
        assert_eq!(d["build_env"]["installs"], json!([]));
        assert!(d["post_build"]["docker_build"].is_null());

        // `null` in a repository reads as absent, as Go's zero value.
        app.post("/openapi/build", json!({
            "name": "null-repo", "project_key": "p1", "build_script": "echo hi",
            "services": [{"service_name": "s", "service_module": "m"}],
            "repo_info": [{"repo_name": "r", "prs": null, "submodules": null}]
        })).await.expect(200);
        let d = app.get("/openapi/build/null-repo/detail?projectKey=p1").await;
        assert_eq!(d.expect(200)["repos"][0]["submodules"], false);
        app.stop().await;
    }
}

backend_test! {
    async fn update_replaces_the_definition_and_keeps_masked_secrets(app) {
        app.post("/openapi/build?projectKey=yaml", seed_build()).await.expect(200);
        app.clock.advance(std::time::Duration::from_secs(100));
        let mut body = seed_build();
        body["build_script"] = json!("echo updated");
        body["parameters"][1]["default_value"] = json!("********");
        body["services"] = json!([{"service_name": "service3", "service_module": "m3"}]);
        body.as_object_mut().unwrap().remove("advanced_settings");
        body.as_object_mut().unwrap().remove("docker_build_step");
        app.put("/openapi/build?projectKey=yaml", body.clone()).await.expect(200);

        let d = app.get("/openapi/build/api-test/detail?projectKey=yaml").await;
        let d = d.expect(200);
        assert_eq!(d["build_script"], "echo updated");
        assert_eq!(d["update_time"], app.clock.now());
        assert_eq!(d["target_services"], json!([{"service_name": "service3", "service_module": "m3"}]));
        // Whole replacement: the omitted advanced settings and image step are back to defaults.
        assert_eq!(d["advanced_settings"]["timeout"], 60);
        assert_eq!(d["advanced_settings"]["cluster_name"], "");
        assert!(d["post_build"]["docker_build"].is_null());
        assert_eq!(d["parameters"][1]["value"], "********");
        let recipe = zadig_server::build::resolve_for_job(app.state(), "yaml", "api-test", "service3", "m3").await.unwrap();
        let bb = recipe.vars.iter().find(|v| v.key == "bb").unwrap();
        assert_eq!(bb.value, "abc123", "a masked value sent back keeps the stored one");

        // A new value replaces it.
        body["parameters"][1]["default_value"] = json!("new-secret");
        app.put("/openapi/build", body.clone()).await.expect(200);
        let recipe = zadig_server::build::resolve_for_job(app.state(), "yaml", "api-test", "", "").await.unwrap();
        assert_eq!(recipe.vars.iter().find(|v| v.key == "bb").unwrap().value, "new-secret");

        // A repository URL with a password shows it masked; sent back as shown, it is kept.
        body["repo_info"][0]["address"] = json!("https://bot:repo-pw-1@git.example");
        app.put("/openapi/build", body.clone()).await.expect(200);
        let d = app.get("/openapi/build/api-test/detail?projectKey=yaml").await;
        assert!(!d.text.contains("repo-pw-1"), "{}", d.text);
        let shown = d.body["repos"][0]["address"].clone();
        assert_eq!(shown, "https://bot:********@git.example");
        body["repo_info"][0]["address"] = shown;
        app.put("/openapi/build", body.clone()).await.expect(200);
        let b = app.state().builds.get("yaml", "api-test").await.unwrap().unwrap();
        assert_eq!(b.repos[0].address, "https://bot:repo-pw-1@git.example");

        // Unknown build → 404 with Zadig's update code; nothing is created.
        body["name"] = json!("nope");
        let r = app.put("/openapi/build", body.clone()).await;
        assert_error_code(r.expect_error(404, "nope"), 6521);
        app.get("/openapi/build/nope/detail?projectKey=yaml").await.expect(404);
        // A build of another project is not found under this one.
        body["name"] = json!("api-test");
        body["project_key"] = json!("other");
        app.put("/openapi/build", body).await.expect_error(404, "api-test");
        app.stop().await;
    }
}

backend_test! {
    async fn names_are_unique_across_projects(app) {
        app.post("/openapi/build?projectKey=yaml", seed_build()).await.expect(200);
        let r = app.post("/openapi/build?projectKey=yaml", seed_build()).await;
        assert_error_code(r.expect_error(409, "yaml项目中有相同的构建名称存在,请检查!"), 6520);
        let mut other = seed_build();
        other["project_key"] = json!("other");
        let r = app.post("/openapi/build", other).await;
        let b = r.expect_error(409, "name");
        assert_error_code(b, 6520);
        assert!(b["description"].as_str().unwrap().contains("yaml"), "{b}");
        // Nothing was lost or added.
        assert_eq!(app.get("/openapi/build?projectKey=yaml").await.expect(200)["total"], 1);
        assert_eq!(app.get("/openapi/build?projectKey=other").await.expect(200)["total"], 0);
        app.stop().await;
    }
}

backend_test! {
    async fn invalid_bodies_are_400_naming_the_field(app) {
        let cases: Vec<Mutation> = vec![
            ("name", Box::new(|b| { b.as_object_mut().unwrap().remove("name"); })),
            ("name", Box::new(|b| b["name"] = json!("x".repeat(300)))),
            ("project_key", Box::new(|b| { b.as_object_mut().unwrap().remove("project_key"); })),
            ("build_script", Box::new(|b| b["build_script"] = json!("  "))),
            ("services", Box::new(|b| { b.as_object_mut().unwrap().remove("services"); })),
            ("services", Box::new(|b| b["services"] = json!([]))),
            ("services[1].service_module", Box::new(|b| b["services"][1]["service_module"] = json!(""))),
            ("script_type", Box::new(|b| b["script_type"] = json!("bash"))),
            ("infrastructure", Box::new(|b| b["infrastructure"] = json!("docker"))),
            ("parameters[0].type", Box::new(|b| b["parameters"][0]["type"] = json!("number"))),
            ("parameters[1].key", Box::new(|b| b["parameters"][1]["key"] = json!("aa"))),
            ("parameters[1].key", Box::new(|b| b["parameters"][1]["key"] = json!("1-bad"))),
            ("parameters[0].default_value", Box::new(|b| {
                b["parameters"][0]["type"] = json!("choice");
                b["parameters"][0]["default_value"] = json!("z");
            })),
            ("parameters[0].choice_value", Box::new(|b| b["parameters"][0]["choice_value"] = json!(["a", "q"]))),
            ("installs[0].name", Box::new(|b| b["installs"] = json!([{"name": "", "version": "1"}]))),
            ("repo_info[0].repo_name", Box::new(|b| b["repo_info"][0]["repo_name"] = json!(""))),
            ("docker_build_step.dockerfile_source", Box::new(|b| b["docker_build_step"]["dockerfile_source"] = json!("remote"))),
            ("docker_build_step.template_name", Box::new(|b| b["docker_build_step"]["dockerfile_source"] = json!("template"))),
            ("docker_build_step.enable_buildkit", Box::new(|b| b["docker_build_step"]["enable_buildkit"] = json!("maybe"))),
            ("advanced_settings", Box::new(|b| { let a = b["advanced_settings"].clone(); b["advanced_settings"] = json!([a.clone(), a]); })),
            ("advanced_settings.timeout", Box::new(|b| b["advanced_settings"]["timeout"] = json!(-1))),
            ("advanced_settings.timeout", Box::new(|b| b["advanced_settings"]["timeout"] = json!("30"))),
            ("advanced_settings.resource_spec.cpu_limit", Box::new(|b| b["advanced_settings"]["resource_spec"]["cpu_limit"] = json!(-5))),
            ("advanced_settings.resource_spec.gpu_limit", Box::new(|b| b["advanced_settings"]["resource_spec"]["gpu_limit"] = json!("lots"))),
            ("advanced_settings.storages.storages_properties[0].provision_type", Box::new(|b| b["advanced_settings"]["storages"]["storages_properties"][0]["provision_type"] = json!("magic"))),
            ("advanced_settings.cache_setting.cache_dir", Box::new(|b| b["advanced_settings"]["cache_setting"]["cache_dir"] = json!(""))),
            ("advanced_settings.outputs[0]", Box::new(|b| b["advanced_settings"]["outputs"] = json!(["not a name"]))),
            ("advanced_settings.custom_labels[0].key", Box::new(|b| b["advanced_settings"]["custom_labels"] = json!([{"key": null}]))),
            ("advanced_settings.custom_labels[0].key", Box::new(|b| b["advanced_settings"]["custom_labels"] = json!([{"key": "k".repeat(300)}]))),
            ("services", Box::new(|b| b["services"] = json!("service1"))),
        ];
        for (field, mutate) in &cases {
            let mut body = seed_build();
            mutate(&mut body);
            app.post("/openapi/build", body.clone()).await.expect_error(400, field);
            // Update checks the same rules.
            app.put("/openapi/build", body).await.expect_error(400, field);
        }
        app.post("/openapi/build?projectKey=other", seed_build()).await.expect_error(400, "projectKey");
        app.raw(Method::POST, "/openapi/build", "{bad").await.expect_error(400, "JSON");
        app.raw(Method::POST, "/openapi/build", "").await.expect_error(400, "empty");
        app.raw(Method::POST, "/openapi/build", "[]").await.expect_error(400, "invalid");
        // Nothing was stored by any of them.
        assert_eq!(app.get("/openapi/build?projectKey=yaml").await.expect(200)["total"], 0);
        app.stop().await;
    }
}

backend_test! {
    async fn list_pages_in_creation_order(app) {
        for (i, name) in ["b-3", "b-1", "b-2"].iter().enumerate() {
            let mut body = seed_build();
            body["name"] = json!(name);
            body["project_key"] = json!("p1");
            app.post("/openapi/build", body).await.expect(200);
            if i == 0 {
                app.clock.advance(std::time::Duration::from_secs(5));
            }
        }
        let mut other = seed_build();
        other["project_key"] = json!("p2");
        app.post("/openapi/build", other).await.expect(200);

        let page = app.get("/openapi/build?projectKey=p1&pageSize=2").await;
        let page = page.expect(200);
        assert_eq!(page["total"], 3);
        let names: Vec<&str> = page["builds"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["b-3", "b-1"]);
        let page = app.get("/openapi/build?projectKey=p1&pageNum=2&pageSize=2").await;
        assert_eq!(page.expect(200)["builds"][0]["name"], "b-2");
        let all = app.get("/openapi/build?projectKey=p1").await;
        assert_eq!(all.expect(200)["builds"].as_array().unwrap().len(), 3);
        assert_eq!(app.get("/openapi/build?projectKey=none").await.expect(200), &json!({"total": 0, "builds": []}));

        app.get("/openapi/build").await.expect_error(400, "projectKey");

        app.get("/openapi/build?projectKey=").await.expect_error(400, "projectKey");

        app.expect_paging_errors("/openapi/build?projectKey=p1").await;
        // Auth is required.
        app.call(Method::GET, "/openapi/build?projectKey=p1", None, None).await.expect_error(401, "token");
        app.stop().await;
    }
}

backend_test! {
    async fn detail_and_delete(app) {
        app.post("/openapi/build?projectKey=yaml", seed_build()).await.expect(200);
        let r = app.get("/openapi/build/nope/detail?projectKey=yaml").await;
        assert_error_code(r.expect_error(404, "nope"), 6523);
        app.get("/openapi/build/api-test/detail?projectKey=other").await.expect_error(404, "api-test");
        app.get("/openapi/build/api-test/detail").await.expect_error(400, "projectKey");

        app.delete("/openapi/build?projectKey=yaml").await.expect_error(400, "name");
        let r = app.delete("/openapi/build?name=nope&projectKey=yaml").await;
        assert_error_code(r.expect_error(404, "nope"), 6524);
        app.delete("/openapi/build?name=api-test&projectKey=other").await.expect_error(404, "api-test");
        let r = app.delete("/openapi/build?name=api-test&projectKey=yaml").await;
        assert_eq!(r.expect(200), &json!({"message": "success"}));
        app.get("/openapi/build/api-test/detail?projectKey=yaml").await.expect(404);
        app.delete("/openapi/build?name=api-test&projectKey=yaml").await.expect(404);
        assert_eq!(app.get("/openapi/build?projectKey=yaml").await.expect(200)["total"], 0);

        // Without projectKey the build is found by its (global) name; the name is free again.
        app.post("/openapi/build?projectKey=yaml", seed_build()).await.expect(200);
        app.delete("/openapi/build?name=api-test").await.expect(200);
        app.get("/openapi/build/api-test/detail?projectKey=yaml").await.expect(404);

        // Any authenticated user may use the build routes (no RBAC); without a token: 401.
        let (_, token) = app.create_user("dev", false).await;
        app.call(Method::POST, "/openapi/build", Some(&token), Some(seed_build())).await.expect(200);
        let d = app.call(Method::GET, "/openapi/build/api-test/detail?projectKey=yaml", Some(&token), None).await;
        assert_eq!(d.expect(200)["update_by"], "dev");
        app.call(Method::DELETE, "/openapi/build?name=api-test&projectKey=yaml", None, None).await.expect_error(401, "token");
        app.call(Method::DELETE, "/openapi/build?name=api-test&projectKey=yaml", Some(ADMIN_TOKEN), None).await.expect(200);
        app.stop().await;
    }
}

backend_test! {
    async fn template_builds(app) {
        // Unknown template → 404 naming template_name; nothing stored.
        let r = app.post("/openapi/build?source=template", seed_template_build()).await;
        r.expect_error(404, "template_name");
        assert!(r.body["description"].as_str().unwrap().contains("demo-template"));
        app.post("/openapi/templates/build", demo_template()).await.expect(200);

        let mut empty = seed_template_build();
        empty["target_services"] = json!([]);
        app.post("/openapi/build?source=template", empty).await.expect_error(400, "target_services");
        let mut missing = seed_template_build();
        missing.as_object_mut().unwrap().remove("template_name");
        app.post("/openapi/build?source=template", missing).await.expect_error(400, "template_name");
        let mut bad_type = seed_template_build();
        bad_type["target_services"][0]["inputs"][0]["type"] = json!("number");
        app.post("/openapi/build?source=template", bad_type).await.expect_error(400, "target_services[0].inputs[0].type");
        let mut bad_choice = seed_template_build();
        bad_choice["target_services"][0]["inputs"][1] = json!({"key": "level", "value": "mid"});
        app.post("/openapi/build?source=template", bad_choice).await.expect_error(400, "target_services[0].inputs[1].value");
        let mut no_module = seed_template_build();
        no_module["target_services"][0]["service_module"] = json!("");
        app.post("/openapi/build?source=template", no_module).await.expect_error(400, "target_services[0].service_module");
        assert_eq!(app.get("/openapi/build?projectKey=demo").await.expect(200)["total"], 0);

        app.post("/openapi/build?source=template", seed_template_build()).await.expect(200);
        let r = app.post("/openapi/build?source=template", seed_template_build()).await;
        assert_error_code(r.expect_error(409, "demo-build"), 6520);

        let list = app.get("/openapi/build?projectKey=demo").await;
        let list = list.expect(200);
        assert_eq!(list["total"], 1);
        assert_eq!(list["builds"][0]["target_services"], json!([{"service_name": "zadigx", "service_module": "aslan"}]));

        // Detail for the service: the template's definition, the service's repos and merged vars.
        let d = app.get("/openapi/build/demo-build/detail?projectKey=demo&serviceName=zadigx&serviceModule=aslan").await;
        let d = d.expect(200).clone();
        assert_eq!(d["template_name"], "demo-template");
        assert_eq!(d["build_script"], demo_template()["scripts"]);
        assert_eq!(d["build_env"]["basic_image_label"], "ubuntu 22.04");
        assert_eq!(d["advanced_settings"]["timeout"], 45);
        assert_eq!(d["repos"][0]["repo_name"], "zadig");
        assert_eq!(d["repos"][0]["repo_owner"], "kr-test-org");
        assert_eq!(d["repos"][0]["codehost_name"], "github-demo");
        let vars: Vec<(String, String)> = d["parameters"].as_array().unwrap().iter()
            .map(|p| (p["key"].as_str().unwrap().to_string(), p["value"].as_str().unwrap().to_string())).collect();
        assert_eq!(vars, vec![
            ("name".to_string(), "admin".to_string()),
            ("password".to_string(), "********".to_string()),
            ("level".to_string(), "low".to_string()),
        ]);
        assert_eq!(d["parameters"][2]["choice_option"], json!(["low", "high"]));
        let names: Vec<&str> = d["outputs"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["IMAGE", "PKG_FILE", "VERSION"]);
        // Without a service: no repos, the template's defaults (masked).
        let d = app.get("/openapi/build/demo-build/detail?projectKey=demo").await;
        let d = d.expect(200);
        assert_eq!(d["repos"], json!([]));
        assert_eq!(d["parameters"][0]["value"], "guest");
        assert_eq!(d["parameters"][1]["value"], "********");

        // Update from template: new inputs; a masked credential keeps the stored value.
        let mut upd = seed_template_build();
        upd["target_services"][0]["inputs"] = json!([
            {"key": "name", "value": "root"}, {"key": "password", "value": "********"}, {"key": "level", "value": "high"}
        ]);
        upd["target_services"][0]["repo_info"][0]["branch"] = json!("release");
        app.put("/openapi/build/demo-build/template?projectKey=demo", upd.clone()).await.expect(200);
        let recipe = zadig_server::build::resolve_for_job(app.state(), "demo", "demo-build", "zadigx", "aslan").await.unwrap();
        let vars: Vec<(&str, &str, bool)> = recipe.vars.iter().map(|v| (v.key.as_str(), v.value.as_str(), v.is_credential)).collect();
        assert_eq!(vars, vec![("name", "root", false), ("password", "zadigx", true), ("level", "high", false)]);
        assert_eq!(recipe.repos[0]["branch"], "release");

        // The body's name may be omitted (the path names the build) but may not disagree.
        let mut other_name = upd.clone();
        other_name["name"] = json!("else");
        app.put("/openapi/build/demo-build/template?projectKey=demo", other_name).await.expect_error(400, "name");
        let r = app.put("/openapi/build/nope/template?projectKey=demo", json!({
            "project_key": "demo", "template_name": "demo-template", "target_services": upd["target_services"]
        })).await;
        assert_error_code(r.expect_error(404, "nope"), 6523);
        let mut unknown_tpl = upd.clone();
        unknown_tpl["template_name"] = json!("nope-template");
        app.put("/openapi/build/demo-build/template", unknown_tpl).await.expect_error(404, "template_name");
        // PUT ?source=template updates (Zadig would create; see docs/compatibility.md).
        let mut via_query = upd.clone();
        via_query["target_services"][0]["inputs"] = json!([{"key": "name", "value": "q"}]);
        app.put("/openapi/build?source=template", via_query).await.expect(200);
        let recipe = zadig_server::build::resolve_for_job(app.state(), "demo", "demo-build", "zadigx", "aslan").await.unwrap();
        assert_eq!(recipe.vars[0].value, "q");
        assert_eq!(recipe.vars[1].value, "secret0", "an omitted input falls back to the template default");

        // The template's changes reach its builds.
        let mut tpl = demo_template();
        tpl["scripts"] = json!("echo v2");
        app.put("/openapi/templates/build/demo-template", tpl).await.expect(200);
        let d = app.get("/openapi/build/demo-build/detail?projectKey=demo").await;
        assert_eq!(d.expect(200)["build_script"], "echo v2");

        // A template in use cannot be deleted; nothing changes.
        let r = app.delete("/openapi/templates/build/demo-template").await;
        r.expect_error(409, "demo-build");
        app.get("/openapi/templates/build/demo-template").await.expect(200);
        // A full PUT turns the template build into a normal build: the template is free.
        let mut full = seed_build();
        full["name"] = json!("demo-build");
        full["project_key"] = json!("demo");
        app.put("/openapi/build", full).await.expect(200);
        let d = app.get("/openapi/build/demo-build/detail?projectKey=demo").await;
        assert_eq!(d.expect(200)["template_name"], "");
        app.delete("/openapi/templates/build/demo-template").await.expect(200);
        app.stop().await;
    }
}

backend_test! {
    async fn racing_writes_keep_the_invariants(app) {
        // Concurrent creates of one name: exactly one wins, the rest are 409 (6520).
        let mut tasks = Vec::new();
        for i in 0..6 {
            let mut body = seed_build();
            body["project_key"] = json!(format!("race-{i}"));
            tasks.push(app.post("/openapi/build", body));
        }
        let results = futures::future::join_all(tasks).await;
        let ok = results.iter().filter(|r| r.status == 200).count();
        assert_eq!(ok, 1, "{:?}", results.iter().map(|r| &r.text).collect::<Vec<_>>());
        for r in results.iter().filter(|r| r.status != 200) {
            assert_error_code(r.expect_error(409, "api-test"), 6520);
        }

        // A template DELETE racing template-build creates: never both a deleted template and a
        // build using it.
        for round in 0..6 {
            app.post("/openapi/templates/build", demo_template()).await.expect(200);
            let mut body = seed_template_build();
            body["name"] = json!(format!("tb-{round}"));
            let (del, create) = tokio::join!(
                app.delete("/openapi/templates/build/demo-template"),
                app.post("/openapi/build?source=template", body),
            );
            let build_exists = app.get(&format!("/openapi/build/tb-{round}/detail?projectKey=demo")).await.status == 200;
            let template_exists = app.get("/openapi/templates/build/demo-template").await.status == 200;
            assert_eq!(build_exists, create.status == 200, "create answered {}", create.text);
            assert_eq!(template_exists, del.status != 200, "delete answered {}", del.text);
            assert!(!build_exists || template_exists, "round {round}: a build uses a deleted template");
            if build_exists {
                app.delete(&format!("/openapi/build?name=tb-{round}&projectKey=demo")).await.expect(200);
            }
            if template_exists {
                app.delete("/openapi/templates/build/demo-template").await.expect(200);
            }
        }
        app.stop().await;
    }
}
