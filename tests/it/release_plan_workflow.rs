//! Workflow release jobs: a task start that fails leaves the job as it was; and, end to end
//! with the workflow engine, a job that runs a real workflow task (spec §5.3–5.6).

use std::time::Duration;

use serde_json::{Value, json};

use crate::backend_test;
use crate::harness::{ADMIN_TOKEN, TestApp};
use crate::release_plan::{
    BASE, create, detail, executing_plan, job_call, logs, set_status, simple_body,
};
use crate::release_plan_hooks::{Receiver, enable_hooks};
use crate::release_plan_scheduler::{edit_stored, stored, workflow_job};
use zadig_server::release_plan::model::JobStatus;

backend_test! {
    async fn a_failed_task_start_leaves_the_job_untouched(app) {
        let id = executing_plan(&app, simple_body("p", "admin"), 1).await;
        let wf = workflow_job("deploy", "ghost-wf", JobStatus::Todo, 0);
        let wf_id = wf.id.clone();
        edit_stored(&app, &id, |p| p.jobs.push(wf)).await;
        let before = detail(&app, &id).await;
        // The workflow cannot be started (no such workflow; before the engine existed: 409
        // "the workflow engine is not available yet"): the call fails with the reason.
        let r = job_call(&app, ADMIN_TOKEN, &id, "execute", &wf_id, "workflow").await;
        assert!(matches!(r.status.as_u16(), 404 | 409), "{}", r.text);
        r.expect_error(r.status.as_u16(), "ghost-wf");
        let after = detail(&app, &id).await;
        assert_eq!(after["jobs"][1], before["jobs"][1], "the job is as it was");
        assert_eq!(after["status"], "executing");
        assert!(logs(&app, &id).await.iter().all(|l| l["target_name"] != "deploy"));
        assert_eq!(stored(&app, &id).await.internal.running_jobs, 0);
        app.stop().await;
    }
}

/// Seed 002's create example, reduced to one freestyle job running `script`.
fn workflow_body(name: &str, script: &str) -> Value {
    json!({
        "name": name,
        "display_name": name,
        "project": "demo",
        "description": "release plan e2e",
        "concurrency_limit": 5,
        "stages": [{
            "name": "Run",
            "parallel": true,
            "jobs": [{
                "name": "hello",
                "type": "freestyle",
                "run_policy": "",
                "spec": {
                    "properties": {"timeout": 60, "envs": [], "build_os": "focal"},
                    "steps": [{"name": "shell", "type": "shell", "spec": {"script": script}}]
                }
            }]
        }]
    })
}

async fn plan_with_workflow(app: &TestApp, workflow: &str) -> (String, String) {
    let id = create(app, simple_body("wf-plan", "admin")).await;
    let mut body = simple_body("wf-plan", "admin");
    body["jobs"] = json!([{"name": "Workflow-1", "type": "workflow",
        // The workflow's job is listed in `inputs`: unlisted jobs are skipped, and a task with
        // nothing to run is refused (spec/workflow.md §3.5).
        "spec": {"workflow_key": workflow, "project_key": "demo", "remark": "r", "parameters": [],
            "inputs": [{"job_name": "hello", "job_type": "freestyle", "parameters": {}}]}}]);
    app.patch(&format!("{BASE}/{id}"), body).await.expect(200);
    let d = detail(app, &id).await;
    assert_eq!(d["jobs"][0]["spec"]["workflow_key"], workflow);
    assert!(
        d["jobs"][0]["spec"]["workflow"].is_object(),
        "the resolved workflow is kept: {d}"
    );
    set_status(app, &id, "finish_planning").await.expect(200);
    set_status(app, &id, "executing").await.expect(200);
    let job = d["jobs"][0]["id"].as_str().unwrap().to_string();
    (id, job)
}

/// Create workflow `workflow` running `script`, a plan with a job for it, and execute the job:
/// the plan id and the job id.
async fn execute_workflow_job(app: &TestApp, workflow: &str, script: &str) -> (String, String) {
    app.post("/openapi/workflows/custom", workflow_body(workflow, script))
        .await
        .expect(200);
    let (id, job) = plan_with_workflow(app, workflow).await;
    job_call(app, ADMIN_TOKEN, &id, "execute", &job, "workflow")
        .await
        .expect(200);
    (id, job)
}

async fn wait_job(app: &TestApp, id: &str, status: &str) -> Value {
    app.wait_for(
        &format!("the release job to be {status}"),
        Duration::from_secs(120),
        || async {
            let d = detail(app, id).await;
            (d["jobs"][0]["status"] == status).then_some(d)
        },
    )
    .await
}

backend_test! {
    async fn workflow_job_runs_a_real_task(app) {
        let (id, _) =
            execute_workflow_job(&app, "rp-echo", "#!/bin/bash\nset -e\necho hello").await;
        let d = detail(&app, &id).await;
        let task_id = d["jobs"][0]["spec"]["task_id"]
            .as_i64()
            .expect("task_id recorded");
        assert!(task_id > 0);
        let d = wait_job(&app, &id, "done").await;
        assert_eq!(d["jobs"][0]["spec"]["status"], "passed");
        assert_eq!(d["status"], "success");
        let task = app
            .get(&format!(
                "/openapi/workflows/custom/task?taskId={task_id}&workflowKey=rp-echo"
            ))
            .await;
        assert_eq!(task.expect(200)["status"], "passed");

        // A failing script: the job fails, the plan stays executing; retry starts a new task.
        let (id, job) = execute_workflow_job(&app, "rp-fail", "#!/bin/bash\nexit 3").await;
        let d = wait_job(&app, &id, "failed").await;
        assert_eq!(d["status"], "executing");
        let first = d["jobs"][0]["spec"]["task_id"].as_i64().unwrap();
        job_call(&app, ADMIN_TOKEN, &id, "retry", &job, "workflow")
            .await
            .expect(200);
        let d = detail(&app, &id).await;
        let second = d["jobs"][0]["spec"]["task_id"].as_i64().unwrap();
        assert_ne!(second, first, "retry starts a new task");
        let d = wait_job(&app, &id, "failed").await;
        assert_eq!(d["jobs"][0]["spec"]["task_id"], second);
        job_call(&app, ADMIN_TOKEN, &id, "skip", &job, "workflow")
            .await
            .expect(200);
        assert_eq!(detail(&app, &id).await["status"], "success");
        app.stop().await;
    }
}

backend_test! {
    async fn a_re_plan_cancels_the_running_task(app) {
        let (id, _) = execute_workflow_job(&app, "rp-sleep", "sleep 30").await;
        let task_id = detail(&app, &id).await["jobs"][0]["spec"]["task_id"].as_i64().expect("task_id");
        let task = format!("/openapi/workflows/custom/task?taskId={task_id}&workflowKey=rp-sleep");
        app.wait_for("the task to run", Duration::from_secs(30), || async {
            (app.get(&task).await.expect(200)["status"] == "running").then_some(())
        }).await;
        // Back to planning (spec §4.4 step 4): the task the plan no longer waits for is cancelled
        // by the caller, and its end does not touch the new cycle's job.
        set_status(&app, &id, "planning").await.expect(200);
        let t = app.wait_for("the task to be cancelled", Duration::from_secs(30), || async {
            let t = app.get(&task).await.expect(200).clone();
            (t["status"] == "cancelled" && t["end_time"].as_i64() > Some(0)).then_some(t)
        }).await;
        assert_eq!(t["task_revoker"], "admin", "{t}");
        let d = detail(&app, &id).await;
        assert_eq!(d["status"], "planning");
        assert_eq!(d["jobs"][0]["status"], "todo");
        app.stop().await;
    }
}

backend_test! {
    async fn credentials_are_masked_in_the_detail_and_hooks_and_kept_on_patch(app) {
        let recv = Receiver::start().await;
        enable_hooks(&app, &recv.url, false, "hook-key").await;
        // The workflow holds a credential parameter and a credential job variable; the plan's
        // execute input overrides both.
        let script = "#!/bin/bash\nset -e\ntest \"$TOKEN\" = plan-\"\"pw-2\ntest \"$PASSWORD\" = plan-\"\"pw-4";
        let mut wf = workflow_body("rp-secret", script);
        wf["params"] = json!([{"name": "TOKEN", "type": "string", "value": "wf-pw-1", "is_credential": true}]);
        wf["stages"][0]["jobs"][0]["spec"]["properties"]["envs"] =
            json!([{"key": "PASSWORD", "type": "string", "value": "wf-pw-3", "is_credential": true}]);
        app.post("/openapi/workflows/custom", wf).await.expect(200);
        let id = create(&app, simple_body("secret-plan", "admin")).await;
        let mut body = simple_body("secret-plan", "admin");
        body["jobs"] = json!([{"name": "Workflow-1", "type": "workflow",
            "spec": {"workflow_key": "rp-secret", "project_key": "demo", "remark": "r",
                "parameters": [{"name": "TOKEN", "value": "plan-pw-2"}],
                "inputs": [{"job_name": "hello", "job_type": "freestyle",
                    "parameters": {"kv": [{"key": "PASSWORD", "value": "plan-pw-4"}]}}]}}]);
        app.patch(&format!("{BASE}/{id}"), body).await.expect(200);

        let raw = app.get(&format!("{BASE}/{id}")).await;
        assert!(!raw.text.contains("-pw-"), "no credential in the detail: {}", raw.text);
        let d = raw.expect(200).clone();
        let spec = &d["jobs"][0]["spec"];
        assert_eq!(spec["parameters"][0]["value"], "********");
        assert_eq!(spec["workflow"]["params"][0]["value"], "********");

        // The detail's jobs sent back as they are keep the stored values.
        let mut again = simple_body("secret-plan", "admin");
        again["jobs"] = json!([{"name": "Workflow-1", "type": "workflow", "spec": {
            "workflow_key": "rp-secret", "project_key": "demo", "remark": "r2",
            "parameters": spec["parameters"], "inputs": spec["inputs"]}}]);
        app.patch(&format!("{BASE}/{id}"), again).await.expect(200);
        let p = stored(&app, &id).await;
        assert_eq!(p.jobs[0].spec.parameters[0]["value"], "plan-pw-2");
        // Execute inputs that set a credential are marked as one (masked, encrypted at rest).
        let kv = &p.jobs[0].spec.inputs[0]["parameters"]["kv"][0];
        assert_eq!((kv["value"].as_str(), kv["is_credential"].as_bool()), (Some("plan-pw-4"), Some(true)), "{kv}");
        assert_eq!(p.jobs[0].spec.remark, "r2");

        // Hook receivers get the workflow, not its credentials.
        set_status(&app, &id, "finish_planning").await.expect(200);
        let hit = &recv.wait_hits(&app, 1).await[0];
        let text = String::from_utf8_lossy(&hit.body);
        assert!(!text.contains("-pw-"), "no credential in the hook: {text}");
        assert_eq!(hit.json["release_plan"]["jobs"][0]["spec"]["workflow"]["params"][0]["value"], "********", "{text}");

        // The task runs with the real value.
        set_status(&app, &id, "executing").await.expect(200);
        let job = p.jobs[0].id.clone();
        job_call(&app, ADMIN_TOKEN, &id, "execute", &job, "workflow").await.expect(200);
        let d = wait_job(&app, &id, "done").await;
        assert_eq!(d["jobs"][0]["spec"]["status"], "passed", "{d}");
        app.stop().await;
    }
}
