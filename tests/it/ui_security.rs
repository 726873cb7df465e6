//! The dashboard as an attacker meets it, on both backends: every string a user controls
//! (names, descriptions, remarks, comments, log lines, labels, user names, error messages) is
//! shown escaped, in text and in attributes; every response carries the Content-Security-
//! Policy and the other security headers; the sign-in `next` cannot break the redirect; a
//! sign-in ends the browser's earlier session; forms from the public address behind a proxy
//! are accepted, others refused; unknown pages and bad queries are HTML error pages; the
//! workflow list pages.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_test;
use crate::delivery::add_registry;
use crate::delivery_registry::free_port;
use crate::harness::{ADMIN_TOKEN, Kind, TestApp};
use crate::kind_test;
use crate::ui::{FormBody, Page, Visitor, csrf_of, header_text, no_redirects, page_of, shell_job};

const WAIT: Duration = Duration::from_secs(30);

/// Markup that must never reach a page unescaped: each sets a global if it ever ran.
const XSS: &str = "<script>window.__xss=1</script>\"><img src=x onerror=\"window.__xss=2\">'";
/// What [`XSS`] must not appear as: its tags, raw.
const RAW: [&str; 2] = ["<script>window.__xss", "<img src=x"];

/// Assert the dashboard's security headers on a response.
#[track_caller]
pub fn assert_security_headers(headers: &reqwest::header::HeaderMap, what: &str) {
    let h = |k: &str| header_text(headers, k);
    let csp = h("content-security-policy");
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(part), "{what}: CSP {csp:?} lacks {part}");
    }
    assert_eq!(h("x-frame-options"), "DENY", "{what}");
    assert_eq!(h("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(h("referrer-policy"), "same-origin", "{what}");
}

/// GET `path` as `v`: 200, the security headers, and no [`RAW`] markup.
async fn safe_page(v: &Visitor, path: &str, needles: &[&str]) -> String {
    let r = v.fetch(path).await;
    assert_security_headers(r.headers(), path);
    let p = page_of(r).await;
    assert_eq!(p.status, StatusCode::OK, "{path}: {}", p.text);
    for raw in RAW {
        assert!(
            !p.text.contains(raw),
            "{path} shows {raw:?} unescaped: {}",
            p.text
        );
    }
    for n in needles {
        assert!(p.text.contains(n), "{path} does not show {n:?}: {}", p.text);
    }
    p.text
}

/// [`XSS`] as the templates must print it.
fn escaped() -> String {
    XSS.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A user named [`XSS`]; returns (uid, token).
async fn evil_user(app: &TestApp) -> (String, String) {
    let b = app
        .post(
            "/openapi/users",
            json!({"account": "mallory", "name": XSS, "is_admin": false}),
        )
        .await
        .expect(200)
        .clone();
    (
        b["uid"].as_str().unwrap().to_string(),
        b["api_token"].as_str().unwrap().to_string(),
    )
}

/// Mallory's workflow: [`XSS`] in every free-text field, a job printing it, a stage waiting
/// for the admin's approval; runs a task and waits for the approval. Returns the task page.
async fn evil_task(app: &TestApp, token: &str) -> String {
    let mut job = shell_job(
        "printer",
        &format!("echo '{}'", XSS.replace('\'', "'\\''")),
        10,
    );
    job["display_name"] = json!(XSS);
    let wf = json!({
    "name": "evil", "display_name": XSS, "project": "demo", "description": XSS,
    "concurrency_limit": -1,
    "stages": [
        {"name": "build", "parallel": true, "jobs": [job]},
        {"name": XSS, "parallel": false,
         "approval": {"enabled": true, "type": "native", "description": XSS,
            "native_approval": {"timeout": 10, "needed_approvers": 1,
                "approve_users": [{"user_name": XSS, "user_id": "admin"}]}},
         "jobs": [shell_job("after", "echo after", 10)]},
    ]});
    app.call(
        Method::POST,
        "/api/aslan/workflow/v4",
        Some(token),
        Some(wf),
    )
    .await
    .expect(200);
    let inputs: Vec<Value> = ["printer", "after"]
        .iter()
        .map(|j| json!({"job_name": j, "job_type": "freestyle", "parameters": {}}))
        .collect();
    let body =
        json!({"project_key": "demo", "workflow_key": "evil", "parameters": [], "inputs": inputs});
    let id = app
        .call(
            Method::POST,
            "/openapi/workflows/custom/task",
            Some(token),
            Some(body),
        )
        .await
        .expect(200)["task_id"]
        .as_i64()
        .unwrap();
    let remark = format!("/openapi/workflows/custom/evil/task/{id}");
    app.call(
        Method::PUT,
        &remark,
        Some(token),
        Some(json!({"remark": XSS})),
    )
    .await
    .expect(200);
    let detail = format!("/openapi/workflows/custom/task?taskId={id}&workflowKey=evil");
    app.wait_for("wait_for_approval", WAIT, || async {
        (app.get(&detail).await.body["status"] == "wait_for_approval").then_some(())
    })
    .await;
    format!("/ui/workflows/evil/tasks/{id}")
}

backend_test! {
    async fn ui_shows_user_strings_escaped_under_a_csp(app) {
        let (uid, token) = evil_user(&app).await;
        let task = evil_task(&app, &token).await;
        let esc = escaped();
        let admin = Visitor::sign_in(&app, ADMIN_TOKEN).await;
        safe_page(&admin, "/ui/workflows", &[&esc]).await;
        safe_page(&admin, "/ui/workflows/evil", &[&esc]).await;
        // The task: names, descriptions and the log as text; the stage name also inside the
        // vote form's hidden input (an attribute), and the admin may vote there.
        let page = safe_page(&admin, &format!("{task}?job=printer"), &[&esc, "data-action=\"approve-stage\""]).await;
        assert!(page.contains(&format!("name=\"stage\" value=\"{esc}\"")), "{page}");
        safe_page(&admin, &format!("{task}/live?job=printer"), &[&esc]).await;
        let log = admin.fetch(&format!("{task}/jobs/printer/log")).await;
        assert_security_headers(log.headers(), "the plain-text log");
        let log = page_of(log).await;
        assert!(log.content_type.starts_with("text/plain") && log.text.contains(XSS), "{}", log.text);

        // A release plan with the markup everywhere, and an approver's comment.
        let plan = json!({"name": XSS, "manager": "admin", "manager_identity_type": "system",
            "start_time": 0, "end_time": 0, "description": XSS,
            "approval": {"enabled": true, "type": "native", "description": XSS,
                "native_approval": {"timeout": 0, "needed_approvers": 1,
                    "approve_users": [{"user_id": uid, "user_name": XSS}]}},
            "jobs": [{"name": XSS, "type": "text", "spec": {"content": XSS}}]});
        let id = app.post("/openapi/release_plan/v1", plan).await.expect(200)["id"].as_str().unwrap().to_string();
        let path = format!("/ui/plans/{id}");
        let p = safe_page(&admin, &path, &[&esc]).await;
        for to in ["finish_planning", "wait_for_approval"] {
            let r = admin.post(&format!("{path}/status"), &csrf_of(&p), &[("status", to)]).await;
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        }
        let mallory = Visitor::sign_in(&app, &token).await;
        let p = safe_page(&mallory, &path, &[&esc, "Approve</button>"]).await;
        let r = mallory.post(&format!("{path}/approve"), &csrf_of(&p), &[("approve", "true"), ("comment", XSS)]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        safe_page(&admin, &path, &[&format!("<td data-label=\"Comment\">{esc}</td>")]).await;
        safe_page(&admin, "/ui/plans", &[&esc]).await;

        // A delivery version whose copy fails: labels, description, names and the error.
        let port = free_port();
        let reg = add_registry(&app, &format!("http://127.0.0.1:{port}"), "release").await;
        let v = json!({"project_key": "shop", "version_name": "v1", "source": "manual",
            "image_registry_id": reg, "desc": XSS, "labels": [XSS],
            "services": [{"service_name": "cart", "images": [{
                "container_name": XSS, "image_name": "cart",
                "source_image": format!("127.0.0.1:{port}/build/cart:1"), "source_image_tag": "1",
                "target_image": format!("127.0.0.1:{port}/release/cart:v1"), "target_image_tag": "v1",
                "push_image": true}]}]});
        let vid = app.call(Method::POST, "/openapi/delivery/releases/k8s", Some(&token), Some(v)).await
            .expect(200)["id"].as_str().unwrap().to_string();
        app.wait_for("the copy to fail", WAIT, || async {
            (app.get(&format!("/openapi/delivery/releases/{vid}")).await.body["status"] == "failed").then_some(())
        }).await;
        safe_page(&admin, &format!("/ui/delivery/{vid}"), &[&esc, "failed"]).await;
        safe_page(&admin, "/ui/delivery", &["v1"]).await;
        // The user's name in the header of their own pages.
        safe_page(&mallory, "/ui/delivery", &[&format!("<span title=\"signed in\">{esc}")]).await;

        // Pages without a session carry the headers too.
        let anon = no_redirects();
        for path in ["/ui/login?next=/ui/plans", "/ui/plans", "/ui/assets/app.js"] {
            let r = anon.get(app.url(path)).send().await.unwrap();
            assert_security_headers(r.headers(), path);
        }
        app.stop().await;
    }
}

/// POST a sign-in form as a browser at `origin` would, with extra headers.
async fn sign_in_from(app: &TestApp, origin: &str, extra: &[(&str, &str)], cookie: &str) -> Page {
    let mut req = no_redirects()
        .post(app.url("/ui/login"))
        .header("origin", origin);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    if !cookie.is_empty() {
        req = req.header("cookie", cookie);
    }
    page_of(
        req.form_body(&[("token", ADMIN_TOKEN), ("next", "/ui/delivery")])
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn sign_in_edges(kind: Kind) {
    let Some(app) = TestApp::start_with(kind, |c| {
        c.public_url = "https://zadig.example.com/".into();
    })
    .await
    else {
        return;
    };
    let anon = no_redirects();
    // A `next` that cannot be a `Location` (control characters) or could be read as another
    // URL is replaced by the plan list: a redirect, never a 500.
    for next in [
        "/ui/\r\nSet-Cookie: x=1",
        "/ui/\u{7f}",
        "/ui/\t/evil.example",
        "/ui/é",
        "https://evil.example/ui/",
    ] {
        let r = page_of(
            anon.post(app.url("/ui/login"))
                .form_body(&[("token", ADMIN_TOKEN), ("next", next)])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (r.status, r.location.as_str()),
            (StatusCode::SEE_OTHER, "/ui/plans"),
            "{next:?}: {}",
            r.text
        );
    }

    // Behind a proxy that sends its own Host: the public address, or X-Forwarded-Host, is ours.
    let r = sign_in_from(&app, "https://zadig.example.com", &[], "").await;
    assert_eq!(
        (r.status, r.location.as_str()),
        (StatusCode::SEE_OTHER, "/ui/delivery"),
        "{}",
        r.text
    );
    let r = sign_in_from(
        &app,
        "https://ci.internal:8443",
        &[("x-forwarded-host", "ci.internal:8443")],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let r = sign_in_from(&app, "https://evil.example", &[], "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.text.contains("public_url"), "{}", r.text);

    // Signing in again in the same browser ends its earlier session.
    let first = Visitor::sign_in(&app, ADMIN_TOKEN).await;
    let r = sign_in_from(&app, &app.base, &[], &first.cookie).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_ne!(r.set_cookie.split(';').next(), Some(first.cookie.as_str()));
    let old = first.get("/ui/plans").await;
    assert_eq!(
        old.status,
        StatusCode::SEE_OTHER,
        "the earlier session still works"
    );

    // Unknown pages and unreadable queries are error pages, with the headers.
    let admin = Visitor::sign_in(&app, ADMIN_TOKEN).await;
    for (path, status, needle) in [
        (
            "/ui/no/such/page",
            StatusCode::NOT_FOUND,
            "no dashboard page",
        ),
        ("/ui/plans?page=abc", StatusCode::BAD_REQUEST, "page"),
        ("/ui/workflows?page=-1", StatusCode::BAD_REQUEST, "page"),
    ] {
        let r = admin.fetch(path).await;
        assert_security_headers(r.headers(), path);
        let p = page_of(r).await;
        assert_eq!(p.status, status, "{path}: {}", p.text);
        assert!(
            p.content_type.starts_with("text/html") && p.text.contains(needle),
            "{path}: {}",
            p.text
        );
    }

    // The workflow list pages (25 a page) and keeps the project filter in its links.
    for i in 0..26 {
        app.post(
            "/api/aslan/workflow/v4",
            json!({"name": format!("wf-{i:02}"), "project": "big",
            "stages": [{"name": "s", "jobs": [shell_job("j", "true", 1)]}]}),
        )
        .await
        .expect(200);
    }
    let p = admin
        .page(
            "/ui/workflows?project=big",
            &["wf-00", "wf-24", "?page=2&amp;project=big"],
        )
        .await;
    assert!(!p.text.contains("wf-25"), "{}", p.text);
    let p = admin
        .page(
            "/ui/workflows?project=big&page=2",
            &["wf-25", "?page=1&amp;project=big"],
        )
        .await;
    assert!(!p.text.contains("wf-00"), "{}", p.text);
    app.stop().await;
}

kind_test!(sign_in_edges);
