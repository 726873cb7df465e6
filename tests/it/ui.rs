//! The dashboard's pages over HTTP, on both backends: sign-in and the session cookie, CSRF and
//! origin checks, and every page (status and key content) with the actions it offers, which
//! go through the same services and permission checks as the API.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_test;
use crate::delivery::add_registry;
use crate::delivery_registry::free_port;
use crate::harness::{ADMIN_TOKEN, TestApp};

const WAIT: Duration = Duration::from_secs(30);

/// A dashboard visitor: a client that does not follow redirects, and the session cookie.
pub struct Visitor {
    pub client: reqwest::Client,
    pub base: String,
    pub cookie: String,
}

/// A page: status, `Location`/`Set-Cookie` when present, and the body.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub location: String,
    pub set_cookie: String,
    pub content_type: String,
    pub text: String,
}

/// `application/x-www-form-urlencoded` bodies (reqwest is built without its `form` feature).
pub trait FormBody {
    fn form_body(self, fields: &[(&str, &str)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body(self, fields: &[(&str, &str)]) -> Self {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }
}

pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// A response header as text (empty when absent).
pub fn header_text(headers: &reqwest::header::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

pub async fn page_of(resp: reqwest::Response) -> Page {
    let h = |k: &str| header_text(resp.headers(), k);
    let (location, set_cookie, content_type) = (h("location"), h("set-cookie"), h("content-type"));
    Page {
        status: resp.status(),
        location,
        set_cookie,
        content_type,
        text: resp.text().await.expect("body"),
    }
}

/// The CSRF token in a page's forms.
pub fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF field in {html}"));
    let rest = &html[at + 19..];
    rest[..rest.find('"').expect("closing quote")].to_string()
}

impl Visitor {
    /// Sign in with `token`; panics unless it works.
    pub async fn sign_in(app: &TestApp, token: &str) -> Self {
        let client = no_redirects();
        let r = client
            .post(app.url("/ui/login"))
            .form_body(&[("token", token), ("next", "/ui/plans")])
            .send()
            .await
            .expect("sign in");
        let p = page_of(r).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.text);
        assert_eq!(p.location, "/ui/plans");
        let cookie = p.set_cookie.split(';').next().expect("cookie").to_string();
        assert!(cookie.starts_with("zadig_session="), "{}", p.set_cookie);
        Self {
            client,
            base: app.base.clone(),
            cookie,
        }
    }

    /// GET `path` with the session cookie: the response as it came.
    pub async fn fetch(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("get")
    }

    pub async fn get(&self, path: &str) -> Page {
        page_of(self.fetch(path).await).await
    }

    /// Get a page and assert 200 and that it mentions every needle.
    pub async fn page(&self, path: &str, needles: &[&str]) -> Page {
        let p = self.get(path).await;
        assert_eq!(p.status, StatusCode::OK, "{path}: {}", p.text);
        for n in needles {
            assert!(
                p.text.contains(n),
                "{path} does not mention {n:?}: {}",
                p.text
            );
        }
        p
    }

    /// Post a form as the browser would (same-origin `Origin`), with the page's CSRF token.
    pub async fn post(&self, path: &str, csrf: &str, fields: &[(&str, &str)]) -> Page {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf", csrf));
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("origin", &self.base)
            .form_body(&form)
            .send()
            .await
            .expect("post");
        page_of(r).await
    }
}

backend_test! {
    async fn ui_sign_in_session_and_csrf(app) {
        let anon = no_redirects();
        // `/` leads to the dashboard, which asks for a sign-in and comes back.
        let r = page_of(anon.get(app.url("/")).send().await.unwrap()).await;
        assert_eq!((r.status, r.location.as_str()), (StatusCode::SEE_OTHER, "/ui/"));
        let r = page_of(anon.get(app.url("/ui/plans?page=2")).send().await.unwrap()).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(r.location, "/ui/login?next=%2Fui%2Fplans%3Fpage%3D2");
        let r = page_of(anon.get(app.url("/ui/login?next=/ui/delivery")).send().await.unwrap()).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.text.contains("Sign in") && r.text.contains("value=\"/ui/delivery\""), "{}", r.text);
        // An off-site `next` is not followed.
        let r = page_of(anon.get(app.url("/ui/login?next=//evil.example/")).send().await.unwrap()).await;
        assert!(r.text.contains("value=\"/ui/plans\""), "{}", r.text);

        // A wrong token: 401 and the form again; an empty one: 400.
        let r = page_of(anon.post(app.url("/ui/login")).form_body(&[("token", "nope")]).send().await.unwrap()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.text.contains("not valid") && r.set_cookie.is_empty(), "{}", r.text);
        let r = page_of(anon.post(app.url("/ui/login")).form_body(&[("token", "")]).send().await.unwrap()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        // A sign-in posted from another site is refused.
        let r = page_of(anon.post(app.url("/ui/login")).header("origin", "https://evil.example")
            .form_body(&[("token", ADMIN_TOKEN)]).send().await.unwrap()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);

        // The cookie: HttpOnly, SameSite=Strict, expiring; Secure only over TLS (auto).
        let r = page_of(anon.post(app.url("/ui/login")).form_body(&[("token", ADMIN_TOKEN)]).send().await.unwrap()).await;
        let c = r.set_cookie.clone();
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Max-Age=28800") && c.contains("Path=/"), "{c}");
        assert!(!c.contains("Secure"), "{c}");
        let r = page_of(anon.post(app.url("/ui/login")).header("x-forwarded-proto", "https")
            .form_body(&[("token", ADMIN_TOKEN)]).send().await.unwrap()).await;
        assert!(r.set_cookie.ends_with("; Secure"), "{}", r.set_cookie);

        let admin = Visitor::sign_in(&app, ADMIN_TOKEN).await;
        let p = admin.page("/ui/plans", &["Release plans", "Sign out", "admin"]).await;
        let csrf = csrf_of(&p.text);
        // Not the API: the cookie does not authenticate /openapi routes.
        let r = anon.get(app.url("/openapi/users")).header("cookie", &admin.cookie).send().await.unwrap();
        assert_eq!(r.status(), 401);

        // Sign-out needs the CSRF token and a same-site origin.
        assert_eq!(admin.post("/ui/logout", "wrong", &[]).await.status, StatusCode::FORBIDDEN);
        let cross = admin.client.post(app.url("/ui/logout")).header("cookie", &admin.cookie)
            .header("origin", "https://evil.example").form_body(&[("csrf", csrf.as_str())]).send().await.unwrap();
        assert_eq!(cross.status(), 403);
        let cross = admin.client.post(app.url("/ui/logout")).header("cookie", &admin.cookie)
            .header("sec-fetch-site", "cross-site").form_body(&[("csrf", csrf.as_str())]).send().await.unwrap();
        assert_eq!(cross.status(), 403);
        let out = admin.post("/ui/logout", &csrf, &[]).await;
        assert_eq!((out.status, out.location.as_str()), (StatusCode::SEE_OTHER, "/ui/login"));
        assert!(out.set_cookie.contains("Max-Age=0"), "{}", out.set_cookie);
        assert_eq!(admin.get("/ui/plans").await.status, StatusCode::SEE_OTHER, "the session ended");

        // A session expires with `ui_session_secs`.
        let admin = Visitor::sign_in(&app, ADMIN_TOKEN).await;
        app.clock.advance(Duration::from_secs(28_801));
        let r = admin.get("/ui/workflows").await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert!(r.location.starts_with("/ui/login"), "{}", r.location);

        // Rotating the token ends the sessions signed in with it.
        let (uid, token) = app.create_user("rita", false).await;
        let rita = Visitor::sign_in(&app, &token).await;
        rita.page("/ui/delivery", &["Delivery versions", "rita"]).await;
        app.post(&format!("/openapi/users/{uid}/token"), json!({})).await.expect(200);
        assert_eq!(rita.get("/ui/delivery").await.status, StatusCode::SEE_OTHER);

        // Assets are embedded; unknown pages are honest 404s.
        let css = page_of(anon.get(app.url("/ui/assets/app.css")).send().await.unwrap()).await;
        assert!(css.status == 200 && css.content_type.starts_with("text/css") && css.text.contains(".badge"));
        let js = page_of(anon.get(app.url("/ui/assets/app.js")).send().await.unwrap()).await;
        assert!(js.status == 200 && js.content_type.starts_with("text/javascript") && js.text.contains("EventSource"));
        app.stop().await;
    }
}

const PLANS: &str = "/openapi/release_plan/v1";

backend_test! {
    async fn ui_release_plan_pages_and_actions(app) {
        let (rita_uid, rita_token) = app.create_user("rita", false).await;
        let (_, olga_token) = app.create_user("olga", false).await;
        let body = json!({
            "name": "Spring <release>", "manager": "admin", "manager_identity_type": "system",
            "start_time": 0, "end_time": 0, "description": "the spring train",
            "approval": {"enabled": true, "type": "native", "description": "ship it?",
                "native_approval": {"timeout": 0, "needed_approvers": 1,
                    "approve_users": [{"user_id": rita_uid, "user_name": "rita"}]}},
            "jobs": [{"name": "announce", "type": "text", "spec": {"content": "tell the team"}}],
        });
        let id = app.post(PLANS, body).await.expect(200)["id"].as_str().unwrap().to_string();

        let admin = Visitor::sign_in(&app, ADMIN_TOKEN).await;
        // The list: name (escaped), status, manager.
        let list = admin.page("/ui/plans", &["Spring &lt;release&gt;", "planning", "admin", &format!("/ui/plans/{id}")]).await;
        assert!(!list.text.contains("<release>"), "names are escaped");

        // The detail: jobs, approval, timeline; the manager sees the status buttons.
        let p = admin.page(&format!("/ui/plans/{id}"), &["announce", "tell the team", "ship it?", "rita", "Timeline", "created", "data-action=\"status-finish_planning\""]).await;
        let csrf = csrf_of(&p.text);
        let r = admin.post(&format!("/ui/plans/{id}/status"), &csrf, &[("status", "finish_planning")]).await;
        assert_eq!((r.status, r.location.clone()), (StatusCode::SEE_OTHER, format!("/ui/plans/{id}")), "{}", r.text);
        let r = admin.post(&format!("/ui/plans/{id}/status"), &csrf, &[("status", "wait_for_approval")]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let p = admin.page(&format!("/ui/plans/{id}"), &["wait for approval", "planning", "→"]).await;
        assert!(!p.text.contains("Approve</button>"), "admin is not an approver of this plan");

        // A user who is neither manager nor approver sees no buttons, and a posted form is 403.
        let olga = Visitor::sign_in(&app, &olga_token).await;
        let p = olga.page(&format!("/ui/plans/{id}"), &["wait for approval"]).await;
        assert!(!p.text.contains("data-action=\"status-") && !p.text.contains("Approve</button>"), "{}", p.text);
        let csrf_o = csrf_of(&p.text);
        let r = olga.post(&format!("/ui/plans/{id}/status"), &csrf_o, &[("status", "cancel")]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert!(r.text.contains("release manager"), "{}", r.text);
        let r = olga.post(&format!("/ui/plans/{id}/approve"), &csrf_o, &[("approve", "true")]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        // A stale CSRF token is refused before anything happens.
        let r = olga.post(&format!("/ui/plans/{id}/approve"), &csrf, &[("approve", "true")]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);

        // The approver approves with the button; the plan can then execute.
        let rita = Visitor::sign_in(&app, &rita_token).await;
        let p = rita.page(&format!("/ui/plans/{id}"), &["Approve</button>", "Reject</button>"]).await;
        let r = rita.post(&format!("/ui/plans/{id}/approve"), &csrf_of(&p.text), &[("approve", "true"), ("comment", "LGTM")]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let plan = app.get(&format!("{PLANS}/{id}")).await.expect(200).clone();
        assert_eq!(plan["approval"]["status"], "passed", "{plan}");
        // Voting twice is a conflict, answered as a page.
        let r = rita.post(&format!("/ui/plans/{id}/approve"), &csrf_of(&p.text), &[("approve", "true")]).await;
        assert_eq!(r.status, StatusCode::CONFLICT);

        // The passed approval moved the plan on to executing.
        assert_eq!(plan["status"], "executing", "{plan}");
        let p = admin.page(&format!("/ui/plans/{id}"), &["LGTM", "data-action=\"execute\"", "data-action=\"skip\""]).await;
        let job = app.get(&format!("{PLANS}/{id}")).await.body["jobs"][0]["id"].as_str().unwrap().to_string();
        // Not the owner: no job buttons, and the form is refused.
        let p_o = olga.page(&format!("/ui/plans/{id}"), &["announce"]).await;
        assert!(!p_o.text.contains("data-action=\"execute\""));
        let r = olga.post(&format!("/ui/plans/{id}/jobs/{job}/execute"), &csrf_o, &[("remark", "x")]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        let r = admin.post(&format!("/ui/plans/{id}/jobs/{job}/execute"), &csrf_of(&p.text), &[("remark", "told them")]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let plan = app.get(&format!("{PLANS}/{id}")).await.expect(200).clone();
        assert_eq!(plan["jobs"][0]["status"], "done", "{plan}");
        assert_eq!(plan["status"], "success", "{plan}");
        admin.page(&format!("/ui/plans/{id}"), &["told them", "success", "executed"]).await;

        // Unknown or malformed plans.
        assert_eq!(admin.get("/ui/plans/0123456789abcdef01234567").await.status, StatusCode::NOT_FOUND);
        assert_eq!(admin.get("/ui/plans/nope").await.status, StatusCode::BAD_REQUEST);
        app.stop().await;
    }
}

/// A freestyle job `name` running `script` as one shell step of at most `timeout` minutes.
pub fn shell_job(name: &str, script: &str, timeout: i64) -> Value {
    json!({"name": name, "type": "freestyle",
        "spec": {"properties": {"timeout": timeout}, "steps": [{"name": "shell", "type": "shell", "spec": {"script": script}}]}})
}

/// Stage `name` running `jobs` one at a time behind the admin's native approval
/// (`description`, at most `timeout` minutes).
pub fn approved_stage(name: &str, description: &str, timeout: i64, jobs: Vec<Value>) -> Value {
    json!({"name": name, "parallel": false,
        "approval": {"enabled": true, "type": "native", "description": description,
            "native_approval": {"timeout": timeout, "needed_approvers": 1,
                "approve_users": [{"user_name": "admin", "user_id": "admin"}]}},
        "jobs": jobs})
}

backend_test! {
    async fn ui_workflow_and_task_pages(app) {
        app.post("/api/aslan/workflow/v4", json!({
            "name": "ui-flow", "display_name": "UI flow", "project": "demo", "description": "for the dashboard",
            "concurrency_limit": -1,
            "stages": [
                {"name": "build", "parallel": true, "jobs": [
                    shell_job("build-a", "echo building-a", 10), shell_job("build-b", "echo building-b", 10)]},
                approved_stage("deploy", "deploy now?", 5, vec![shell_job("ship", "echo shipped-it", 10)]),
            ]})).await.expect(200);
        let inputs: Vec<Value> = ["build-a", "build-b", "ship"].iter()
            .map(|j| json!({"job_name": j, "job_type": "freestyle", "parameters": {}})).collect();
        let task_id = app.post("/openapi/workflows/custom/task", json!({
            "project_key": "demo", "workflow_key": "ui-flow", "parameters": [],
            "inputs": inputs,
        })).await.expect(200)["task_id"].as_i64().unwrap();
        let detail = format!("/openapi/workflows/custom/task?taskId={task_id}&workflowKey=ui-flow");
        app.wait_for("wait_for_approval", WAIT, || async {
            (app.get(&detail).await.body["status"] == "wait_for_approval").then_some(())
        }).await;

        let admin = Visitor::sign_in(&app, ADMIN_TOKEN).await;
        admin.page("/ui/workflows", &["UI flow", "demo", "/ui/workflows/ui-flow"]).await;
        admin.page("/ui/workflows?project=other", &["No workflows"]).await;
        admin.page("/ui/workflows/ui-flow", &["Tasks", &format!("#{task_id}"), "wait for approval"]).await;
        assert_eq!(admin.get("/ui/workflows/missing").await.status, StatusCode::NOT_FOUND);

        let url = format!("/ui/workflows/ui-flow/tasks/{task_id}");
        let p = admin.page(&format!("{url}?job=build-b"), &[
            "1. build", "2. deploy", "jobs parallel", "jobs serial", "build-a", "build-b", "ship",
            "deploy now?", "data-action=\"approve-stage\"", "data-action=\"cancel\"", "Log of build-b", "building-b",
        ]).await;
        assert!(!p.text.contains("data-action=\"retry\""), "a waiting task cannot be retried");
        // The live fragment and the log routes.
        let live = admin.page(&format!("{url}/live?job=build-b"), &["2. deploy", "wait for approval"]).await;
        assert!(!live.text.contains("<html"), "a fragment");
        let log = admin.page(&format!("{url}/jobs/build-a/log"), &["building-a"]).await;
        assert!(log.content_type.starts_with("text/plain"));
        let ev = admin.page(&format!("{url}/jobs/build-a/events"), &["event:message\ndata:", "building-a", "event:end"]).await;
        assert!(ev.content_type.starts_with("text/event-stream"));

        // A user who is not an approver sees no approve button and gets 403 posting it anyway.
        let (_, token) = app.create_user("nora", false).await;
        let nora = Visitor::sign_in(&app, &token).await;
        let p_n = nora.page(&url, &["deploy now?"]).await;
        assert!(!p_n.text.contains("data-action=\"approve-stage\""));
        let r = nora.post(&format!("{url}/approve"), &csrf_of(&p_n.text), &[("stage", "deploy"), ("approve", "true")]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);

        // Approve with the button: the task goes on and passes.
        let r = admin.post(&format!("{url}/approve"), &csrf_of(&p.text), &[("stage", "deploy"), ("approve", "true"), ("comment", "go")]).await;
        assert_eq!((r.status, r.location.clone()), (StatusCode::SEE_OTHER, url.clone()), "{}", r.text);
        app.wait_for("passed", WAIT, || async {
            (app.get(&detail).await.body["status"] == "passed").then_some(())
        }).await;
        let p = admin.page(&format!("{url}?job=ship"), &["passed", "Log of ship", "shipped-it", "ended", "“go”"]).await;
        assert!(!p.text.contains("data-events="), "an ended job's log is not followed");
        assert!(!p.text.contains("data-action=\"cancel\""));
        // Cancelling a passed task: the service's answer, as a page.
        let r = admin.post(&format!("{url}/cancel"), &csrf_of(&p.text), &[]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert!(r.text.contains("is passed, cannot cancel"), "{}", r.text);
        assert_eq!(admin.get("/ui/workflows/ui-flow/tasks/999").await.status, StatusCode::NOT_FOUND);
        assert_eq!(admin.get("/ui/workflows/ui-flow/tasks/x").await.status, StatusCode::BAD_REQUEST);
        app.stop().await;
    }
}

backend_test! {
    async fn ui_delivery_pages_and_retry(app) {
        let port = free_port();
        let target = add_registry(&app, &format!("http://127.0.0.1:{port}"), "release").await;
        let body = json!({"project_key": "shop", "version_name": "v1.2.3", "source": "manual",
            "image_registry_id": target, "desc": "spring release",
            "services": [{"service_name": "cart", "images": [{
                "container_name": "cart", "image_name": "cart",
                "source_image": format!("127.0.0.1:{port}/build/cart:1"), "source_image_tag": "1",
                "target_image": format!("127.0.0.1:{port}/release/cart:v1"), "target_image_tag": "v1",
                "push_image": true}]}]});
        let id = app.post("/openapi/delivery/releases/k8s", body).await.expect(200)["id"].as_str().unwrap().to_string();
        app.wait_for("failed", WAIT, || async {
            let v = app.get(&format!("/openapi/delivery/releases/{id}")).await;
            (v.body["status"] == "failed").then_some(())
        }).await;

        let (_, token) = app.create_user("dora", false).await;
        let dora = Visitor::sign_in(&app, &token).await;
        dora.page("/ui/delivery", &["v1.2.3", "shop", "failed", "(1 failed)", &format!("/ui/delivery/{id}")]).await;
        dora.page("/ui/delivery?project=other", &["No delivery versions"]).await;
        let p = dora.page(&format!("/ui/delivery/{id}"), &["v1.2.3", "spring release", "cart", "release/cart:v1", "failed", &format!("127.0.0.1:{port}"), "data-action=\"retry-version\""]).await;
        let r = dora.post(&format!("/ui/delivery/{id}/retry"), &csrf_of(&p.text), &[]).await;
        assert_eq!((r.status, r.location.clone()), (StatusCode::SEE_OTHER, format!("/ui/delivery/{id}")), "{}", r.text);
        let v = app.get(&format!("/openapi/delivery/releases/{id}")).await.expect(200).clone();
        assert!(["retrying", "failed"].contains(&v["status"].as_str().unwrap()), "{v}");
        assert_eq!(dora.get("/ui/delivery/0123456789abcdef01234567").await.status, StatusCode::NOT_FOUND);
        // Anonymous form posts go to the sign-in page and change nothing.
        let anon = no_redirects().request(Method::POST, app.url(&format!("/ui/delivery/{id}/retry"))).send().await.unwrap();
        assert_eq!(anon.status(), 303);
        app.stop().await;
    }
}
