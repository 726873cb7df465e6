//! Release-plan hooks and the callback (seed 000 "Hook External Systems and CallBack", spec §8,
//! DESIGN.md §5), against a real local HTTP receiver.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use zadig_server::clock::Clock;

use crate::backend_test;
use crate::harness::{ADMIN_TOKEN, Kind, TestApp, assert_fields};
use crate::release_plan::{
    BASE, approve_as, create_with_text_jobs, detail, job_call, job_ids, set_status, simple_body,
};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub json: Value,
    /// Whether the receiver answered 200 (else it was told to fail).
    pub accepted: bool,
}

impl Hit {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
    pub fn event_name(&self) -> &str {
        self.json["release_plan"]["event_name"]
            .as_str()
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct Shared {
    hits: Mutex<Vec<Hit>>,
    fail: AtomicUsize,
    delay_ms: AtomicUsize,
}

/// A tiny HTTP server on 127.0.0.1:0 that records every POST and can be told to fail or be
/// slow.
pub struct Receiver {
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let s = s.clone();
                async move {
                    let delay = s.delay_ms.load(Ordering::SeqCst);
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_millis(delay as u64)).await;
                    }
                    let fail = s
                        .fail
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    let hit = Hit {
                        headers: headers
                            .iter()
                            .map(|(k, v)| {
                                (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                            })
                            .collect(),
                        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        body: body.to_vec(),
                        accepted: !fail,
                    };
                    s.hits.lock().unwrap().push(hit);
                    if fail {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared, task }
    }

    /// Answer the next `n` requests with 500.
    pub fn fail_next(&self, n: usize) {
        self.shared.fail.store(n, Ordering::SeqCst);
    }

    pub fn delay(&self, d: Duration) {
        self.shared
            .delay_ms
            .store(d.as_millis() as usize, Ordering::SeqCst);
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.shared.hits.lock().unwrap().clone()
    }

    /// Wait (bounded) until `n` requests arrived; returns them all.
    pub async fn wait_hits(&self, app: &TestApp, n: usize) -> Vec<Hit> {
        app.wait_for(
            &format!("{n} hook requests"),
            Duration::from_secs(20),
            || async {
                let h = self.hits();
                (h.len() >= n).then_some(h)
            },
        )
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn enable_hooks(app: &TestApp, url: &str, callback: bool, secret: &str) {
    app.put(
        &format!("{BASE}/hook/setting"),
        json!({"enable": true, "enable_call_back": callback, "hook_address": url, "hook_secret": secret,
               "hook_events": ["finish_planning", "start_execute", "all_job_done"]}),
    )
    .await
    .expect(200);
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Wait until the server recorded `n` failed attempts of the plan's first pending hook (the
/// receiver sees a request before the server has read the answer and scheduled the retry).
async fn wait_attempts(
    app: &TestApp,
    id: &str,
    n: u32,
) -> zadig_server::release_plan::model::PendingHook {
    app.wait_for(
        &format!("{n} recorded attempts"),
        Duration::from_secs(20),
        || async {
            let p = app.state().release_plans.get(id).await.unwrap().unwrap();
            p.internal
                .pending_hooks
                .first()
                .filter(|h| h.attempts == n)
                .cloned()
        },
    )
    .await
}

async fn callback(app: &TestApp, body: Value) -> crate::harness::Resp {
    app.post("/api/callback/release_plan", body).await
}

backend_test! {
    async fn hook_setting_route(app) {
        let path = format!("{BASE}/hook/setting");
        let d = app.get(&path).await;
        assert_eq!(d.expect(200).clone(), json!({"enable": false, "enable_call_back": false, "hook_address": "", "hook_events": []}));
        let (_, bob) = app.create_user("bob", false).await;
        let body = json!({"enable": true, "enable_call_back": true, "hook_address": "http://127.0.0.1:9/x",
                          "hook_secret": "s", "hook_events": ["all_job_done"]});
        app.call(Method::PUT, &path, Some(&bob), Some(body.clone())).await.expect_error(403, "bob");
        app.call(Method::GET, &path, Some(&bob), None).await.expect(200);
        let mut bad = body.clone();
        bad["hook_events"] = json!(["all_job_done", "deploy"]);
        app.put(&path, bad).await.expect_error(400, "hook_events[1]");
        let mut bad = body.clone();
        bad["hook_address"] = json!("not a url");
        app.put(&path, bad).await.expect_error(400, "hook_address");
        app.put(&path, body.clone()).await.expect(200);
        let got = app.get(&path).await.expect(200).clone();
        assert!(got.get("hook_secret").is_none(), "GET never shows the secret: {got}");
        assert_eq!(got["hook_events"], json!(["all_job_done"]));
        assert_eq!(got["enable_call_back"], true);
        // Without hook_secret the stored one stays; "" clears it.
        let mut keep = body.clone();
        keep.as_object_mut().unwrap().remove("hook_secret");
        app.put(&path, keep).await.expect(200);
        assert_eq!(app.state().release_plans.hook_setting().await.unwrap().hook_secret, "s");
        let mut clear = body;
        clear["hook_secret"] = json!("");
        app.put(&path, clear).await.expect(200);
        assert_eq!(app.state().release_plans.hook_setting().await.unwrap().hook_secret, "");
        app.stop().await;
    }
}

backend_test! {
    async fn hooks_carry_the_plan_and_are_signed(app) {
        let recv = Receiver::start().await;
        enable_hooks(&app, &recv.url, false, "s3cret").await;
        let body = simple_body("hooked", "admin");
        let id = create_with_text_jobs(&app, body, 2).await;
        set_status(&app, &id, "finish_planning").await.expect(200);
        let hits = recv.wait_hits(&app, 1).await;
        let h = &hits[0];
        let d = detail(&app, &id).await;
        assert_eq!(d["status"], "finish_planning");
        // Headers (spec §8.3, DESIGN.md §5).
        assert!(h.header("content-type").starts_with("application/json"));
        assert_eq!(h.header("x-zadig-event"), "release_plan");
        assert_eq!(h.header("x-zadig-token"), "s3cret");
        assert_eq!(h.header("x-zadig-event-uuid").len(), 36);
        assert_eq!(h.header("x-zadig-webhook-uuid").len(), 36);
        let ts: i64 = h.header("x-zadig-timestamp").parse().expect("timestamp");
        assert!((ts - app.clock.now_ms() / 1000).abs() < 5);
        assert_eq!(h.header("x-zadig-signature"), format!("sha256={}", hmac_hex("s3cret", &h.body)));
        // Body (seed 000's shape): numbers are numbers, instance_code included.
        let b = &h.json;
        assert_eq!(b["object_kind"], "release_plan");
        assert_eq!(b["event"], "release_plan");
        assert!(b["workflow"].is_null());
        let rp = &b["release_plan"];
        assert_eq!(rp["id"], json!(id));
        assert!(rp["index"].is_i64());
        assert_fields(rp, json!({
            "index": d["index"], "name": "hooked", "event_name": "finish_planning",
            "manager": "admin", "manager_id": d["manager_id"], "instance_code": d["instance_code"],
            "status": "finish_planning"
        }));
        for k in ["start_time", "end_time", "schedule_execute_time", "create_time", "update_time",
                  "planning_time", "approval_time", "executing_time", "success_time"] {
            assert!(rp[k].is_i64(), "{k} is not a number: {rp}");
        }
        assert!(rp["planning_time"].as_i64().unwrap() > 0);
        for k in ["description", "created_by", "updated_by"] {
            assert!(rp[k].is_string(), "{k}");
        }
        let job = &rp["jobs"][0];
        assert_eq!(job["type"], "text");
        assert_eq!(job["spec"], json!({"content": "step 0", "remark": ""}));
        for k in ["id", "name", "status", "executed_by", "manager", "manager_id"] {
            assert!(job[k].is_string(), "job {k}");
        }
        assert!(job["executed_time"].is_i64());

        // start_execute, then all_job_done once every job is done or skipped.
        set_status(&app, &id, "executing").await.expect(200);
        let hits = recv.wait_hits(&app, 2).await;
        assert_eq!(hits[1].event_name(), "start_execute");
        assert_eq!(hits[1].json["release_plan"]["status"], "executing");
        let jobs = job_ids(&detail(&app, &id).await);
        job_call(&app, ADMIN_TOKEN, &id, "execute", &jobs[0], "text").await.expect(200);
        job_call(&app, ADMIN_TOKEN, &id, "skip", &jobs[1], "text").await.expect(200);
        let hits = recv.wait_hits(&app, 3).await;
        let done = &hits[2].json["release_plan"];
        assert_eq!(hits[2].event_name(), "all_job_done");
        assert_eq!(done["status"], "success");
        assert!(done["success_time"].as_i64().unwrap() > 0);
        assert_eq!(done["jobs"][0]["status"], "done");
        assert_eq!(done["jobs"][1]["status"], "skipped");
        assert!(hits.iter().all(|h| h.accepted));

        // Events not enabled are not sent; without a secret there is no signature.
        app.put(&format!("{BASE}/hook/setting"),
            json!({"enable": true, "hook_address": recv.url, "hook_secret": "", "hook_events": ["start_execute"]})).await.expect(200);
        let body = simple_body("second", "admin");
        let p2 = create_with_text_jobs(&app, body, 1).await;
        set_status(&app, &p2, "finish_planning").await.expect(200);
        set_status(&app, &p2, "executing").await.expect(200);
        let hits = recv.wait_hits(&app, 4).await;
        assert_eq!(hits[3].event_name(), "start_execute");
        assert_eq!(hits[3].json["release_plan"]["id"], json!(p2));
        assert_eq!(hits[3].header("x-zadig-signature"), "");
        assert_eq!(hits[3].header("x-zadig-token"), "");
        app.stop().await;
        assert_eq!(recv.hits().len(), 4, "no other hook was sent");
    }
}

backend_test! {
    async fn callbacks_drive_the_external_checks(app) {
        let recv = Receiver::start().await;
        enable_hooks(&app, &recv.url, true, "").await;
        let body = simple_body("checked", "admin");
        let id = create_with_text_jobs(&app, body.clone(), 1).await;
        set_status(&app, &id, "finish_planning").await.expect(200);
        assert_eq!(detail(&app, &id).await["status"], "wait_for_finish_planning_external_check");
        let hits = recv.wait_hits(&app, 1).await;
        assert_eq!(hits[0].json["release_plan"]["status"], "wait_for_finish_planning_external_check");
        let code = hits[0].json["release_plan"]["instance_code"].as_str().unwrap().to_string();
        let cb = |event: &str, code: &str, result: &str| json!({
            "hook_event": event, "release_plan_id": id, "instance_code": code, "result": result, "failed_reason": ""});

        // Bad input → 400 (even with a wrong code); wrong code / unknown plan / wrong event → 409/404.
        callback(&app, cb("deploy", "nope", "success")).await.expect_error(400, "hook_event");
        callback(&app, cb("finish_planning", "nope", "maybe")).await.expect_error(400, "result");
        let mut bad_id = cb("finish_planning", &code, "success");
        bad_id["release_plan_id"] = json!("xyz");
        callback(&app, bad_id).await.expect_error(400, "release_plan_id");
        callback(&app, cb("finish_planning", "0000000000000000", "success")).await.expect_error(409, "instance code");
        let mut unknown = cb("finish_planning", &code, "success");
        unknown["release_plan_id"] = json!("0123456789abcdef01234567");
        callback(&app, unknown).await.expect_error(404, "0123456789abcdef01234567");
        callback(&app, cb("all_job_done", &code, "success")).await.expect_error(409, "not waiting");
        assert_eq!(detail(&app, &id).await["status"], "wait_for_finish_planning_external_check");
        // The status API only re-plans or cancels here.
        set_status(&app, &id, "finish_planning").await.expect_error(409, "wait_for_finish_planning_external_check");

        // Success (a system admin's token, e.g. the checking system's own admin user; see
        // tests/it/authz.rs): without approval the plan goes on to executing.
        let (_, bob) = app.create_user("bob", true).await;
        let ok = app.call(Method::POST, "/api/callback/release_plan", Some(&bob),
            Some(cb("finish_planning", &code, "success"))).await;
        assert_eq!(ok.expect(200).clone(), json!({"message": "success", "id": id}));
        let d = detail(&app, &id).await;
        assert_eq!(d["status"], "executing");
        assert!(d["wait_for_finish_planning_external_check_time"].as_i64().unwrap() > 0);
        assert!(d["executing_time"].as_i64().unwrap() > 0);
        // A repeated identical callback is harmless.
        callback(&app, cb("finish_planning", &code, "success")).await.expect(200);
        let mut again = detail(&app, &id).await;
        again["version"] = d["version"].clone();
        assert_eq!(again, d);
        // A callback for a check no longer awaited.
        callback(&app, cb("finish_planning", &code, "failed")).await.expect_error(409, "not waiting");

        // All jobs done → waits for the all-done check; a failed check records the reason.
        let job = job_ids(&d)[0].clone();
        job_call(&app, ADMIN_TOKEN, &id, "execute", &job, "text").await.expect(200);
        let d = detail(&app, &id).await;
        assert_eq!(d["status"], "wait_for_all_done_external_check");
        assert_eq!(d["success_time"], 0);
        let hits = recv.wait_hits(&app, 2).await;
        assert_eq!(hits[1].event_name(), "all_job_done");
        let mut failed = cb("all_job_done", &code, "failed");
        failed["failed_reason"] = json!("smoke tests are red");
        callback(&app, failed).await.expect(200);
        let d = detail(&app, &id).await;
        assert_eq!(d["status"], "wait_for_all_done_external_check_failed");
        assert_eq!(d["external_check_failed_reason"], "smoke tests are red");
        set_status(&app, &id, "executing").await.expect_error(409, "wait_for_all_done_external_check_failed");

        // Re-plan: a new instance code; the old one is refused.
        set_status(&app, &id, "planning").await.expect(200);
        let d = detail(&app, &id).await;
        assert_ne!(d["instance_code"], json!(code));
        assert_eq!(d["external_check_failed_reason"], "");
        set_status(&app, &id, "finish_planning").await.expect(200);
        callback(&app, cb("finish_planning", &code, "success")).await.expect_error(409, "instance code");
        let new_code = d["instance_code"].as_str().unwrap().to_string();
        callback(&app, cb("finish_planning", &new_code, "success")).await.expect(200);
        // Executing again with the job done in the last cycle: it completes at once.
        let d = detail(&app, &id).await;
        assert_eq!(d["status"], "wait_for_all_done_external_check");
        callback(&app, cb("all_job_done", &new_code, "success")).await.expect(200);
        let d = detail(&app, &id).await;
        assert_eq!(d["status"], "success");
        assert!(d["success_time"].as_i64().unwrap() > 0);
        assert!(d["wait_for_all_done_external_check_time"].as_i64().unwrap() > 0);
        app.stop().await;
    }
}

backend_test! {
    async fn start_execute_check_after_approval(app) {
        let recv = Receiver::start().await;
        enable_hooks(&app, &recv.url, true, "").await;
        let (_, ann) = app.create_user("ann", false).await;
        let mut body = simple_body("approved", "admin");
        body["approval"] = json!({"enabled": true, "type": "native",
            "native_approval": {"approve_users": [{"user_name": "ann"}], "needed_approvers": 1}});
        let id = create_with_text_jobs(&app, body, 1).await;
        let cb = |event: &str, code: &str, result: &str| json!({
            "hook_event": event, "release_plan_id": id, "instance_code": code, "result": result,
            "failed_reason": "checked"});
        let code = || async { detail(&app, &id).await["instance_code"].as_str().unwrap().to_string() };

        // A failed finish-planning check (C1); re-planning starts over with a new code.
        set_status(&app, &id, "finish_planning").await.expect(200);
        let first = code().await;
        callback(&app, cb("finish_planning", &first, "failed")).await.expect(200);
        let d = detail(&app, &id).await;
        assert_eq!(d["status"], "wait_for_finish_planning_external_check_failed");
        assert_eq!(d["external_check_failed_reason"], "checked");
        set_status(&app, &id, "planning").await.expect(200);
        set_status(&app, &id, "finish_planning").await.expect(200);
        let c = code().await;
        assert_ne!(c, first);
        callback(&app, cb("finish_planning", &c, "success")).await.expect(200);
        // With approval, a passed finish-planning check stops at finish_planning (C2).
        assert_eq!(detail(&app, &id).await["status"], "finish_planning");
        set_status(&app, &id, "wait_for_approval").await.expect(200);
        approve_as(&app, &ann, &id, true).await.expect(200);
        let d = detail(&app, &id).await;
        assert_eq!(d["status"], "wait_for_execute_external_check");
        assert_eq!(d["approval"]["status"], "passed");
        let hits = recv.wait_hits(&app, 3).await;
        assert_eq!(hits[2].event_name(), "start_execute");
        assert_eq!(hits[2].json["release_plan"]["status"], "wait_for_execute_external_check");
        assert_eq!(hits[2].json["release_plan"]["instance_code"], json!(c));
        // A failed start-execute check (C3).
        callback(&app, cb("start_execute", &c, "failed")).await.expect(200);
        assert_eq!(detail(&app, &id).await["status"], "wait_for_execute_external_check_failed");

        // Another cycle: a passed start-execute check executes (C4).
        set_status(&app, &id, "planning").await.expect(200);
        set_status(&app, &id, "finish_planning").await.expect(200);
        let c = code().await;
        callback(&app, cb("finish_planning", &c, "success")).await.expect(200);
        set_status(&app, &id, "wait_for_approval").await.expect(200);
        approve_as(&app, &ann, &id, true).await.expect(200);
        assert_eq!(detail(&app, &id).await["status"], "wait_for_execute_external_check");
        callback(&app, cb("start_execute", &c, "success")).await.expect(200);
        let d = detail(&app, &id).await;
        assert_eq!(d["status"], "executing");
        assert!(d["executing_time"].as_i64().unwrap() > 0);
        assert!(d["wait_for_execute_external_check_time"].as_i64().unwrap() > 0);
        assert_eq!(d["jobs"][0]["status"], "todo");
        set_status(&app, &id, "cancel").await.expect(200);
        assert_eq!(detail(&app, &id).await["status"], "cancel");
        // Not awaited any more: 409 (an identical repeat of the accepted callback stays 200).
        callback(&app, cb("start_execute", &c, "failed")).await.expect_error(409, "not waiting");
        callback(&app, cb("start_execute", &c, "success")).await.expect(200);
        assert_eq!(detail(&app, &id).await["status"], "cancel");
        app.stop().await;
    }
}

backend_test! {
    async fn failed_hooks_are_retried_and_survive_a_restart(app) {
        let recv = Receiver::start().await;
        enable_hooks(&app, &recv.url, false, "k").await;
        recv.fail_next(1);
        let body = simple_body("retried", "admin");
        let id = create_with_text_jobs(&app, body, 1).await;
        set_status(&app, &id, "finish_planning").await.expect(200);
        let first = recv.wait_hits(&app, 1).await;
        assert!(!first[0].accepted);
        // The retry waits for its delay (10 s on the business clock).
        let pending = wait_attempts(&app, &id, 1).await;
        assert!(pending.last_error.contains("500"), "{}", pending.last_error);
        app.clock.advance(Duration::from_secs(9));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(recv.hits().len(), 1, "retried too early");
        app.clock.advance(Duration::from_secs(1));
        let hits = recv.wait_hits(&app, 2).await;
        assert!(hits[1].accepted);
        assert_eq!(hits[1].header("x-zadig-event-uuid"), hits[0].header("x-zadig-event-uuid"));
        assert_eq!(hits[1].body, hits[0].body, "the retry sends the same body");
        assert_eq!(hits[1].header("x-zadig-signature"), hits[0].header("x-zadig-signature"));

        // A pending retry survives a restart.
        recv.fail_next(1);
        set_status(&app, &id, "executing").await.expect(200);
        let hits = recv.wait_hits(&app, 3).await;
        assert!(!hits[2].accepted);
        wait_attempts(&app, &id, 1).await;
        let app = app.restart().await;
        app.clock.advance(Duration::from_secs(10));
        let hits = recv.wait_hits(&app, 4).await;
        assert!(hits[3].accepted);
        assert_eq!(hits[3].event_name(), "start_execute");

        // Out of attempts (4: now, +10 s, +60 s, +300 s): dropped; the next hook still goes.
        recv.fail_next(4);
        let job = job_ids(&detail(&app, &id).await)[0].clone();
        job_call(&app, ADMIN_TOKEN, &id, "execute", &job, "text").await.expect(200);
        recv.wait_hits(&app, 5).await;
        for (secs, n) in [(10, 6usize), (60, 7), (300, 8)] {
            wait_attempts(&app, &id, (n - 5) as u32).await;
            app.clock.advance(Duration::from_secs(secs));
            recv.wait_hits(&app, n).await;
        }
        app.wait_for("the hook queue to empty", Duration::from_secs(10), || async {
            let p = app.state().release_plans.get(&id).await.unwrap().unwrap();
            (p.internal.pending_hooks.is_empty() && p.internal.hook_due_ms == 0).then_some(())
        }).await;
        app.clock.advance(Duration::from_secs(3600));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(recv.hits().len(), 8);
        assert!(recv.hits()[4..].iter().all(|h| !h.accepted && h.event_name() == "all_job_done"));
        app.stop().await;
    }
}

async fn slow_receiver_times_out(kind: Kind) {
    let Some(app) = TestApp::start_with(kind, |c| c.release_plan_hook_timeout_secs = 1).await
    else {
        return;
    };
    let recv = Receiver::start().await;
    enable_hooks(&app, &recv.url, false, "").await;
    recv.delay(Duration::from_millis(2500));
    let body = simple_body("slow", "admin");
    let id = create_with_text_jobs(&app, body, 1).await;
    set_status(&app, &id, "finish_planning").await.expect(200);
    // The API answered at once; the attempt times out in the background.
    let err = app
        .wait_for("a timed-out attempt", Duration::from_secs(20), || async {
            let p = app.state().release_plans.get(&id).await.unwrap().unwrap();
            p.internal
                .pending_hooks
                .first()
                .filter(|h| h.attempts == 1)
                .map(|h| h.last_error.clone())
        })
        .await;
    assert!(err.contains("timed out"), "{err}");
    recv.delay(Duration::ZERO);
    app.clock.advance(Duration::from_secs(10));
    app.wait_for("the retry", Duration::from_secs(20), || async {
        recv.hits().iter().any(|h| h.accepted).then_some(())
    })
    .await;
    app.stop().await;
}

crate::kind_test!(slow_receiver_times_out);
