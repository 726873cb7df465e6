//! The hook egress policy (docs/security.md "Network"): hooks never follow redirects, literal
//! addresses the policy denies are refused when the setting is saved, and a host name that
//! resolves only to denied addresses is never connected to.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use axum::http::header::LOCATION;
use serde_json::json;

use crate::backend_test;
use crate::harness::{Kind, TestApp};
use crate::release_plan::{BASE, create_with_text_jobs, set_status, simple_body};
use crate::release_plan_hooks::{Receiver, enable_hooks};

/// A receiver that answers every POST with `307` to `target`; counts what it got.
async fn redirector(target: &str) -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let target = target.to_string();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let h = h.clone();
            let target = target.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                (StatusCode::TEMPORARY_REDIRECT, [(LOCATION, target)])
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, hits, task)
}

/// Queue a hook: a plan with one job moved to finish_planning.
async fn trigger_hook(app: &TestApp, name: &str) -> String {
    let body = simple_body(name, "admin");
    let id = create_with_text_jobs(app, body, 1).await;
    set_status(app, &id, "finish_planning").await.expect(200);
    id
}

/// Wait until the plan's first pending hook has a recorded failed attempt; its reason.
async fn first_failure(app: &TestApp, id: &str) -> String {
    app.wait_for("a failed hook attempt", Duration::from_secs(20), || async {
        let p = app.state().release_plans.get(id).await.unwrap().unwrap();
        p.internal
            .pending_hooks
            .first()
            .filter(|h| h.attempts >= 1)
            .map(|h| h.last_error.clone())
    })
    .await
}

backend_test! {
    async fn redirects_are_not_followed(app) {
        let other_origin = Receiver::start().await;
        let (url, hits, task) = redirector(&other_origin.url).await;
        enable_hooks(&app, &url, false, "hook-secret").await;
        let id = trigger_hook(&app, "redirected").await;
        let why = first_failure(&app, &id).await;
        assert!(why.contains("307") && why.contains("redirect"), "{why}");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // Nothing (neither the body nor X-Zadig-Token) reached the redirect target, also not
        // on the retry.
        app.clock.advance(Duration::from_secs(10));
        app.wait_for("the retry", Duration::from_secs(20), || async {
            (hits.load(Ordering::SeqCst) >= 2).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(other_origin.hits().is_empty(), "the redirect was followed");
        task.abort();
        app.stop().await;
    }
}

backend_test! {
    async fn denied_literal_addresses_are_refused(app) {
        let path = format!("{BASE}/hook/setting");
        let ok = json!({"enable": true, "hook_address": "http://10.0.0.1:8080/hook", "hook_events": ["all_job_done"]});
        app.put(&path, ok).await.expect(200);
        for address in [
            "http://169.254.169.254/",
            "http://[fe80::1]/",
            "http://2852039166/",
            "http://0xa9fea9fe/latest/meta-data/",
            "http://0251.0376.0251.0376/",
            "http://[::ffff:169.254.169.254]/",
            "http://[fd00:ec2::254]/",
            "http://0.0.0.0:8080/",
            "http://224.0.0.1/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://metadata/",
            "http://instance-data/latest/",
        ] {
            let r = app
                .put(&path, json!({"enable": true, "hook_address": address, "hook_events": ["all_job_done"]}))
                .await;
            r.expect_error(400, "hook_address");
            // Also refused when hooks are off: the address is stored for later.
            app.put(&path, json!({"enable": false, "hook_address": address})).await.expect_error(400, "hook_address");
        }
        // Loopback and private receivers are allowed by default (on-premises).
        for address in ["http://127.0.0.1:9/hook", "http://192.168.1.10/hook", "http://[::1]:9/", "http://localhost:9/"] {
            app.put(&path, json!({"enable": true, "hook_address": address, "hook_events": []})).await.expect(200);
        }
        assert_eq!(app.get(&path).await.expect(200)["hook_address"], "http://localhost:9/");
        app.stop().await;
    }
}

async fn names_resolving_to_denied_addresses(kind: Kind) {
    let Some(app) = TestApp::start_with(kind, |c| {
        c.hook_denied_networks = vec!["127.0.0.0/8".into(), "::1/128".into()];
    })
    .await
    else {
        return;
    };
    let recv = Receiver::start().await;
    let path = format!("{BASE}/hook/setting");
    // The literal address is refused at once, naming the key that denies it.
    let r = app
        .put(
            &path,
            json!({"enable": true, "hook_address": recv.url, "hook_events": ["finish_planning"]}),
        )
        .await;
    r.expect_error(400, "hook_address");
    r.expect_error(400, "hook_denied_networks");
    // A name is only known at delivery: localhost resolves to loopback, which is denied.
    let port = recv.url.rsplit(':').next().unwrap().to_string();
    enable_hooks(
        &app,
        &format!("http://localhost:{port}"),
        false,
        "hook-secret",
    )
    .await;
    let id = trigger_hook(&app, "resolved").await;
    let why = first_failure(&app, &id).await;
    assert!(why.contains("hook egress policy"), "{why}");
    assert!(why.contains("hook_denied_networks"), "{why}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(recv.hits().is_empty(), "the receiver was reached");
    app.stop().await;
}

crate::kind_test!(names_resolving_to_denied_addresses);
