//! The engine driven end to end through the workflow API, as a client of Zadig's OpenAPI
//! does it: create a workflow (seed 002 shapes), execute it, approve, cancel, retry, and
//! observe with the task-detail route and the log routes. Both backends.

use std::time::Duration;

use serde_json::{Value, json};

use crate::backend_test;
use crate::engine::{find_sleep, marked_sleep, process_gone, scratch};
use crate::harness::TestApp;

const WAIT: Duration = Duration::from_secs(30);

pub fn freestyle_job(name: &str, script: &str) -> Value {
    json!({
        "name": name,
        "type": "freestyle",
        "run_policy": "",
        "spec": {
            "properties": {"timeout": 10, "envs": [{"key": "GREETING", "value": "hello", "type": "string", "is_credential": false}]},
            "steps": [{"name": "shell", "type": "shell", "spec": {"script": script}}]
        }
    })
}

async fn create_workflow(app: &TestApp, name: &str, limit: i64, stages: Value) {
    app.post(
        "/api/aslan/workflow/v4",
        json!({
            "name": name,
            "display_name": name,
            "project": "demo",
            "description": "engine end to end",
            "concurrency_limit": limit,
            "params": [{"name": "TOKEN", "type": "string", "value": "t0k3n-value", "is_credential": true}],
            "stages": stages,
        }),
    )
    .await
    .expect(200);
}

async fn execute(app: &TestApp, name: &str, jobs: &[&str]) -> i64 {
    let inputs: Vec<Value> = jobs
        .iter()
        .map(|j| json!({"job_name": j, "job_type": "freestyle", "parameters": {"kv": [{"key": "GREETING", "value": "bonjour"}]}}))
        .collect();
    let r = app
        .post(
            "/openapi/workflows/custom/task",
            json!({"project_key": "demo", "workflow_key": name, "parameters": [], "inputs": inputs}),
        )
        .await;
    r.expect(200)["task_id"].as_i64().expect("task_id")
}

async fn detail(app: &TestApp, name: &str, id: i64) -> Value {
    app.get(&format!(
        "/openapi/workflows/custom/task?taskId={id}&workflowKey={name}"
    ))
    .await
    .expect(200)
    .clone()
}

async fn wait_detail(app: &TestApp, name: &str, id: i64, statuses: &[&str]) -> Value {
    app.wait_for(&format!("{name}#{id} in {statuses:?}"), WAIT, || async {
        let d = detail(app, name, id).await;
        let s = d["status"].as_str().unwrap_or_default().to_string();
        statuses.contains(&s.as_str()).then_some(d)
    })
    .await
}

fn job_of<'a>(d: &'a Value, name: &str) -> &'a Value {
    d["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["jobs"].as_array().into_iter().flatten())
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("no job {name} in {d}"))
}

backend_test! {
    async fn workflow_api_execute_approve_and_logs(app) {
        create_workflow(&app, "e2e", -1, json!([
            {"name": "build", "parallel": true, "jobs": [
                freestyle_job("build-a", "echo \"a $GREETING\""),
                freestyle_job("build-b", "echo \"b $GREETING token=$TOKEN\""),
            ]},
            {"name": "deploy", "parallel": false,
             "approval": {"enabled": true, "type": "native", "description": "go?",
                 "native_approval": {"timeout": 5, "needed_approvers": 1,
                     "approve_users": [{"user_name": "admin", "user_id": "admin"}]}},
             "jobs": [freestyle_job("ship", "echo shipped")]},
        ])).await;
        let id = execute(&app, "e2e", &["build-a", "build-b", "ship"]).await;
        let d = wait_detail(&app, "e2e", id, &["wait_for_approval"]).await;
        assert_eq!(d["stages"][0]["status"], "passed", "{d}");

        app.post("/openapi/workflows/custom/task/approve", json!({
            "task_id": id, "workflow_key": "e2e", "stage_name": "deploy", "approve": true, "comment": "LGTM"
        })).await.expect(200);
        let d = wait_detail(&app, "e2e", id, &["passed", "failed", "reject"]).await;
        assert_eq!(d["status"], "passed", "{d}");
        assert!(d["start_time"].as_i64().unwrap() > 0 && d["end_time"].as_i64().unwrap() > 0);
        assert_eq!(job_of(&d, "ship")["status"], "passed");

        let log = app.get(&format!("/openapi/logs/log/v4/workflow/e2e/{id}/build-b")).await;
        assert!(log.text.contains("   b bonjour token=********"), "{}", log.text);
        let sse = app.get(&format!("/openapi/logs/sse/v4/workflow/e2e/{id}/ship/100")).await;
        assert!(sse.text.contains("event:message\ndata:") && sse.text.contains("   shipped"), "{}", sse.text);
        app.stop().await;
    }
}

backend_test! {
    async fn workflow_api_cancel_and_retry(app) {
        let dir = scratch();
        let (sleep, sleep_marker) = marked_sleep(30);
        let marker = dir.path().join("marker");
        create_workflow(&app, "e2e-cr", 1, json!([
            {"name": "s1", "jobs": [freestyle_job("sleepy", &format!("{sleep} & wait"))]},
        ])).await;
        let id = execute(&app, "e2e-cr", &["sleepy"]).await;
        let pid = find_sleep(&app, &sleep_marker).await;
        let started = std::time::Instant::now();
        app.delete(&format!("/openapi/workflows/custom/task?taskId={id}&workflowKey=e2e-cr")).await.expect(200);
        let d = app.wait_for("the cancelled end", Duration::from_secs(2), || async {
            let d = detail(&app, "e2e-cr", id).await;
            (d["end_time"].as_i64().unwrap_or(0) > 0).then_some(d)
        }).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(d["status"], "cancelled");
        assert_eq!(job_of(&d, "sleepy")["status"], "cancelled");
        app.wait_for("the process to be gone", Duration::from_secs(2), || async { process_gone(pid).then_some(()) }).await;

        // Retry: a failed job reruns under the same task id; passed work is kept.
        create_workflow(&app, "e2e-retry", -1, json!([
            {"name": "one", "jobs": [freestyle_job("first", &format!("echo ran >> {}", dir.path().join("count").display()))]},
            {"name": "two", "jobs": [freestyle_job("flaky", &format!("test -f {}", marker.display()))]},
        ])).await;
        let id = execute(&app, "e2e-retry", &["first", "flaky"]).await;
        assert_eq!(wait_detail(&app, "e2e-retry", id, &["failed", "passed"]).await["status"], "failed");
        std::fs::write(&marker, "").unwrap();
        app.post(&format!("/openapi/workflows/custom/e2e-retry/task/{id}?projectKey=demo"), json!({})).await.expect(200);
        let d = wait_detail(&app, "e2e-retry", id, &["passed", "failed"]).await;
        assert_eq!(d["status"], "passed", "{d}");
        assert_eq!(std::fs::read_to_string(dir.path().join("count")).unwrap(), "ran\n");
        app.stop().await;
    }
}
