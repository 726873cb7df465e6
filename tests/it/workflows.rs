//! Workflow definitions, views and pre-approval tickets (seed 002; spec/workflow.md §1, §2,
//! §6, §7.1).

use reqwest::Method;
use serde_json::{Value, json};

use zadig_server::clock::Clock;

use crate::backend_test;
use crate::harness::{TestApp, assert_fields};

/// The seed's five-stage create example, verbatim.
pub fn seed_create_body() -> Value {
    serde_json::from_str(include_str!("fixtures/seed002_create_workflow.json")).expect("fixture")
}

/// A small workflow of `project` with one freestyle job (current format).
pub fn echo_workflow(name: &str, project: &str) -> Value {
    json!({
        "name": name, "display_name": name, "project": project, "concurrency_limit": 1,
        "params": [{"name": "who", "type": "string", "value": "world"}],
        "stages": [{"name": "run", "parallel": false, "jobs": [{
            "name": "echo", "type": "freestyle",
            "spec": {"script": "echo hello $who", "envs": [{"key": "GREETING", "value": "hi", "type": "string"}]}
        }]}]
    })
}

#[track_caller]
fn code_of(body: &Value) -> i64 {
    body["code"].as_i64().expect("code")
}

backend_test! {
    async fn create_seed_example_and_read_it_back(app) {
        let r = app.post("/api/aslan/workflow/v4", seed_create_body()).await;
        assert_eq!(r.expect(200), &json!({"message": "success"}));

        let d = app.get("/openapi/workflows/custom/workflow-demo/detail?projectKey=demo").await;
        let d = d.expect(200).clone();
        for k in ["workflow_key", "workflow_name", "project_key", "description", "created_by", "create_time",
                  "updated_by", "update_time", "params", "stages", "notify_ctls", "share_storages", "concurrency_limit"] {
            assert!(d.get(k).is_some(), "detail lacks {k}: {d}");
        }
        assert_fields(&d, json!({
            "workflow_key": "workflow-demo", "workflow_name": "workflow-demo",
            "project_key": "demo", "description": "workflow-demo description",
            "created_by": "admin", "concurrency_limit": 5, "create_time": app.clock.now()
        }));
        let stages = d["stages"].as_array().unwrap();
        let names: Vec<&str> = stages.iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Build", "Deploy", "Test", "Distribute", "Image Distribution"]);

        // Job specs come back as they were sent.
        let build = &stages[0]["jobs"][0];
        assert_eq!(build["type"], "zadig-build");
        assert_eq!(build["spec"]["service_and_builds"][0]["value"], "service1/service1");
        assert_eq!(build["spec"]["docker_registry_id"], "62c**********");
        let test = &stages[2]["jobs"][0]["spec"];
        assert_eq!(test["service_and_tests"][0]["name"], "smoke-test");
        let dist = &stages[4]["jobs"][0];
        assert_eq!(dist["isCreate"], true, "unknown job keys are kept");
        assert_eq!(dist["spec"]["targets"][0]["value"], "n-1/nginx-latest");

        // Stage approval: stored settings, also in the detail view's capitalised spelling.
        let approval = &stages[1]["approval"];
        assert_eq!(approval["enabled"], true);
        assert_eq!(approval["type"], "native");
        assert_eq!(approval["native_approval"]["timeout"], 5);
        assert_eq!(approval["native_approval"]["Timeout"], 5);
        assert_eq!(approval["native_approval"]["needed_approvers"], 1);
        assert_eq!(approval["native_approval"]["NeededApprovers"], 1);
        assert_eq!(approval["native_approval"]["approve_users"][1]["user_name"], "sre-admin");
        assert!(stages[0].get("approval").is_none());

        // The legacy freestyle job is stored in the current format.
        let fs = &stages[3]["jobs"][0]["spec"];
        assert_eq!(fs["script"], "#!/bin/bash\nset -e\necho hello");
        assert_eq!(fs["script_type"], "shell");
        assert_eq!(fs["runtime"]["build_os"], "focal");
        assert_eq!(fs["runtime"]["image_id"], "630xxxxxxxxxxxx");
        assert_eq!(fs["runtime"]["installs"][0]["version"], "1.19.3");
        assert_eq!(fs["repos"][0]["repo_name"], "hello");
        assert_eq!(fs["envs"][0]["key"], "key1");
        assert_eq!(fs["envs"][0]["source"], "runtime");
        assert_eq!(fs["advanced_setting"]["timeout"], 60);
        assert_eq!(fs["advanced_setting"]["res_req_spec"]["memory_limit"], 512);
        assert_eq!(fs["advanced_setting"]["cache_enable"], true);
        assert!(fs.get("properties").is_none() && fs.get("steps").is_none());

        // Listed in its project, not in others.
        let l = app.get("/openapi/workflows?projectKey=demo").await;
        assert_eq!(l.expect(200)["workflows"], json!([{
            "workflow_key": "workflow-demo", "workflow_name": "workflow-demo", "update_by": "admin",
            "update_time": app.clock.now(), "type": "custom"
        }]));
        assert_eq!(app.get("/openapi/workflows?projectKey=other").await.expect(200)["workflows"], json!([]));

        // Names are unique across projects: 409 with Zadig's code.
        let mut again = seed_create_body();
        again["project"] = json!("another");
        let r = app.post("/api/aslan/workflow/v4", again).await;
        assert_eq!(code_of(r.expect_error(409, "workflow-demo")), 6540);
        app.stop().await;
    }
}

backend_test! {
    async fn current_freestyle_format_and_unknown_fields_round_trip(app) {
        let body = json!({
            "name": "Custom-1", "display_name": "custom one", "project": "p", "concurrency_limit": -1,
            "category": "release", "x_top_level": {"kept": true},
            "params": [
                {"name": "version", "type": "choice", "choice_option": ["1", "2"], "value": "1"},
                {"name": "src", "type": "repo", "repo": {"repo_namespace": "org", "repo_name": "app", "branch": "main"}}
            ],
            "notify_ctls": [{"enabled": true, "webhook_type": "wechat", "weChat_webHook": "https://qyapi.example.com/cgi-bin/webhook/send?key=xxx", "notify_type": ["created", "failed"]}],
            "share_storages": [{"name": "cache", "path": "/cache"}],
            "stages": [{"name": "s1", "parallel": true, "jobs": [
                {"name": "fs", "type": "freestyle", "run_policy": "default_not_run",
                 "error_policy": {"policy": "retry", "maximum_retry": 2},
                 "spec": {"script": "echo x", "runtime": {"infrastructure": "kubernetes"},
                          "advanced_setting": {"timeout": 10, "outputs": [{"name": "OUT_1"}]},
                          "vendor_field": [1, 2, {"deep": "yes"}]}},
                {"name": "hello", "type": "plugin", "spec": {"plugin": {"name": "hello-world", "inputs": [{"name": "CONTENT", "value": "x"}]},
                 "properties": {"timeout": 60}}},
                {"name": "nacos-1", "type": "nacos", "spec": {"namespace_id": "ns", "nacos_datas": [{"data_id": "a"}]}}
            ]}, {"name": "s2", "jobs": [
                {"name": "vm", "type": "zadig-vm-deploy", "spec": {"env": "vm-env", "service_and_vm_deploys": [{"service_name": "s", "file_name": "a.tgz"}]}},
                {"name": "scan", "type": "zadig-scanning", "spec": {"scanning_type": "", "scannings": [{"name": "sonar", "project_name": "p", "key_vals": []}]}},
                {"name": "k8s", "type": "custom-deploy", "spec": {"namespace": "ns", "cluster_id": "c", "targets": [{"target": "Deployment/a/b", "image": "i"}], "timeout": 10}},
                {"name": "gate", "type": "approval", "spec": {"timeout": 30, "type": "native", "description": "go?",
                    "native_approval": {"timeout": 30, "needed_approvers": 1, "approve_users": [{"type": "user", "user_id": "u", "user_name": "n"}]}}},
                {"name": "apollo-1", "type": "apollo", "spec": {"apolloID": "a1", "namespaceList": [{"appID": "app", "env": "DEV", "kv": [{"key": "k", "val": "v"}]}]}},
                {"name": "db", "type": "sql", "spec": {"id": "db-1", "type": "mysql", "sql": "select 1", "source": "fixed"}},
                {"name": "tapd-1", "type": "tapd", "spec": {"tapd_id": "t", "project_id": "1", "status": "open", "iterations": [{"iteration_id": "i1"}]}}
            ]}]
        });
        app.post("/openapi/workflows/custom", body.clone()).await.expect(200);
        let d = app.get("/openapi/workflows/custom/Custom-1/detail?projectKey=p").await.expect(200).clone();
        let jobs = &d["stages"][0]["jobs"];
        assert_eq!(jobs[0]["spec"], body["stages"][0]["jobs"][0]["spec"]);
        assert_eq!(jobs[0]["error_policy"], json!({"policy": "retry", "maximum_retry": 2}));
        assert_eq!(jobs[0]["run_policy"], "default_not_run");
        assert_eq!(jobs[1]["spec"], body["stages"][0]["jobs"][1]["spec"], "plugin properties are not converted");
        assert_eq!(jobs[2]["spec"], body["stages"][0]["jobs"][2]["spec"]);
        for k in 0..7 {
            assert_eq!(d["stages"][1]["jobs"][k]["spec"], body["stages"][1]["jobs"][k]["spec"], "job {k} round-trips");
            assert_eq!(d["stages"][1]["jobs"][k]["type"], body["stages"][1]["jobs"][k]["type"]);
        }
        assert_eq!(d["stages"][0]["parallel"], true);
        let mut shown = body["notify_ctls"].clone();
        shown[0]["weChat_webHook"] = json!("********");
        assert_eq!(d["notify_ctls"], shown, "a chat bot's hook address is a secret");
        assert_eq!(d["share_storages"], body["share_storages"]);
        assert_eq!(d["concurrency_limit"], -1);
        // Params in the seed's detail shape.
        assert_eq!(d["params"][0]["choice_option"], json!(["1", "2"]));
        assert_eq!(d["params"][0]["is_credential"], false);
        assert_eq!(d["params"][0]["repo"], Value::Null);
        assert_eq!(d["params"][1]["repo"]["repo_name"], "app");
        let stored = app.state().workflows.get("Custom-1").await.unwrap().unwrap();
        assert_eq!(stored.extra["x_top_level"], json!({"kept": true}));
        assert_eq!(stored.category, "release");
        assert_eq!(Value::Array(stored.notify_ctls), body["notify_ctls"]);
        app.stop().await;
    }
}

backend_test! {
    async fn params_are_typed(app) {
        // Zadig's Param has Go types: a field of another type is a 400 (lint code) naming it.
        let with_params = |params: Value| json!({"name": "typed", "project": "p", "params": params});
        let cases: Vec<(Value, &str)> = vec![
            (json!([{"name": "TOKEN", "type": "string", "value": "x", "is_credential": "true"}]), "params[0].is_credential"),
            (json!([{"name": "a"}, {"name": "v", "type": "choice", "choice_option": ["1", "2", 3], "value": "1"}]),
                "params[1].choice_option[2]"),
            (json!([{"name": "m", "type": "multi-select", "choice_value": [true]}]), "params[0].choice_value[0]"),
            (json!([{"name": "n", "value": 5}]), "params[0].value"),
            (json!([{"name": 7}]), "params[0].name"),
            (json!([{"name": "r", "type": "repo", "repo": "org/app"}]), "params[0].repo"),
            (json!(["TOKEN"]), "params[0]"),
        ];
        for (params, needle) in cases {
            let r = app.post("/api/aslan/workflow/v4", with_params(params)).await;
            assert_eq!(code_of(r.expect_error(400, needle)), 6545, "Zadig's lint code");
        }
        // So is a job variable's credential flag, wherever it is in the spec.
        let mut wf = echo_workflow("typed", "p");
        wf["stages"][0]["jobs"][0]["spec"]["envs"][0]["is_credential"] = json!("true");
        let r = app.post("/api/aslan/workflow/v4", wf).await;
        assert_eq!(code_of(r.expect_error(400, "stages[0].jobs[0].spec.envs[0].is_credential")), 6545);
        // And the repositories and variables the engine reads: refused when saved rather than
        // failing the job when it runs.
        for (key, value, needle) in [
            ("envs", json!([{"key": 5}]), "stages[0].jobs[0].spec.envs[0].key"),
            ("repos", json!([{"repo_name": "app", "branch": 1}]), "stages[0].jobs[0].spec.repos[0].branch"),
        ] {
            let mut wf = echo_workflow("typed", "p");
            wf["stages"][0]["jobs"][0]["spec"][key] = value;
            let r = app.post("/api/aslan/workflow/v4", wf).await;
            assert_eq!(code_of(r.expect_error(400, needle)), 6545);
        }
        // `null` reads as absent; the stored JSON keeps what was sent.
        let ok = json!([{"name": "TOKEN", "type": null, "value": "x", "is_credential": null, "choice_option": null, "x_extra": 1},
            {"name": "m", "type": "multi-select", "choice_option": ["a", "b"], "value": "a"}]);
        app.post("/api/aslan/workflow/v4", with_params(ok)).await.expect(200);
        let d = app.get("/openapi/workflows/custom/typed/detail?projectKey=p").await.expect(200).clone();
        assert_eq!(d["params"][0]["type"], "string");
        assert_eq!(d["params"][0]["is_credential"], Value::Null);
        assert_eq!(d["params"][0]["x_extra"], 1);

        // Execute: a multi-select value list holds strings.
        let inputs = json!([{"job_name": "echo"}]);
        let mut wf = echo_workflow("typed-exec", "p");
        wf["params"] = json!([{"name": "m", "type": "multi-select", "choice_option": ["a", "b"], "value": "a"}]);
        app.post("/api/aslan/workflow/v4", wf).await.expect(200);
        let body = |value: Value| json!({"project_key": "p", "workflow_key": "typed-exec", "inputs": inputs,
            "parameters": [{"name": "m", "type": "multi-select", "value": value}]});
        app.post("/openapi/workflows/custom/task", body(json!(["a", 2]))).await.expect_error(400, "parameters[0].value[1]");
        app.post("/openapi/workflows/custom/task", body(json!(["a", "c"]))).await.expect_error(400, "parameters[0].value");
        app.stop().await;
    }
}

backend_test! {
    async fn create_validation_names_the_field(app) {
        let base = echo_workflow("wf", "p");
        let cases: Vec<(Value, &str)> = vec![
            (json!({"display_name": "x", "project": "p"}), "`name`"),
            (json!({"name": "bad_name", "project": "p"}), "`name`"),
            (json!({"name": "x".repeat(300), "project": "p"}), "`name`"),
            (json!({"name": "ok"}), "`project`"),
            (json!({"name": "ok", "project": "p", "concurrency_limit": -2}), "concurrency_limit"),
            (json!({"name": "ok", "project": "p", "params": [{"name": "a", "type": "number"}]}), "params[0].type"),
            (json!({"name": "ok", "project": "p", "params": [{"name": "a"}, {"name": "a"}]}), "params[1].name"),
            (json!({"name": "ok", "project": "p", "stages": [{"name": "a"}, {"name": "a"}]}), "stages[1].name"),
            (json!({"name": "ok", "project": "p", "stages": [{"name": ""}]}), "stages[0].name"),
            (json!({"name": "ok", "project": "p", "stages": [{"name": "a", "jobs": [{"name": "Bad", "type": "freestyle"}]}]}), "stages[0].jobs[0].name"),
            (json!({"name": "ok", "project": "p", "stages": [{"name": "a", "jobs": [{"name": "j", "type": "freestyle"}]},
                {"name": "b", "jobs": [{"name": "j", "type": "plugin"}]}]}), "duplicated job name: j"),
            (json!({"name": "ok", "project": "p", "stages": [{"name": "a", "jobs": [{"name": "j", "type": "teleport"}]}]}), "stages[0].jobs[0].type"),
            (json!({"name": "ok", "project": "p", "stages": [{"name": "a", "jobs": [{"name": "j", "type": "freestyle", "run_policy": "maybe"}]}]}), "run_policy"),
            (json!({"name": "ok", "project": "p", "stages": [{"name": "a", "jobs": [{"name": "j", "type": "freestyle", "spec": 5}]}]}), "stages[0].jobs[0].spec"),
            (json!({"name": "ok", "project": "p", "stages": [{"name": "a", "jobs": [{"name": "j", "type": "freestyle", "spec": {"steps": [{"type": "shell", "spec": {}}]}}]}]}), "stages[0].jobs[0].spec.steps[0].spec.script"),
            (json!({"name": "ok", "project": "p", "stages": [{"name": "a", "jobs": [{"name": "j", "type": "freestyle", "spec": {"advanced_setting": {"outputs": [{"name": "bad-name"}]}}}]}]}), "advanced_setting.outputs[0].name"),
            (json!({"name": "ok", "project": "p", "stages": [{"name": "a", "approval": {"enabled": true, "type": "fax"}}]}), "stages[0].approval.type"),
            (json!({"name": "ok", "project": "p", "stages": [{"name": "a", "jobs": [{"name": "b", "type": "zadig-build",
                "spec": {"service_and_builds": [{"service_name": "s", "service_module": "m"}, {"service_name": "s", "service_module": "m"}]}}]}]}),
                "duplicate service module in options field"),
            (json!({"name": "ok", "project": "p", "stages": [{"name": "a", "jobs": [{"name": "t", "type": "zadig-test",
                "spec": {"test_type": "service_test", "service_and_tests": [{"service_name": "s", "service_module": "m"}]}}]}]}),
                "test name cannot be empty in service testing"),
        ];
        for (body, needle) in cases {
            let r = app.post("/api/aslan/workflow/v4", body.clone()).await;
            assert_eq!(code_of(r.expect_error(400, needle)), 6545, "Zadig's lint code");
        }
        // fromjob must quote an earlier job: a later stage or the same parallel stage won't do.
        let later = json!({"name": "ok", "project": "p", "stages": [
            {"name": "a", "jobs": [{"name": "deploy", "type": "zadig-deploy", "spec": {"source": "fromjob", "job_name": "build"}}]},
            {"name": "b", "jobs": [{"name": "build", "type": "zadig-build", "spec": {}}]}]});
        app.post("/api/aslan/workflow/v4", later).await.expect_error(400, "stages[0].jobs[0].spec.job_name");
        let parallel = json!({"name": "ok", "project": "p", "stages": [
            {"name": "a", "parallel": true, "jobs": [{"name": "build", "type": "zadig-build", "spec": {}},
                {"name": "deploy", "type": "zadig-deploy", "spec": {"source": "fromjob", "job_name": "build"}}]}]});
        app.post("/api/aslan/workflow/v4", parallel).await.expect_error(400, "can not quote job build in job deploy");
        let serial = json!({"name": "ok", "project": "p", "stages": [
            {"name": "a", "parallel": false, "jobs": [{"name": "build", "type": "zadig-build", "spec": {}},
                {"name": "deploy", "type": "zadig-deploy", "spec": {"source": "fromjob", "job_name": "build"}}]}]});
        app.post("/api/aslan/workflow/v4", serial).await.expect(200);
        let missing = json!({"name": "ok2", "project": "p", "stages": [
            {"name": "a", "jobs": [{"name": "deploy", "type": "zadig-deploy", "spec": {"source": "fromjob"}}]}]});
        app.post("/api/aslan/workflow/v4", missing).await.expect_error(400, "spec.job_name");

        // Malformed JSON and wrong types name the field.
        app.raw(Method::POST, "/api/aslan/workflow/v4", "{nope").await.expect_error(400, "JSON");
        app.raw(Method::POST, "/api/aslan/workflow/v4", r#"{"name": "x", "project": "p", "concurrency_limit": "5"}"#).await.expect_error(400, "concurrency_limit");
        app.raw(Method::POST, "/api/aslan/workflow/v4", r#"{"name": "x", "project": "p", "stages": [{"name": "a", "parallel": "yes"}]}"#).await.expect_error(400, "parallel");
        // Nothing was stored by the failures.
        app.post("/api/aslan/workflow/v4", base).await.expect(200);
        let l = app.get("/openapi/workflows?projectKey=p").await;
        let keys: Vec<&str> = l.expect(200)["workflows"].as_array().unwrap().iter().map(|w| w["workflow_key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["ok", "wf"]);
        app.get("/openapi/workflows").await.expect_error(400, "projectKey");
        app.stop().await;
    }
}

backend_test! {
    async fn approval_settings_are_read_typed(app) {
        // A stage approval and an approval job, each with Zadig's fields and some we don't model.
        let gated = || json!({"name": "gated", "project": "p", "stages": [{"name": "s", "approval": {
                "enabled": true, "type": "native", "description": "go?", "lark_approval": {"kept": 1},
                "native_approval": {"timeout": 5, "needed_approvers": 1, "floor": null, "approve_users": [
                    {"type": "user", "user_id": "u1", "user_name": "alice", "group_id": ""},
                    {"user_id": null, "user_name": "bob"}]}},
            "jobs": [{"name": "echo", "type": "freestyle", "spec": {"script": "echo"}},
                {"name": "gate", "type": "approval", "spec": {"type": "native", "timeout": 3,
                    "native_approval": {"needed_approvers": 1, "approve_users": [{"user_id": "u1", "user_name": "alice"}]}}}]}]});
        let body = gated();
        app.post("/api/aslan/workflow/v4", body.clone()).await.expect(200);
        // Stored as sent: the typed reading changes nothing.
        let d = app.get("/openapi/workflows/custom/gated/detail?projectKey=p").await.expect(200).clone();
        let mut shown = d["stages"][0]["approval"].clone();
        let na = shown["native_approval"].as_object_mut().unwrap();
        assert_eq!((na.remove("Timeout"), na.remove("NeededApprovers")), (Some(json!(5)), Some(json!(1))));
        assert_eq!(shown, body["stages"][0]["approval"]);
        assert_eq!(d["stages"][0]["jobs"][1]["spec"], body["stages"][0]["jobs"][1]["spec"]);

        // A wrong-typed field is a 400 naming it (Zadig's lint code), on create and on update.
        let stage_na = "/stages/0/approval/native_approval";
        let job_na = "/stages/0/jobs/1/spec/native_approval";
        let cases = [
            (format!("{stage_na}/approve_users/0/user_id"), json!(7), "stages[0].approval.native_approval.approve_users[0].user_id"),
            (format!("{stage_na}/needed_approvers"), json!("1"), "stages[0].approval.native_approval.needed_approvers"),
            (format!("{job_na}/approve_users/0/user_name"), json!(5), "stages[0].jobs[1].spec.native_approval.approve_users[0].user_name"),
            (format!("{job_na}/approve_users/0/user_id"), json!(42), "stages[0].jobs[1].spec.native_approval.approve_users[0].user_id"),
            (format!("{job_na}/needed_approvers"), json!("1"), "stages[0].jobs[1].spec.native_approval.needed_approvers"),
            ("/stages/0/approval/enabled".to_string(), json!("true"), "stages[0].approval.enabled"),
            ("/stages/0/jobs/1/spec/timeout".to_string(), json!("3"), "stages[0].jobs[1].spec.timeout"),
            (format!("{job_na}/approve_users/0"), json!({"user_id": "u1", "user_name": "alice", "reject_or_approve": "maybe"}),
                "stages[0].jobs[1].spec.native_approval.approve_users[0].reject_or_approve"),
        ];
        for (at, value, field) in cases {
            let mut bad = gated();
            *bad.pointer_mut(&at).unwrap() = value;
            let mut created = bad.clone();
            created["name"] = json!("other");
            let r = app.post("/api/aslan/workflow/v4", created).await;
            let e = r.expect_error(400, &format!("`{field}`"));
            assert_eq!(code_of(e), 6545, "{field}");
            let r = app.put("/api/aslan/workflow/v4/gated?projectName=p", bad).await;
            assert_eq!(code_of(r.expect_error(400, &format!("`{field}`"))), 6545, "{field}");
        }
        let after = app.get("/openapi/workflows/custom/gated/detail?projectKey=p").await.expect(200).clone();
        assert_eq!(after["stages"], d["stages"], "failed updates change nothing");
        app.get("/openapi/workflows/custom/other/detail?projectKey=p").await.expect_error(404, "other");

        // The other gates: a stage's manual execution and a `manual_check` error policy's users.
        let gates = [
            ("/stages/0/manual_exec", json!({"enabled": "true"}), "stages[0].manual_exec.enabled"),
            ("/stages/0/manual_exec", json!({"enabled": true, "manual_exec_users": [{"user_id": 5}]}),
                "stages[0].manual_exec.manual_exec_users[0].user_id"),
            ("/stages/0/jobs/0/error_policy", json!({"policy": "manual_check", "approval_users": [{"user_name": 5}]}),
                "stages[0].jobs[0].error_policy.approval_users[0].user_name"),
        ];
        for (at, value, field) in gates {
            let mut bad = gated();
            let (parent, key) = at.rsplit_once('/').unwrap();
            bad.pointer_mut(parent).unwrap()[key] = value;
            let r = app.put("/api/aslan/workflow/v4/gated?projectName=p", bad).await;
            assert_eq!(code_of(r.expect_error(400, field)), 6545, "{field}");
        }
        let mut ok = gated();
        ok["stages"][0]["manual_exec"] = json!({"enabled": true, "manual_exec_users": [{"type": "task_creator", "x": 1}]});
        app.put("/api/aslan/workflow/v4/gated?projectName=p", ok).await.expect(200);
        app.stop().await;
    }
}

backend_test! {
    async fn update_workflow(app) {
        app.post("/api/aslan/workflow/v4", echo_workflow("wf", "p")).await.expect(200);
        app.post("/api/aslan/workflow/v4", echo_workflow("other", "p")).await.expect(200);
        let created = app.clock.now();
        app.clock.advance(std::time::Duration::from_secs(60));
        // A second admin edits (only the creator or an admin may; tests/it/authz.rs).
        let (_, token) = app.create_user("bob", true).await;

        let mut body = echo_workflow("wf", "p");
        body["display_name"] = json!("Workflow, renamed");
        body["description"] = json!("new");
        body["name"] = json!("ignored-in-favour-of-the-path");
        let r = app.call(Method::PUT, "/api/aslan/workflow/v4/wf?projectName=p", Some(&token), Some(body.clone())).await;
        assert_eq!(r.expect(200), &json!({"message": "success"}));
        let d = app.get("/openapi/workflows/custom/wf/detail?projectKey=p").await.expect(200).clone();
        assert_fields(&d, json!({
            "workflow_key": "wf", "workflow_name": "Workflow, renamed", "description": "new",
            "created_by": "admin", "create_time": created, "updated_by": "bob",
            "update_time": created + 60
        }));
        assert!(app.get("/openapi/workflows/custom/ignored-in-favour-of-the-path/detail?projectKey=p").await.status == 404);

        // The OpenAPI alias; the project may be omitted from the body.
        let mut alias = echo_workflow("wf", "p");
        alias.as_object_mut().unwrap().remove("project");
        alias["concurrency_limit"] = json!(3);
        app.put("/openapi/workflows/custom/wf", alias).await.expect(200);
        assert_eq!(app.get("/openapi/workflows/custom/wf/detail?projectKey=p").await.expect(200)["concurrency_limit"], 3);

        // Errors.
        let r = app.put("/api/aslan/workflow/v4/nope?projectName=p", echo_workflow("nope", "p")).await;
        assert_eq!(code_of(r.expect_error(404, "nope")), 6542);
        app.put("/api/aslan/workflow/v4/wf?projectName=elsewhere", echo_workflow("wf", "elsewhere")).await.expect_error(404, "elsewhere");
        app.put("/api/aslan/workflow/v4/wf", echo_workflow("wf", "elsewhere")).await.expect_error(400, "project");
        let mut dup = echo_workflow("wf", "p");
        dup["display_name"] = json!("other");
        let r = app.put("/api/aslan/workflow/v4/wf?projectName=p", dup).await;
        assert_eq!(code_of(r.expect_error(409, "display_name")), 6540);
        let mut bad = echo_workflow("wf", "p");
        bad["stages"][0]["jobs"][0]["name"] = json!("NOPE");
        app.put("/api/aslan/workflow/v4/wf?projectName=p", bad).await.expect_error(400, "stages[0].jobs[0].name");
        app.raw(Method::PUT, "/api/aslan/workflow/v4/wf", "{bad").await.expect_error(400, "JSON");
        let d = app.get("/openapi/workflows/custom/wf/detail?projectKey=p").await.expect(200).clone();
        assert_eq!((d["workflow_name"].as_str(), d["concurrency_limit"].as_i64()), (Some("wf"), Some(3)), "failed updates change nothing");
        app.stop().await;
    }
}

backend_test! {
    async fn detail_and_delete(app) {
        app.post("/api/aslan/workflow/v4", echo_workflow("wf", "p")).await.expect(200);
        app.get("/openapi/workflows/custom/wf/detail").await.expect_error(400, "projectKey");
        let r = app.get("/openapi/workflows/custom/nope/detail?projectKey=p").await;
        assert_eq!(code_of(r.expect_error(404, "nope")), 6542);
        app.get("/openapi/workflows/custom/wf/detail?projectKey=q").await.expect_error(404, "project q");

        // A task to see it archived with its workflow.
        crate::workflow_tasks::hold_engine(&app, "wf", 1).await;
        let r = app.post("/openapi/workflows/custom/task", json!({"project_key": "p", "workflow_key": "wf", "inputs": [{"job_name": "echo", "job_type": "freestyle", "parameters": {}}]})).await;
        assert_eq!(r.expect(200)["task_id"], 1);

        app.delete("/openapi/workflows/custom?projectKey=p").await.expect_error(400, "workflowKey");
        app.delete("/openapi/workflows/custom?workflowKey=wf").await.expect_error(400, "projectKey");
        let r = app.delete("/openapi/workflows/custom?workflowKey=nope&projectKey=p").await;
        assert_eq!(code_of(r.expect_error(404, "nope")), 6543);
        app.delete("/openapi/workflows/custom?workflowKey=wf&projectKey=q").await.expect_error(404, "wf");
        assert_eq!(app.delete("/openapi/workflows/custom?workflowKey=wf&projectKey=p").await.expect(200), &json!({"message": "success"}));
        app.get("/openapi/workflows/custom/wf/detail?projectKey=p").await.expect_error(404, "wf");
        assert_eq!(app.get("/openapi/workflows?projectKey=p").await.expect(200)["workflows"], json!([]));

        // The waiting task was cancelled and archived; its detail is still readable.
        let t = app.get("/openapi/workflows/custom/task?taskId=1&workflowKey=wf").await.expect(200).clone();
        assert_eq!(t["status"], "cancelled");
        assert!(app.state().tasks.get("wf", 1).await.unwrap().unwrap().is_deleted);

        // Re-created: task ids continue (no reuse of an archived task's key).
        app.post("/api/aslan/workflow/v4", echo_workflow("wf", "p")).await.expect(200);
        let r = app.post("/openapi/workflows/custom/task", json!({"project_key": "p", "workflow_key": "wf", "inputs": [{"job_name": "echo"}]})).await;
        assert_eq!(r.expect(200)["task_id"], 2);
        let l = app.get("/openapi/workflows/custom/wf/tasks?projectKey=p").await.expect(200).clone();
        assert_eq!(l["total"], 1, "archived tasks are not listed: {l}");
        app.stop().await;
    }
}

backend_test! {
    async fn views(app) {
        for (name, project) in [("dev", "demo"), ("nacos-config-update", "demo"), ("build-deploy", "demo"), ("elsewhere", "other")] {
            app.post("/api/aslan/workflow/v4", echo_workflow(name, project)).await.expect(200);
        }
        // The seed's create body.
        let seed = json!({"project_key": "demo", "name": "view-demo", "workflow_list": [
            {"workflow_key": "dev", "workflow_type": "custom"},
            {"workflow_key": "nacos-config-update", "workflow_type": "custom"}]});
        assert_eq!(app.post("/openapi/workflows/view", seed.clone()).await.expect(200), &json!({"message": "success"}));
        app.post("/openapi/workflows/view", json!({"project_key": "demo", "name": "a-view", "workflow_list": []})).await.expect(200);
        let r = app.post("/openapi/workflows/view", seed.clone()).await;
        assert_eq!(code_of(r.expect_error(409, "view-demo")), 6892);
        // The same name in another project is another view.
        app.post("/openapi/workflows/view", json!({"project_key": "other", "name": "view-demo", "workflow_list": []})).await.expect(200);

        app.post("/openapi/workflows/view", json!({"name": "v", "workflow_list": []})).await.expect_error(400, "project_key");
        app.post("/openapi/workflows/view", json!({"project_key": "demo", "workflow_list": []})).await.expect_error(400, "name");
        app.post("/openapi/workflows/view", json!({"project_key": "demo", "name": "v", "workflow_list": [{"workflow_key": "dev", "workflow_type": "legacy"}]})).await
            .expect_error(400, "workflow_list[0].workflow_type");
        app.post("/openapi/workflows/view", json!({"project_key": "demo", "name": "v", "workflow_list": [
            {"workflow_key": "dev", "workflow_type": "custom"}, {"workflow_key": "dev", "workflow_type": "custom"}]})).await
            .expect_error(400, "workflow_list[1].workflow_key");
        app.raw(Method::POST, "/openapi/workflows/view", "{").await.expect_error(400, "JSON");

        let l = app.get("/openapi/workflows/view?projectKey=demo").await.expect(200).clone();
        let names: Vec<&str> = l.as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["view-demo", "a-view"], "sorted by name, descending");
        assert_eq!(l[0]["project_key"], "demo");
        assert_eq!(l[0]["update_by"], "admin");
        assert_eq!(l[0]["update_time"], app.clock.now());
        assert_eq!(l[0]["workflows"], json!([
            {"workflow_key": "dev", "workflow_type": "custom"},
            {"workflow_key": "nacos-config-update", "workflow_type": "custom"}]));
        app.get("/openapi/workflows/view").await.expect_error(400, "projectKey");

        // The workflow list filtered by a view.
        let keys = |v: &Value| -> Vec<String> { v["workflows"].as_array().unwrap().iter().map(|w| w["workflow_key"].as_str().unwrap().to_string()).collect() };
        let f = app.get("/openapi/workflows?projectKey=demo&viewName=view-demo").await;
        assert_eq!(keys(f.expect(200)), ["dev", "nacos-config-update"], "creation order, then name");
        assert_eq!(keys(app.get("/openapi/workflows?projectKey=demo&viewName=a-view").await.expect(200)), Vec::<String>::new());
        app.get("/openapi/workflows?projectKey=demo&viewName=nope").await.expect_error(404, "viewName");

        // Edit: the seed's body adds; enabled=false removes.
        let edit = json!({"workflow_list": [{"workflow_key": "build-deploy", "workflow_type": "custom", "enabled": true}]});
        assert_eq!(app.put("/openapi/workflows/view/view-demo?projectKey=demo", edit).await.expect(200), &json!({"message": "success"}));
        app.put("/openapi/workflows/view/view-demo?projectKey=demo", json!({"workflow_list": [
            {"workflow_key": "dev", "workflow_type": "custom", "enabled": false},
            {"workflow_key": "never-there", "workflow_type": "custom", "enabled": false}]})).await.expect(200);
        assert_eq!(keys(app.get("/openapi/workflows?projectKey=demo&viewName=view-demo").await.expect(200)), ["build-deploy", "nacos-config-update"]);
        let v = app.get("/openapi/workflows/view?projectKey=demo").await.expect(200)[0].clone();
        assert_eq!(v["workflows"], json!([
            {"workflow_key": "nacos-config-update", "workflow_type": "custom"},
            {"workflow_key": "build-deploy", "workflow_type": "custom"}]));
        app.put("/openapi/workflows/view/nope?projectKey=demo", json!({"workflow_list": []})).await.expect_error(404, "nope");
        app.put("/openapi/workflows/view/view-demo", json!({"workflow_list": []})).await.expect_error(400, "projectKey");
        app.put("/openapi/workflows/view/view-demo?projectKey=demo", json!({"workflow_list": [{"workflow_key": "dev", "workflow_type": "custom"}]})).await
            .expect_error(400, "enabled");
        app.put("/openapi/workflows/view/view-demo?projectKey=demo", json!({"workflow_list": [{"workflow_key": "dev", "workflow_type": "x", "enabled": true}]})).await
            .expect_error(400, "workflow_type");

        // Deleting a workflow takes it out of its views.
        app.delete("/openapi/workflows/custom?workflowKey=build-deploy&projectKey=demo").await.expect(200);
        assert_eq!(app.get("/openapi/workflows/view?projectKey=demo").await.expect(200)[0]["workflows"],
            json!([{"workflow_key": "nacos-config-update", "workflow_type": "custom"}]));

        // Delete: unknown → 404 with code 6894.
        let r = app.delete("/openapi/workflows/view/nope?projectKey=demo").await;
        assert_eq!(code_of(r.expect_error(404, "find workflow view error")), 6894);
        app.delete("/openapi/workflows/view/view-demo").await.expect_error(400, "projectKey");
        assert_eq!(app.delete("/openapi/workflows/view/view-demo?projectKey=demo").await.expect(200), &json!({"message": "success"}));
        app.delete("/openapi/workflows/view/view-demo?projectKey=demo").await.expect_error(404, "view-demo");
        assert_eq!(app.get("/openapi/workflows/view?projectKey=other").await.expect(200).as_array().unwrap().len(), 1);
        app.stop().await;
    }
}

backend_test! {
    async fn create_with_view_name(app) {
        app.post("/openapi/workflows/view", json!({"project_key": "p", "name": "mine", "workflow_list": []})).await.expect(200);
        app.post("/api/aslan/workflow/v4?viewName=mine", echo_workflow("wf", "p")).await.expect(200);
        // A missing view is ignored (as in Zadig): the workflow is still created.
        app.post("/api/aslan/workflow/v4?viewName=missing", echo_workflow("wf2", "p")).await.expect(200);
        let v = app.get("/openapi/workflows/view?projectKey=p").await.expect(200)[0].clone();
        assert_eq!(v["workflows"], json!([{"workflow_key": "wf", "workflow_type": "custom"}]));
        app.stop().await;
    }
}

backend_test! {
    async fn tickets(app) {
        // The seed's fields; `envs` as the documented string.
        let seed = json!({
            "project_key": "demo", "approval_id": "OA-2024-001", "status": 1, "envs": "dev",
            "services": [{"service_name": "service1", "service_module": "service1"}],
            "users": [{"name": "Alice", "email": "alice@example.com"}],
            "execution_window_start": 1700000000, "execution_window_end": 1800000000
        });
        let r = app.post("/openapi/ticket/approval", seed.clone()).await;
        assert_eq!(r.expect(200), &json!({"code": 1, "message": "success"}));
        let t = app.state().approval_tickets.find("OA-2024-001").await.unwrap().unwrap();
        assert_eq!(t.envs, ["dev"]);
        assert_eq!(t.users[0].email, "alice@example.com");
        assert_eq!(t.create_time, app.clock.now());
        // ... or as a list; optional fields may be left out.
        app.post("/openapi/ticket/approval", json!({"project_key": "demo", "approval_id": "OA-2", "status": 0, "envs": ["dev", "prod"]})).await.expect(200);
        assert_eq!(app.state().approval_tickets.find("OA-2").await.unwrap().unwrap().envs, ["dev", "prod"]);
        app.post("/openapi/ticket/approval", json!({"project_key": "demo", "approval_id": "OA-3", "status": 1, "envs": "dev, staging"})).await.expect(200);
        assert_eq!(app.state().approval_tickets.find("OA-3").await.unwrap().unwrap().envs, ["dev", "staging"]);

        let r = app.post("/openapi/ticket/approval", seed).await;
        assert_eq!(code_of(r.expect_error(409, "OA-2024-001")), 7100);
        app.post("/openapi/ticket/approval", json!({"project_key": "demo", "status": 1})).await.expect_error(400, "approval_id");
        app.post("/openapi/ticket/approval", json!({"approval_id": "x", "status": 1})).await.expect_error(400, "project_key");
        app.post("/openapi/ticket/approval", json!({"project_key": "demo", "approval_id": "x"})).await.expect_error(400, "status");
        app.post("/openapi/ticket/approval", json!({"project_key": "demo", "approval_id": "x", "status": 7})).await.expect_error(400, "status");
        app.post("/openapi/ticket/approval", json!({"project_key": "demo", "approval_id": "x", "status": 1,
            "execution_window_start": 20, "execution_window_end": 10})).await.expect_error(400, "execution_window_start");
        app.post("/openapi/ticket/approval", json!({"project_key": "demo", "approval_id": "x", "status": 1, "envs": 5})).await.expect_error(400, "envs");
        app.raw(Method::POST, "/openapi/ticket/approval", "{").await.expect_error(400, "JSON");
        app.stop().await;
    }
}

/// A workflow helper for other modules' tests.
pub async fn create(app: &TestApp, body: Value) {
    app.post("/api/aslan/workflow/v4", body).await.expect(200);
}

backend_test! {
    async fn concurrent_view_edits_all_apply(app) {
        app.post("/openapi/workflows/view", json!({"project_key": "p", "name": "v", "workflow_list": []})).await.expect(200);
        let calls = (0..10).map(|i| app.put("/openapi/workflows/view/v?projectKey=p",
            json!({"workflow_list": [{"workflow_key": format!("wf-{i}"), "workflow_type": "custom", "enabled": true}]})));
        for r in futures::future::join_all(calls).await {
            r.expect(200);
        }
        let v = app.get("/openapi/workflows/view?projectKey=p").await.expect(200)[0].clone();
        assert_eq!(v["workflows"].as_array().unwrap().len(), 10, "{v}");
        app.stop().await;
    }
}

backend_test! {
    async fn credentials_are_masked_in_the_detail_and_kept_on_update(app) {
        let mut wf = echo_workflow("wf", "p");
        wf["params"] = json!([
            {"name": "TOKEN", "type": "string", "value": "tok-pw-1", "is_credential": true},
            {"name": "who", "type": "string", "value": "world"}]);
        wf["stages"][0]["jobs"][0]["spec"]["envs"] = json!([
            {"key": "PASSWORD", "value": "env-pw-2", "type": "string", "is_credential": true}]);
        // A clone token is a secret wherever it is.
        wf["stages"][0]["jobs"][0]["spec"]["repos"] = json!([
            {"repo_owner": "o", "repo_name": "r", "branch": "main", "oauth_token": "clone-pw-3"},
            {"repo_owner": "o", "repo_name": "r2", "branch": "main", "address": "https://bot:url-pw-4@git.example/x"}]);
        app.post("/api/aslan/workflow/v4", wf).await.expect(200);
        let path = "/openapi/workflows/custom/wf/detail?projectKey=p";
        let raw = app.get(path).await;
        assert!(!raw.text.contains("-pw-"), "no credential in the detail: {}", raw.text);
        let d = raw.expect(200).clone();
        assert_eq!(d["params"][0]["value"], "********");
        assert_eq!(d["params"][1]["value"], "world");
        assert_eq!(d["stages"][0]["jobs"][0]["spec"]["envs"][0]["value"], "********");
        assert_eq!(d["stages"][0]["jobs"][0]["spec"]["repos"][0]["oauth_token"], "********");
        assert_eq!(d["stages"][0]["jobs"][0]["spec"]["repos"][1]["address"], "https://bot:********@git.example/x");

        // The detail's params and stages sent back (params reordered) keep the stored values.
        let mut body = echo_workflow("wf", "p");
        body["params"] = json!([d["params"][1], d["params"][0]]);
        body["stages"] = d["stages"].clone();
        app.put("/api/aslan/workflow/v4/wf?projectName=p", body.clone()).await.expect(200);
        let stored = app.state().workflows.get("wf").await.unwrap().expect("workflow");
        assert_eq!(stored.params[1]["value"], "tok-pw-1");
        assert_eq!(stored.stages[0].jobs[0].spec["envs"][0]["value"], "env-pw-2");
        assert_eq!(stored.stages[0].jobs[0].spec["repos"][0]["oauth_token"], "clone-pw-3");
        assert_eq!(stored.stages[0].jobs[0].spec["repos"][1]["address"], "https://bot:url-pw-4@git.example/x");

        // Unmarking a credential and sending its mask back does not reveal the stored value.
        body["params"][1]["is_credential"] = json!(false);
        app.put("/api/aslan/workflow/v4/wf?projectName=p", body).await.expect(200);
        let d = app.get(path).await.expect(200).clone();
        assert_eq!(d["params"][1]["value"], "********", "the literal mask, not the secret: {d}");
        app.stop().await;
    }
}
