//! End to end with the engine: tasks created through the workflow API run, are cancelled,
//! approved and retried for real (seed 002; spec/workflow.md §3, §5).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_test;
use crate::harness::TestApp;
use crate::workflows::create;

const LIMIT: Duration = Duration::from_secs(60);

/// A freestyle job `name` running `script`.
pub(crate) fn freestyle(name: &str, script: &str) -> Value {
    json!({"name": name, "type": "freestyle", "spec": {"script": script, "envs": []}})
}

/// A task's detail through the API (admin).
pub(crate) async fn detail(app: &TestApp, wf: &str, id: i64) -> Value {
    app.get(&format!(
        "/openapi/workflows/custom/task?taskId={id}&workflowKey={wf}"
    ))
    .await
    .expect(200)
    .clone()
}

/// Wait until the task's status is `want`.
async fn wait_status(app: &TestApp, wf: &str, id: i64, want: &str) -> Value {
    app.wait_for(&format!("{wf}#{id} to be {want}"), LIMIT, || async {
        let d = detail(app, wf, id).await;
        (d["status"] == want).then_some(d)
    })
    .await
}

/// Cancel the task and wait until its first job is cancelled; the task's detail.
async fn cancel(app: &TestApp, wf: &str, id: i64) -> Value {
    app.delete(&format!(
        "/openapi/workflows/custom/task?taskId={id}&workflowKey={wf}"
    ))
    .await
    .expect(200);
    app.wait_for("the first job to end cancelled", LIMIT, || async {
        let d = detail(app, wf, id).await;
        (d["stages"][0]["jobs"][0]["status"] == "cancelled").then_some(d)
    })
    .await
}

async fn run(app: &TestApp, project: &str, wf: &str, inputs: Value) -> i64 {
    let r = app
        .post(
            "/openapi/workflows/custom/task",
            json!({"project_key": project, "workflow_key": wf, "inputs": inputs}),
        )
        .await;
    r.expect(200)["task_id"].as_i64().expect("task_id")
}

/// Create workflow `wf` of project `e2e` with `job` alone in stage `run`, unlimited, and
/// run it; the task id.
async fn run_one_job(app: &TestApp, wf: &str, job: Value) -> i64 {
    let inputs = json!([{"job_name": job["name"]}]);
    create(
        app,
        json!({"name": wf, "project": "e2e", "concurrency_limit": -1,
        "stages": [{"name": "run", "jobs": [job]}]}),
    )
    .await;
    run(app, "e2e", wf, inputs).await
}

backend_test! {
    async fn an_executed_freestyle_task_runs_and_passes(app) {
        create(&app, json!({"name": "hello", "project": "e2e", "concurrency_limit": 1,
            "params": [{"name": "WHO", "type": "string", "value": "nobody"}],
            "stages": [{"name": "run", "jobs": [{"name": "echo", "type": "freestyle",
                "spec": {"script": "echo \"hello $WHO $GREETING\"", "envs": [{"key": "GREETING", "value": "unset", "type": "string"}]}}]}]})).await;
        let r = app.post("/openapi/workflows/custom/task", json!({"project_key": "e2e", "workflow_key": "hello",
            "parameters": [{"name": "WHO", "type": "string", "value": "world"}],
            "inputs": [{"job_name": "echo", "job_type": "freestyle", "parameters": {"kv": [{"key": "GREETING", "value": "from-e2e"}]}}]})).await;
        assert_eq!(r.expect(200)["task_id"], 1);
        let d = wait_status(&app, "hello", 1, "passed").await;
        assert_eq!(d["stages"][0]["status"], "passed");
        let job = &d["stages"][0]["jobs"][0];
        assert_eq!(job["status"], "passed");
        assert!(d["start_time"].as_i64().unwrap() > 0 && d["end_time"].as_i64().unwrap() > 0);
        let log = app.get(&format!("/openapi/logs/log/v4/workflow/hello/1/{}", job["name"].as_str().unwrap())).await;
        log.expect(200);
        assert!(log.text.contains("hello world from-e2e"), "log: {}", log.text);
        // Listed as passed; a passed task cannot be cancelled.
        let l = app.get("/openapi/workflows/custom/hello/tasks?projectKey=e2e").await.expect(200).clone();
        assert_eq!(l["workflow_tasks"][0]["status"], "passed");
        app.delete("/openapi/workflows/custom/task?taskId=1&workflowKey=hello").await.expect_error(400, "task: hello:1 is passed, cannot cancel");
        app.stop().await;
    }
}

backend_test! {
    async fn cancelling_a_running_task_stops_it(app) {
        let id = run_one_job(&app, "slow", freestyle("nap", "echo started; sleep 600")).await;
        app.wait_for("the job to run", LIMIT, || async {
            let d = detail(&app, "slow", id).await;
            (d["stages"][0]["jobs"][0]["status"] == "running").then_some(())
        }).await;
        let d = cancel(&app, "slow", id).await;
        assert_eq!(d["status"], "cancelled");
        assert_eq!(d["task_revoker"], "admin");
        app.stop().await;
    }
}

backend_test! {
    async fn an_approved_stage_runs_and_a_rejected_one_does_not(app) {
        let (_, alice) = app.create_user("alice", false).await;
        create(&app, json!({"name": "gated", "project": "e2e", "concurrency_limit": -1,
            "stages": [
                {"name": "build", "jobs": [freestyle("prepare", "echo prepared")]},
                {"name": "deploy", "approval": {"enabled": true, "type": "native", "description": "ship it?",
                    "native_approval": {"approve_users": [{"user_name": "alice"}], "timeout": 30, "needed_approvers": 1}},
                 "jobs": [freestyle("ship", "echo shipped")]}
            ]})).await;
        for (id, approve) in [(1, true), (2, false)] {
            assert_eq!(run(&app, "e2e", "gated", json!([{"job_name": "prepare"}, {"job_name": "ship"}])).await, id);
            app.wait_for("the stage to wait for approval", LIMIT, || async {
                let d = detail(&app, "gated", id).await;
                (d["stages"][1]["status"] == "wait_for_approval").then_some(())
            }).await;
            let vote = json!({"task_id": id, "workflow_key": "gated", "stage_name": "deploy", "approve": approve, "comment": "ok"});
            app.call(Method::POST, "/openapi/workflows/custom/task/approve", Some(&alice), Some(vote)).await.expect(200);
        }
        let d = wait_status(&app, "gated", 1, "passed").await;
        assert_eq!(d["stages"][1]["jobs"][0]["status"], "passed");
        assert_eq!(d["stages"][1]["approval"]["approve_users"][0]["reject_or_approve"], "approve");
        let d = wait_status(&app, "gated", 2, "reject").await;
        assert_eq!(d["stages"][1]["jobs"][0]["status"], "", "a rejected stage runs nothing");
        app.stop().await;
    }
}

backend_test! {
    async fn a_retried_task_redoes_only_what_failed(app) {
        let dir = crate::engine::scratch();
        let marker = dir.path().join("second-attempt");
        let script = format!("if [ -f '{m}' ]; then echo second try; else touch '{m}'; exit 1; fi", m = marker.display());
        create(&app, json!({"name": "flaky", "project": "e2e", "concurrency_limit": 1,
            "stages": [
                {"name": "one", "jobs": [freestyle("steady", "echo steady")]},
                {"name": "two", "jobs": [freestyle("shaky", &script)]}
            ]})).await;
        let id = run(&app, "e2e", "flaky", json!([{"job_name": "steady"}, {"job_name": "shaky"}])).await;
        let first = wait_status(&app, "flaky", id, "failed").await;
        assert_eq!(first["stages"][0]["jobs"][0]["status"], "passed");
        assert_eq!(first["stages"][1]["jobs"][0]["status"], "failed");
        app.clock.advance(Duration::from_secs(5));
        app.post(&format!("/openapi/workflows/custom/flaky/task/{id}?projectKey=e2e"), json!({})).await.expect(200);
        let d = wait_status(&app, "flaky", id, "passed").await;
        assert_eq!(d["task_id"], id);
        assert_eq!(d["retry_num"], 1);
        assert_eq!(d["stages"][1]["jobs"][0]["status"], "passed");
        assert_eq!(d["stages"][0]["jobs"][0]["end_time"], first["stages"][0]["jobs"][0]["end_time"], "passed work is not redone");
        app.stop().await;
    }
}

backend_test! {
    async fn a_paused_stage_runs_when_executed_manually(app) {
        let (_, alice) = app.create_user("alice", false).await;
        let (_, bob) = app.create_user("bob", false).await;
        create(&app, json!({"name": "manual", "project": "e2e", "concurrency_limit": 1,
            "stages": [
                {"name": "build", "jobs": [freestyle("prepare", "echo prepared")]},
                {"name": "release", "manual_exec": {"enabled": true, "manual_exec_users": [{"type": "user", "user_name": "alice"}]},
                 "jobs": [freestyle("ship", "echo shipped")]},
                {"name": "verify", "jobs": [freestyle("check", "echo checked")]}
            ]})).await;
        let inputs = json!([{"job_name": "prepare"}, {"job_name": "ship"}, {"job_name": "check"}]);
        let id = run(&app, "e2e", "manual", inputs.clone()).await;
        let d = wait_status(&app, "manual", id, "pause").await;
        assert_eq!(d["stages"][0]["status"], "passed");
        assert_eq!(d["stages"][1]["status"], "pause");
        assert_eq!(d["stages"][1]["jobs"][0]["status"], "", "nothing of the paused stage ran");
        // A paused task frees its slot: with concurrency_limit 1 the next task runs.
        let next = run(&app, "e2e", "manual", inputs).await;
        wait_status(&app, "manual", next, "pause").await;

        let path = format!("/openapi/workflows/custom/manual/task/{id}/manual-exec");
        let m = app.call(Method::GET, &format!("{path}?projectKey=e2e"), Some(&bob), None).await.expect(200).clone();
        assert_eq!(m["stage_name"], "release");
        assert_eq!(m["status"], "pause");
        assert_eq!(m["can_execute"], false);
        assert_eq!(m["executors"][0]["user_name"], "alice");
        let as_alice = app.call(Method::GET, &format!("{path}?projectKey=e2e"), Some(&alice), None).await;
        assert_eq!(as_alice.expect(200)["can_execute"], true);
        app.get(&path).await.expect_error(400, "projectKey");
        app.get(&format!("{path}?projectKey=other")).await.expect_error(404, "other");
        let body = |stage: &str| Some(json!({"stage_name": stage}));
        app.call(Method::POST, &format!("{path}?projectKey=e2e"), Some(&bob), body("release")).await
            .expect_error(403, "user bob is not allowed to manually execute stage release");
        app.call(Method::POST, &format!("{path}?projectKey=e2e"), Some(&alice), Some(json!({}))).await
            .expect_error(400, "stage_name");
        app.call(Method::POST, &format!("{path}?projectKey=e2e"), Some(&alice), body("verify")).await
            .expect_error(409, "stage verify is not waiting for manual execution");
        app.call(Method::POST, &format!("{path}?projectKey=e2e"), Some(&alice), body("release")).await.expect(200);
        let d = wait_status(&app, "manual", id, "passed").await;
        for s in 0..3 {
            assert_eq!(d["stages"][s]["jobs"][0]["status"], "passed", "{d}");
        }
        // Not paused any more.
        app.post(&format!("{path}?projectKey=e2e"), json!({"stage_name": "release"})).await.expect_error(409, "only a paused task");
        // A paused task can be cancelled.
        app.delete(&format!("/openapi/workflows/custom/task?taskId={next}&workflowKey=manual")).await.expect(200);
        wait_status(&app, "manual", next, "cancelled").await;
        app.stop().await;
    }
}

backend_test! {
    async fn a_task_remark_is_set(app) {
        let id = run_one_job(&app, "noted", freestyle("echo", "echo hi")).await;
        wait_status(&app, "noted", id, "passed").await;
        let path = format!("/openapi/workflows/custom/noted/task/{id}");
        app.put(&path, json!({"remark": "shipped to staging"})).await.expect(200);
        assert_eq!(detail(&app, "noted", id).await["remark"], "shipped to staging");
        app.put("/openapi/workflows/custom/noted/task/abc", json!({"remark": "x"})).await.expect_error(400, "taskID");
        app.put("/openapi/workflows/custom/noted/task/99", json!({"remark": "x"})).await.expect_error(404, "noted:99");
        app.put(&path, json!({"remark": "x".repeat(5000)})).await.expect_error(400, "remark");
        assert_eq!(detail(&app, "noted", id).await["remark"], "shipped to staging");
        app.stop().await;
    }
}

backend_test! {
    async fn a_manual_check_failure_waits_for_a_decision(app) {
        let (_, alice) = app.create_user("alice", false).await;
        let (_, bob) = app.create_user("bob", false).await;
        let mut shaky = freestyle("shaky", "echo trying; exit 3");
        shaky["error_policy"] = json!({"policy": "manual_check", "approval_users": [{"type": "user", "user_name": "alice"}]});
        create(&app, json!({"name": "checked", "project": "e2e", "concurrency_limit": -1,
            "stages": [{"name": "one", "jobs": [shaky]}, {"name": "two", "jobs": [freestyle("after", "echo after")]}]})).await;
        let inputs = json!([{"job_name": "shaky"}, {"job_name": "after"}]);
        let waiting = |id: i64| {
            let app = &app;
            async move {
                app.wait_for("the failed job to wait for a decision", LIMIT, || async {
                    let d = detail(app, "checked", id).await;
                    (d["stages"][0]["jobs"][0]["status"] == "wait_for_manual_error_handling").then_some(d)
                }).await
            }
        };
        let path = |id: i64| format!("/openapi/workflows/custom/checked/task/{id}/job/shaky/error-handling");

        // Ignored: the job becomes unstable and the task goes on to pass.
        let id = run(&app, "e2e", "checked", inputs.clone()).await;
        let d = waiting(id).await;
        assert_eq!(d["status"], "running", "the task keeps its slot while it waits");
        app.call(Method::POST, &path(id), Some(&bob), Some(json!({"decision": "ignore"}))).await
            .expect_error(403, "user bob may not handle the error of job shaky");
        app.call(Method::POST, &path(id), Some(&alice), Some(json!({"decision": "maybe"}))).await
            .expect_error(400, "decision");
        app.call(Method::POST, &format!("/openapi/workflows/custom/checked/task/{id}/job/nope/error-handling"), Some(&alice),
            Some(json!({"decision": "ignore"}))).await.expect_error(404, "nope");
        app.call(Method::POST, &path(id), Some(&alice), Some(json!({"decision": "ignore"}))).await.expect(200);
        let d = wait_status(&app, "checked", id, "passed").await;
        assert_eq!(d["stages"][0]["jobs"][0]["status"], "unstable");
        assert_eq!(d["stages"][1]["jobs"][0]["status"], "passed");
        app.call(Method::POST, &path(id), Some(&alice), Some(json!({"decision": "ignore"}))).await
            .expect_error(409, "not waiting for manual error handling");

        // Rejected: the job keeps its failure and the task fails without running stage two.
        let id = run(&app, "e2e", "checked", inputs.clone()).await;
        waiting(id).await;
        app.call(Method::POST, &path(id), Some(&alice), Some(json!({"decision": "reject"}))).await.expect(200);
        let d = wait_status(&app, "checked", id, "failed").await;
        assert_eq!(d["stages"][0]["jobs"][0]["status"], "failed");
        assert!(d["stages"][0]["jobs"][0]["error"].as_str().unwrap().contains("rejected by alice"), "{d}");
        assert_eq!(d["stages"][1]["jobs"][0]["status"], "");

        // Cancelled while waiting.
        let id = run(&app, "e2e", "checked", inputs).await;
        waiting(id).await;
        let d = cancel(&app, "checked", id).await;
        assert_eq!(d["status"], "cancelled");
        assert_eq!(d["stages"][1]["jobs"][0]["status"], "");
        app.stop().await;
    }
}
