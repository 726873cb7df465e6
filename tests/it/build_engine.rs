//! End to end: a workflow whose zadig-build job references a build created through
//! `/openapi/build` runs the build's script for real, and the job log shows its output.

use std::time::Duration;

use serde_json::json;

use crate::backend_test;
use crate::build::create_shell_build;
use crate::harness::TestApp;

backend_test! {
    async fn workflow_runs_the_build_script(app) {
        run(app).await;
    }
}

async fn run(app: TestApp) {
    // A build whose script prints a marker built from a variable, a credential and the
    // service the job builds.
    let script = "#!/bin/bash\nset -e\necho \"BUILD-MARKER-$GREETING-$SERVICE_NAME\"\necho \"token is $TOKEN\"";
    create_shell_build(&app, "e2e", "marker-build", script, ("svc1", "mod1"), json!({
        "parameters": [
            {"key": "GREETING", "type": "string", "default_value": "hello-7f3a"},
            {"key": "TOKEN", "type": "string", "default_value": "s3cr3t-9b1c", "is_credential": true}
        ]})).await;

    // A workflow with one zadig-build job (seed 002 "Create a Workflow" shape).
    app.post(
        "/openapi/workflows/custom",
        json!({
            "name": "build-e2e",
            "display_name": "build-e2e",
            "project": "e2e",
            "description": "runs marker-build",
            "concurrency_limit": 1,
            "stages": [{
                "name": "Build",
                "parallel": true,
                "jobs": [{
                    "name": "build",
                    "type": "zadig-build",
                    "run_policy": "",
                    "spec": {
                        "docker_registry_id": "",
                        "service_and_builds": [{
                            "service_name": "svc1",
                            "service_module": "mod1",
                            "image_name": "svc1",
                            "build_name": "marker-build"
                        }]
                    }
                }]
            }]
        }),
    )
    .await
    .expect(200);

    let started = app
        .post(
            "/openapi/workflows/custom/task",
            json!({
                "project_key": "e2e",
                "workflow_key": "build-e2e",
                "parameters": [],
                "inputs": [{
                    "job_name": "build",
                    "job_type": "zadig-build",
                    "parameters": {
                        "registry": "",
                        "service_list": [{"service_name": "svc1", "service_module": "mod1"}]
                    }
                }]
            }),
        )
        .await;
    let task_id = started.expect(200)["task_id"].as_i64().expect("task_id");

    let detail = app
        .wait_for(
            "the build task to finish",
            Duration::from_secs(120),
            || async {
                let r = app
                    .get(&format!(
                        "/openapi/workflows/custom/task?taskId={task_id}&workflowKey=build-e2e"
                    ))
                    .await;
                let b = r.expect(200).clone();
                let s = b["status"].as_str().unwrap_or_default().to_string();
                ["passed", "failed", "timeout", "cancelled"]
                    .contains(&s.as_str())
                    .then_some(b)
            },
        )
        .await;
    assert_eq!(detail["status"], "passed", "task: {detail}");
    let job = detail["stages"][0]["jobs"][0]["name"]
        .as_str()
        .expect("job task name")
        .to_string();

    let log = app
        .get(&format!(
            "/openapi/logs/log/v4/workflow/build-e2e/{task_id}/{job}"
        ))
        .await;
    log.expect(200);
    let text = &log.text;
    assert!(
        text.contains("BUILD-MARKER-hello-7f3a-svc1"),
        "log lacks the marker: {text}"
    );
    assert!(
        !text.contains("s3cr3t-9b1c"),
        "the credential leaked into the log: {text}"
    );
    app.stop().await;
}
