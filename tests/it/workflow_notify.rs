//! Workflow notifications (`notify_ctls`, spec/workflow.md §1.5, §3.4): tasks that change status
//! send what their settings ask for, to real local HTTP receivers (loopback is allowed by the
//! hook egress policy's defaults). A server process that dies between a task's status write and
//! the queueing of its notifications loses none and repeats none once restarted.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use zadig_server::store::{Backend, Filter};
use zadig_server::workflow::notify::outbox;

use crate::engine_restart::{free_port, healthy, poll, serve, server_env};
use crate::harness::{ADMIN_TOKEN, Kind, Resp, TestApp, client, send};
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
    ]);
    create(&app, workflow("wf", "echo ok", ctls)).await;
    let id = run(&app, "wf", json!([])).await;
    let list = app
        .wait_for("the first attempts", LIMIT, || async {
            let d = detail(&app, "wf", id).await;
            let l = d["notifications"].as_array().cloned().unwrap_or_default();
            (d["status"] == "passed"
                && l.len() == 3
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
    assert_eq!(ok.hits().len(), 1);

    // One retry 10 s later (business clock), then given up.
    app.clock.advance(Duration::from_secs(10));
    let list = settled(&app, "wf", id, "passed", 3).await;
    let s = by_ctl(&list, 0);
    assert_eq!(
        (s["state"].as_str(), s["attempts"].as_i64()),
        (Some("failed"), Some(2)),
        "{s}"
    );
    assert!(s["time"].as_i64().unwrap() > 0);
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

crate::backend_test! {
    /// A task cancelled while queued (never run) is told `cancelled` by the cancel itself.
    async fn a_queued_task_cancelled_is_told(app) {
        let recv = Receiver::start().await;
        create(&app, json!({"name": "one", "project": "p", "concurrency_limit": 1,
            "stages": [{"name": "deploy", "approval": {"enabled": true, "type": "native",
                "native_approval": {"approve_users": [{"user_name": "admin"}], "timeout": 30, "needed_approvers": 1}},
                "jobs": [freestyle("job", "echo never")]}],
            "notify_ctls": [webhook(&recv.url, &["cancelled"])]})).await;
        let first = run(&app, "one", json!([])).await;
        app.wait_for("the first task to wait for its approval", LIMIT, || async {
            (detail(&app, "one", first).await["status"] == "wait_for_approval").then_some(())
        }).await;
        // At the workflow's limit: the second waits in the queue.
        let second = run(&app, "one", json!([])).await;
        assert_eq!(detail(&app, "one", second).await["status"], "waiting");
        app.delete(&format!("/openapi/workflows/custom/task?taskId={second}&workflowKey=one")).await.expect(200);
        settled(&app, "one", second, "cancelled", 1).await;
        let hits = recv.wait_hits(&app, 1).await;
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].json["workflow"]["task_id"], second);
        assert_eq!(hits[0].json["workflow"]["status"], "cancelled");
        assert!(hits[0].json["workflow"]["end_time"].as_i64().unwrap() > 0);
        app.delete(&format!("/openapi/workflows/custom/task?taskId={first}&workflowKey=one")).await.expect(200);
        settled(&app, "one", first, "cancelled", 1).await;
        let told: Vec<i64> = recv.hits().iter().map(|h| h.json["workflow"]["task_id"].as_i64().unwrap()).collect();
        assert_eq!(told, [second, first]);
        app.stop().await;
    }
}

crate::backend_test! {
    async fn hook_addresses_are_checked_when_saved(app) {
        let recv = Receiver::start().await;
        let bot = |kind: &str, cfg: &str, addr: &str| json!({"enabled": true, "webhook_type": kind,
            "notify_type": ["passed"], cfg: {"hook_address": addr}});
        // Each type's address field, current and older forms; a disabled setting too (a task's
        // notify_inputs can turn it on).
        let refused = [
            (webhook("http://metadata.google.internal/computeMetadata/v1/", &["passed"]),
             "notify_ctls[1].webhook_notification_config.address"),
            (dingding("http://169.254.169.254/latest", &["passed"], false),
             "notify_ctls[1].dingding_notification_config.hook_address"),
            (bot("feishu", "lark_hook_notification_config", "http://[fe80::1]/hook?k=key-secret"),
             "notify_ctls[1].lark_hook_notification_config.hook_address"),
            (bot("msteams", "msteams_notification_config", "http://0xa9fea9fe/"),
             "notify_ctls[1].msteams_notification_config.hook_address"),
            (json!({"enabled": false, "webhook_type": "wechat", "weChat_webHook": "http://metadata/?key=key-secret"}),
             "notify_ctls[1].weChat_webHook"),
            (json!({"enabled": true, "webhook_type": "webhook", "webhook_notify": {"address": "http://2852039166/"}}),
             "notify_ctls[1].webhook_notify.address"),
            (bot("dingding", "dingding_notification_config", "robot?key=key-secret"),
             "notify_ctls[1].dingding_notification_config.hook_address` must be an http(s) URL"),
            (bot("wechat", "wechat_notification_config", ""),
             "notify_ctls[1].wechat_notification_config.hook_address` must be an http(s) URL"),
        ];
        for (ctl, field) in refused {
            let r = app.post("/api/aslan/workflow/v4",
                workflow("wf", "echo ok", json!([webhook(&recv.url, &["passed"]), ctl]))).await;
            assert_eq!(r.expect_error(400, field)["code"], 6545, "{}", r.text);
            assert!(!r.text.contains("access_token") && !r.text.contains("key-secret"),
                "the address is not repeated: {}", r.text);
        }
        // Disabled and without an address is fine; so is an ordinary address.
        let ctls = json!([webhook(&recv.url, &["passed"]), dingding(&recv.url, &["failed"], false),
            bot("wechat", "wechat_notification_config", "")]);
        let mut wf = workflow("wf", "echo ok", ctls);
        wf["notify_ctls"][2]["enabled"] = json!(false);
        create(&app, wf.clone()).await;
        // Sent back as the detail shows it (masked), it is accepted; a denied address is not.
        let shown = app.get("/openapi/workflows/custom/wf/detail?projectKey=p").await.expect(200)["notify_ctls"].clone();
        wf["notify_ctls"] = shown;
        app.put("/api/aslan/workflow/v4/wf?projectName=p", wf.clone()).await.expect(200);
        wf["notify_ctls"][1]["dingding_notification_config"]["hook_address"] = json!("http://100.100.100.200/robot");
        app.put("/api/aslan/workflow/v4/wf?projectName=p", wf).await
            .expect_error(400, "notify_ctls[1].dingding_notification_config.hook_address");

        // A task's notify_inputs name recipients, not where the message goes: the stored
        // address and token are used.
        let inputs = json!([{"id": 0, "type": "webhook",
            "webhook_notification_config": {"address": "http://169.254.169.254/", "token": "other"}}]);
        let id = run(&app, "wf", inputs).await;
        let sent = settled(&app, "wf", id, "passed", 1).await;
        assert_eq!(sent[0]["state"], "sent", "{sent:?}");
        let hits = recv.hits();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].header("x-zadig-token"), "tok-secret");
        app.stop().await;
    }
}

/// A request to the server process listening on `port`, as the admin.
async fn call(port: u16, method: Method, path: &str, body: Option<Value>) -> Resp {
    let url = format!("http://127.0.0.1:{port}{path}");
    send(&client(), method, &url, Some(ADMIN_TOKEN), body).await
}

/// The stored task `wf#1` and its queued notifications (raw documents).
async fn stored(backend: &dyn Backend) -> (Value, Option<Value>) {
    let key = Filter::eq("workflow_name", "wf").and(Filter::eq("task_id", 1));
    let task = backend.collection("workflow_tasks").find_one(&key).await;
    let task = Value::Object(task.unwrap().expect("task wf#1 stored"));
    let id = task["_id"]
        .as_str()
        .or(task["id"].as_str())
        .unwrap()
        .to_string();
    let queued = backend
        .collection(outbox::COLLECTION)
        .find_one(&Filter::id(&id))
        .await;
    (task, queued.unwrap().map(Value::Object))
}

/// Where the server process is made to die, and what the settings listen to.
#[cfg(debug_assertions)]
struct Crash {
    /// The fault point (`ZADIG_TEST_FAULT`).
    point: &'static str,
    /// The statuses the one setting lists; the first recorded is where the process dies.
    types: &'static [&'static str],
    /// The status the stored task has then.
    stored_status: &'static str,
}

/// The first server process, dying at `crash.point`: its environment.
#[cfg(debug_assertions)]
fn faulted(env: &[(String, String)], crash: &Crash) -> Vec<(String, String)> {
    let mut faulted: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k != "ZADIG_ENGINE_SWEEP_INTERVAL_MS")
        .cloned()
        .collect();
    // Dying at `created`: the dispatcher is left to its (far) sweep, so that the task is not
    // claimed before the abort.
    let sweep = if crash.stored_status == "waiting" {
        "600000"
    } else {
        "100"
    };
    faulted.push(("ZADIG_ENGINE_SWEEP_INTERVAL_MS".into(), sweep.into()));
    faulted.push(("ZADIG_TEST_FAULT".into(), crash.point.into()));
    faulted
}

/// The server process dies (abort: no clean-up, as `kill -9`) at `crash.point` right after a
/// task's status change is stored — before its notification is queued, or after it is queued
/// but before the task forgets it — and is started again on the same store: the receiver gets
/// each message exactly once, in order.
#[cfg(debug_assertions)]
async fn crash_then_restart(kind: Kind, crash: Crash) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let Some((config, env)) = server_env(kind, dir.path(), port) else {
        return;
    };
    let recv = Receiver::start().await;
    let mut server = serve(&faulted(&env, &crash));
    healthy(port).await;
    let def = workflow("wf", "echo ok", json!([webhook(&recv.url, crash.types)]));
    call(port, Method::POST, "/api/aslan/workflow/v4", Some(def))
        .await
        .expect(200);
    let run = json!({"project_key": "p", "workflow_key": "wf", "inputs": [{"job_name": "job"}]});
    // Dying at `created`, the server gives no answer.
    let url = format!("http://127.0.0.1:{port}/openapi/workflows/custom/task");
    let _ = client()
        .post(url)
        .bearer_auth(ADMIN_TOKEN)
        .json(&run)
        .send()
        .await;
    let status = poll("the server to abort", LIMIT, || {
        std::future::ready(server.0.try_wait().unwrap())
    })
    .await;
    assert_eq!(status.signal(), Some(nix::libc::SIGABRT), "{status:?}");

    // The status change and its notice are stored; the notification is queued only after
    // `notify-before-queue`.
    let backend = zadig_server::store::open(&config).await.unwrap();
    let (task, queued) = stored(backend.as_ref()).await;
    assert_eq!(task["status"], crash.stored_status);
    let notices = task["notify_pending"].as_array().unwrap();
    assert_eq!(notices.len(), 1, "{task}");
    assert_eq!(notices[0]["event"], crash.types[0]);
    let queued_sends = queued.map_or(0, |q| q["sends"].as_array().unwrap().len());
    assert_eq!(
        queued_sends,
        usize::from(crash.point == "notify-before-clear")
    );
    assert!(recv.hits().is_empty());

    let _server = serve(&env);
    healthy(port).await;
    // Settled: the task passed, no notice is left on it (every one queued), and every queued
    // message is sent.
    let path = "/openapi/workflows/custom/task?taskId=1&workflowKey=wf";
    let sent = poll(
        "the task to pass and its messages to be sent",
        LIMIT,
        || async {
            let d = call(port, Method::GET, path, None).await;
            let list = d.body["notifications"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if d.body["status"] != "passed" || list.iter().any(|s| s["state"] != "sent") {
                return None;
            }
            let (task, _) = stored(backend.as_ref()).await;
            (task["notify_pending"] == json!([]) && task["notify_pending_ms"] == 0).then_some(list)
        },
    )
    .await;
    assert_eq!(sent.len(), crash.types.len(), "{sent:?}");
    assert!(sent.iter().all(|s| s["attempts"] == 1), "{sent:?}");
    let told = events(&recv.hits(), |h| {
        h.json["workflow"]["status"].as_str().unwrap().to_string()
    });
    assert_eq!(told, crash.types, "each once, in order");
}

/// A [`crash_then_restart`] test on both backends (debug builds: release builds have no fault
/// points).
macro_rules! crash_test {
    ($(#[doc = $d:literal])* $name:ident: $point:literal, $types:expr, $stored:literal) => {
        $(#[doc = $d])*
        #[cfg(debug_assertions)]
        async fn $name(kind: Kind) {
            let crash = Crash { point: $point, types: $types, stored_status: $stored };
            crash_then_restart(kind, crash).await;
        }
        #[cfg(debug_assertions)]
        crate::kind_test!($name);
    };
}

crash_test! {
    /// The API stored the task (`created`) and died.
    crash_after_the_created_write: "notify-before-queue", &["created", "passed"], "waiting"
}

crash_test! {
    /// The engine stored the task's end and died: nothing writes the task again, the restarted
    /// server's sweep queues the notice.
    crash_after_the_final_write: "notify-before-queue", &["passed"], "passed"
}

crash_test! {
    /// The notification was queued, the task still has its notice: queued again, sent once.
    crash_after_the_queue_write: "notify-before-clear", &["passed"], "passed"
}

/// A host name is resolved only when a message is sent: saved, then refused at connect time
/// when every address it resolves to is denied.
async fn names_are_checked_when_sent(kind: Kind) {
    let Some(app) = TestApp::start_with(kind, |c| {
        c.hook_denied_networks = vec!["127.0.0.0/8".into(), "::1/128".into()];
        c.notify_retry_secs = vec![];
    })
    .await
    else {
        return;
    };
    // The configured list applies to a literal address when saving.
    app.post(
        "/api/aslan/workflow/v4",
        workflow(
            "wf",
            "echo ok",
            json!([webhook("http://127.0.0.1:9/hook", &["passed"])]),
        ),
    )
    .await
    .expect_error(400, "hook_denied_networks");
    create(
        &app,
        workflow(
            "wf",
            "echo ok",
            json!([webhook("http://localhost:9/hook", &["passed"])]),
        ),
    )
    .await;
    let id = run(&app, "wf", json!([])).await;
    let sent = settled(&app, "wf", id, "passed", 1).await;
    assert_eq!(sent[0]["state"], "failed", "{sent:?}");
    let error = sent[0]["error"].as_str().unwrap();
    assert!(
        error.contains("egress policy") && error.contains("no allowed address"),
        "{error}"
    );
    app.stop().await;
}
crate::kind_test!(names_are_checked_when_sent);
