//! Workflow notifications (`notify_ctls`, spec/workflow.md §1.5, §3.4): tasks that change status
//! send what their settings ask for, to real local HTTP receivers (loopback is allowed by the
//! hook egress policy's defaults).

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Kind, TestApp};
use crate::release_plan_hooks::{Hit, Receiver};
use crate::workflow_e2e::{detail, freestyle};
use crate::workflows::create;

const LIMIT: Duration = Duration::from_secs(60);
const PUBLIC: &str = "https://zadig.example.com/";

/// A workflow `name` of project `p` with one job running `script` and these settings.
fn workflow(name: &str, script: &str, ctls: Value) -> Value {
    json!({"name": name, "display_name": format!("{name} display"), "project": "p", "concurrency_limit": -1,
        "stages": [{"name": "run", "parallel": false, "jobs": [freestyle("job", script)]}],
        "notify_ctls": ctls})
}

fn dingding(url: &str, types: &[&str], enabled: bool) -> Value {
    json!({"enabled": enabled, "webhook_type": "dingding", "notify_type": types,
        "dingding_notification_config": {"hook_address": format!("{url}?access_token=k"),
            "at_mobiles": ["13800000000"], "is_at_all": false}})
}

fn webhook(url: &str, types: &[&str]) -> Value {
    json!({"enabled": true, "webhook_type": "webhook", "notify_type": types,
        "webhook_notification_config": {"address": url, "token": "tok-secret"}})
}

async fn run(app: &TestApp, wf: &str, notify_inputs: Value) -> i64 {
    app.post(
        "/openapi/workflows/custom/task",
        json!({"project_key": "p", "workflow_key": wf, "inputs": [{"job_name": "job"}], "notify_inputs": notify_inputs}),
    )
    .await
    .expect(200)["task_id"]
        .as_i64()
        .unwrap()
}

/// Wait until the task is `status` and its detail lists `n` notifications, none pending.
async fn settled(app: &TestApp, wf: &str, id: i64, status: &str, n: usize) -> Vec<Value> {
    app.wait_for(
        &format!("{wf}#{id} {status} with {n} notifications settled"),
        LIMIT,
        || async {
            let d = detail(app, wf, id).await;
            let list = d["notifications"].as_array().cloned().unwrap_or_default();
            (d["status"] == status
                && list.len() == n
                && list.iter().all(|s| s["state"] != "pending"))
            .then_some(list)
        },
    )
    .await
}

fn events(hits: &[Hit], f: impl Fn(&Hit) -> String) -> Vec<String> {
    hits.iter().map(f).collect()
}

async fn sends_what_is_asked(kind: Kind) {
    let Some(app) = TestApp::start_with(kind, |c| c.public_url = PUBLIC.into()).await else {
        return;
    };
    let (ding, hook, quiet) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let ctls = json!([
        dingding(&ding.url, &["running", "passed"], true),
        webhook(&hook.url, &["running", "passed"]),
        // Off, and on for a status the task never has: nothing arrives.
        dingding(&quiet.url, &["created", "running", "passed"], false),
        webhook(&quiet.url, &["failed", "timeout"]),
    ]);
    create(&app, workflow("wf", "echo hi", ctls)).await;
    let id = run(&app, "wf", json!([])).await;
    let sent = settled(&app, "wf", id, "passed", 4).await;
    assert!(
        sent.iter()
            .all(|s| s["state"] == "sent" && s["attempts"] == 1),
        "{sent:?}"
    );
    assert_eq!(sent[0]["webhook_type"], "dingding");
    assert_eq!(sent[0]["status"], "running");

    let d = ding.hits();
    assert_eq!(d.len(), 2, "exactly running and passed");
    let titles = events(&d, |h| {
        h.json["markdown"]["title"].as_str().unwrap().to_string()
    });
    assert_eq!(
        titles,
        [
            "👍 Workflow wf display #1 Running",
            "👍 Workflow wf display #1 Passed"
        ]
    );
    assert_eq!(d[0].json["msgtype"], "markdown");
    assert_eq!(
        d[0].json["at"],
        json!({"atMobiles": ["13800000000"], "isAtAll": false})
    );
    let text = d[1].json["markdown"]["text"].as_str().unwrap();
    for want in [
        "**Executor**: admin",
        "**Project**: p",
        "**Start Time**: ",
        "**Duration**: ",
        "@13800000000",
        "[View the task](https://zadig.example.com/ui/workflows/wf/tasks/1)",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }

    let w = hook.hits();
    assert_eq!(
        events(&w, |h| h.json["workflow"]["status"]
            .as_str()
            .unwrap()
            .to_string()),
        ["running", "passed"]
    );
    for h in &w {
        assert_eq!(h.header("x-zadig-token"), "tok-secret");
        assert_eq!(h.header("x-zadig-event"), "workflow");
        assert_eq!(h.header("x-zadig-instance"), "https://zadig.example.com");
        assert_eq!(h.json["object_kind"], "workflow");
        assert_eq!(h.json["event"], "workflow");
    }
    let body = &w[1].json["workflow"];
    assert_eq!(body["task_id"], 1);
    assert_eq!(
        (
            body["workflow_name"].as_str(),
            body["workflow_display_name"].as_str()
        ),
        (Some("wf"), Some("wf display"))
    );
    assert_eq!(
        (body["project_name"].as_str(), body["task_creator"].as_str()),
        (Some("p"), Some("admin"))
    );
    assert!(
        body["start_time"].as_i64().unwrap() > 0 && body["end_time"].as_i64().unwrap() > 0,
        "{body}"
    );
    assert_eq!(body["stages"][0]["jobs"][0]["status"], "passed");
    assert_eq!(
        body["detail_url"],
        "https://zadig.example.com/ui/workflows/wf/tasks/1"
    );
    assert!(quiet.hits().is_empty());

    // The hook addresses and the token stay masked in the definition.
    let def = app
        .get("/openapi/workflows/custom/wf/detail?projectKey=p")
        .await
        .expect(200)
        .clone();
    let shown = def.to_string();
    assert!(
        !shown.contains("access_token=k") && !shown.contains("tok-secret"),
        "{shown}"
    );
    app.stop().await;
}
crate::kind_test!(sends_what_is_asked);

crate::backend_test! {
    async fn failures_and_notify_inputs(app) {
        let (a, b, off) = (Receiver::start().await, Receiver::start().await, Receiver::start().await);
        let ctls = json!([
            webhook(&a.url, &["failed"]),
            // Stored off; the execute input turns it on with other recipients.
            dingding(&b.url, &["failed"], false),
            // Stored on; the execute input turns it off.
            dingding(&off.url, &["failed", "running"], true),
        ]);
        create(&app, workflow("bad", "exit 3", ctls)).await;
        let inputs = json!([
            {"id": 1, "type": "dingding", "enabled": true,
             "dingding_notification_config": {"at_mobiles": ["13900000000"], "is_at_all": true}},
            {"id": 2, "type": "dingding", "enabled": false},
        ]);
        let id = run(&app, "bad", inputs).await;
        let sent = settled(&app, "bad", id, "failed", 2).await;
        assert!(sent.iter().all(|s| s["state"] == "sent" && s["status"] == "failed"), "{sent:?}");
        let w = a.hits();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].json["workflow"]["status"], "failed");
        assert_eq!(w[0].json["workflow"]["detail_url"], "", "no public_url, no link");
        let d = b.hits();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].json["markdown"]["title"], "❌ Workflow bad display #1 Failed");
        assert_eq!(d[0].json["at"], json!({"atMobiles": ["13900000000"], "isAtAll": true}));
        assert!(!d[0].json["markdown"]["text"].as_str().unwrap().contains("View the task"));
        assert!(off.hits().is_empty());
        app.stop().await;
    }
}

async fn unreachable_and_impossible(kind: Kind) {
    let Some(app) = TestApp::start_with(kind, |c| c.notify_retry_secs = vec![10]).await else {
        return;
    };
    let ok = Receiver::start().await;
    let ctls = json!([
        // Nothing listens on the discard port: the connection is refused.
        dingding("http://127.0.0.1:9/robot", &["passed"], true),
        {"enabled": true, "webhook_type": "feishu_app", "notify_type": ["passed"],
         "lark_group_notification_config": {"app_id": "cli_x", "chat": {"chat_id": "oc_1"}}},
        webhook(&ok.url, &["passed"]),
        // The metadata service is denied by the egress policy.
        webhook("http://169.254.169.254/latest", &["passed"]),
    ]);
    create(&app, workflow("wf", "echo ok", ctls)).await;
    let id = run(&app, "wf", json!([])).await;
    let list = app
        .wait_for("the first attempts", LIMIT, || async {
            let d = detail(&app, "wf", id).await;
            let l = d["notifications"].as_array().cloned().unwrap_or_default();
            (d["status"] == "passed"
                && l.len() == 4
                && l.iter()
                    .all(|s| s["attempts"] == 1 || s["state"] == "failed"))
            .then_some(l)
        })
        .await;
    // The task's outcome is its own.
    assert_eq!(detail(&app, "wf", id).await["status"], "passed");
    let by_ctl = |l: &[Value], i: usize| l.iter().find(|s| s["ctl"] == i).cloned().unwrap();
    let refused = by_ctl(&list, 0);
    assert_eq!(refused["state"], "pending", "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("connection"),
        "{refused}"
    );
    assert!(
        !refused["error"].as_str().unwrap().contains("127.0.0.1:9"),
        "the address is not recorded: {refused}"
    );
    let app_needed = by_ctl(&list, 1);
    assert_eq!(
        (
            app_needed["state"].as_str(),
            app_needed["attempts"].as_i64()
        ),
        (Some("failed"), Some(0))
    );
    assert!(
        app_needed["error"]
            .as_str()
            .unwrap()
            .contains("Lark (Feishu) app"),
        "{app_needed}"
    );
    assert_eq!(by_ctl(&list, 2)["state"], "sent");
    let denied = by_ctl(&list, 3);
    assert_eq!(denied["state"], "pending");
    assert!(
        denied["error"].as_str().unwrap().contains("egress policy"),
        "{denied}"
    );
    assert_eq!(ok.hits().len(), 1);

    // One retry 10 s later (business clock), then given up.
    app.clock.advance(Duration::from_secs(10));
    let list = settled(&app, "wf", id, "passed", 4).await;
    for i in [0, 3] {
        let s = by_ctl(&list, i);
        assert_eq!(
            (s["state"].as_str(), s["attempts"].as_i64()),
            (Some("failed"), Some(2)),
            "{s}"
        );
        assert!(s["time"].as_i64().unwrap() > 0);
    }
    assert_eq!(ok.hits().len(), 1, "the sent one is not sent again");
    let metrics = app.get("/metrics").await.text;
    assert!(
        metrics.contains("workflow_notifications_total"),
        "{metrics}"
    );
    app.stop().await;
}
crate::kind_test!(unreachable_and_impossible);

crate::backend_test! {
    async fn created_approval_and_cancel_are_told(app) {
        let recv = Receiver::start().await;
        create(&app, json!({"name": "gated", "project": "p", "concurrency_limit": -1,
            "stages": [{"name": "deploy", "approval": {"enabled": true, "type": "native",
                "native_approval": {"approve_users": [{"user_name": "admin"}], "timeout": 30, "needed_approvers": 1}},
                "jobs": [freestyle("job", "echo never")]}],
            "notify_ctls": [webhook(&recv.url, &["created", "wait_for_approval", "cancelled"])]})).await;
        let id = run(&app, "gated", json!([])).await;
        recv.wait_hits(&app, 2).await;
        app.delete(&format!("/openapi/workflows/custom/task?taskId={id}&workflowKey=gated")).await.expect(200);
        let sent = settled(&app, "gated", id, "cancelled", 3).await;
        assert!(sent.iter().all(|s| s["state"] == "sent"), "{sent:?}");
        let told = events(&recv.hits(), |h| h.json["workflow"]["status"].as_str().unwrap().to_string());
        assert_eq!(told, ["created", "wait_for_approval", "cancelled"]);
        assert!(recv.hits()[2].json["workflow"]["end_time"].as_i64().unwrap() > 0);
        app.stop().await;
    }
}
