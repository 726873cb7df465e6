//! Failed-authentication throttling over a real socket, on both backends: after
//! `auth_max_failures` wrong tokens from one client (here 3; every test client is 127.0.0.1),
//! the API answers 429 with Zadig's error JSON and `Retry-After`, and the sign-in form a 429
//! page, even for a right token; a valid token's use neither resets the count nor unblocks;
//! once the window has passed on the injected clock, the right token works again. Two servers
//! on one store share the count.

use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::harness::{ADMIN_TOKEN, Kind, Resp, TestApp, send};
use crate::kind_test;
use crate::ui::{FormBody, header_text, no_redirects, page_of};

const USERS: &str = "/openapi/users";

async fn start(kind: Kind) -> Option<TestApp> {
    TestApp::start_with(kind, |c| {
        c.auth_max_failures = 3;
        c.auth_failure_window_secs = 60;
    })
    .await
}

/// Assert the API's 429: Zadig's error JSON, and `Retry-After` in seconds.
#[track_caller]
fn assert_throttled(r: &Resp, retry_after: u64) {
    let body = r.expect_error(429, "too many failed authentications");
    assert_eq!(body["code"], 429, "{}", r.text);
    assert_eq!(body["message"], "Too Many Requests", "{}", r.text);
    assert_eq!(
        header_text(&r.headers, "retry-after"),
        retry_after.to_string()
    );
}

async fn api_blocks_after_too_many_wrong_tokens(kind: Kind) {
    let Some(app) = start(kind).await else { return };
    let (_, bob) = app.create_user("bob", false).await;
    let get = |token: &str| {
        let token = token.to_string();
        let app = &app;
        async move { app.call(Method::GET, USERS, Some(&token), None).await }
    };
    get("wrong-1").await.expect_error(401, "invalid");
    get("wrong-2").await.expect_error(401, "invalid");
    // A valid (low-privilege) token in between does not reset the count ...
    get(&bob).await.expect(200);
    // ... nor does a request without a token count as a failure.
    app.call(Method::GET, USERS, None, None)
        .await
        .expect_error(401, "token");
    get("wrong-3").await.expect_error(401, "invalid");

    // Blocked: the right token is not even checked, nor a valid one of another user.
    assert_throttled(&get(ADMIN_TOKEN).await, 60);
    assert_throttled(&get(&bob).await, 60);
    app.clock.advance(Duration::from_secs(30));
    assert_throttled(&get(ADMIN_TOKEN).await, 30);
    // Refused attempts do not extend the block.
    app.clock.advance(Duration::from_millis(29_500));
    assert_throttled(&get("wrong-4").await, 1);
    app.clock.advance(Duration::from_millis(500));
    get(ADMIN_TOKEN).await.expect(200);

    // A fresh window: three more wrong tokens are needed to block again.
    get("wrong-5").await.expect_error(401, "invalid");
    get(ADMIN_TOKEN).await.expect(200);
    get("wrong-6").await.expect_error(401, "invalid");
    get("wrong-7").await.expect_error(401, "invalid");
    assert_throttled(&get(ADMIN_TOKEN).await, 60);
    app.stop().await;
}
kind_test!(api_blocks_after_too_many_wrong_tokens);

async fn sign_in_form_is_throttled_with_the_api(kind: Kind) {
    let Some(app) = start(kind).await else { return };
    let anon = no_redirects();
    let sign_in = |token: &'static str| {
        anon.post(app.url("/ui/login"))
            .form_body(&[("token", token), ("next", "/ui/plans")])
            .send()
    };
    // Wrong tokens on the form count as on the API (one count per client).
    for _ in 0..2 {
        let p = page_of(sign_in("nope").await.unwrap()).await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{}", p.text);
    }
    app.call(Method::GET, USERS, Some("wrong"), None)
        .await
        .expect_error(401, "invalid");

    // Blocked: the form answers a 429 page (the dashboard's error page), the API a 429.
    let r = sign_in(ADMIN_TOKEN).await.unwrap();
    assert_eq!(header_text(r.headers(), "retry-after"), "60");
    let p = page_of(r).await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS, "{}", p.text);
    assert!(
        p.content_type.starts_with("text/html"),
        "{}",
        p.content_type
    );
    assert!(
        p.text.contains("429") && p.text.contains("too many failed authentications"),
        "{}",
        p.text
    );
    assert!(
        p.set_cookie.is_empty(),
        "no session while blocked: {}",
        p.set_cookie
    );
    assert_throttled(&app.get(USERS).await, 60);

    // After the window, signing in works.
    app.clock.advance(Duration::from_secs(60));
    let p = page_of(sign_in(ADMIN_TOKEN).await.unwrap()).await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (StatusCode::SEE_OTHER, "/ui/plans"),
        "{}",
        p.text
    );
    app.stop().await;
}
kind_test!(sign_in_form_is_throttled_with_the_api);

/// Two servers on one store (each with its own connection, as two replicas), on the same
/// clock: the failure count is shared. A client blocked on the first is refused on the second
/// at its first failure there; failures split between them block it on the one where the
/// shared count reaches the limit, and on the other at its next failure there — at most
/// `auth_max_failures + replicas - 1` tries per window. After the window both accept it again.
async fn replicas_share_the_count(kind: Kind) {
    let Some(app) = start(kind).await else { return };
    let backend = zadig_server::store::open(&app.config).await.expect("store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let clock: std::sync::Arc<dyn zadig_server::clock::Clock> =
        std::sync::Arc::new(app.clock.clone());
    let second = zadig_server::start(app.config.clone(), backend, clock, listener)
        .await
        .expect("second server");
    let (a, b) = (app.base.clone(), format!("http://{}", second.addr));
    let get = |base: &str, token: &str| {
        let url = format!("{base}{USERS}");
        let (client, token) = (app.client.clone(), token.to_string());
        async move { send(&client, Method::GET, &url, Some(&token), None).await }
    };

    for i in 1..=3 {
        get(&a, &format!("wrong-{i}"))
            .await
            .expect_error(401, "invalid");
    }
    assert_throttled(&get(&a, ADMIN_TOKEN).await, 60);
    // The second server has not seen this client fail: it checks one more token ...
    app.clock.advance(Duration::from_secs(10));
    get(&b, "wrong-4").await.expect_error(401, "invalid");
    // ... and then refuses it for a full window from that failure, as does the store.
    assert_throttled(&get(&b, ADMIN_TOKEN).await, 60);
    assert_throttled(&get(&a, ADMIN_TOKEN).await, 50);
    app.clock.advance(Duration::from_secs(60));
    get(&a, ADMIN_TOKEN).await.expect(200);
    get(&b, ADMIN_TOKEN).await.expect(200);

    // Split: two failures on the first, the third on the second blocks there.
    get(&a, "wrong-5").await.expect_error(401, "invalid");
    get(&a, "wrong-6").await.expect_error(401, "invalid");
    get(&b, "wrong-7").await.expect_error(401, "invalid");
    assert_throttled(&get(&b, ADMIN_TOKEN).await, 60);
    // The first learns of it at the client's next failure there: 3 + 2 - 1 tries in all.
    get(&a, ADMIN_TOKEN).await.expect(200);
    get(&a, "wrong-8").await.expect_error(401, "invalid");
    assert_throttled(&get(&a, ADMIN_TOKEN).await, 60);
    second.shutdown().await;
    app.stop().await;
}
kind_test!(replicas_share_the_count);

/// `auth_max_failures = 0` turns the throttle off, shared count included.
async fn zero_turns_the_throttle_off(kind: Kind) {
    let Some(app) = TestApp::start_with(kind, |c| c.auth_max_failures = 0).await else {
        return;
    };
    for i in 0..15 {
        app.call(Method::GET, USERS, Some(&format!("wrong-{i}")), None)
            .await
            .expect_error(401, "invalid");
    }
    app.get(USERS).await.expect(200);
    // Nothing was written to the shared count either.
    let shared = app.backend.collection("auth_failures");
    let all = zadig_server::store::Filter::All;
    assert_eq!(shared.count(&all).await.expect("count"), 0);
    app.stop().await;
}
kind_test!(zero_turns_the_throttle_off);

/// Behind a trusted proxy (`trusted_proxies`), the client is the last address of
/// `X-Forwarded-For` that is not a proxy: one client's wrong tokens do not lock out another
/// behind the same proxy, and what a client writes left of the proxy's entry changes nothing.
async fn trusted_proxies_name_the_client(kind: Kind) {
    let Some(app) = TestApp::start_with(kind, |c| {
        c.auth_max_failures = 2;
        c.trusted_proxies = vec!["127.0.0.1".into(), "10.0.0.0/8".into()];
    })
    .await
    else {
        return;
    };
    let get = |token: &str, forwarded: &str| {
        let req = app
            .client
            .get(app.url(USERS))
            .bearer_auth(token)
            .header("x-forwarded-for", forwarded);
        async move { req.send().await.expect("request sent").status() }
    };
    // The guesser varies what it writes itself; the proxies append what they saw.
    assert_eq!(
        get("wrong-1", "1.1.1.1, 203.0.113.7, 10.1.2.3").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("wrong-2", "2.2.2.2, 203.0.113.7").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(ADMIN_TOKEN, "203.0.113.7").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client behind the same proxies, and the proxy's own requests, are not blocked.
    assert_eq!(
        get(ADMIN_TOKEN, "203.0.113.7, 198.51.100.9, 10.9.9.9").await,
        StatusCode::OK
    );
    app.get(USERS).await.expect(200);
    app.stop().await;
}
kind_test!(trusted_proxies_name_the_client);

/// Proxies that write `address:port` or a bracketed IPv6 address name the same client as
/// those that do not; an entry that is not an address, or a chain of trusted addresses only,
/// leaves the peer as the client (the guesser cannot pick its key by writing one).
async fn forwarded_entries_are_read_as_proxies_write_them(kind: Kind) {
    let Some(app) = TestApp::start_with(kind, |c| {
        c.auth_max_failures = 2;
        c.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await
    else {
        return;
    };
    let get = |token: &str, forwarded: &str| {
        let req = app.client.get(app.url(USERS)).bearer_auth(token);
        let req = match forwarded {
            "" => req,
            f => req.header("x-forwarded-for", f),
        };
        async move { req.send().await.expect("request sent").status() }
    };
    let (no, blocked) = (StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS);
    for (tries, last) in [
        (["4.4.4.1, 5.5.5.5:4711", "4.4.4.2, 5.5.5.5"], "5.5.5.5:1"),
        (
            ["9.9.9.1, [2001:db8::5]:4711", "[2001:db8::5]"],
            "2001:db8::5",
        ),
        (["6.6.6.1, unknown", "127.0.0.1, 127.0.0.1"], ""),
    ] {
        for forwarded in tries {
            assert_eq!(get("wrong", forwarded).await, no, "{forwarded}");
        }
        assert_eq!(get(ADMIN_TOKEN, last).await, blocked, "{last:?}");
    }
    app.stop().await;
}
kind_test!(forwarded_entries_are_read_as_proxies_write_them);

/// Without `trusted_proxies`, `X-Forwarded-For` is not believed: the peer is the client.
async fn forwarded_for_is_ignored_by_default(kind: Kind) {
    let Some(app) = TestApp::start_with(kind, |c| c.auth_max_failures = 2).await else {
        return;
    };
    for (i, forwarded) in ["203.0.113.1", "203.0.113.2"].iter().enumerate() {
        let r = app
            .client
            .get(app.url(USERS))
            .bearer_auth(format!("wrong-{i}"))
            .header("x-forwarded-for", *forwarded)
            .send()
            .await
            .expect("request sent");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = app
        .client
        .get(app.url(USERS))
        .bearer_auth(ADMIN_TOKEN)
        .header("x-forwarded-for", "198.51.100.1")
        .send()
        .await
        .expect("request sent");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    app.stop().await;
}
kind_test!(forwarded_for_is_ignored_by_default);
