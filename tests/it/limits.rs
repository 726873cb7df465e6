//! Input limits (docs/security.md "Input limits"): field sizes, array sizes, page sizes and
//! paging offsets, and environment-variable names at definition and at execute — each a 400
//! naming the field.

use serde_json::{Value, json};
use zadig_server::limits;

use crate::backend_test;
use crate::build::seed_build;
use crate::release_plan::{BASE, create, simple_body};
use crate::workflows::echo_workflow;

/// Every paged list route.
const PAGED: &[&str] = &[
    "/openapi/users?",
    "/openapi/build?projectKey=p&",
    "/openapi/templates/build?",
    "/openapi/release_plan/v1?",
    "/openapi/delivery/releases?projectKey=p&",
    "/openapi/workflows/custom/wf/tasks?projectKey=p&",
];

/// The bad names of the brief: `=`, a newline, a leading digit, empty.
const BAD_KEYS: &[&str] = &["A=B", "A\nB", "1A", ""];

backend_test! {
    async fn a_huge_description_is_refused_under_the_body_limit(app) {
        let mut body = simple_body("big", "admin");
        body["description"] = json!("x".repeat(9 * 1024 * 1024));
        app.post(BASE, body).await.expect_error(400, "`description`");
        // Just within the limit is fine, and a PATCH is bounded alike.
        let mut body = simple_body("ok", "admin");
        body["description"] = json!("x".repeat(limits::MAX_TEXT_BYTES));
        let id = create(&app, body.clone()).await;
        body["description"] = json!("x".repeat(limits::MAX_TEXT_BYTES + 1));
        app.patch(&format!("{BASE}/{id}"), body).await.expect_error(400, "`description`");
        // Over the body limit is still 413.
        let mut body = simple_body("huge", "admin");
        body["description"] = json!("x".repeat(11 * 1024 * 1024));
        app.post(BASE, body).await.expect_error(413, "body_limit");
        app.stop().await;
    }
}

backend_test! {
    async fn a_huge_script_is_refused(app) {
        let script = "#".repeat(2 * 1024 * 1024);
        let mut wf = echo_workflow("big", "p");
        wf["stages"][0]["jobs"][0]["spec"]["script"] = json!(script);
        app.post("/api/aslan/workflow/v4", wf).await.expect_error(400, "`stages[0].jobs[0].spec.script`");
        let mut build = seed_build();
        build["build_script"] = json!(script);
        app.post("/openapi/build?projectKey=yaml", build).await.expect_error(400, "`build_script`");
        let template = json!({"name": "t", "script_type": "shell", "scripts": script});
        app.post("/openapi/templates/build", template).await.expect_error(400, "`scripts`");
        // A remark is free text.
        let remark = json!({"remark": "r".repeat(limits::MAX_TEXT_BYTES + 1)});
        app.put("/openapi/workflows/custom/wf/task/1", remark).await.expect_error(400, "`remark`");
        app.stop().await;
    }
}

backend_test! {
    async fn too_many_items_are_refused(app) {
        let mut body = simple_body("many", "admin");
        let jobs: Vec<Value> = (0..=limits::MAX_JOBS)
            .map(|i| json!({"name": format!("j{i}"), "type": "text", "spec": {"content": "c"}}))
            .collect();
        body["jobs"] = json!(jobs);
        app.post(BASE, body).await.expect_error(400, "`jobs`");
        let mut wf = echo_workflow("many", "p");
        let stages: Vec<Value> = (0..=limits::MAX_STAGES)
            .map(|i| json!({"name": format!("s{i}"), "jobs": []}))
            .collect();
        wf["stages"] = json!(stages);
        app.post("/api/aslan/workflow/v4", wf).await.expect_error(400, "`stages`");
        let mut wf = echo_workflow("envs", "p");
        let envs: Vec<Value> = (0..=limits::MAX_VARS)
            .map(|i| json!({"key": format!("K{i}"), "value": "v"}))
            .collect();
        wf["stages"][0]["jobs"][0]["spec"]["envs"] = json!(envs);
        app.post("/api/aslan/workflow/v4", wf).await.expect_error(400, "`stages[0].jobs[0].spec.envs`");
        // Edits add to a view's list, so the list is bounded after each edit.
        let list: Vec<Value> = (0..limits::MAX_ITEMS)
            .map(|i| json!({"workflow_key": format!("wf-{i}"), "workflow_type": "custom", "enabled": true}))
            .collect();
        app.post("/openapi/workflows/view", json!({"project_key": "p", "name": "v", "workflow_list": list}))
            .await.expect(200);
        let one_more = json!({"workflow_list": [{"workflow_key": "extra", "workflow_type": "custom", "enabled": true}]});
        app.put("/openapi/workflows/view/v?projectKey=p", one_more).await.expect_error(400, "`workflow_list`");
        app.stop().await;
    }
}

backend_test! {
    async fn paging_that_overflows_names_the_parameter(app) {
        app.post("/api/aslan/workflow/v4", echo_workflow("wf", "p")).await.expect(200);
        for route in PAGED {
            let r = app.get(&format!("{route}pageNum=92233720368547759&pageSize=1")).await;
            r.expect_error(400, "`pageNum`");
            // A page inside every route's range answers (the bound is i64::MAX / the route's
            // largest pageSize).
            let r = app.get(&format!("{route}pageNum=9223372036854775&pageSize=100")).await;
            r.expect(200);
            let r = app.get(&format!("{route}pageNum=92233720368547759&pageSize=100")).await;
            r.expect_error(400, "`pageNum`");
            // Beyond i64 the parameter does not even parse.
            let r = app.get(&format!("{route}pageNum=99999999999999999999&pageSize=10")).await;
            r.expect_error(400, "pageNum");
        }
        // The task list's alias names itself.
        app.get("/openapi/workflows/custom/wf/tasks?projectKey=p&page=92233720368547759&pageSize=1")
            .await.expect_error(400, "`page`");
        app.stop().await;
    }
}

backend_test! {
    async fn page_sizes_are_capped(app) {
        app.post("/api/aslan/workflow/v4", echo_workflow("wf", "p")).await.expect(200);
        for (route, cap) in [
            ("/openapi/users?", 1000),
            ("/openapi/build?projectKey=p&", 100),
            ("/openapi/templates/build?", 100),
            ("/openapi/release_plan/v1?", 100),
            ("/openapi/delivery/releases?projectKey=p&", 100),
            ("/openapi/workflows/custom/wf/tasks?projectKey=p&", 100),
        ] {
            app.get(&format!("{route}pageNum=1&pageSize={cap}")).await.expect(200);
            app.get(&format!("{route}pageNum=1&pageSize={}", cap + 1)).await.expect_error(400, "`pageSize`");
        }
        app.stop().await;
    }
}

backend_test! {
    async fn bad_env_names_are_refused_at_definition(app) {
        for key in BAD_KEYS {
            // A job variable of a workflow.
            let mut wf = echo_workflow("wf", "p");
            wf["stages"][0]["jobs"][0]["spec"]["envs"][0]["key"] = json!(key);
            let r = app.post("/api/aslan/workflow/v4", wf).await;
            r.expect_error(400, "`stages[0].jobs[0].spec.envs[0].key`");
            // A workflow parameter (exported to every job).
            let mut wf = echo_workflow("wf", "p");
            wf["params"][0]["name"] = json!(key);
            app.post("/api/aslan/workflow/v4", wf).await.expect_error(400, "`params[0].name`");
            // A build parameter and a template variable.
            let mut build = seed_build();
            build["parameters"][0]["key"] = json!(key);
            app.post("/openapi/build?projectKey=yaml", build).await.expect_error(400, "`parameters[0].key`");
            let template = json!({"name": "t", "scripts": "echo",
                "pre_build": {"envs": [{"key": key, "value": "v"}]}});
            app.post("/openapi/templates/build", template).await.expect_error(400, "`pre_build.envs[0].key`");
        }
        // An update is checked alike.
        app.post("/api/aslan/workflow/v4", echo_workflow("wf", "p")).await.expect(200);
        let mut wf = echo_workflow("wf", "p");
        wf["stages"][0]["jobs"][0]["spec"]["envs"][0]["key"] = json!("A=B");
        app.put("/api/aslan/workflow/v4/wf", wf).await.expect_error(400, "`stages[0].jobs[0].spec.envs[0].key`");
        app.stop().await;
    }
}

backend_test! {
    async fn bad_env_names_are_refused_at_execute(app) {
        app.post("/api/aslan/workflow/v4", echo_workflow("wf", "demo")).await.expect(200);
        let id = create(&app, simple_body("plan", "admin")).await;
        for key in BAD_KEYS {
            let inputs = json!([{"job_name": "echo", "job_type": "freestyle",
                "parameters": {"kv": [{"key": key, "value": "x"}]}}]);
            let body = json!({"project_key": "demo", "workflow_key": "wf", "inputs": inputs});
            let r = app.post("/openapi/workflows/custom/task", body).await;
            r.expect_error(400, "`inputs[0].parameters.kv[0].key`");
            // The same inputs on a release-plan workflow job.
            let mut plan = simple_body("plan", "admin");
            plan["jobs"] = json!([{"name": "w", "type": "workflow",
                "spec": {"workflow_key": "wf", "project_key": "demo", "parameters": [], "inputs": inputs}}]);
            let r = app.patch(&format!("{BASE}/{id}"), plan).await;
            let body = r.expect_error(400, "`inputs[0].parameters.kv[0].key`");
            assert!(body["description"].as_str().unwrap_or_default().contains("jobs[0]"), "{body}");
        }
        // A parameter given at execute names the parameter.
        let body = json!({"project_key": "demo", "workflow_key": "wf",
            "parameters": [{"name": "A=B", "value": "x"}],
            "inputs": [{"job_name": "echo", "job_type": "freestyle", "parameters": {}}]});
        app.post("/openapi/workflows/custom/task", body).await.expect_error(400, "`parameters[0].name`");
        app.stop().await;
    }
}
