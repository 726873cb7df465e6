//! Wire differences real Zadig clients hit (issue 12): the release-plan back-reference on a
//! task, the error-handler fields of a job task, duplicate slashes in the path, seed 001's PATCH
//! example against a workflow that lacks its jobs, and unknown paths under a parameter route.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_test;
use crate::harness::ADMIN_TOKEN;
use crate::release_plan::{BASE, create, detail, job_call, set_status, simple_body};
use crate::workflow_e2e::{detail as task_detail, freestyle};

const LIMIT: Duration = Duration::from_secs(60);

/// A workflow of one stage with one freestyle job `job` running `script`.
fn one_job_workflow(name: &str, project: &str, job: Value) -> Value {
    json!({"name": name, "project": project, "concurrency_limit": -1,
        "stages": [{"name": "run", "jobs": [job]}]})
}

backend_test! {
    async fn a_task_started_by_a_release_plan_carries_zadigs_release_plan_ref(app) {
        app.post("/openapi/workflows/custom", one_job_workflow("ref-wf", "demo", freestyle("hello", "echo hi")))
            .await.expect(200);
        let id = create(&app, simple_body("ref-plan", "admin")).await;
        let mut body = simple_body("ref-plan", "admin");
        body["jobs"] = json!([{"name": "Workflow-1", "type": "workflow",
            "spec": {"workflow_key": "ref-wf", "project_key": "demo", "parameters": [],
                "inputs": [{"job_name": "hello", "job_type": "freestyle", "parameters": {}}]}}]);
        app.patch(&format!("{BASE}/{id}"), body).await.expect(200);
        set_status(&app, &id, "finish_planning").await.expect(200);
        set_status(&app, &id, "executing").await.expect(200);
        let plan = detail(&app, &id).await;
        let job = plan["jobs"][0]["id"].as_str().expect("job id").to_string();
        job_call(&app, ADMIN_TOKEN, &id, "execute", &job, "workflow").await.expect(200);
        let task_id = detail(&app, &id).await["jobs"][0]["spec"]["task_id"].as_i64().expect("task_id");
        let t = task_detail(&app, "ref-wf", task_id).await;
        assert_eq!(
            t["release_plan"],
            json!({"id": id, "name": "ref-plan", "index": plan["index"], "job_id": job}),
            "{t}"
        );
        assert!(plan["index"].as_i64() > Some(0));
        // A task executed directly has no back-reference.
        let r = app.post("/openapi/workflows/custom/task", json!({"project_key": "demo", "workflow_key": "ref-wf",
            "inputs": [{"job_name": "hello"}]})).await;
        let direct = r.expect(200)["task_id"].as_i64().expect("task_id");
        assert!(task_detail(&app, "ref-wf", direct).await.get("release_plan").is_none());
        app.stop().await;
    }
}

backend_test! {
    async fn an_ignored_failure_names_its_error_handler(app) {
        let (alice_uid, alice) = app.create_user("alice", false).await;
        let mut shaky = freestyle("shaky", "exit 3");
        shaky["error_policy"] = json!({"policy": "manual_check", "approval_users": [{"type": "user", "user_name": "alice"}]});
        app.post("/openapi/workflows/custom", one_job_workflow("handled", "e2e", shaky)).await.expect(200);
        let r = app.post("/openapi/workflows/custom/task", json!({"project_key": "e2e", "workflow_key": "handled",
            "inputs": [{"job_name": "shaky"}]})).await;
        let id = r.expect(200)["task_id"].as_i64().expect("task_id");
        let d = app.wait_for("the failed job to wait for a decision", LIMIT, || async {
            let d = task_detail(&app, "handled", id).await;
            (d["stages"][0]["jobs"][0]["status"] == "wait_for_manual_error_handling").then_some(d)
        }).await;
        let job = &d["stages"][0]["jobs"][0];
        assert_eq!((&job["error_handler_user_id"], &job["error_handler_username"]), (&json!(""), &json!("")), "{job}");
        app.call(Method::POST, &format!("/openapi/workflows/custom/handled/task/{id}/job/shaky/error-handling"),
            Some(&alice), Some(json!({"decision": "ignore"}))).await.expect(200);
        let d = app.wait_for("the task to pass", LIMIT, || async {
            let d = task_detail(&app, "handled", id).await;
            (d["status"] == "passed").then_some(d)
        }).await;
        let job = &d["stages"][0]["jobs"][0];
        assert_eq!(job["status"], "unstable");
        assert_eq!(job["error_handler_user_id"], json!(alice_uid), "{job}");
        assert_eq!(job["error_handler_username"], "alice", "{job}");
        app.stop().await;
    }
}

backend_test! {
    async fn duplicate_slashes_are_merged_before_routing(app) {
        let r = app.get("//openapi/users").await;
        assert!(r.expect(200)["users"].is_array(), "{}", r.text);
        let r = app.get("/openapi//users?pageNum=1&pageSize=5").await;
        assert!(r.expect(200)["users"].is_array(), "{}", r.text);
        // The token check still applies to the merged path.
        app.call(Method::GET, "//openapi/users", None, None).await.expect_error(401, "");
        // A trailing slash of an API path is dropped (Zadig's router redirects to the path
        // without it), for every method.
        let r = app.get("/openapi/users/?pageNum=1&pageSize=5").await;
        assert!(r.expect(200)["users"].is_array(), "{}", r.text);
        let r = app.get("/openapi/release_plan/v1/?pageNum=1&pageSize=10").await;
        assert!(r.expect(200)["list"].is_array(), "{}", r.text);
        app.post("/openapi/users/", json!({"account": "slash", "name": "slash"})).await.expect(200);
        app.stop().await;
    }
}

backend_test! {
    /// A value of the wrong type in valid JSON is named as a field error, numbers in enum
    /// fields included (not "not valid JSON"); `null` reads as the zero value (Zadig's rule).
    async fn wrong_types_in_valid_json_name_the_field(app) {
        let now = chrono::Utc::now().timestamp();
        let plan = json!({"name": "nulls", "manager": "admin", "manager_identity_type": null,
            "description": null, "start_time": now, "end_time": now + 3600, "schedule_execute_time": null,
            "jobs": null});
        app.post("/openapi/release_plan/v1", plan.clone()).await.expect(200);
        let mut bad = plan.clone();
        bad["approval"] = json!({"enabled": true, "type": "native", "status": 5});
        app.post("/openapi/release_plan/v1", bad).await.expect_error(400, "approval.status");
        // `null` is Go's zero value, `""` (undecided), as Zadig reads it.
        let mut undecided = plan.clone();
        undecided["approval"] = json!({"enabled": true, "type": "native", "status": null,
            "native_approval": {"timeout": 5, "needed_approvers": 1, "approve_users": [{"user_name": "admin"}]}});
        app.post("/openapi/release_plan/v1", undecided).await.expect(200);
        app.raw(Method::POST, "/openapi/release_plan/v1", "{\"name\": ").await
            .expect_error(400, "not valid JSON");
        app.stop().await;
    }
}

backend_test! {
    async fn unknown_paths_under_a_parameter_route_answer_404(app) {
        // `PUT /api/aslan/workflow/v4/{name}` exists; Zadig's webhook route does not.
        let r = app.get("/api/aslan/workflow/v4/webhook?projectName=p&workflowName=w").await;
        r.expect_error(404, "/api/aslan/workflow/v4/webhook");
        app.get("/openapi/no/such/thing").await.expect_error(404, "/openapi/no/such/thing");
        // A method a static route lacks stays 405.
        app.call(Method::PUT, "/openapi/users", Some(ADMIN_TOKEN), None).await.expect_error(405, "PUT");
        app.stop().await;
    }
}

/// Seed 001's "Update Release Plan and Jobs" body example, verbatim.
fn seed001_patch() -> Value {
    json!({
        "description": "test2",
        "parameters": [
            {"name": "test", "type": "string", "value": "zadig"},
            {"name": "abc", "type": "choice", "value": "123"},
            {"name": "repo1", "type": "repo", "repo": {"codehost_name": "gitlab", "repo_namespace": "kr-poc",
                "repo_name": "num_test", "branch": "master", "prs": [1]}}
        ],
        "jobs": [
            {"name": "Text-1", "spec": {"content": "Hello, World 1.", "remark": "abc"}, "type": "text"},
            {"name": "Workflow-1", "spec": {"workflow_key": "old-hook", "project_key": "yaml", "remark": "remark-2",
                "inputs": [
                    {"job_name": "build", "job_type": "zadig-build", "parameters": {
                        "registry": "https://koderover.*********.com/test",
                        "service_list": [{"service_module": "service1", "service_name": "service1",
                            "repo_info": [{"codehost_name": "gitlab", "repo_namespace": "kr-*****",
                                "repo_name": "multi-service-demo", "branch": "patrick-01"}],
                            "inputs": [{"key": "gggg", "value": "abcd"}]}]}},
                    {"job_name": "deploy", "job_type": "zadig-deploy", "parameters": {
                        "env_name": "dev",
                        "service_list": [{"service_name": "service1", "service_module": "service1",
                            "image_name": "https://koderover.*********.com/test/service1:main"}]}},
                    {"job_name": "test", "job_type": "zadig-test", "parameters": {
                        "testing_list": [{"testing_name": "static-html-report",
                            "repo_info": [{"codehost_name": "gitlab", "repo_namespace": "kr-******",
                                "repo_name": "test-report", "branch": "main"}]}]}}
                ]},
             "type": "workflow"}
        ],
        "manager": "patrick",
        "manager_identity_type": "system",
        "name": "Test-Plan-1"
    })
}

backend_test! {
    async fn seed001_patch_ignores_inputs_for_jobs_the_workflow_lacks(app) {
        app.create_user("patrick", false).await;
        app.post("/openapi/workflows/custom", one_job_workflow("old-hook", "yaml", freestyle("common", "echo common")))
            .await.expect(200);
        let id = create(&app, simple_body("p", "admin")).await;
        let r = app.patch(&format!("{BASE}/{id}"), seed001_patch()).await;
        let b = r.expect(200);
        assert_eq!(b["message"], "success");
        assert_eq!(b["warnings"], json!([
            "jobs[1].spec.inputs[0]: workflow old-hook has no job build; ignored",
            "jobs[1].spec.inputs[1]: workflow old-hook has no job deploy; ignored",
            "jobs[1].spec.inputs[2]: workflow old-hook has no job test; ignored",
        ]), "{b}");
        let d = detail(&app, &id).await;
        assert_eq!(d["name"], "Test-Plan-1");
        let wf_job = &d["jobs"][1];
        assert_eq!(wf_job["type"], "workflow");
        assert_eq!(wf_job["spec"]["workflow_key"], "old-hook");
        assert_eq!(wf_job["spec"]["inputs"], json!([]), "only inputs that apply are kept: {wf_job}");
        let jobs = &wf_job["spec"]["workflow"]["stages"][0]["jobs"];
        assert_eq!(jobs[0]["name"], "common");
        assert_eq!(jobs[0]["skipped"], true, "the workflow's unlisted job is skipped: {wf_job}");
        // A PATCH that applies fully answers without warnings.
        let mut exact = seed001_patch();
        exact["jobs"][1]["spec"]["inputs"] = json!([{"job_name": "common", "job_type": "freestyle", "parameters": {}}]);
        let r = app.patch(&format!("{BASE}/{id}"), exact).await;
        assert_eq!(r.expect(200), &json!({"message": "success"}));
        // Executing a workflow keeps its 400 for an unknown job: a task is created now.
        app.post("/openapi/workflows/custom/task", json!({"project_key": "yaml", "workflow_key": "old-hook",
            "inputs": seed001_patch()["jobs"][1]["spec"]["inputs"].clone()})).await
            .expect_error(400, "inputs[0].job_name");
        app.stop().await;
    }
}
