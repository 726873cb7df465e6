//! Workflow tasks at the API level: execute (task creation and its stored shape), list,
//! detail, cancel, retry, approve, pre-approval tickets (seed 002; spec/workflow.md §2.3–2.8,
//! §3, §5.7, §7.2). Running tasks is the engine's; here tasks stay `waiting` unless a test
//! moves them through the store.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use zadig_server::clock::Clock;
use zadig_server::workflow::task::{Status, Task};

use crate::backend_test;
use crate::harness::{TestApp, assert_fields};
use crate::workflows::{create, echo_workflow};

/// The seed's execute example, with its JSON defects fixed (see docs/compatibility.md).
fn seed_execute_body() -> Value {
    serde_json::from_str(include_str!("fixtures/seed002_execute_task.json")).expect("fixture")
}

/// A workflow that the seed's execute example fits: project `helm`, key `test-openapi`.
fn seed_workflow() -> Value {
    json!({
        "name": "test-openapi", "display_name": "Test OpenAPI", "project": "helm", "concurrency_limit": 2,
        "params": [
            {"name": "test", "type": "string", "value": "default"},
            {"name": "abc", "type": "choice", "choice_option": ["123", "456"], "value": "456"},
            {"name": "repo1", "type": "repo", "repo": {"source": "gitlab", "codehost_id": 4, "repo_owner": "kr-poc",
                "repo_namespace": "kr-poc", "repo_name": "num_test", "branch": "main", "remote_name": "origin"}},
            {"name": "token", "type": "string", "value": "s3cret", "is_credential": true}
        ],
        "notify_ctls": [
            {"enabled": true, "webhook_type": "wechat", "weChat_webHook": "https://qyapi.example.com/cgi-bin/webhook/send?key=xxx", "notify_type": ["failed"]},
            {"enabled": true, "webhook_type": "feishu_person", "notify_type": ["passed"],
             "lark_person_notification_config": {"app_id": "cli_1", "users": [{"id": "old", "id_type": "user_id"}]}}
        ],
        "stages": [
            {"name": "build", "parallel": true, "jobs": [{"name": "build-myapps", "type": "zadig-build", "spec": {
                "docker_registry_id": "reg-0",
                "service_and_builds": [
                    {"service_name": "zadig", "service_module": "aslan", "build_name": "aslan-build", "image_name": "aslan",
                     "key_vals": [{"key": "username", "value": "nobody", "type": "string", "is_credential": false}], "repos": []},
                    {"service_name": "zadig", "service_module": "zadig-portal", "build_name": "portal-build", "image_name": "portal", "key_vals": [], "repos": []}
                ]}}]},
            {"name": "deploy", "parallel": true, "jobs": [
                {"name": "deploy-myapps", "type": "zadig-deploy", "spec": {"env": "staging", "production": false,
                    "deploy_contents": ["image"], "source": "runtime", "skip_check_run_status": false, "services": []}},
                {"name": "deploy-my-app", "type": "custom-deploy", "spec": {"namespace": "default", "cluster_id": "c1", "targets": []}}
            ]},
            {"name": "ops", "parallel": false, "jobs": [
                {"name": "jira-issue-update", "type": "freestyle", "spec": {"script": "echo $IssueID", "envs": [
                    {"key": "IssueID", "value": "", "type": "string"}, {"key": "FromStatus", "value": "", "type": "string"},
                    {"key": "TargetStatus", "value": "", "type": "string"}, {"key": "PASSWORD", "value": "pw", "type": "string", "is_credential": true}]}},
                {"name": "sql", "type": "sql", "spec": {"id": "db-1", "type": "mysql", "source": "runtime", "sql": "select 1"}}
            ]},
            {"name": "after", "approval": {"enabled": true, "type": "native", "native_approval": {"timeout": 5, "needed_approvers": 1,
                "approve_users": [{"user_name": "admin", "user_id": "x"}]}},
             "jobs": [{"name": "cleanup", "type": "freestyle", "run_policy": "default_not_run", "spec": {"script": "echo bye"}}]}
        ]
    })
}

fn execute(project: &str, wf: &str, inputs: Value) -> Value {
    json!({"project_key": project, "workflow_key": wf, "inputs": inputs})
}

async fn stored(app: &TestApp, wf: &str, id: i64) -> Task {
    app.state()
        .tasks
        .get(wf, id)
        .await
        .unwrap()
        .expect("task stored")
}

/// Keep the engine from starting tasks of `workflow` (whose `concurrency_limit` is `limit`):
/// `limit` tasks of it that this process holds waiting for approval fill its slots, so the
/// tasks a test creates stay `waiting` and the test alone moves them. The holders are archived
/// and of another project, so no list shows them.
pub async fn hold_engine(app: &TestApp, workflow: &str, limit: i64) {
    let st = app.state();
    for k in 0..limit {
        let t = Task {
            id: zadig_server::validate::new_object_id(app.clock.now()),
            task_id: 1_000_000 + k,
            workflow_name: workflow.into(),
            project_name: "engine-hold".into(),
            status: Status::WaitForApproval,
            is_deleted: true,
            concurrency_limit: limit,
            lease_owner: st.instance_id.clone(),
            lease_until_ms: i64::MAX / 4,
            ..Task::default()
        };
        st.tasks.insert(&t).await.expect("holder task");
    }
}

/// The echo workflow `workflow` of project `p`, and `n` of its tasks queued behind a held
/// engine (they stay waiting).
async fn queued_echo_tasks(app: &TestApp, workflow: &str, n: usize) {
    create(app, echo_workflow(workflow, "p")).await;
    hold_engine(app, workflow, 1).await;
    for _ in 0..n {
        let body = execute("p", workflow, json!([{"job_name": "echo"}]));
        app.post("/openapi/workflows/custom/task", body)
            .await
            .expect(200);
    }
}

/// Put a task into a state as the engine would (for cancel/retry/approve tests); an active
/// task is owned by this process, as the engine's claim would make it.
async fn set(app: &TestApp, wf: &str, id: i64, f: impl Fn(&mut Task)) {
    loop {
        let mut t = stored(app, wf, id).await;
        f(&mut t);
        if [Status::Running, Status::WaitForApproval].contains(&t.status) {
            t.lease_owner = app.state().instance_id.clone();
            t.lease_until_ms = i64::MAX / 4;
        }
        if app.state().tasks.save(&mut t).await.unwrap() {
            return;
        }
    }
}

#[track_caller]
fn code_of(body: &Value) -> i64 {
    body["code"].as_i64().expect("code")
}

backend_test! {
    async fn execute_seed_example(app) {
        create(&app, seed_workflow()).await;
        hold_engine(&app, "test-openapi", 2).await;
        let now = app.clock.now();
        // The example names an image registry: unknown → 400 naming the field, nothing stored.
        let r = app.post("/openapi/workflows/custom/task", seed_execute_body()).await;
        r.expect_error(400, "inputs[0].parameters.registry");
        assert!(app.state().tasks.get("test-openapi", 1).await.unwrap().is_none(), "a refused execute stores nothing");
        let reg = app.post("/openapi/system/registry", json!({"address": "https://koderover.******.com", "provider": "harbor", "namespace": "test"})).await;
        let registry_id = reg.expect(200)["id"].as_str().expect("registry id").to_string();

        let r = app.post("/openapi/workflows/custom/task", seed_execute_body()).await;
        assert_eq!(r.expect(200), &json!({"project_name": "helm", "workflow_name": "test-openapi", "task_id": 1}));

        let t = stored(&app, "test-openapi", 1).await;
        assert_eq!(t.status, Status::Waiting);
        assert_eq!(t.project_name, "helm");
        assert_eq!(t.workflow_display_name, "Test OpenAPI");
        assert_eq!(t.task_creator, "admin");
        assert_eq!(t.task_creator_account, "admin");
        assert!(!t.task_creator_id.is_empty());
        assert_eq!(t.create_time, now);
        assert_eq!(t.queued_at_ms, app.clock.now_ms());
        assert_eq!(t.concurrency_limit, 2);
        assert_eq!(t.version, 0);
        assert!(!t.is_deleted && t.release.is_none());
        assert_eq!(t.id.len(), 24);

        // Global parameters.
        let param = |n: &str| t.params.iter().find(|p| p["name"] == n).unwrap().clone();
        assert_eq!(param("test")["value"], "zadig");
        assert_eq!(param("abc")["value"], "123");
        assert_eq!(param("repo1")["repo"]["branch"], "master");
        assert_eq!(param("repo1")["repo"]["prs"], json!([1]));
        assert_eq!(param("repo1")["repo"]["codehost_id"], 4);

        // Stages and job tasks: names, keys, statuses.
        let layout: Vec<Value> = t.stages.iter()
            .map(|s| json!([s.name, s.jobs.iter().map(|j| json!([j.name, j.key, j.status])).collect::<Vec<_>>()]))
            .collect();
        assert_eq!(Value::Array(layout), json!([
            ["build", [["zadig-aslan-build-myapps", "build-myapps.zadig.aslan", ""]]],
            ["deploy", [["zadig-deploy-myapps", "deploy-myapps.zadig", ""],
                        ["service2-service2-deploy-my-app", "deploy-my-app.Deployment.service2.service2", ""]]],
            ["ops", [["jira-issue-update", "jira-issue-update", ""], ["sql", "sql", ""]]],
            ["after", [["cleanup", "cleanup", "skipped"]]],
        ]));
        let s = |x: &str| x.to_string();
        assert_eq!(t.stages[3].status, "skipped");
        assert!(t.stages[3].approval.is_none(), "a skipped stage needs no approval");
        assert!(t.stages[0].parallel && !t.stages[2].parallel);

        // Build: only the listed service, with its repo and variables.
        let b = &t.stages[0].jobs[0];
        assert_eq!(b.job_type, "zadig-build");
        assert_eq!(b.display_name, "build-myapps-zadig-aslan");
        assert_eq!(b.spec["service_name"], "zadig");
        assert_eq!(b.spec["service_module"], "aslan");
        assert_eq!(b.spec["build_name"], "aslan-build");
        assert_eq!(b.spec["docker_registry_id"], registry_id.as_str(), "the input's registry replaces the job's");
        assert_eq!(b.spec["service_and_builds"].as_array().unwrap().len(), 1);
        assert_eq!(b.spec["repos"], json!([{"source": "koderover", "codehost_name": "koderover", "repo_owner": "koderover",
            "repo_namespace": "koderover", "repo_name": "zadig", "remote_name": "origin", "checkout_path": "", "submodules": false,
            "branch": "main", "pr": 0, "prs": [], "enable_commit": false, "commit_id": ""}]));
        let kv: Vec<(String, String)> = b.spec["key_vals"].as_array().unwrap().iter()
            .map(|v| (v["key"].as_str().unwrap().into(), v["value"].as_str().unwrap().into())).collect();
        assert_eq!(kv, [(s("username"), s("admin")), (s("password"), s("Zadig"))]);

        // Deploy: env and images from the input, one job task per service.
        let d = &t.stages[1].jobs[0];
        assert_eq!(d.spec["env"], "dev");
        assert_eq!(d.spec["service_name"], "zadig");
        assert_eq!(d.spec["service_and_images"], json!([
            {"service_name": "zadig", "service_module": "aslan", "image": "koderover.******.com/test/aslan:main", "image_name": "aslan"},
            {"service_name": "zadig", "service_module": "zadig-portal", "image": "koderover.******.com/test/zadig-portal:main",
             "image_name": "zadig-portal"}]));
        assert_eq!(d.spec["services"][0]["value_merge_strategy"], "reuse-values", "the last entry of a service wins");
        let c = &t.stages[1].jobs[1];
        assert_eq!(c.spec["target"], "Deployment/service2/service2");
        assert_eq!(c.spec["image"], "koderover.***.com/test/service2:0505");
        assert_eq!(c.spec["namespace"], "default");

        // Freestyle: variables set; both spec formats for the executor.
        let f = &t.stages[2].jobs[0];
        assert_eq!(f.spec["envs"][0], json!({"key": "IssueID", "value": "ZAD-10126", "type": "string"}));
        assert_eq!(f.spec["envs"][2]["value"], "ToBeReleased");
        assert_eq!(f.spec["script"], "echo $IssueID");
        assert_eq!(f.spec["steps"][0]["type"], "shell");
        assert_eq!(f.spec["steps"][0]["spec"]["script"], "echo $IssueID");
        assert_eq!(f.spec["properties"]["envs"][0]["value"], "ZAD-10126");
        let q = &t.stages[2].jobs[1];
        assert_eq!((q.spec["database_name"].as_str(), q.spec["sql"].as_str()), (Some("mysql"), Some("show databases;")));

        // Notifications: stored as sent, applied to the definition kept for retry.
        assert_eq!(t.notify_inputs, seed_execute_body()["notify_inputs"]);
        let ctl = &t.workflow_args["notify_ctls"][1];
        assert_eq!(ctl["lark_person_notification_config"]["users"], json!([{"id": "35g99291", "id_type": "user_id"}]));
        assert_eq!(ctl["lark_person_notification_config"]["app_id"], "cli_1");
        assert_eq!(t.workflow_args["stages"][3]["jobs"][0]["skipped"], true);

        // Task detail in the seed's shape.
        let det = app.get("/openapi/workflows/custom/task?taskId=1&workflowKey=test-openapi").await.expect(200).clone();
        for k in ["task_id", "workflow_key", "workflow_name", "params", "status", "task_creator", "create_time",
                  "start_time", "end_time", "stages", "project_key"] {
            assert!(det.get(k).is_some(), "detail lacks {k}");
        }
        assert_fields(&det, json!({
            "task_id": 1, "workflow_key": "test-openapi", "workflow_name": "Test OpenAPI",
            "project_key": "helm", "status": "waiting", "task_creator": "admin", "create_time": now
        }));
        let token = det["params"].as_array().unwrap().iter().find(|p| p["name"] == "token").unwrap().clone();
        assert_eq!(token["value"], "********", "credential parameters are masked");
        let bj = &det["stages"][0]["jobs"][0];
        assert_fields(bj, json!({
            "name": "zadig-aslan-build-myapps", "type": "zadig-build", "status": "",
            "cost_seconds": 0,
            "job_info": {"job_name": "build-myapps", "service_name": "zadig", "service_module": "aslan"}
        }));
        assert_eq!(bj["spec"]["service_name"], "zadig");
        // Zadig's job-task key: `<job>.<service>.<module>` (`<job>.<service>` for a deploy).
        assert_eq!(bj["key"], "build-myapps.zadig.aslan");
        assert_eq!(det["stages"][1]["jobs"][0]["key"], "deploy-myapps.zadig");
        assert_eq!(bj["spec"]["repos"][0]["repo_name"], "zadig");
        assert_eq!(bj["spec"]["envs"][1], json!({"key": "password", "value": "Zadig", "type": "string", "is_credential": false}));
        let dj = &det["stages"][1]["jobs"][0]["spec"];
        assert_eq!(dj["env"], "dev");
        assert_eq!(dj["service_and_images"][0]["image"], "koderover.******.com/test/aslan:main");
        assert_eq!(dj["service_and_images"][1]["service_module"], "zadig-portal");
        assert_eq!(det["stages"][1]["jobs"][0]["job_info"], json!({"job_name": "deploy-myapps", "service_name": "zadig"}));
        let fj = &det["stages"][2]["jobs"][0]["spec"];
        assert_eq!(fj["envs"][3], json!({"key": "PASSWORD", "value": "********", "type": "string", "is_credential": true}));
        assert_eq!(det["stages"][1]["jobs"][1]["spec"]["target"], "Deployment/service2/service2");
        app.stop().await;
    }
}

backend_test! {
    async fn execute_errors(app) {
        create(&app, seed_workflow()).await;
        hold_engine(&app, "test-openapi", 2).await;
        let only_sql = json!([{"job_name": "sql", "job_type": "sql", "parameters": {"sql": "select 2"}}]);
        let post = |body: Value| app.post("/openapi/workflows/custom/task", body);

        let r = post(execute("helm", "nope", only_sql.clone())).await;
        assert_eq!(code_of(r.expect_error(404, "nope")), 6542);
        let r = post(execute("other", "test-openapi", only_sql.clone())).await;
        assert_eq!(code_of(r.expect_error(404, "other")), 6542);
        post(json!({"project_key": "helm", "inputs": []})).await.expect_error(400, "workflow_key");
        post(json!({"workflow_key": "test-openapi", "inputs": []})).await.expect_error(400, "project_key");
        let r = post(execute("helm", "test-openapi", json!([]))).await;
        assert_eq!(code_of(r.expect_error(400, "no stage found in workflow task")), 6160);
        post(execute("helm", "test-openapi", json!([{"job_name": "ghost"}]))).await.expect_error(400, "inputs[0].job_name");
        post(execute("helm", "test-openapi", json!([{"job_name": "sql"}, {"job_name": "sql"}]))).await.expect_error(400, "inputs[1].job_name");
        post(execute("helm", "test-openapi", json!([{"job_name": "sql", "job_type": "freestyle"}]))).await.expect_error(400, "inputs[0].job_type");
        post(execute("helm", "test-openapi", json!([{"job_name": "sql", "job_type": "warp"}]))).await.expect_error(400, "inputs[0].job_type");
        post(execute("helm", "test-openapi", json!([{"job_name": "jira-issue-update", "parameters": {"kv": [{"key": "Nope", "value": "1"}]}}])))
            .await.expect_error(400, "inputs[0].parameters.kv[0].key");
        post(execute("helm", "test-openapi", json!([{"job_name": "jira-issue-update", "parameters": {"kv": "x"}}])))
            .await.expect_error(400, "inputs[0].parameters.kv");
        post(execute("helm", "test-openapi", json!([{"job_name": "build-myapps", "parameters": {"service_list": [{"service_name": "ghost", "service_module": "m"}]}}])))
            .await.expect_error(400, "inputs[0].parameters.service_list[0]");
        post(execute("helm", "test-openapi", json!([{"job_name": "build-myapps", "parameters": {"service_list": []}}])))
            .await.expect_error(400, "no service to build");
        post(execute("helm", "test-openapi", json!([{"job_name": "deploy-myapps", "parameters": {"service_list": [{"service_name": "a", "service_module": "b", "value_merge_strategy": "merge"}]}}])))
            .await.expect_error(400, "inputs[0].parameters.service_list[0].value_merge_strategy");
        post(execute("helm", "test-openapi", json!([{"job_name": "deploy-myapps", "parameters": {"env_name": "dev"}}])))
            .await.expect_error(400, "deploy service is empty");
        post(execute("helm", "test-openapi", json!([{"job_name": "deploy-my-app", "parameters": {"target_list": [{"workload_type": "Deployment"}]}}])))
            .await.expect_error(400, "inputs[0].parameters.target_list[0].workload_name");

        // Global parameters.
        let with_params = |params: Value| json!({"project_key": "helm", "workflow_key": "test-openapi", "parameters": params, "inputs": only_sql.clone()});
        post(with_params(json!([{"name": "nope", "type": "string", "value": "x"}]))).await.expect_error(400, "parameters[0].name");
        post(with_params(json!([{"name": "abc", "type": "choice", "value": "789"}]))).await.expect_error(400, "parameters[0].value");
        post(with_params(json!([{"name": "test", "type": "numeric", "value": "1"}]))).await.expect_error(400, "parameters[0].type");
        post(with_params(json!([{"name": "repo1", "type": "repo"}]))).await.expect_error(400, "parameters[0].repo");
        post(with_params(json!([{"name": "repo1", "type": "repo", "repo": {"repo_namespace": "x", "repo_name": "y", "branch": "b"}}]))).await.expect_error(400, "parameters[0].repo");
        post(with_params(json!({"name": "test"}))).await.expect_error(400, "parameters");
        post(with_params(json!([{"name": "test", "value": "ok"}, {"name": "test", "value": "again"}]))).await.expect_error(400, "parameters[1].name");

        // Malformed bodies.
        app.raw(Method::POST, "/openapi/workflows/custom/task", "{\"project_key\": ").await.expect_error(400, "JSON");
        app.raw(Method::POST, "/openapi/workflows/custom/task", r#"{"project_key": "helm", "workflow_key": 7}"#).await.expect_error(400, "workflow_key");
        post(json!({"project_key": "helm", "workflow_key": "test-openapi", "inputs": only_sql.clone(), "notify_inputs": [{"type": "wechat"}]})).await.expect_error(400, "notify_inputs[0].id");

        // Nothing above consumed a task id.
        assert_eq!(post(execute("helm", "test-openapi", only_sql.clone())).await.expect(200)["task_id"], 1);

        // force_run jobs must be listed.
        let mut forced = seed_workflow();
        forced["name"] = json!("forced");
        forced["stages"][2]["jobs"][1]["run_policy"] = json!("force_run");
        create(&app, forced).await;
        let r = post(execute("helm", "forced", json!([{"job_name": "jira-issue-update"}]))).await;
        assert_eq!(code_of(r.expect_error(400, "job sql skipped, but the run policy is set to force run")), 6160);

        // concurrency_limit 0: the seed says such a workflow cannot be executed.
        let mut zero = echo_workflow("zero", "helm");
        zero["concurrency_limit"] = json!(0);
        create(&app, zero).await;
        let r = post(execute("helm", "zero", json!([{"job_name": "echo"}]))).await;
        assert_eq!(code_of(r.expect_error(409, "workflow cannot be executed")), 6160);
        let mut off = echo_workflow("off", "helm");
        off["disabled"] = json!(true);
        create(&app, off).await;
        post(execute("helm", "off", json!([{"job_name": "echo"}]))).await.expect_error(409, "disabled");

        // Stage approval without approvers is refused when the stage would run.
        let mut unapproved = echo_workflow("unapproved", "helm");
        unapproved["stages"][0]["approval"] = json!({"enabled": true, "native_approval": {"approve_users": []}});
        create(&app, unapproved).await;
        post(execute("helm", "unapproved", json!([{"job_name": "echo"}]))).await.expect_error(400, "num of approve-users is 0");
        app.stop().await;
    }
}

backend_test! {
    async fn concurrent_executes_get_distinct_consecutive_ids(app) {
        create(&app, echo_workflow("busy", "p")).await;
        hold_engine(&app, "busy", 1).await;
        let body = execute("p", "busy", json!([{"job_name": "echo", "job_type": "freestyle", "parameters": {"kv": [{"key": "GREETING", "value": "yo"}]}}]));
        let calls = (0..50).map(|_| app.post("/openapi/workflows/custom/task", body.clone()));
        let ids: Vec<i64> = futures::future::join_all(calls).await.iter().map(|r| r.expect(200)["task_id"].as_i64().unwrap()).collect();
        let distinct: BTreeSet<i64> = ids.iter().copied().collect();
        assert_eq!(distinct, (1..=50).collect::<BTreeSet<i64>>(), "ids: {ids:?}");
        let l = app.get("/openapi/workflows/custom/busy/tasks?projectKey=p&pageSize=100").await.expect(200).clone();
        assert_eq!(l["total"], 50);
        app.stop().await;
    }
}

backend_test! {
    async fn list_tasks(app) {
        queued_echo_tasks(&app, "wf", 55).await;
        let l = app.get("/openapi/workflows/custom/wf/tasks?projectKey=p").await.expect(200).clone();
        assert_eq!(l["total"], 55);
        let page = l["workflow_tasks"].as_array().unwrap();
        assert_eq!(page.len(), 50, "default pageSize is 50");
        assert_eq!(page[0], json!({"workflow_key": "wf", "workflow_name": "wf", "project_key": "p", "task_id": 55,
            "task_creator": "admin", "create_time": app.clock.now(), "start_time": 0, "end_time": 0, "status": "waiting"}));
        let ids = |v: &Value| -> Vec<i64> { v["workflow_tasks"].as_array().unwrap().iter().map(|t| t["task_id"].as_i64().unwrap()).collect() };
        assert_eq!(ids(app.get("/openapi/workflows/custom/wf/tasks?projectKey=p&pageNum=2").await.expect(200)), [5, 4, 3, 2, 1]);
        assert_eq!(ids(app.get("/openapi/workflows/custom/wf/tasks?projectKey=p&pageNum=3&pageSize=10").await.expect(200)), (26..=35).rev().collect::<Vec<_>>());
        // `page` is accepted as an alias of pageNum.
        assert_eq!(ids(app.get("/openapi/workflows/custom/wf/tasks?projectKey=p&page=2&pageSize=20").await.expect(200)), (16..=35).rev().collect::<Vec<_>>());
        assert_eq!(ids(app.get("/openapi/workflows/custom/wf/tasks?projectKey=p&page=9").await.expect(200)), Vec::<i64>::new());

        app.expect_paging_errors("/openapi/workflows/custom/wf/tasks?projectKey=p").await;
        app.get("/openapi/workflows/custom/wf/tasks?projectKey=p&page=0").await.expect_error(400, "page");

        app.get("/openapi/workflows/custom/wf/tasks").await.expect_error(400, "projectKey");
        let r = app.get("/openapi/workflows/custom/nope/tasks?projectKey=p").await;
        assert_eq!(code_of(r.expect_error(404, "nope")), 6542);
        app.get("/openapi/workflows/custom/wf/tasks?projectKey=q").await.expect_error(404, "wf");
        app.stop().await;
    }
}

backend_test! {
    async fn task_detail_errors(app) {
        create(&app, echo_workflow("wf", "p")).await;
        hold_engine(&app, "wf", 1).await;
        let r = app.get("/openapi/workflows/custom/task?taskId=1&workflowKey=wf").await;
        assert_eq!(code_of(r.expect_error(404, "wf:1")), 6161);
        app.get("/openapi/workflows/custom/task?workflowKey=wf").await.expect_error(400, "taskId");
        app.get("/openapi/workflows/custom/task?taskId=abc&workflowKey=wf").await.expect_error(400, "taskId");
        app.get("/openapi/workflows/custom/task?taskId=0&workflowKey=wf").await.expect_error(400, "taskId");
        app.get("/openapi/workflows/custom/task?taskId=1").await.expect_error(400, "workflowKey");

        // cost_seconds follows the clock while a job runs.
        app.post("/openapi/workflows/custom/task", execute("p", "wf", json!([{"job_name": "echo"}]))).await.expect(200);
        let start = app.clock.now();
        set(&app, "wf", 1, |t| {
            t.status = Status::Running;
            t.start_time = start;
            t.stages[0].status = Status::Running;
            t.stages[0].jobs[0].status = Status::Running;
            t.stages[0].jobs[0].start_time = start;
        }).await;
        app.clock.advance(Duration::from_secs(7));
        let d = app.get("/openapi/workflows/custom/task?taskId=1&workflowKey=wf").await.expect(200).clone();
        assert_eq!(d["status"], "running");
        assert_eq!(d["start_time"], start);
        assert_eq!(d["stages"][0]["jobs"][0]["cost_seconds"], 7);
        assert_eq!(d["stages"][0]["jobs"][0]["spec"]["envs"], json!([{"key": "GREETING", "value": "hi", "type": "string", "is_credential": false}]));
        app.stop().await;
    }
}

backend_test! {
    async fn cancel_tasks(app) {
        queued_echo_tasks(&app, "build-images", 4).await;
        let (_, token) = app.create_user("carol", false).await;
        let r = app.call(Method::DELETE, "/openapi/workflows/custom/task?taskId=1&workflowKey=build-images", Some(&token), None).await;
        assert_eq!(r.expect(200), &json!({"message": "success"}));
        let t = stored(&app, "build-images", 1).await;
        assert_eq!(t.status, "cancelled");
        assert_eq!(t.task_revoker, "carol");
        assert_eq!(t.end_time, app.clock.now(), "a task that never started ends when cancelled");
        // Cancelling again changes nothing.
        app.delete("/openapi/workflows/custom/task?taskId=1&workflowKey=build-images").await.expect(200);
        assert_eq!(stored(&app, "build-images", 1).await.task_revoker, "carol");

        // A running task is marked cancelled; the engine winds it down.
        set(&app, "build-images", 2, |t| { t.status = Status::Running; t.start_time = 1; }).await;
        app.delete("/openapi/workflows/custom/task?taskId=2&workflowKey=build-images").await.expect(200);
        let t = stored(&app, "build-images", 2).await;
        assert_eq!((t.status.as_str(), t.end_time), ("cancelled", 0));

        // A passed task: 400 with the seed's code and description.
        set(&app, "build-images", 3, |t| t.status = Status::Passed).await;
        let r = app.delete("/openapi/workflows/custom/task?taskId=3&workflowKey=build-images").await;
        let b = r.expect_error(400, "task: build-images:3 is passed, cannot cancel");
        assert_eq!(b["code"], 6163);
        assert_eq!(b["message"], "Cancel workflow task failed");
        set(&app, "build-images", 4, |t| t.status = Status::Failed).await;
        let r = app.delete("/openapi/workflows/custom/task?taskId=4&workflowKey=build-images").await;
        assert_eq!(code_of(r.expect_error(409, "is failed, cannot cancel")), 6163);

        let r = app.delete("/openapi/workflows/custom/task?taskId=99&workflowKey=build-images").await;
        assert_eq!(code_of(r.expect_error(404, "build-images:99")), 6163);
        app.delete("/openapi/workflows/custom/task?taskId=x&workflowKey=build-images").await.expect_error(400, "taskId");
        app.delete("/openapi/workflows/custom/task?taskId=1").await.expect_error(400, "workflowKey");
        app.stop().await;
    }
}

backend_test! {
    async fn retry_tasks(app) {
        let mut wf = echo_workflow("wf", "p");
        wf["stages"][0]["parallel"] = json!(true);
        wf["stages"][0]["jobs"].as_array_mut().unwrap().push(json!({"name": "second", "type": "freestyle", "spec": {"script": "exit 1"}}));
        wf["stages"].as_array_mut().unwrap().push(json!({"name": "later", "jobs": [{"name": "third", "type": "freestyle", "spec": {"script": "true"}}]}));
        create(&app, wf).await;
        hold_engine(&app, "wf", 1).await;
        app.post("/openapi/workflows/custom/task", execute("p", "wf", json!([{"job_name": "echo"}, {"job_name": "second"}, {"job_name": "third"}]))).await.expect(200);
        let original = stored(&app, "wf", 1).await;

        // Not retryable while waiting.
        let r = app.post("/openapi/workflows/custom/wf/task/1?projectKey=p", json!({})).await;
        assert_eq!(code_of(r.expect_error(409, "waiting")), 6161);

        // As the engine would leave it: the first job passed, the second failed.
        set(&app, "wf", 1, |t| {
            t.status = Status::Failed;
            t.start_time = 100;
            t.end_time = 200;
            t.error = "job second failed".into();
            t.stages[0].status = Status::Failed;
            t.stages[0].jobs[0].status = Status::Passed;
            t.stages[0].jobs[0].start_time = 100;
            t.stages[0].jobs[0].end_time = 150;
            t.stages[0].jobs[0].outputs.insert("OUT".into(), "1".into());
            t.stages[0].jobs[1].status = Status::Failed;
            t.stages[0].jobs[1].start_time = 100;
            t.stages[0].jobs[1].end_time = 190;
            t.stages[0].jobs[1].error = "exit status 1".into();
            t.stages[0].jobs[1].spec["script"] = json!("mangled at run time");
        }).await;
        app.clock.advance(Duration::from_secs(30));
        let r = app.post("/openapi/workflows/custom/wf/task/1?projectKey=p", json!({})).await;
        assert_eq!(r.expect(200), &json!({"message": "success"}));
        let t = stored(&app, "wf", 1).await;
        assert_eq!(t.task_id, 1);
        assert_eq!(t.status, Status::Waiting);
        assert_eq!(t.retry_num, 1);
        assert_eq!((t.start_time, t.end_time), (0, 0));
        assert_eq!(t.error, "");
        assert_eq!(t.queued_at_ms, app.clock.now_ms());
        assert_eq!(t.stages[0].status, "");
        let passed = &t.stages[0].jobs[0];
        assert_eq!((passed.status.as_str(), passed.end_time), ("passed", 150), "passed work is kept");
        assert_eq!(passed.outputs.get("OUT").map(String::as_str), Some("1"));
        let failed = &t.stages[0].jobs[1];
        assert_eq!((failed.status.as_str(), failed.start_time, failed.end_time, failed.error.as_str()), ("", 0, 0, ""));
        assert_eq!(failed.spec, original.stages[0].jobs[1].spec, "the spec is regenerated from the definition");
        assert_eq!(app.get("/openapi/workflows/custom/task?taskId=1&workflowKey=wf").await.expect(200)["is_restart"], true);

        // Cancelled, timed-out and rejected tasks are retryable too.
        for s in [Status::Cancelled, Status::Timeout, Status::Reject] {
            set(&app, "wf", 1, |t| t.status = s).await;
            app.post("/openapi/workflows/custom/wf/task/1?projectKey=p", json!({})).await.expect(200);
        }
        assert_eq!(stored(&app, "wf", 1).await.retry_num, 4);
        set(&app, "wf", 1, |t| t.status = Status::Passed).await;
        app.post("/openapi/workflows/custom/wf/task/1?projectKey=p", json!({})).await.expect_error(409, "passed");

        let r = app.post("/openapi/workflows/custom/wf/task/9?projectKey=p", json!({})).await;
        assert_eq!(code_of(r.expect_error(404, "wf:9")), 6161);
        app.post("/openapi/workflows/custom/wf/task/abc?projectKey=p", json!({})).await.expect_error(400, "taskID");
        app.post("/openapi/workflows/custom/wf/task/0?projectKey=p", json!({})).await.expect_error(400, "taskID");
        app.stop().await;
    }
}

/// A workflow whose second stage needs native approval by `approvers`, and a task of it
/// whose approval stage waits (as the engine leaves it).
async fn waiting_for_approval(app: &TestApp, approvers: Value, needed: i64) {
    let mut wf = echo_workflow("infra-dev-workflow", "p");
    wf["stages"].as_array_mut().unwrap().push(json!({"name": "deploy", "approval": {
        "enabled": true, "type": "native", "description": "Need approval to deploy",
        "native_approval": {"approve_users": approvers, "timeout": 120, "needed_approvers": needed}},
        "jobs": [{"name": "ship", "type": "freestyle", "spec": {"script": "echo ship"}}]}));
    create(app, wf).await;
    hold_engine(app, "infra-dev-workflow", 1).await;
    let r = app
        .post(
            "/openapi/workflows/custom/task",
            execute(
                "p",
                "infra-dev-workflow",
                json!([{"job_name": "echo"}, {"job_name": "ship"}]),
            ),
        )
        .await;
    assert_eq!(r.expect(200)["task_id"], 1);
    set(app, "infra-dev-workflow", 1, |t| {
        t.status = Status::WaitForApproval;
        t.stages[0].status = Status::Passed;
        t.stages[1].status = Status::WaitForApproval;
    })
    .await;
}

backend_test! {
    async fn approve_stage(app) {
        let [(alice_uid, alice), (_, bob), (_, mallory)] =
            app.create_users([("alice", false), ("bob", false), ("mallory", false)]).await;
        waiting_for_approval(&app, json!([{"user_name": "alice", "user_id": alice_uid}, {"user_name": "bob"}]), 2).await;
        let t = stored(&app, "infra-dev-workflow", 1).await;
        let a = t.stages[1].approval.as_ref().expect("stage approval on the task");
        assert_eq!((a.enabled, a.kind.as_str(), a.timeout, a.needed_approvers), (true, "native", 120, 2));
        assert_eq!(a.approve_users.len(), 2);
        assert_eq!(a.description, "Need approval to deploy");
        assert!(t.stages[0].approval.is_none());

        // The seed's body, from a listed approver.
        let seed = json!({"task_id": 1, "workflow_key": "infra-dev-workflow", "stage_name": "deploy", "approve": true, "comment": "LGTM"});
        let r = app.call(Method::POST, "/openapi/workflows/custom/task/approve", Some(&alice), Some(seed.clone())).await;
        assert_eq!(r.expect(200), &json!({"message": "success"}));
        let r = app.call(Method::POST, "/openapi/workflows/custom/task/approve", Some(&alice), Some(seed.clone())).await;
        assert_eq!(code_of(r.expect_error(409, "alice have approve already")), 6169);
        let r = app.call(Method::POST, "/openapi/workflows/custom/task/approve", Some(&mallory), Some(seed.clone())).await;
        assert_eq!(code_of(r.expect_error(403, "user mallory has no authority to Approve")), 6169);
        // `approve` left out means reject (as in Zadig); bob is matched by name.
        app.clock.advance(Duration::from_secs(3));
        app.call(Method::POST, "/openapi/workflows/custom/task/approve", Some(&bob),
            Some(json!({"task_id": 1, "workflow_key": "infra-dev-workflow", "stage_name": "deploy", "comment": "not today"}))).await.expect(200);

        let d = app.get("/openapi/workflows/custom/task?taskId=1&workflowKey=infra-dev-workflow").await.expect(200).clone();
        let approval = &d["stages"][1]["approval"];
        assert_fields(approval, json!({
            "enabled": true, "timeout": 120, "needed_approvers": 2,
            "description": "Need approval to deploy"
        }));
        assert_eq!(approval["reject_or_approve"], "", "the engine decides the outcome");
        let users = approval["approve_users"].as_array().unwrap();
        assert_eq!((users[0]["user_name"].as_str(), users[0]["reject_or_approve"].as_str(), users[0]["comment"].as_str()), (Some("alice"), Some("approve"), Some("LGTM")));
        assert_eq!(users[0]["operation_time"], app.clock.now() - 3);
        assert_eq!((users[1]["reject_or_approve"].as_str(), users[1]["operation_time"].as_i64()), (Some("reject"), Some(app.clock.now())));
        assert!(d["stages"][0].get("approval").is_none());

        // Nothing waiting: Zadig's code 6169 with the seed's text.
        let r = app.post("/openapi/workflows/custom/task/approve", json!({"task_id": 1, "workflow_key": "infra-dev-workflow", "stage_name": "run", "approve": true})).await;
        let b = r.expect_error(409, "workflow infra-dev-workflow ID 1 stage run do not need approve");
        assert_eq!(b["code"], 6169);
        assert_eq!(b["message"], "Approve workflow task failed");
        app.post("/openapi/workflows/custom/task/approve", json!({"task_id": 1, "workflow_key": "infra-dev-workflow", "stage_name": "nope", "approve": true})).await
            .expect_error(409, "do not need approve");
        let r = app.post("/openapi/workflows/custom/task/approve", json!({"task_id": 5, "workflow_key": "infra-dev-workflow", "stage_name": "deploy", "approve": true})).await;
        assert_eq!(code_of(r.expect_error(404, "infra-dev-workflow")), 6169);
        app.post("/openapi/workflows/custom/task/approve", json!({"workflow_key": "infra-dev-workflow", "stage_name": "deploy"})).await.expect_error(400, "task_id");
        app.post("/openapi/workflows/custom/task/approve", json!({"task_id": 1, "stage_name": "deploy"})).await.expect_error(400, "workflow_key");
        app.post("/openapi/workflows/custom/task/approve", json!({"task_id": 1, "workflow_key": "infra-dev-workflow"})).await.expect_error(400, "stage_name");
        app.raw(Method::POST, "/openapi/workflows/custom/task/approve", r#"{"task_id": "one"}"#).await.expect_error(400, "task_id");

        // Once decided (or no longer waiting), no more votes.
        set(&app, "infra-dev-workflow", 1, |t| t.stages[1].status = Status::Reject).await;
        app.post("/openapi/workflows/custom/task/approve", seed).await.expect_error(409, "do not need approve");
        app.stop().await;
    }
}

backend_test! {
    async fn admin_votes_and_approval_jobs(app) {
        waiting_for_approval(&app, json!([{"user_name": "someone-else"}]), 1).await;
        // A system admin who is not listed may vote; the vote is recorded under their name.
        app.post("/openapi/workflows/custom/task/approve", json!({"task_id": 1, "workflow_key": "infra-dev-workflow", "stage_name": "deploy", "approve": true})).await.expect(200);
        let a = stored(&app, "infra-dev-workflow", 1).await.stages[1].approval.clone().unwrap();
        assert_eq!(a.approve_users.len(), 2);
        assert_eq!((a.approve_users[1].user_name.as_str(), a.approve_users[1].reject_or_approve.as_str()), ("admin", "approve"));

        // An `approval` job waiting: approved by its job name.
        let (_, dave) = app.create_user("dave", false).await;
        let mut wf = echo_workflow("gated", "p");
        wf["stages"].as_array_mut().unwrap().insert(0, json!({"name": "gate", "jobs": [{"name": "approval-1", "type": "approval", "run_policy": "force_run",
            "spec": {"type": "native", "timeout": 10, "native_approval": {"approve_users": [{"user_name": "dave"}], "needed_approvers": 1}}}]}));
        create(&app, wf).await;
        hold_engine(&app, "gated", 1).await;
        app.post("/openapi/workflows/custom/task", execute("p", "gated", json!([{"job_name": "echo"}]))).await.expect_error(400, "approval-1");
        let r = app.post("/openapi/workflows/custom/task", execute("p", "gated", json!([{"job_name": "approval-1", "job_type": "approval", "parameters": {}}, {"job_name": "echo"}]))).await;
        assert_eq!(r.expect(200)["task_id"], 1);
        let vote = json!({"task_id": 1, "workflow_key": "gated", "stage_name": "approval-1", "approve": true, "comment": "go"});
        app.call(Method::POST, "/openapi/workflows/custom/task/approve", Some(&dave), Some(vote.clone())).await.expect_error(409, "do not need approve");
        set(&app, "gated", 1, |t| {
            t.status = Status::Running;
            t.stages[0].status = Status::Running;
            t.stages[0].jobs[0].status = Status::WaitForApproval;
        }).await;
        app.call(Method::POST, "/openapi/workflows/custom/task/approve", Some(&dave), Some(vote)).await.expect(200);
        let job = stored(&app, "gated", 1).await.stages[0].jobs[0].clone();
        let u = &job.spec["native_approval"]["approve_users"][0];
        assert_eq!((u["user_name"].as_str(), u["reject_or_approve"].as_str(), u["comment"].as_str()), (Some("dave"), Some("approve"), Some("go")));
        app.stop().await;
    }
}

backend_test! {
    async fn pre_approval_tickets_restrict_execution(app) {
        let mut wf = seed_workflow();
        wf["enable_approval_ticket"] = json!(true);
        create(&app, wf).await;
        hold_engine(&app, "test-openapi", 2).await;
        let (_, alice) = app.create_user("alice@example.com", false).await;
        let now = app.clock.now();
        let deploy = json!([{"job_name": "deploy-myapps", "parameters": {"env_name": "prod",
            "service_list": [{"service_name": "zadig", "service_module": "aslan", "image_name": "reg/aslan:1"}]}}]);
        let ticket = |id: &str, extra: Value| {
            let mut t = json!({"project_key": "helm", "approval_id": id, "status": 1});
            for (k, v) in extra.as_object().unwrap() { t[k] = v.clone(); }
            t
        };
        for t in [
            ticket("T-OK", json!({"envs": "prod", "services": [{"service_name": "zadig", "service_module": "aslan"}],
                "users": [{"name": "Alice", "email": "alice@example.com"}], "execution_window_start": now - 10, "execution_window_end": now + 3600})),
            ticket("T-ENV", json!({"envs": ["dev"]})),
            ticket("T-SVC", json!({"services": [{"service_name": "other", "service_module": "x"}]})),
            ticket("T-USER", json!({"users": [{"name": "Bob", "email": "bob@example.com"}]})),
            ticket("T-LATER", json!({"execution_window_start": now + 60})),
            ticket("T-OFF", json!({"status": 0})),
            json!({"project_key": "elsewhere", "approval_id": "T-PROJ", "status": 1}),
        ] {
            app.post("/openapi/ticket/approval", t).await.expect(200);
        }
        let run = |ticket: &str| {
            let mut b = execute("helm", "test-openapi", deploy.clone());
            if !ticket.is_empty() { b["approval_ticket_id"] = json!(ticket); }
            app.call(Method::POST, "/openapi/workflows/custom/task", Some(&alice), Some(b))
        };
        let r = run("").await;
        assert_eq!(code_of(r.expect_error(400, "approval_ticket_id")), 6160);
        run("T-NONE").await.expect_error(404, "T-NONE");
        run("T-ENV").await.expect_error(403, "does not allow deploying to env [prod]");
        run("T-SVC").await.expect_error(403, "does not allow service [zadig/aslan]");
        run("T-USER").await.expect_error(403, "is not allowed to create workflow task");
        run("T-LATER").await.expect_error(403, "not in execution time window");
        run("T-OFF").await.expect_error(403, "not in effect");
        run("T-PROJ").await.expect_error(403, "project key mismatch");

        assert_eq!(run("T-OK").await.expect(200)["task_id"], 1);
        let t = stored(&app, "test-openapi", 1).await;
        assert_eq!(t.approval_id, "T-OK");
        assert_eq!(t.approval_ticket_id.len(), 24);
        let d = app.get("/openapi/workflows/custom/task?taskId=1&workflowKey=test-openapi").await.expect(200).clone();
        assert_eq!(d["approval_id"], "T-OK");
        // The window closes.
        app.clock.advance(Duration::from_secs(7200));
        run("T-OK").await.expect_error(403, "not in execution time window");
        app.stop().await;
    }
}

backend_test! {
    async fn release_plan_interface(app) {
        create(&app, seed_workflow()).await;
        hold_engine(&app, "test-openapi", 2).await;
        let st = app.state();
        let inputs = json!([{"job_name": "sql", "job_type": "sql", "parameters": {"sql": "select 3"}}]);
        let params = json!([{"name": "test", "type": "string", "value": "from-release"}]);
        let merged = zadig_server::workflow::check_release_input(st, "helm", "test-openapi", &params, &inputs).await.unwrap().workflow;
        assert_eq!(merged["params"][0]["value"], "from-release");
        assert_eq!(merged["stages"][2]["jobs"][1]["spec"]["sql"], "select 3");
        assert_eq!(merged["stages"][0]["jobs"][0]["skipped"], true);
        // Listing no job is not an input error (the plan may be edited later); starting it is.
        let none = zadig_server::workflow::check_release_input(st, "helm", "test-openapi", &params, &json!([])).await.unwrap().workflow;
        assert!(none["stages"].as_array().unwrap().iter().all(|s| s["jobs"].as_array().unwrap().iter().all(|j| j["skipped"] == true)));
        let e = zadig_server::workflow::check_release_input(st, "helm", "nope", &params, &inputs).await.unwrap_err();
        assert_eq!((e.status().as_u16(), e.code), (404, 6542));
        let e = zadig_server::workflow::check_release_input(st, "helm", "test-openapi", &json!([{"name": "zzz"}]), &inputs).await.unwrap_err();
        assert!(e.status() == 400 && e.description.contains("parameters[0].name"), "{e:?}");
        // An input for a job the workflow does not have is ignored and reported (as Zadig).
        let ghost = zadig_server::workflow::check_release_input(st, "helm", "test-openapi", &params, &json!([{"job_name": "ghost"}, inputs[0].clone()])).await.unwrap();
        assert_eq!(ghost.warnings, vec!["inputs[0]: workflow test-openapi has no job ghost; ignored".to_string()]);
        assert_eq!(ghost.inputs, inputs);

        let caller = zadig_server::auth::Identity {
            uid: "u-1".into(), account: "rm".into(), name: "Release Manager".into(), identity_type: "system".into(), is_admin: false,
        };
        let release = zadig_server::workflow::ReleaseRef { plan_id: "p1".into(), plan_name: "plan".into(), plan_index: 3, job_id: "j1".into() };
        let e = zadig_server::workflow::start_release_task(st, "helm", "test-openapi", &params, &json!([]), &caller, release.clone()).await.unwrap_err();
        assert_eq!((e.status().as_u16(), e.code), (400, 6160), "{e:?}");
        let started = zadig_server::workflow::start_release_task(st, "helm", "test-openapi", &params, &inputs, &caller, release.clone()).await.unwrap();
        assert_eq!((started.project_name.as_str(), started.workflow_name.as_str(), started.task_id), ("helm", "test-openapi", 1));
        let t = stored(&app, "test-openapi", 1).await;
        assert_eq!(t.release, Some(release));
        assert_eq!(t.task_creator, "Release Manager");
        assert_eq!(zadig_server::workflow::task_status(st, "test-openapi", 1).await.unwrap(), Some(Status::Waiting));
        assert_eq!(zadig_server::workflow::task_status(st, "test-openapi", 2).await.unwrap(), None);
        let d = app.get("/openapi/workflows/custom/task?taskId=1&workflowKey=test-openapi").await.expect(200).clone();
        assert_eq!(d["release_plan"], json!({"id": "p1", "name": "plan", "index": 3, "job_id": "j1"}));
        app.stop().await;
    }
}

backend_test! {
    async fn concurrent_votes_are_all_recorded(app) {
        let mut users = Vec::new();
        for i in 0..8 {
            users.push(app.create_user(&format!("approver-{i}"), false).await);
        }
        let approvers: Vec<Value> = (0..8).map(|i| json!({"user_name": format!("approver-{i}")})).collect();
        waiting_for_approval(&app, Value::Array(approvers), 8).await;
        let vote = json!({"task_id": 1, "workflow_key": "infra-dev-workflow", "stage_name": "deploy", "approve": true});
        let calls = users.iter().map(|(_, token)| {
            app.call(Method::POST, "/openapi/workflows/custom/task/approve", Some(token), Some(vote.clone()))
        });
        for r in futures::future::join_all(calls).await {
            r.expect(200);
        }
        let a = stored(&app, "infra-dev-workflow", 1).await.stages[1].approval.clone().unwrap();
        assert!(a.approve_users.iter().all(|u| u.reject_or_approve == "approve"), "{:?}", a.approve_users);
        app.stop().await;
    }
}

backend_test! {
    async fn execute_the_seed_five_stage_workflow(app) {
        create(&app, crate::workflows::seed_create_body()).await;
        hold_engine(&app, "workflow-demo", 5).await;
        let inputs = json!([
            {"job_name": "build", "job_type": "zadig-build", "parameters": {"registry": "",
                "service_list": [{"service_name": "service1", "service_module": "service1",
                    "repo_info": [{"codehost_name": "github", "repo_namespace": "owner1", "repo_name": "hello", "branch": "dev"}],
                    "inputs": [{"key": "VERSION", "value": "1.2.3"}]}]}},
            {"job_name": "deploy", "job_type": "zadig-deploy", "parameters": {}},
            {"job_name": "test", "job_type": "zadig-test", "parameters": {}},
            {"job_name": "common", "job_type": "freestyle", "parameters": {"kv": [{"key": "key1", "value": "val2"}],
                "repo_info": [{"codehost_name": "GitHub", "repo_namespace": "owner1", "repo_name": "hello", "branch": "feature",
                    "prs": null, "submodules": null}]}},
            {"job_name": "image-release", "job_type": "zadig-distribute-image", "parameters": {}}
        ]);
        let r = app.post("/openapi/workflows/custom/task", execute("demo", "workflow-demo", inputs)).await;
        assert_eq!(r.expect(200), &json!({"project_name": "demo", "workflow_name": "workflow-demo", "task_id": 1}));
        let t = stored(&app, "workflow-demo", 1).await;
        let names: Vec<Vec<&str>> = t.stages.iter().map(|s| s.jobs.iter().map(|j| j.name.as_str()).collect()).collect();
        assert_eq!(names, vec![vec!["service1-service1-build"], vec!["service1-deploy"], vec!["service1-service1-test"],
            vec!["common"], vec!["image-release"]]);
        let build = &t.stages[0].jobs[0].spec;
        assert_eq!(build["build_name"], "build-demo");
        assert_eq!(build["docker_registry_id"], "62c**********", "an empty registry keeps the job's");
        assert_eq!(build["repos"][0]["branch"], "dev");
        assert_eq!(build["key_vals"][0], json!({"key": "VERSION", "value": "1.2.3", "type": "string", "is_credential": false}));
        let deploy = &t.stages[1].jobs[0].spec;
        assert_eq!((deploy["env"].as_str(), deploy["source"].as_str(), deploy["job_name"].as_str()), (Some("dev"), Some("fromjob"), Some("build")));
        assert_eq!(deploy["service_and_images"][0]["service_module"], "service1");
        assert_eq!(t.stages[2].jobs[0].spec["name"], "smoke-test");
        let fs = &t.stages[3].jobs[0].spec;
        assert_eq!(fs["envs"][0]["value"], "val2");
        assert_eq!(fs["repos"][0]["branch"], "feature");
        assert_eq!(fs["repos"][0]["prs"], json!([]), "null reads as absent");
        assert_eq!(fs["repos"][0]["codehost_id"], 23, "the stored repository's settings are kept");
        let kinds: Vec<&str> = fs["steps"].as_array().unwrap().iter().map(|s| s["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["tools", "git", "shell"]);
        assert_eq!(fs["properties"]["timeout"], 60);
        assert_eq!(fs["properties"]["build_os"], "focal");
        let a = t.stages[1].approval.as_ref().expect("the Deploy stage needs approval");
        assert_eq!((a.enabled, a.timeout, a.needed_approvers, a.approve_users.len()), (true, 5, 1, 2));
        assert_eq!(a.approve_users[1].user_name, "sre-admin");
        assert_eq!(t.stages[4].jobs[0].spec["target_registry_id"], "630xxxxxxxxxxxx");
        app.stop().await;
    }
}

backend_test! {
    async fn malformed_job_specs_are_refused_naming_the_field(app) {
        let wf = |name: &str, job_type: &str, spec: Value| json!({
            "name": name, "project": "p",
            "stages": [{"name": "a", "jobs": [{"name": "j", "type": job_type, "spec": spec}]}],
        });
        // A value of the wrong type is a 400 naming it (Zadig stores it and runs with a default).
        let cases = [
            ("zadig-deploy", json!({"env": "dev", "services": [{"service_name": "s", "update_config": "yes",
                "modules": [{"service_module": "m", "image": "nginx:1"}]}]}), "stages[0].jobs[0].spec.services[0].update_config"),
            ("zadig-deploy", json!({"env": "dev", "deploy_contents": ["image", 2]}), "stages[0].jobs[0].spec.deploy_contents[1]"),
            ("custom-deploy", json!({"namespace": "ns", "timeout": "10"}), "stages[0].jobs[0].spec.timeout"),
            ("freestyle", json!({"advanced_setting": {"timeout": "soon"}}), "stages[0].jobs[0].spec.advanced_setting.timeout"),
            ("freestyle", json!({"advanced_setting": {"cluster_id": 7}}), "stages[0].jobs[0].spec.advanced_setting.cluster_id"),
            ("zadig-test", json!({"test_type": "service_test", "service_and_tests": [{"name": "t", "service_name": 1}]}),
                "stages[0].jobs[0].spec.service_and_tests[0].service_name"),
            ("zadig-scanning", json!({"scannings": [{"name": "s", "repos": "all"}]}), "stages[0].jobs[0].spec.scannings[0].repos"),
            ("zadig-vm-deploy", json!({"env": ["dev"]}), "stages[0].jobs[0].spec.env"),
            ("plugin", json!({"plugin": {"inputs": [{"name": 5}]}}), "stages[0].jobs[0].spec.plugin.inputs[0].name"),
            ("zadig-distribute-image", json!({"targets": [{"update_tag": "yes"}]}), "stages[0].jobs[0].spec.targets[0].update_tag"),
            // A job task's one target is at the spec's top level; its fields are named too.
            ("k8s-gray-release", json!({"targets": [{"workload_name": ["w"]}]}), "stages[0].jobs[0].spec.targets[0].workload_name"),
            ("k8s-gray-release", json!({"image": 5}), "stages[0].jobs[0].spec.image"),
            ("k8s-gray-rollback", json!({"workload_name": {"a": 1}}), "stages[0].jobs[0].spec.workload_name"),
            ("k8s-canary-deploy", json!({"targets": [{"deploy_timeout": "soon"}]}), "stages[0].jobs[0].spec.targets[0].deploy_timeout"),
            ("k8s-canary-deploy", json!({"canary_percentage": "half"}), "stages[0].jobs[0].spec.canary_percentage"),
            ("k8s-blue-green-deploy", json!({"version": "v2", "services": [{"service_and_image": [{"image": 5}]}]}),
                "stages[0].jobs[0].spec.services[0].service_and_image[0].image"),
            ("k8s-blue-green-deploy", json!({"version": "v2", "service_and_image": [{"service_module": 1}]}),
                "stages[0].jobs[0].spec.service_and_image[0].service_module"),
            ("k8s-blue-green-release", json!({"service_name": true}), "stages[0].jobs[0].spec.service_name"),
        ];
        for (job_type, spec, field) in cases {
            let r = app.post("/api/aslan/workflow/v4", wf("typed", job_type, spec)).await;
            r.expect_error(400, field);
        }
        // `null` reads as absent, as Zadig sends it; an absent field defaults as before.
        let nulls = json!({"env": "dev", "services": null, "deploy_contents": null, "timeout": null,
            "skip_check_run_status": null, "service_and_images": [{"service_name": "s", "service_module": "m", "image": null}]});
        app.post("/api/aslan/workflow/v4", wf("nulls", "zadig-deploy", nulls.clone())).await.expect(200);
        let d = app.get("/openapi/workflows/custom/nulls/detail?projectKey=p").await;
        assert_eq!(d.expect(200)["stages"][0]["jobs"][0]["spec"], nulls, "stored as sent");
        app.stop().await;
    }
}

backend_test! {
    async fn test_and_scan_inputs_select_and_update_their_modules(app) {
        let repo = |branch: &str| json!({"codehost_name": "gitlab", "repo_namespace": "o", "repo_name": "r", "branch": branch});
        create(&app, json!({"name": "suites", "project": "p", "concurrency_limit": 1, "stages": [{"name": "s", "jobs": [
            {"name": "test", "type": "zadig-test", "spec": {"test_type": "", "test_modules": [
                {"name": "unit", "project_name": "p", "repos": [repo("main")], "key_vals": [{"key": "A", "value": "1", "type": "string"}]},
                {"name": "e2e", "project_name": "p", "repos": [], "key_vals": []}]}},
            {"name": "scan", "type": "zadig-scanning", "spec": {"scanning_type": "", "scannings": [
                {"name": "sonar", "project_name": "p", "repos": [repo("main")], "key_vals": []}]}}]}]})).await;
        hold_engine(&app, "suites", 1).await;
        let inputs = json!([
            {"job_name": "test", "job_type": "zadig-test", "parameters": {"testing_list": [
                {"testing_name": "unit", "repo_info": [repo("dev")], "inputs": [{"key": "A", "value": "2"}]}]}},
            {"job_name": "scan", "job_type": "zadig-scanning", "parameters": {"scanning_list": [
                {"scanning_name": "sonar", "repo_info": [repo("release")]}]}}
        ]);
        app.post("/openapi/workflows/custom/task", execute("p", "suites", inputs)).await.expect(200);
        let t = stored(&app, "suites", 1).await;
        let jobs = &t.stages[0].jobs;
        let spec_of = |name: &str| &jobs.iter().find(|j| j.spec["name"] == name).expect(name).spec;
        assert_eq!(spec_of("unit")["repos"][0]["branch"], "dev");
        assert_eq!(spec_of("unit")["key_vals"][0]["value"], "2");
        assert_eq!(spec_of("e2e")["repos"], json!([]), "a module the input does not name runs as configured");
        assert_eq!(spec_of("sonar")["repos"][0]["branch"], "release", "the scanning job reads `scanning_list`");
        // Each kind reads its own key, and a malformed input names the field.
        let post = |inputs: Value| app.post("/openapi/workflows/custom/task", execute("p", "suites", inputs));
        post(json!([{"job_name": "test", "parameters": {"testing_list": [{"testing_name": "ghost"}]}}]))
            .await.expect_error(400, "inputs[0].parameters.testing_list[0].testing_name");
        post(json!([{"job_name": "test", "parameters": {"testing_list": {"testing_name": "unit"}}}]))
            .await.expect_error(400, "inputs[0].parameters.testing_list");
        post(json!([{"job_name": "scan", "parameters": {"scanning_list": [{"scanning_name": "sonar", "repo_info": [{"repo_name": ""}]}]}}]))
            .await.expect_error(400, "inputs[0].parameters.scanning_list[0].repo_info[0].repo_name");
        post(json!([{"job_name": "scan", "parameters": "all"}])).await.expect_error(400, "inputs[0].parameters");
        app.stop().await;
    }
}

backend_test! {
    async fn plugin_detail_shows_the_rendered_plugin(app) {
        let plugin = json!({"name": "echo", "image": "alpine", "cmds": ["sh", "-c"],
            "args": ["echo $(inputs.CONTENT) $(inputs.CONTENT) $(inputs.TOKEN) $(inputs.UNSET)"],
            "envs": [{"name": "CONTENT", "value": "$(inputs.CONTENT)"}, {"name": "T", "value": "$(inputs.TOKEN)"}],
            "inputs": [{"name": "CONTENT", "type": "string", "value": "default"},
                       {"name": "TOKEN", "type": "string", "value": "s3cret-token", "is_credential": true}]});
        create(&app, json!({"name": "plug", "project": "p", "concurrency_limit": 1, "stages": [{"name": "s", "jobs": [
            {"name": "hello", "type": "plugin", "spec": {"plugin": plugin}}]}]})).await;
        hold_engine(&app, "plug", 1).await;
        let inputs = json!([{"job_name": "hello", "job_type": "plugin", "parameters": {"kv": [{"key": "CONTENT", "value": "hi"}]}}]);
        app.post("/openapi/workflows/custom/task", execute("p", "plug", inputs)).await.expect(200);
        let d = app.get("/openapi/workflows/custom/task?taskId=1&workflowKey=plug").await.expect(200).clone();
        let spec = &d["stages"][0]["jobs"][0]["spec"];
        // As Zadig renders it (spec/workflow.md §2.4); an input nobody declared stays as written.
        assert_eq!(spec["args"], json!(["echo hi hi ******** $(inputs.UNSET)"]), "{spec}");
        assert_eq!(spec["cmds"], json!(["sh", "-c"]));
        assert_eq!(spec["envs"][0]["value"], "hi");
        assert_eq!(spec["envs"][1]["value"], "********", "a credential input is never shown");
        assert!(!d.to_string().contains("s3cret-token"), "{d}");
        // The stored spec keeps the placeholders and the values.
        let t = stored(&app, "plug", 1).await;
        assert_eq!(t.stages[0].jobs[0].spec["plugin"]["envs"][0]["value"], "$(inputs.CONTENT)");
        app.stop().await;
    }
}
