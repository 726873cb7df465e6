//! Release plans: every route, validation, the status transitions, owners and approvals
//! (seeds 000/001, spec/release-plan.md). Hooks, the scheduler and workflow jobs have their
//! own modules; the helpers here are shared with them.

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_test;
use crate::harness::{ADMIN_TOKEN, Resp, TestApp, assert_fields};

pub const BASE: &str = "/openapi/release_plan/v1";

/// Seed 001's create example (comments removed), verbatim.
pub fn seed_create_body() -> Value {
    json!({
        "name": "plan-example",
        "manager": "admin",
        "manager_identity_type": "system",
        "start_time": 1693558721,
        "end_time": 1694016000,
        "description": "",
        "approval": {
            "enabled": true,
            "status": "",
            "type": "native",
            "description": "",
            "native_approval": {
                "timeout": 5,
                "approve_users": [
                    {
                        "user_id": "c565c7eb-e273-11ed-bef9-a659ed9f1ed1",
                        "user_name": "admin",
                        "reject_or_approve": "",
                        "comment": "",
                        "operation_time": 0
                    }
                ],
                "needed_approvers": 1,
                "reject_or_approve": "",
                "instance_code": ""
            }
        }
    })
}

/// A plan managed by `manager` with no window and no approval.
pub fn simple_body(name: &str, manager: &str) -> Value {
    json!({"name": name, "manager": manager, "manager_identity_type": "system", "description": "d"})
}

pub async fn create(app: &TestApp, body: Value) -> String {
    let r = app.post(BASE, body).await;
    r.expect(200)["id"].as_str().expect("id").to_string()
}

pub async fn detail(app: &TestApp, id: &str) -> Value {
    app.get(&format!("{BASE}/{id}")).await.expect(200).clone()
}

pub async fn set_status(app: &TestApp, id: &str, status: &str) -> Resp {
    app.post(&format!("{BASE}/{id}/status/{status}"), json!({}))
        .await
}

/// Replace the plan's jobs with `n` text jobs (keeping `body`'s other fields).
pub async fn patch_text_jobs(app: &TestApp, id: &str, mut body: Value, n: usize) {
    body["jobs"] = Value::Array(
        (0..n)
            .map(|i| json!({"name": format!("Text-{i}"), "type": "text", "spec": {"content": format!("step {i}")}}))
            .collect(),
    );
    app.patch(&format!("{BASE}/{id}"), body).await.expect(200);
}

pub fn job_ids(plan: &Value) -> Vec<String> {
    plan["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_str().expect("job id").to_string())
        .collect()
}

/// Create a plan from `body` and give it `n` text jobs; returns its id.
pub async fn create_with_text_jobs(app: &TestApp, body: Value, n: usize) -> String {
    let id = create(app, body.clone()).await;
    patch_text_jobs(app, &id, body, n).await;
    id
}

/// Create a plan with `n` text jobs and move it to `executing`; returns its id.
pub async fn executing_plan(app: &TestApp, body: Value, n: usize) -> String {
    let id = create_with_text_jobs(app, body, n).await;
    set_status(app, &id, "finish_planning").await.expect(200);
    set_status(app, &id, "executing").await.expect(200);
    assert_eq!(detail(app, &id).await["status"], "executing");
    id
}

/// Act on a job as `token`.
pub async fn job_call(
    app: &TestApp,
    token: &str,
    id: &str,
    action: &str,
    job_id: &str,
    kind: &str,
) -> Resp {
    app.call(
        Method::POST,
        &format!("{BASE}/{id}/{action}"),
        Some(token),
        Some(json!({"id": job_id, "name": "x", "type": kind, "spec": {"remark": "done by test"}})),
    )
    .await
}

pub async fn status_as(app: &TestApp, token: &str, id: &str, to: &str) -> Resp {
    let path = format!("{BASE}/{id}/status/{to}");
    app.call(Method::POST, &path, Some(token), None).await
}

pub async fn approve_as(app: &TestApp, token: &str, id: &str, yes: bool) -> Resp {
    let path = format!("{BASE}/{id}/approve");
    let body = json!({"approve": yes, "comment": if yes { "lgtm" } else { "no" }});
    app.call(Method::POST, &path, Some(token), Some(body)).await
}

pub async fn logs(app: &TestApp, id: &str) -> Vec<Value> {
    app.get(&format!("{BASE}/{id}/logs")).await.expect(200)["list"]
        .as_array()
        .expect("list")
        .clone()
}

backend_test! {
    async fn create_list_detail_delete(app) {
        // Seed 001's create body verbatim: the seed's approver uid is unknown here, so the
        // approver is resolved by its user_name.
        let id = create(&app, seed_create_body()).await;
        assert_eq!(id.len(), 24);
        let d = detail(&app, &id).await;
        for key in ["id", "index", "name", "manager", "manager_id", "start_time", "end_time",
            "schedule_execute_time", "description", "created_by", "create_time", "updated_by",
            "update_time", "approval", "jobs", "status", "planning_time", "approval_time",
            "executing_time", "success_time", "instance_code", "external_check_failed_reason"] {
            assert!(d.get(key).is_some(), "detail lacks {key}: {d}");
        }
        assert!(d.get("internal").is_none(), "bookkeeping leaked: {d}");
        assert_fields(&d, json!({
            "status": "planning", "manager": "admin", "start_time": 1693558721, "jobs": [],
            "created_by": "admin"
        }));
        let code = d["instance_code"].as_str().unwrap();
        assert!(code.len() == 16 && code.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{code}");
        let users = &d["approval"]["native_approval"]["approve_users"];
        assert_eq!(users[0]["user_name"], "admin");
        assert_eq!(users[0]["user_id"], d["manager_id"]);
        for k in ["user_id", "user_name", "reject_or_approve", "comment", "operation_time"] {
            assert!(users[0].get(k).is_some(), "approver lacks {k}");
        }
        assert_eq!(d["approval"]["native_approval"]["needed_approvers"], 1);

        // The detail example's approval (native plus Lark/DingTalk configs) is kept verbatim.
        let mut body = simple_body("plan-b", "admin");
        body["approval"] = json!({
            "enabled": true, "status": "", "type": "native", "description": "",
            "native_approval": {"timeout": 5, "approve_users": [{"user_name": "admin"}], "needed_approvers": 1,
                                "reject_or_approve": "", "instance_code": ""},
            "lark_approval": {"timeout": 5, "approval_id": "", "default_approval_initiator": null, "approve_users": [],
                              "approval_nodes": [{"approve_users": [], "type": "AND", "reject_or_approve": ""}], "instance_code": ""},
            "dingtalk_approval": {"timeout": 5, "approval_id": "", "default_approval_initiator": null,
                                  "approval_nodes": [{"approve_users": [], "type": "AND", "reject_or_approve": ""}], "instance_code": ""}
        });
        let b = create(&app, body.clone()).await;
        let db = detail(&app, &b).await;
        assert_eq!(db["approval"]["lark_approval"], body["approval"]["lark_approval"]);
        assert_eq!(db["approval"]["dingtalk_approval"], body["approval"]["dingtalk_approval"]);

        // List: newest index first, exactly the seed's seven keys.
        let list = app.get(&format!("{BASE}?pageNum=1&pageSize=1")).await;
        let l = list.expect(200);
        assert_eq!(l["total"], 2);
        let items = l["list"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["id"], json!(b));
        let mut keys: Vec<&str> = items[0].as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["create_time", "created_by", "description", "id", "index", "manager", "name"]);
        assert!(items[0]["index"].as_i64().unwrap() > d["index"].as_i64().unwrap());
        let p2 = app.get(&format!("{BASE}?pageNum=2&pageSize=1")).await;
        assert_eq!(p2.expect(200)["list"][0]["id"], json!(id));
        let empty = app.get(&format!("{BASE}?pageNum=3&pageSize=1")).await;
        assert_eq!(empty.expect(200)["list"], json!([]));

        // Delete: only the manager or an admin; the operation records stay.
        let (_, bob) = app.create_user("bob", false).await;
        app.call(Method::DELETE, &format!("{BASE}/{b}"), Some(&bob), None).await.expect_error(403, "bob");
        app.delete(&format!("{BASE}/{b}")).await.expect(200);
        app.get(&format!("{BASE}/{b}")).await.expect_error(404, &b);
        app.delete(&format!("{BASE}/{b}")).await.expect_error(404, &b);
        let l = logs(&app, &b).await;
        assert_eq!(l[0]["verb"], "删除");
        assert_eq!(app.get(&format!("{BASE}?pageNum=1&pageSize=10")).await.expect(200)["total"], 1);
        app.stop().await;
    }
}

backend_test! {
    async fn bad_input_names_the_field(app) {
        let id = create(&app, simple_body("p", "admin")).await;
        // Create / PATCH bodies.
        let cases: Vec<(Value, &str)> = vec![
            (json!({"manager": "admin"}), "name"),
            (json!({"name": "p"}), "manager"),
            (json!({"name": "p", "manager": "nobody"}), "nobody"),
            (json!({"name": "p", "manager": "admin", "start_time": 200, "end_time": 100}), "end_time"),
            (json!({"name": "p", "manager": "admin", "start_time": 100, "end_time": 200, "schedule_execute_time": 300}), "schedule_execute_time"),
            (json!({"name": "p", "manager": "admin", "start_time": -1}), "start_time"),
            (json!({"name": "p", "manager": "admin", "start_time": "soon"}), "start_time"),
            (json!({"name": "p", "manager": "admin", "jobs": [{"name": "j", "type": "shell", "spec": {}}]}), "jobs[0].type"),
            (json!({"name": "p", "manager": "admin", "jobs": [{"type": "text", "spec": {"content": "c"}}]}), "jobs[0].name"),
            (json!({"name": "p", "manager": "admin", "jobs": [{"name": "j", "type": "text", "spec": {"remark": "r"}}]}), "jobs[0].spec.content"),
            (json!({"name": "p", "manager": "admin", "jobs": [{"name": "j", "type": "workflow", "spec": {}}]}), "jobs[0].spec.workflow_key"),
            (json!({"name": "p", "manager": "admin", "jobs": [{"name": "j", "type": "text", "spec": {"content": 5}}]}), "jobs[0].spec.content"),
            (json!({"name": "p", "manager": "admin", "approval": {"enabled": true, "type": "wechat"}}), "approval.type"),
            (json!({"name": "p", "manager": "admin", "approval": {"enabled": true, "type": "native"}}), "approval.native_approval"),
            (json!({"name": "p", "manager": "admin", "approval": {"enabled": true, "type": "native",
                "native_approval": {"approve_users": [{"user_name": "admin"}], "needed_approvers": 2}}}), "needed_approvers"),
            (json!({"name": "p", "manager": "admin", "approval": {"enabled": true, "type": "native",
                "native_approval": {"approve_users": [{"user_name": "ghost"}], "needed_approvers": 1}}}), "approve_users[0].user_name"),
            (json!({"name": "p", "manager": "admin", "approval": {"enabled": true, "type": "lark", "lark_approval": {"approval_nodes": []}}}), "approval.lark_approval.approval_nodes"),
            (json!({"name": "p", "manager": "admin", "approval": {"enabled": false, "status": "approved"}}), "approval.status"),
            (json!({"name": "x".repeat(300), "manager": "admin"}), "name"),
        ];
        for (body, needle) in &cases {
            app.post(BASE, body.clone()).await.expect_error(400, needle);
            app.patch(&format!("{BASE}/{id}"), body.clone()).await.expect_error(400, needle);
        }
        app.raw(Method::POST, BASE, "{bad").await.expect_error(400, "JSON");
        app.raw(Method::POST, BASE, "").await.expect_error(400, "empty");
        // Nothing of that reached the stored plan.
        assert_eq!(detail(&app, &id).await["name"], "p");

        // Paging parameters are required and ≥ 1.
        app.get(BASE).await.expect_error(400, "pageNum");
        app.get(&format!("{BASE}?pageNum=1")).await.expect_error(400, "pageSize");
        app.get(&format!("{BASE}?pageNum=0&pageSize=10")).await.expect_error(400, "pageNum");
        app.get(&format!("{BASE}?pageNum=1&pageSize=-3")).await.expect_error(400, "pageSize");
        app.get(&format!("{BASE}?pageNum=x&pageSize=1")).await.expect_error(400, "pageNum");

        // Ids: non-hex → 400, unknown → 404, on every id route.
        let unknown = "0123456789abcdef01234567";
        app.get(&format!("{BASE}/not-hex")).await.expect_error(400, "id");
        app.get(&format!("{BASE}/{unknown}")).await.expect_error(404, unknown);
        app.patch(&format!("{BASE}/{unknown}"), simple_body("p", "admin")).await.expect_error(404, unknown);
        app.delete(&format!("{BASE}/not-hex")).await.expect_error(400, "id");
        set_status(&app, unknown, "finish_planning").await.expect_error(404, unknown);
        set_status(&app, "zz", "finish_planning").await.expect_error(400, "id");
        app.get(&format!("{BASE}/{unknown}/logs")).await.expect_error(404, unknown);
        app.post(&format!("{BASE}/{unknown}/approve"), json!({"approve": true})).await.expect_error(404, unknown);
        job_call(&app, ADMIN_TOKEN, unknown, "execute", "j", "text").await.expect_error(404, unknown);

        // Status route: unknown status → 400 naming `status`; not in the table → 409 naming both.
        set_status(&app, &id, "flying").await.expect_error(400, "status");
        set_status(&app, &id, "executing").await.expect_error(409, "from planning to executing");
        set_status(&app, &id, "planning").await.expect_error(409, "already planning");
        // planning → finish_planning needs jobs.
        set_status(&app, &id, "finish_planning").await.expect_error(409, "no jobs");

        // Job actions: type and id are checked first.
        job_call(&app, ADMIN_TOKEN, &id, "execute", "j", "shell").await.expect_error(400, "type");
        job_call(&app, ADMIN_TOKEN, &id, "execute", "", "text").await.expect_error(400, "id");
        app.stop().await;
    }
}

backend_test! {
    async fn patch_replaces_and_replans(app) {
        app.create_user("patrick", false).await;
        let id = create(&app, simple_body("p", "admin")).await;
        let before = detail(&app, &id).await;

        // Seed 001's PATCH body verbatim names workflow `old-hook`, which does not exist.
        let seed = json!({
            "description": "test2",
            "parameters": [{"name": "test", "type": "string", "value": "zadig"}],
            "jobs": [
                {"name": "Text-1", "spec": {"content": "Hello, World 1.", "remark": "abc"}, "type": "text"},
                {"name": "Workflow-1", "spec": {"workflow_key": "old-hook", "project_key": "yaml", "remark": "remark-2",
                    "inputs": [{"job_name": "build", "job_type": "zadig-build", "parameters": {"registry": "r", "service_list": []}}]},
                 "type": "workflow"}
            ],
            "manager": "patrick", "manager_identity_type": "system", "name": "Test-Plan-1"
        });
        let r = app.patch(&format!("{BASE}/{id}"), seed.clone()).await;
        let b = r.expect_error(404, "old-hook");
        assert_eq!(b["code"], 6542);
        assert_eq!(detail(&app, &id).await["name"], "p");

        // The same body without the workflow job: a full replacement.
        let mut text_only = seed.clone();
        text_only["jobs"] = json!([seed["jobs"][0]]);
        app.patch(&format!("{BASE}/{id}"), text_only.clone()).await.expect(200);
        let d = detail(&app, &id).await;
        assert_eq!(d["name"], "Test-Plan-1");
        assert_eq!(d["manager"], "patrick");
        assert_ne!(d["manager_id"], before["manager_id"]);
        assert_eq!(d["description"], "test2");
        assert_eq!(d["jobs"][0]["name"], "Text-1");
        assert_eq!(d["jobs"][0]["type"], "text");
        assert_eq!(d["jobs"][0]["spec"], json!({"content": "Hello, World 1.", "remark": "abc"}));
        assert_eq!(d["jobs"][0]["status"], "");
        assert!(d["jobs"][0]["id"].as_str().unwrap().len() == 36);
        assert_ne!(d["instance_code"], before["instance_code"], "a re-plan renews the instance code");
        assert!(d.get("approval").is_none(), "omitted approval removes it");
        let edit = logs(&app, &id).await.into_iter().find(|l| l["verb"] == "更新" && l["target_type"] == "release_plan").unwrap();
        assert_eq!(edit["before"]["name"], "p");
        assert_eq!(edit["after"]["name"], "Test-Plan-1");
        assert_eq!(edit["after"]["jobs"], json!(["Text-1 (text)"]));
        // A job keeps its id when type and name stay.
        let job_id = d["jobs"][0]["id"].clone();
        app.patch(&format!("{BASE}/{id}"), text_only).await.expect(200);
        assert_eq!(detail(&app, &id).await["jobs"][0]["id"], job_id);

        // PATCH while executing, success or wait_for_approval → 409.
        let body = simple_body("p", "admin");
        patch_text_jobs(&app, &id, body.clone(), 1).await;
        set_status(&app, &id, "finish_planning").await.expect(200);
        set_status(&app, &id, "executing").await.expect(200);
        app.patch(&format!("{BASE}/{id}"), body.clone()).await.expect_error(409, "executing");
        let job = job_ids(&detail(&app, &id).await)[0].clone();
        job_call(&app, ADMIN_TOKEN, &id, "execute", &job, "text").await.expect(200);
        assert_eq!(detail(&app, &id).await["status"], "success");
        app.patch(&format!("{BASE}/{id}"), body.clone()).await.expect_error(409, "success");

        let mut with_approval = simple_body("q", "admin");
        with_approval["approval"] = json!({"enabled": true, "type": "native",
            "native_approval": {"approve_users": [{"user_name": "admin"}], "needed_approvers": 1, "timeout": 0}});
        let q = create_with_text_jobs(&app, with_approval.clone(), 1).await;
        set_status(&app, &q, "finish_planning").await.expect(200);
        set_status(&app, &q, "wait_for_approval").await.expect(200);
        app.patch(&format!("{BASE}/{q}"), with_approval.clone()).await.expect_error(409, "wait_for_approval");
        // From finish_planning, a PATCH goes back to planning.
        set_status(&app, &q, "planning").await.expect(200);
        set_status(&app, &q, "finish_planning").await.expect(200);
        app.patch(&format!("{BASE}/{q}"), with_approval).await.expect(200);
        assert_eq!(detail(&app, &q).await["status"], "planning");
        app.stop().await;
    }
}

backend_test! {
    async fn text_jobs_run_to_success_with_records(app) {
        let id = executing_plan(&app, simple_body("p", "admin"), 3).await;
        let d = detail(&app, &id).await;
        assert!(d["executing_time"].as_i64().unwrap() > 0);
        assert!(d["planning_time"].as_i64().unwrap() > 0);
        let jobs = job_ids(&d);
        assert!(d["jobs"].as_array().unwrap().iter().all(|j| j["status"] == "todo"));

        job_call(&app, ADMIN_TOKEN, &id, "execute", &jobs[0], "text").await.expect(200);
        // Wrong type, repeat, retry of a text job.
        job_call(&app, ADMIN_TOKEN, &id, "execute", &jobs[1], "workflow").await.expect_error(400, "type");
        job_call(&app, ADMIN_TOKEN, &id, "execute", &jobs[0], "text").await.expect_error(409, "todo");
        job_call(&app, ADMIN_TOKEN, &id, "retry", &jobs[0], "text").await.expect_error(400, "retry");
        job_call(&app, ADMIN_TOKEN, &id, "execute", "no-such-job", "text").await.expect_error(404, "no-such-job");
        job_call(&app, ADMIN_TOKEN, &id, "skip", &jobs[1], "text").await.expect(200);
        let d = detail(&app, &id).await;
        assert_eq!(d["status"], "executing");
        assert_eq!(d["jobs"][0]["status"], "done");
        assert_eq!(d["jobs"][0]["spec"]["remark"], "done by test");
        assert_eq!(d["jobs"][0]["executed_by"], "admin");
        assert!(d["jobs"][0]["executed_time"].as_i64().unwrap() > 0);
        assert_eq!(d["jobs"][1]["status"], "skipped");
        job_call(&app, ADMIN_TOKEN, &id, "execute", &jobs[2], "text").await.expect(200);
        let d = detail(&app, &id).await;
        assert_eq!(d["status"], "success");
        assert!(d["success_time"].as_i64().unwrap() >= d["executing_time"].as_i64().unwrap());
        // success is terminal.
        for to in ["planning", "cancel", "executing"] {
            set_status(&app, &id, to).await.expect_error(409, &format!("from success to {to}"));
        }
        job_call(&app, ADMIN_TOKEN, &id, "skip", &jobs[2], "text").await.expect_error(409, "success");

        // Operation records: newest first, who/verb/target/before/after/time.
        let l = logs(&app, &id).await;
        let verbs: Vec<&str> = l.iter().map(|r| r["verb"].as_str().unwrap()).collect();
        assert_eq!(verbs.last(), Some(&"新建"));
        assert!(verbs.contains(&"执行") && verbs.contains(&"跳过") && verbs.contains(&"更新"));
        let done = l.iter().find(|r| r["target_type"] == "release_plan_status" && r["after"] == "success").expect("success record");
        assert_eq!(done["before"], "executing");
        assert_eq!(done["username"], "admin");
        assert!(done["created_at"].as_i64().unwrap() > 0);
        let exec = l.iter().find(|r| r["verb"] == "执行").unwrap();
        assert_eq!(exec["before"]["status"], "todo");
        assert_eq!(exec["after"]["status"], "done");
        assert_eq!(exec["target_type"], "release_job");
        let body = app.get(&format!("{BASE}/{id}/logs")).await;
        assert_eq!(body.expect(200)["i18n"]["verb_i18_map"]["执行"], "Execute");
        app.stop().await;
    }
}

backend_test! {
    async fn replan_cancel_and_forced_success(app) {
        let body = simple_body("p", "admin");
        let id = executing_plan(&app, body.clone(), 2).await;
        let jobs = job_ids(&detail(&app, &id).await);
        job_call(&app, ADMIN_TOKEN, &id, "execute", &jobs[0], "text").await.expect(200);
        let code = detail(&app, &id).await["instance_code"].clone();

        // executing → planning: a new cycle with a new instance code; done jobs come back done.
        set_status(&app, &id, "planning").await.expect(200);
        let d = detail(&app, &id).await;
        assert_eq!(d["status"], "planning");
        assert_ne!(d["instance_code"], code);
        assert_eq!(d["jobs"][0]["last_status"], "done");
        set_status(&app, &id, "finish_planning").await.expect(200);
        // finish_planning → planning → finish_planning → executing
        set_status(&app, &id, "planning").await.expect(200);
        set_status(&app, &id, "finish_planning").await.expect(200);
        set_status(&app, &id, "cancel").await.expect_error(409, "from finish_planning to cancel");
        set_status(&app, &id, "executing").await.expect(200);
        let d = detail(&app, &id).await;
        assert_eq!(d["jobs"][0]["status"], "done");
        assert_eq!(d["jobs"][1]["status"], "todo");
        // The owner may force success while a job is unfinished.
        set_status(&app, &id, "success").await.expect(200);
        assert_eq!(detail(&app, &id).await["status"], "success");

        // executing → cancel is terminal.
        let c = executing_plan(&app, body, 1).await;
        set_status(&app, &c, "cancel").await.expect(200);
        for to in ["planning", "executing", "finish_planning"] {
            set_status(&app, &c, to).await.expect_error(409, &format!("from cancel to {to}"));
        }
        app.patch(&format!("{BASE}/{c}"), simple_body("p", "admin")).await.expect_error(409, "cancel");
        app.stop().await;
    }
}

backend_test! {
    async fn owners_and_job_owners(app) {
        let [(_, bob), (_, carol), (_, admin2)] =
            app.create_users([("bob", false), ("carol", false), ("root2", true)]).await;
        let mut body = simple_body("p", "bob");
        body["jobs"] = json!([
            {"name": "a", "type": "text", "spec": {"content": "a"}, "manager": "carol"},
            {"name": "b", "type": "text", "spec": {"content": "b"}},
            {"name": "c", "type": "text", "spec": {"content": "c"}}
        ]);
        let id = create(&app, body).await;
        let d = detail(&app, &id).await;
        assert_eq!(d["jobs"][0]["manager"], "carol");
        let jobs = job_ids(&d);
        // Only the manager (or an admin) changes the status.
        status_as(&app, &carol, &id, "finish_planning").await.expect_error(403, "carol");
        status_as(&app, &bob, &id, "finish_planning").await.expect(200);
        status_as(&app, &admin2, &id, "executing").await.expect(200);
        // Job owners: carol owns job a only; bob (the manager) any; others none.
        job_call(&app, &carol, &id, "execute", &jobs[1], "text").await.expect_error(403, "carol");
        job_call(&app, &carol, &id, "execute", &jobs[0], "text").await.expect(200);
        let (_, dave) = app.create_user("dave", false).await;
        job_call(&app, &dave, &id, "skip", &jobs[1], "text").await.expect_error(403, "dave");
        job_call(&app, &bob, &id, "skip", &jobs[1], "text").await.expect(200);
        job_call(&app, &admin2, &id, "execute", &jobs[2], "text").await.expect(200);
        assert_eq!(detail(&app, &id).await["status"], "success");
        // Anyone authenticated may read.
        app.call(Method::GET, &format!("{BASE}/{id}"), Some(&dave), None).await.expect(200);
        app.call(Method::GET, &format!("{BASE}/{id}"), None, None).await.expect_error(401, "token");
        app.stop().await;
    }
}

backend_test! {
    async fn native_approval_quorum_and_rejection(app) {
        let [(uid_a, tok_a), (_, tok_b), (_, tok_c)] =
            app.create_users([("ann", false), ("ben", false), ("cid", false)]).await;
        let mut body = simple_body("p", "admin");
        body["approval"] = json!({"enabled": true, "type": "native", "description": "please",
            "native_approval": {"timeout": 0, "needed_approvers": 2,
                "approve_users": [{"user_id": uid_a, "user_name": "ann"}, {"user_name": "ben"}]}});
        let id = create_with_text_jobs(&app, body.clone(), 1).await;
        set_status(&app, &id, "finish_planning").await.expect(200);
        // Approval enabled: executing needs the approval first.
        set_status(&app, &id, "executing").await.expect_error(409, "approval");
        approve_as(&app, &tok_a, &id, true).await.expect_error(409, "wait_for_approval");
        set_status(&app, &id, "wait_for_approval").await.expect(200);
        approve_as(&app, &tok_c, &id, true).await.expect_error(403, "cid");
        approve_as(&app, &tok_a, &id, true).await.expect(200);
        approve_as(&app, &tok_a, &id, true).await.expect_error(409, "already");
        let d = detail(&app, &id).await;
        assert_eq!(d["status"], "wait_for_approval");
        let users = &d["approval"]["native_approval"]["approve_users"];
        assert_eq!(users[0]["reject_or_approve"], "approve");
        assert_eq!(users[0]["comment"], "lgtm");
        assert!(users[0]["operation_time"].as_i64().unwrap() > 0);
        assert_eq!(users[1]["reject_or_approve"], "");
        approve_as(&app, &tok_b, &id, true).await.expect(200);
        let d = detail(&app, &id).await;
        assert_eq!(d["status"], "executing");
        assert_eq!(d["approval"]["status"], "passed");
        assert!(d["approval_time"].as_i64().unwrap() > 0);

        // One rejection denies; denied → planning → (resubmit) clears the votes.
        let r = create_with_text_jobs(&app, body.clone(), 1).await;
        set_status(&app, &r, "finish_planning").await.expect(200);
        set_status(&app, &r, "wait_for_approval").await.expect(200);
        approve_as(&app, &tok_b, &r, false).await.expect(200);
        let d = detail(&app, &r).await;
        assert_eq!(d["status"], "denied");
        assert_eq!(d["approval"]["status"], "reject");
        set_status(&app, &r, "planning").await.expect(200);
        set_status(&app, &r, "finish_planning").await.expect(200);
        set_status(&app, &r, "wait_for_approval").await.expect(200);
        let d = detail(&app, &r).await;
        assert_eq!(d["approval"]["status"], "");
        assert_eq!(d["approval"]["native_approval"]["approve_users"][1]["reject_or_approve"], "");
        set_status(&app, &r, "cancel").await.expect(200);

        // Lark / DingTalk configurations are stored, but submitting them needs an integration.
        let mut lark = simple_body("l", "admin");
        lark["approval"] = json!({"enabled": true, "type": "lark", "lark_approval": {"approval_id": "x",
            "approval_nodes": [{"type": "AND", "approve_users": [{"id": "ou_1", "name": "x"}]}]}});
        let l = create(&app, lark.clone()).await;
        assert_eq!(detail(&app, &l).await["approval"]["lark_approval"], lark["approval"]["lark_approval"]);
        patch_text_jobs(&app, &l, lark, 1).await;
        set_status(&app, &l, "finish_planning").await.expect(200);
        set_status(&app, &l, "wait_for_approval").await.expect_error(409, "Lark");
        // Without approval, wait_for_approval is refused too.
        let n = executing_plan(&app, simple_body("n", "admin"), 1).await;
        set_status(&app, &n, "planning").await.expect(200);
        set_status(&app, &n, "finish_planning").await.expect(200);
        set_status(&app, &n, "wait_for_approval").await.expect_error(409, "no approval");
        app.stop().await;
    }
}
