//! Authorization (docs/security.md "Authorization"): one table with a row per mutating route.
//! Each row is called by a user who may not call it — a non-admin who owns nothing
//! (`mallory`), or nobody at all for routes every authenticated user may call — and must be
//! refused with Zadig's error JSON while every resource reads back exactly as before. Then the
//! positive release-plan rules: creator, manager and admin.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_test;
use crate::build::{demo_template, seed_build, seed_template_build};
use crate::delivery::{add_chart_repo, add_registry, deployment, wait_status};
use crate::harness::{Resp, TestApp};
use crate::release_plan::{BASE, detail, job_ids, simple_body};
use crate::workflow_e2e::{detail as task_detail, freestyle};
use crate::workflows::echo_workflow;

const LIMIT: Duration = Duration::from_secs(60);

/// Who makes the refused call.
#[derive(Debug, Clone, Copy)]
enum Caller {
    /// A non-admin user who owns, manages and approves nothing: 403.
    Mallory,
    /// No token: 401 (the route is open to every authenticated user, so no user is refused).
    Nobody,
}

/// One row of the authorization table.
struct Row {
    method: Method,
    path: String,
    body: Option<Value>,
    caller: Caller,
}

fn row(method: Method, path: impl Into<String>, body: Option<Value>, caller: Caller) -> Row {
    Row {
        method,
        path: path.into(),
        body,
        caller,
    }
}

/// A delivery version body that copies nothing (no image is pushed).
fn version_body(name: &str) -> Value {
    let src = "registry.example.com/team/app:1";
    json!({"project_key": "p", "version_name": name, "source": "manual", "env_name": "dev",
        "production": false, "desc": "", "labels": [], "image_registry_id": "",
        "services": [{"service_name": "app", "yaml_content": deployment("app", src), "images": [{
            "container_name": "app", "image_name": "app", "source_image": src, "source_image_tag": "1",
            "target_image": "registry.example.com/team/app:2", "target_image_tag": "2", "push_image": false}]}]})
}

/// A task reduced to what a refused call could change: statuses and the remark.
fn task_state(d: &Value) -> Value {
    let stages: Vec<Value> = d["stages"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|st| {
                    let jobs: Vec<Value> = st["jobs"]
                        .as_array()
                        .map(|j| j.iter().map(|j| j["status"].clone()).collect())
                        .unwrap_or_default();
                    json!({"status": st["status"], "jobs": jobs})
                })
                .collect()
        })
        .unwrap_or_default();
    json!({"status": d["status"], "remark": d["remark"], "stages": stages})
}

async fn call_as(app: &TestApp, token: &str, m: Method, path: &str, body: Option<Value>) -> Resp {
    app.call(m, path, Some(token), body).await
}

/// Call every row as its refused caller (`mallory_token` for `Mallory`): each must get the
/// error JSON and leave `snapshot()` equal to `before`.
async fn refuse_all<F, Fut>(
    app: &TestApp,
    rows: Vec<Row>,
    mallory_token: &str,
    before: &Value,
    snapshot: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    for r in rows {
        let (token, status, needle) = match r.caller {
            Caller::Mallory => (Some(mallory_token), 403, "mallory"),
            Caller::Nobody => (None, 401, "token"),
        };
        let what = format!("{} {} as {:?}", r.method, r.path, r.caller);
        let resp = app
            .call(r.method.clone(), &r.path, token, r.body.clone())
            .await;
        assert_eq!(resp.status.as_u16(), status, "{what}: {}", resp.text);
        resp.expect_error(status, needle);
        assert_eq!(&snapshot().await, before, "{what} changed something");
    }
}

async fn run(app: &TestApp, wf: &str, jobs: &[&str]) -> i64 {
    let inputs: Vec<Value> = jobs.iter().map(|j| json!({"job_name": j})).collect();
    let body = json!({"project_key": "p", "workflow_key": wf, "inputs": inputs});
    let r = app.post("/openapi/workflows/custom/task", body).await;
    r.expect(200)["task_id"].as_i64().expect("task_id")
}

/// Everything the rows could touch, read as the admin (and alice's own token, which a
/// refused rotation must leave working).
async fn snapshot(app: &TestApp, alice: &str, alice_uid: &str, plans: &[&str]) -> Value {
    let mut s = serde_json::Map::new();
    let reads = [
        "/openapi/users?pageNum=1&pageSize=100",
        "/openapi/system/registry",
        "/openapi/system/helm",
        "/openapi/templates/build?pageNum=1&pageSize=100",
        "/openapi/templates/build/demo-template",
        "/openapi/build?projectKey=yaml&pageNum=1&pageSize=100",
        "/openapi/build/api-test/detail?projectKey=yaml",
        "/openapi/build?projectKey=demo&pageNum=1&pageSize=100",
        "/openapi/build/demo-build/detail?projectKey=demo&serviceName=zadigx&serviceModule=aslan",
        "/openapi/workflows?projectKey=p",
        "/openapi/workflows/custom/wf-alice/detail?projectKey=p",
        "/openapi/workflows/custom/approve-wf/tasks?projectKey=p&pageNum=1&pageSize=50",
        "/openapi/workflows/custom/ticket-wf/tasks?projectKey=p&pageNum=1&pageSize=50",
        "/openapi/workflows/view?projectKey=p",
        "/openapi/delivery/releases?projectKey=p&pageNum=1&pageSize=100",
        "/openapi/release_plan/v1?pageNum=1&pageSize=100",
        "/openapi/release_plan/v1/hook/setting",
    ];
    for path in reads {
        let r = app.get(path).await;
        s.insert(path.to_string(), json!([r.status.as_u16(), r.body]));
    }
    for id in plans {
        s.insert(format!("plan {id}"), detail(app, id).await);
    }
    for wf in ["approve-wf", "manual-wf", "checked-wf"] {
        s.insert(
            format!("task {wf}"),
            task_state(&task_detail(app, wf, 1).await),
        );
    }
    let me = app
        .call(
            Method::GET,
            &format!("/openapi/users/{alice_uid}"),
            Some(alice),
            None,
        )
        .await;
    s.insert("alice's token".into(), json!(me.status.as_u16()));
    Value::Object(s)
}

backend_test! {
    async fn every_mutating_route_refuses_who_may_not_call_it(app) {
        let (alice_uid, alice) = app.create_user("alice", false).await;
        let (_, mallory) = app.create_user("mallory", false).await;

        // System-level fixtures (admin).
        let registry = add_registry(&app, "https://registry.example.com", "team").await;
        let repo = add_chart_repo(&app, "charts", "oci://registry.example.com/charts", false).await;
        app.post("/openapi/templates/build", demo_template()).await.expect(200);
        app.post("/openapi/workflows/view", json!({"project_key": "p", "name": "v1", "workflow_list": []})).await.expect(200);

        // Owned fixtures: alice creates them.
        call_as(&app, &alice, Method::POST, "/openapi/build", Some(seed_build())).await.expect(200);
        call_as(&app, &alice, Method::POST, "/openapi/build?source=template", Some(seed_template_build())).await.expect(200);
        call_as(&app, &alice, Method::POST, "/api/aslan/workflow/v4", Some(echo_workflow("wf-alice", "p"))).await.expect(200);
        let r = call_as(&app, &alice, Method::POST, "/openapi/delivery/releases/k8s", Some(version_body("v1"))).await;
        let version = r.expect(200)["id"].as_str().expect("id").to_string();
        wait_status(&app, &version, &["success"]).await;

        // Workflow tasks waiting for alice: a stage approval, a manual stage, a failed job
        // under the manual_check policy; and a workflow gated by pre-approval tickets.
        let alice_user = json!([{"type": "user", "user_name": "alice"}]);
        for wf in [
            json!({"name": "approve-wf", "project": "p", "concurrency_limit": -1, "stages": [
                {"name": "build", "jobs": [freestyle("prepare", "echo prepared")]},
                {"name": "deploy", "approval": {"enabled": true, "type": "native",
                    "native_approval": {"approve_users": [{"user_name": "alice"}], "timeout": 60, "needed_approvers": 1}},
                 "jobs": [freestyle("ship", "echo shipped")]}]}),
            json!({"name": "manual-wf", "project": "p", "concurrency_limit": -1, "stages": [
                {"name": "build", "jobs": [freestyle("prepare", "echo prepared")]},
                {"name": "release", "manual_exec": {"enabled": true, "manual_exec_users": alice_user},
                 "jobs": [freestyle("ship", "echo shipped")]}]}),
            json!({"name": "checked-wf", "project": "p", "concurrency_limit": -1, "stages": [
                {"name": "one", "jobs": [{"name": "shaky", "type": "freestyle", "spec": {"script": "exit 3", "envs": []},
                    "error_policy": {"policy": "manual_check", "approval_users": alice_user}}]}]}),
            json!({"name": "ticket-wf", "project": "p", "concurrency_limit": -1, "enable_approval_ticket": true,
                "stages": [{"name": "run", "jobs": [freestyle("echo", "echo hi")]}]}),
        ] {
            app.post("/api/aslan/workflow/v4", wf).await.expect(200);
        }
        app.post("/openapi/ticket/approval", json!({"project_key": "p", "approval_id": "T-ALICE", "status": 1,
            "users": [{"name": "alice", "email": "alice"}]})).await.expect(200);
        assert_eq!(run(&app, "approve-wf", &["prepare", "ship"]).await, 1);
        assert_eq!(run(&app, "manual-wf", &["prepare", "ship"]).await, 1);
        assert_eq!(run(&app, "checked-wf", &["shaky"]).await, 1);
        app.wait_for("the three tasks to wait for alice", LIMIT, || async {
            let a = task_detail(&app, "approve-wf", 1).await;
            let m = task_detail(&app, "manual-wf", 1).await;
            let c = task_detail(&app, "checked-wf", 1).await;
            (a["stages"][1]["status"] == "wait_for_approval"
                && m["status"] == "pause"
                && c["stages"][0]["jobs"][0]["status"] == "wait_for_manual_error_handling")
                .then_some(())
        }).await;

        // Release plans managed by alice: one in planning, one waiting for her approval, one
        // executing.
        let plan = |name: &str| {
            let mut b = simple_body(name, "alice");
            b["jobs"] = json!([{"name": "a", "type": "text", "spec": {"content": "a"}},
                               {"name": "b", "type": "text", "spec": {"content": "b"}}]);
            b
        };
        let create = |b: Value| app.post(BASE, b);
        let planning = create(plan("planning")).await.expect(200)["id"].as_str().unwrap().to_string();
        let mut gated = plan("gated");
        gated["approval"] = json!({"enabled": true, "type": "native", "native_approval": {"timeout": 60,
            "needed_approvers": 1, "approve_users": [{"user_id": alice_uid, "user_name": "alice"}]}});
        let approving = create(gated).await.expect(200)["id"].as_str().unwrap().to_string();
        let executing = create(plan("executing")).await.expect(200)["id"].as_str().unwrap().to_string();
        for (id, steps) in [(&approving, ["finish_planning", "wait_for_approval"]), (&executing, ["finish_planning", "executing"])] {
            for s in steps {
                app.post(&format!("{BASE}/{id}/status/{s}"), json!({})).await.expect(200);
            }
        }
        let jobs = job_ids(&detail(&app, &executing).await);
        let code = detail(&app, &planning).await["instance_code"].as_str().unwrap().to_string();

        use Caller::{Mallory, Nobody};
        let job = |kind: &str| Some(json!({"id": jobs[0], "name": "a", "type": kind, "spec": {"remark": "x"}}));
        let mut takeover = plan("planning");
        takeover["manager"] = json!("mallory");
        let tpl_build = "/openapi/build/demo-build/template?projectKey=demo";
        let rows = vec![
            // Users, registries, chart repositories, hook setting, templates, tickets: admins.
            row(Method::POST, "/openapi/users", Some(json!({"account": "eve", "is_admin": true})), Mallory),
            row(Method::DELETE, format!("/openapi/users/{alice_uid}"), None, Mallory),
            row(Method::POST, format!("/openapi/users/{alice_uid}/token"), None, Mallory),
            row(Method::POST, "/openapi/system/registry", Some(json!({"address": "https://evil.example.com",
                "provider": "native", "namespace": "x"})), Mallory),
            row(Method::PUT, format!("/openapi/system/registry/{registry}"), Some(json!({"address": "https://evil.example.com",
                "provider": "native", "namespace": "x"})), Mallory),
            row(Method::POST, "/openapi/system/helm", Some(json!({"repo_name": "evil", "url": "oci://evil.example.com/c"})), Mallory),
            row(Method::PUT, format!("/openapi/system/helm/{repo}"), Some(json!({"repo_name": "charts", "url": "oci://evil.example.com/c"})), Mallory),
            row(Method::DELETE, format!("/openapi/system/helm/{repo}"), None, Mallory),
            row(Method::PUT, format!("{BASE}/hook/setting"), Some(json!({"enable": true, "hook_address": "http://evil.example.com",
                "hook_events": ["finish_planning"]})), Mallory),
            row(Method::POST, "/openapi/templates/build", Some({ let mut t = demo_template(); t["name"] = json!("evil"); t }), Mallory),
            row(Method::PUT, "/openapi/templates/build/demo-template", Some(demo_template()), Mallory),
            row(Method::DELETE, "/openapi/templates/build/demo-template", None, Mallory),
            row(Method::POST, "/openapi/ticket/approval", Some(json!({"project_key": "p", "approval_id": "T-EVIL", "status": 1})), Mallory),
            row(Method::POST, "/api/callback/release_plan", Some(json!({"hook_event": "finish_planning",
                "release_plan_id": planning, "instance_code": code, "result": "success"})), Mallory),
            // Release plans: manager, creator or admin; job owners; approvers.
            row(Method::POST, BASE, Some(simple_body("new", "alice")), Nobody),
            row(Method::PATCH, format!("{BASE}/{planning}"), Some(takeover), Mallory),
            row(Method::DELETE, format!("{BASE}/{planning}"), None, Mallory),
            row(Method::POST, format!("{BASE}/{planning}/status/finish_planning"), None, Mallory),
            row(Method::POST, format!("{BASE}/{approving}/approve"), Some(json!({"approve": true})), Mallory),
            row(Method::POST, format!("{BASE}/{executing}/execute"), job("text"), Mallory),
            row(Method::POST, format!("{BASE}/{executing}/skip"), job("text"), Mallory),
            row(Method::POST, format!("{BASE}/{executing}/retry"), job("workflow"), Mallory),
            // Builds: any user creates; the creator or an admin changes.
            row(Method::POST, "/openapi/build", Some({ let mut b = seed_build(); b["name"] = json!("new"); b }), Nobody),
            row(Method::PUT, "/openapi/build", Some(seed_build()), Mallory),
            row(Method::PUT, "/openapi/build?source=template", Some(seed_template_build()), Mallory),
            row(Method::PUT, tpl_build, Some(seed_template_build()), Mallory),
            row(Method::DELETE, "/openapi/build?name=api-test&projectKey=yaml", None, Mallory),
            // Workflows: any user creates; the creator or an admin changes.
            row(Method::POST, "/api/aslan/workflow/v4", Some(echo_workflow("new", "p")), Nobody),
            row(Method::POST, "/openapi/workflows/custom", Some(echo_workflow("new", "p")), Nobody),
            row(Method::PUT, "/api/aslan/workflow/v4/wf-alice?projectName=p", Some(echo_workflow("wf-alice", "p")), Mallory),
            row(Method::PUT, "/openapi/workflows/custom/wf-alice", Some(echo_workflow("wf-alice", "p")), Mallory),
            row(Method::DELETE, "/openapi/workflows/custom?workflowKey=wf-alice&projectKey=p", None, Mallory),
            // Views: any user.
            row(Method::POST, "/openapi/workflows/view", Some(json!({"project_key": "p", "name": "v2", "workflow_list": []})), Nobody),
            row(Method::PUT, "/openapi/workflows/view/v1?projectKey=p", Some(json!({"workflow_list": []})), Nobody),
            row(Method::DELETE, "/openapi/workflows/view/v1?projectKey=p", None, Nobody),
            // Tasks: any user runs, cancels, retries, remarks; gates decide the rest.
            row(Method::POST, "/openapi/workflows/custom/task", Some(json!({"project_key": "p", "workflow_key": "approve-wf",
                "inputs": [{"job_name": "prepare"}]})), Nobody),
            row(Method::POST, "/openapi/workflows/custom/task", Some(json!({"project_key": "p", "workflow_key": "ticket-wf",
                "approval_ticket_id": "T-ALICE", "inputs": [{"job_name": "echo"}]})), Mallory),
            row(Method::DELETE, "/openapi/workflows/custom/task?taskId=1&workflowKey=approve-wf", None, Nobody),
            row(Method::POST, "/openapi/workflows/custom/checked-wf/task/1?projectKey=p", None, Nobody),
            row(Method::PUT, "/openapi/workflows/custom/approve-wf/task/1", Some(json!({"remark": "x"})), Nobody),
            row(Method::POST, "/openapi/workflows/custom/task/approve", Some(json!({"task_id": 1, "workflow_key": "approve-wf",
                "stage_name": "deploy", "approve": true})), Mallory),
            row(Method::POST, "/openapi/workflows/custom/manual-wf/task/1/manual-exec?projectKey=p",
                Some(json!({"stage_name": "release"})), Mallory),
            row(Method::POST, "/openapi/workflows/custom/checked-wf/task/1/job/shaky/error-handling",
                Some(json!({"decision": "ignore"})), Mallory),
            // Delivery versions: any user creates and retries; the creator or an admin deletes.
            row(Method::POST, "/openapi/delivery/releases/k8s", Some(version_body("v2")), Nobody),
            row(Method::POST, "/openapi/delivery/releases/helm", Some(version_body("v3")), Nobody),
            row(Method::DELETE, format!("/openapi/delivery/releases/{version}?projectKey=p"), None, Mallory),
            row(Method::POST, format!("/openapi/delivery/releases/retry?id={version}&projectKey=p"), None, Nobody),
        ];

        let plans = [planning.as_str(), approving.as_str(), executing.as_str()];
        let before = snapshot(&app, &alice, &alice_uid, &plans).await;
        assert_eq!(before["plan ".to_string() + &planning]["manager"], "alice");
        refuse_all(&app, rows, &mallory, &before, || snapshot(&app, &alice, &alice_uid, &plans)).await;
        // The refused ticket was not stored: the admin may create it now.
        app.post("/openapi/ticket/approval", json!({"project_key": "p", "approval_id": "T-EVIL", "status": 1})).await.expect(200);
        app.stop().await;
    }
}

backend_test! {
    async fn release_plans_are_edited_by_their_manager_creator_or_an_admin(app) {
        let [(alice_uid, alice), (bob_uid, bob), (carol_uid, carol), (_, mallory), (_, root2)] =
            app.create_users([("alice", false), ("bob", false), ("carol", false), ("mallory", false), ("root2", true)]).await;
        let appr = &app;
        let call = |token: &str, m: Method, path: String, body: Option<Value>| {
            let token = token.to_string();
            async move { call_as(appr, &token, m, &path, body).await }
        };

        // Alice creates a plan that bob manages.
        let r = call(&alice, Method::POST, BASE.into(), Some(simple_body("p", "bob"))).await;
        let id = r.expect(200)["id"].as_str().unwrap().to_string();
        let path = format!("{BASE}/{id}");
        let d = detail(&app, &id).await;
        assert_eq!((d["manager_id"].as_str(), d["created_by"].as_str()), (Some(bob_uid.as_str()), Some("alice")));
        assert!(d.get("internal").is_none(), "the creator uid is bookkeeping: {d}");

        // The creator edits, but may not take the plan over (or hand it to anyone).
        let mut edit = simple_body("p-renamed", "bob");
        call(&alice, Method::PATCH, path.clone(), Some(edit.clone())).await.expect(200);
        assert_eq!(detail(&app, &id).await["name"], "p-renamed");
        for to in ["alice", "carol"] {
            call(&alice, Method::PATCH, path.clone(), Some(simple_body("p-taken", to))).await
                .expect_error(403, "may not change `manager`");
        }
        let d = detail(&app, &id).await;
        assert_eq!((d["name"].as_str(), d["manager_id"].as_str()), (Some("p-renamed"), Some(bob_uid.as_str())));
        // Someone else: neither edits nor takes over.
        call(&mallory, Method::PATCH, path.clone(), Some(simple_body("p", "mallory"))).await.expect_error(403, "mallory");
        call(&mallory, Method::PATCH, path.clone(), Some(edit.clone())).await.expect_error(403, "mallory");

        // The manager hands over to carol; then carol (manager) edits; alice (creator) still edits.
        call(&bob, Method::PATCH, path.clone(), Some(simple_body("p", "carol"))).await.expect(200);
        assert_eq!(detail(&app, &id).await["manager_id"], carol_uid.as_str());
        call(&bob, Method::PATCH, path.clone(), Some(simple_body("p", "bob"))).await.expect_error(403, "bob");
        edit["manager"] = json!("carol");
        call(&carol, Method::PATCH, path.clone(), Some(edit.clone())).await.expect(200);
        call(&alice, Method::PATCH, path.clone(), Some(edit.clone())).await.expect(200);
        // An admin hands it to alice.
        call(&root2, Method::PATCH, path.clone(), Some(simple_body("p", "alice"))).await.expect(200);
        assert_eq!(detail(&app, &id).await["manager_id"], alice_uid.as_str());
        call(&carol, Method::PATCH, path.clone(), Some(simple_body("p", "carol"))).await.expect_error(403, "carol");

        // Status changes: the creator too (here also the manager), and a creator who is not
        // the manager.
        let r = call(&bob, Method::POST, BASE.into(), Some(json!({"name": "q", "manager": "alice",
            "jobs": [{"name": "a", "type": "text", "spec": {"content": "a"}}]}))).await;
        let q = r.expect(200)["id"].as_str().unwrap().to_string();
        call(&mallory, Method::POST, format!("{BASE}/{q}/status/finish_planning"), None).await.expect_error(403, "mallory");
        call(&bob, Method::POST, format!("{BASE}/{q}/status/finish_planning"), None).await.expect(200);
        call(&alice, Method::POST, format!("{BASE}/{q}/status/planning"), None).await.expect(200);
        assert_eq!(detail(&app, &q).await["status"], "planning");

        // Delete: the creator who is not the manager may; someone else may not.
        call(&mallory, Method::DELETE, format!("{BASE}/{q}"), None).await.expect_error(403, "mallory");
        call(&bob, Method::DELETE, format!("{BASE}/{q}"), None).await.expect(200);
        app.get(&format!("{BASE}/{q}")).await.expect_error(404, &q);
        call(&carol, Method::DELETE, path.clone(), None).await.expect_error(403, "carol");
        call(&alice, Method::DELETE, path.clone(), None).await.expect(200);
        app.stop().await;
    }
}

backend_test! {
    /// Clusters and environments: cluster changes are the admins'; an environment is changed
    /// by its creator, the project's admins and system admins; production environments by
    /// admins only. Every refused call leaves the clusters, the environment and the cluster's
    /// objects as they were.
    async fn cluster_and_environment_routes_refuse_who_may_not_call_them(app) {
        let Some(emu) = crate::kube_emulator::Emulator::start().await else { return };
        let cluster = crate::environments::seed_env(&app, &emu).await;
        app.post("/openapi/environments/service/yaml?projectKey=demo",
            json!({"env_key": "dev", "service_list": [{"service_name": "shop"}]})).await.expect(200);
        app.post("/openapi/service/yaml/production/raw?projectKey=demo",
            json!({"service_name": "shop", "yaml": crate::environments::shop_yaml(), "variable_yaml": [
                {"key": "image", "value": "nginx:1.25"}, {"key": "replicas", "value": "1"}]})).await.expect(200);
        app.post("/openapi/environments/production?projectKey=demo",
            json!({"env_key": "prod", "cluster_id": cluster, "namespace": "demo-prod"})).await.expect(200);
        let (_, mallory) = app.create_user("mallory", false).await;
        let pod = app.wait_for("a pod", LIMIT, || async {
            emu.objects("Pod", "demo-dev").await.first().and_then(|p| p["metadata"]["name"].as_str().map(String::from))
        }).await;
        let kc = crate::clusters::kubeconfig("https://evil.example.com", "t");
        let image = json!({"product_name": "demo", "service_name": "shop", "name": "web", "container_name": "web", "image": "evil:1"});
        use Caller::{Mallory, Nobody};
        let p = "/openapi/environments/production";
        let rows = vec![
            row(Method::POST, "/openapi/system/cluster", Some(json!({"name": "evil", "type": "kubeconfig", "kube_config": kc})), Mallory),
            row(Method::PUT, format!("/openapi/system/cluster/{cluster}"), Some(json!({"name": "evil", "kube_config": kc})), Mallory),
            row(Method::DELETE, format!("/openapi/system/cluster/{cluster}"), None, Mallory),
            row(Method::POST, "/openapi/environments?projectKey=demo", Some(json!({"env_key": "x", "cluster_id": cluster, "namespace": "x"})), Nobody),
            row(Method::PUT, "/openapi/environments/dev?projectKey=demo", Some(json!({"registry_id": ""})), Mallory),
            row(Method::DELETE, "/openapi/environments/dev?projectKey=demo&isDelete=true", None, Mallory),
            row(Method::POST, "/openapi/environments/service/yaml?projectKey=demo", Some(json!({"env_key": "dev", "service_list": [{"service_name": "other"}]})), Mallory),
            row(Method::DELETE, "/openapi/environments/service/yaml?projectKey=demo", Some(json!({"env_key": "dev", "service_names": ["shop"]})), Mallory),
            row(Method::POST, "/openapi/environments/dev/service/shop/restart?projectKey=demo", None, Mallory),
            row(Method::POST, format!("/openapi/environments/dev/pod/{pod}/restart?projectKey=demo"), None, Mallory),
            row(Method::PUT, "/openapi/environments/dev/variable?projectKey=demo", Some(json!({"global_variables": []})), Mallory),
            row(Method::PUT, "/openapi/environments/dev/services?projectKey=demo",
                Some(json!({"service_list": [{"service_name": "shop", "variable_kvs": [{"key": "image", "value": "evil:1"}]}]})), Mallory),
            row(Method::POST, "/openapi/environments/scale", Some(json!({"project_key": "demo", "env_key": "dev", "service_name": "shop",
                "workload_name": "web", "workload_type": "Deployment", "target_replicas": 5})), Mallory),
            row(Method::POST, "/openapi/environments/image/deployment/dev", Some(image.clone()), Mallory),
            row(Method::POST, "/openapi/environments/image/cronjob/dev", Some(image.clone()), Mallory),
            row(Method::POST, "/openapi/environments/image/job/dev", Some(image.clone()), Mallory),
            row(Method::POST, "/openapi/environments/image/statefulset/dev", Some(json!({"product_name": "demo", "service_name": "shop",
                "name": "cache", "container_name": "cache", "image": "evil:1"})), Mallory),
            row(Method::POST, format!("{p}?projectKey=demo"), Some(json!({"env_key": "x", "cluster_id": cluster, "namespace": "x"})), Mallory),
            row(Method::PUT, format!("{p}/prod?projectKey=demo"), Some(json!({"env_name": "evil"})), Mallory),
            row(Method::DELETE, format!("{p}/prod?projectKey=demo"), None, Mallory),
            row(Method::POST, format!("{p}/service/yaml?projectKey=demo"), Some(json!({"env_key": "prod", "service_list": [{"service_name": "shop"}]})), Mallory),
            row(Method::DELETE, format!("{p}/service/yaml?projectKey=demo"), Some(json!({"env_key": "prod", "service_names": ["shop"]})), Mallory),
            row(Method::POST, format!("{p}/prod/service/shop/restart?projectKey=demo"), None, Mallory),
            row(Method::POST, format!("{p}/prod/pod/{pod}/restart?projectKey=demo"), None, Mallory),
            row(Method::PUT, format!("{p}/prod/variable?projectKey=demo"), Some(json!({"global_variables": []})), Mallory),
            row(Method::PUT, format!("{p}/prod/services?projectKey=demo"), Some(json!({"service_list": [{"service_name": "shop"}]})), Mallory),
        ];
        let snapshot = || async {
            let dep = emu.object("Deployment", "demo-dev", "web").await.unwrap_or_default();
            json!({
                "clusters": app.get("/openapi/system/cluster").await.body,
                "envs": app.get("/openapi/environments?projectKey=demo").await.body,
                "prod": app.get("/openapi/environments/production?projectKey=demo").await.body,
                "services": app.get("/openapi/environments/dev?projectKey=demo").await.body["services"][0]["containers"],
                "prod_services": app.get("/openapi/environments/production/prod?projectKey=demo").await.body["services"],
                "spec": dep["spec"]["replicas"], "image": dep["spec"]["template"]["spec"]["containers"][0]["image"],
                "annotations": dep["spec"]["template"]["metadata"]["annotations"],
                "pods": emu.objects("Pod", "demo-dev").await.iter().map(|p| p["metadata"]["name"].clone()).collect::<Vec<_>>().len(),
                "pod": emu.object("Pod", "demo-dev", &pod).await.is_some(),
            })
        };
        let before = snapshot().await;
        refuse_all(&app, rows, &mallory, &before, snapshot).await;
        // Any user may create a test environment and then change it; others' stay theirs.
        let (_, alice) = app.create_user("alice", false).await;
        call_as(&app, &alice, Method::POST, "/openapi/environments?projectKey=demo",
            Some(json!({"env_key": "alice", "cluster_id": cluster, "namespace": "demo-alice", "services": [{"service_name": "shop"}]})))
            .await.expect(200);
        call_as(&app, &alice, Method::POST, "/openapi/environments/scale", Some(json!({"project_key": "demo", "env_key": "alice",
            "service_name": "shop", "workload_name": "web", "workload_type": "Deployment", "target_replicas": 2}))).await.expect(200);
        call_as(&app, &mallory, Method::DELETE, "/openapi/environments/alice?projectKey=demo&isDelete=true", None)
            .await.expect_error(403, "mallory");
        call_as(&app, &alice, Method::DELETE, "/openapi/environments/alice?projectKey=demo&isDelete=true", None).await.expect(200);
    }
}

backend_test! {
    async fn projects_and_services_refuse_who_may_not_call_them(app) {
        use crate::projects::create_project;
        use crate::service_templates::two_workloads;
        let (_, alice) = app.create_user("alice", false).await;
        let (_, mallory) = app.create_user("mallory", false).await;
        create_project(&app, "demo").await;
        let svc = |name: &str| json!({"service_name": name, "yaml": two_workloads(name)});
        // alice owns a test service; the admin a production one.
        call_as(&app, &alice, Method::POST, "/openapi/service/yaml/raw?projectKey=demo", Some(svc("web"))).await.expect(200);
        app.post("/openapi/service/yaml/production/raw?projectKey=demo", svc("web")).await.expect(200);

        use Caller::{Mallory, Nobody};
        let yaml = Some(json!({"type": "k8s", "yaml": two_workloads("web").replace("busybox", "evil")}));
        let vars = Some(json!({"service_variable_kvs": [{"key": "image", "value": "evil"}]}));
        let rows = vec![
            // Projects: admins.
            row(Method::POST, "/openapi/projects/project", Some(json!({"project_name": "Evil", "project_key": "evil",
                "project_type": "yaml"})), Mallory),
            row(Method::POST, "/openapi/projects/project/init/yaml", Some(json!({"project_name": "Evil", "project_key": "evil",
                "service_list": [{"source": "yaml", "service_name": "x", "yaml": two_workloads("x")}], "env_list": []})), Mallory),
            row(Method::DELETE, "/openapi/projects/project?projectKey=demo&isDelete=true", None, Mallory),
            // Test services: any user creates; the creator or an admin changes.
            row(Method::POST, "/openapi/service/yaml/raw?projectKey=demo", Some(svc("new")), Nobody),
            row(Method::PUT, "/openapi/service/yaml/web?projectKey=demo", yaml.clone(), Mallory),
            row(Method::PUT, "/openapi/service/yaml/web/variable?projectKey=demo", vars.clone(), Mallory),
            row(Method::DELETE, "/openapi/service/yaml/web?projectKey=demo", None, Mallory),
            // Production services: admins (alice, who owns the test service, included).
            row(Method::POST, "/openapi/service/yaml/production/raw?projectKey=demo", Some(svc("new")), Mallory),
            row(Method::PUT, "/openapi/service/yaml/production/web?projectKey=demo", yaml, Mallory),
            row(Method::PUT, "/openapi/service/yaml/production/web/variable?projectKey=demo", vars, Mallory),
            row(Method::DELETE, "/openapi/service/yaml/production/web?projectKey=demo", None, Mallory),
        ];
        let reads = [
            "/openapi/projects/project?pageNum=1&pageSize=100",
            "/openapi/projects/project/detail?projectKey=demo",
            "/openapi/projects/project/detail?projectKey=evil",
            "/openapi/service/yaml/services?projectKey=demo",
            "/openapi/service/yaml/web?projectKey=demo",
            "/openapi/service/yaml/production/services?projectKey=demo",
            "/openapi/service/yaml/production/web?projectKey=demo",
        ];
        let snapshot = || async {
            let mut s = serde_json::Map::new();
            for path in reads {
                let r = app.get(path).await;
                s.insert(path.to_string(), json!([r.status.as_u16(), r.body]));
            }
            Value::Object(s)
        };
        let before = snapshot().await;
        refuse_all(&app, rows, &mallory, &before, snapshot).await;
        // Production services are the admins' even for the owner of the test service.
        call_as(&app, &alice, Method::PUT, "/openapi/service/yaml/production/web/variable?projectKey=demo",
            Some(json!({"service_variable_kvs": []}))).await.expect_error(403, "alice");
        // The owner changes her own service.
        call_as(&app, &alice, Method::PUT, "/openapi/service/yaml/web/variable?projectKey=demo",
            Some(json!({"service_variable_kvs": [{"key": "image", "value": "nginx:1"}]}))).await.expect(200);
        call_as(&app, &alice, Method::DELETE, "/openapi/service/yaml/web?projectKey=demo", None).await.expect(200);
        app.stop().await;
    }
}
