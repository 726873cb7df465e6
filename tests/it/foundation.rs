//! Foundation: auth, users, the error model, service routes.

use reqwest::Method;
use serde_json::json;

use crate::backend_test;
use crate::harness::{ADMIN_TOKEN, Kind, TestApp};

backend_test! {
    async fn auth_is_required(app) {
        app.call(Method::GET, "/openapi/users", None, None).await.expect_error(401, "token");
        app.call(Method::GET, "/openapi/users", Some("wrong"), None).await.expect_error(401, "invalid");
        // ?token= works as well as the header.
        let r = app.client.get(app.url(&format!("/openapi/users?token={ADMIN_TOKEN}"))).send().await.unwrap();
        assert_eq!(r.status(), 200);
        // A malformed header (not two words) is 401.
        let r = app.client.get(app.url("/openapi/users")).header("Authorization", ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 401);
        app.stop().await;
    }
}

backend_test! {
    async fn users_lifecycle(app) {
        let r = app.post("/openapi/users", json!({"account": "alice"})).await;
        let b = r.expect(200).clone();
        assert_eq!(b["account"], "alice");
        assert_eq!(b["name"], "alice");
        assert_eq!(b["identity_type"], "system");
        assert_eq!(b["is_admin"], false);
        let token = b["api_token"].as_str().unwrap().to_string();
        assert!(token.len() >= 64);
        let uid = b["uid"].as_str().unwrap().to_string();

        app.post("/openapi/users", json!({"account": "alice"})).await.expect_error(409, "alice");
        app.post("/openapi/users", json!({"account": "alice", "identity_type": "ldap"})).await.expect(200);
        app.post("/openapi/users", json!({"name": "x"})).await.expect_error(400, "account");
        app.post("/openapi/users", json!({"account": "a".repeat(300)})).await.expect_error(400, "account");

        // The user's own token works; a non-admin may not create users.
        let me = app.call(Method::GET, &format!("/openapi/users/{uid}"), Some(&token), None).await;
        assert_eq!(me.expect(200)["account"], "alice");
        assert!(me.body.get("api_token").is_none() && me.body.get("token_hash").is_none());
        app.call(Method::POST, "/openapi/users", Some(&token), Some(json!({"account": "x"}))).await.expect_error(403, "admin");

        let list = app.get("/openapi/users?pageNum=1&pageSize=2").await;
        assert_eq!(list.expect(200)["total"], 3);
        assert_eq!(list.body["users"].as_array().unwrap().len(), 2);
        app.expect_paging_errors("/openapi/users").await;
        app.get("/openapi/users/nope").await.expect_error(404, "nope");

        // Rotation: the old token stops working at once; a non-admin cannot rotate others'.
        let (bob_uid, bob_token) = app.create_user("bob", false).await;
        app.call(Method::POST, &format!("/openapi/users/{bob_uid}/token"), Some(&token), None).await.expect_error(403, "alice");
        let rotated = app.call(Method::POST, &format!("/openapi/users/{uid}/token"), Some(&token), None).await;
        let new_token = rotated.expect(200)["api_token"].as_str().unwrap().to_string();
        app.call(Method::GET, "/openapi/users", Some(&token), None).await.expect_error(401, "invalid");
        app.call(Method::GET, "/openapi/users", Some(&new_token), None).await.expect(200);
        app.call(Method::POST, &format!("/openapi/users/{bob_uid}/token"), Some(ADMIN_TOKEN), None).await.expect(200);
        app.call(Method::GET, "/openapi/users", Some(&bob_token), None).await.expect_error(401, "invalid");

        // Deleting a user revokes their token; only admins delete.
        app.call(Method::DELETE, &format!("/openapi/users/{bob_uid}"), Some(&new_token), None).await.expect_error(403, "admin");
        app.delete(&format!("/openapi/users/{uid}")).await.expect(200);
        app.call(Method::GET, "/openapi/users", Some(&new_token), None).await.expect_error(401, "invalid");
        app.delete(&format!("/openapi/users/{uid}")).await.expect_error(404, &uid);
        app.stop().await;
    }
}

backend_test! {
    async fn error_model(app) {
        app.raw(Method::POST, "/openapi/users", "{bad").await.expect_error(400, "JSON");
        app.raw(Method::POST, "/openapi/users", "").await.expect_error(400, "empty");
        for not_an_object in ["[]", "null", "\"x\"", "5"] {
            app.raw(Method::PUT, "/openapi/release_plan/v1/hook/setting", not_an_object).await.expect_error(400, "expected a JSON object");
        }
        app.raw(Method::POST, "/openapi/users", r#"{"account": 5}"#).await.expect_error(400, "account");
        app.raw(Method::POST, "/openapi/users", r#"{"account": "z", "is_admin": "yes"}"#).await.expect_error(400, "is_admin");
        app.get("/openapi/nothing-here").await.expect_error(404, "/openapi/nothing-here");
        app.call(Method::PUT, "/openapi/users", Some(ADMIN_TOKEN), None).await.expect_error(405, "PUT");
        app.stop().await;
    }
}

backend_test! {
    async fn service_routes(app) {
        let h = app.call(Method::GET, "/healthz", None, None).await;
        assert_eq!(h.expect(200)["status"], "ok");
        app.get("/openapi/users").await.expect(200);
        let m = app.call(Method::GET, "/metrics", None, None).await;
        m.expect(200);
        assert!(m.text.contains("http_requests_total"), "{}", m.text);
        assert!(m.text.contains("route=\"/openapi/users\""), "{}", m.text);
        assert!(m.text.contains("http_request_duration_seconds_bucket"), "{}", m.text);
        let spec = app.call(Method::GET, "/openapi.json", None, None).await;
        assert!(spec.expect(200)["paths"]["/openapi/users"].is_object());
        assert!(h.headers.contains_key("x-request-id"));
        app.stop().await;
    }
}

backend_test! {
    async fn admin_bootstrap_is_idempotent_and_follows_the_env(app) {
        let app = app.restart().await;
        let list = app.get("/openapi/users").await;
        assert_eq!(list.expect(200)["total"], 1, "a restart does not add a second admin");
        app.stop().await;
    }
}

#[tokio::test]
async fn body_limit_is_413_in_error_json() {
    let app = TestApp::start_with(Kind::Embedded, |c| c.body_limit = 1024)
        .await
        .unwrap();
    let big = json!({"account": "x".repeat(4096)});
    app.post("/openapi/users", big)
        .await
        .expect_error(413, "body_limit");
    app.stop().await;
}

#[tokio::test]
async fn changing_the_admin_token_replaces_it() {
    let dir_app = TestApp::start(Kind::Embedded).await.unwrap();
    let dir = dir_app.config.data_dir.clone();
    dir_app.stop().await;
    let app = TestApp::start_with(Kind::Embedded, |c| {
        c.data_dir = dir.clone();
        c.admin_token = "another-admin-token-abcdefabcdefabcdef".into();
    })
    .await
    .unwrap();
    app.call(Method::GET, "/openapi/users", Some(ADMIN_TOKEN), None)
        .await
        .expect_error(401, "invalid");
    let r = app
        .call(
            Method::GET,
            "/openapi/users",
            Some("another-admin-token-abcdefabcdefabcdef"),
            None,
        )
        .await;
    assert_eq!(r.expect(200)["total"], 1);
    app.stop().await;
}

#[tokio::test]
async fn storage_down_is_503() {
    // A MongoDB backend whose server goes away: simulate with an embedded store whose file
    // is replaced by a directory is not portable; instead point MongoDB at a closed port
    // after start is impossible (start pings). So check the 503 shape through a backend
    // that fails its ping.
    use std::sync::Arc;
    use zadig_server::store::{Backend, Collection, IndexSpec, StoreError, StoreResult};
    struct Down(Arc<dyn Backend>);
    #[async_trait::async_trait]
    impl Backend for Down {
        fn collection(&self, name: &str) -> Arc<dyn Collection> {
            self.0.collection(name)
        }
        async fn ping(&self) -> StoreResult<()> {
            Err(StoreError::Backend("connection refused".into()))
        }
        async fn migrate(&self, i: &[IndexSpec]) -> StoreResult<()> {
            self.0.migrate(i).await
        }
        fn kind(&self) -> &'static str {
            "embedded"
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let inner = zadig_server::store::embedded::SqliteBackend::open(&dir.path().join("x.db"))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut cfg = zadig_server::config::Config::defaults();
    cfg.data_dir = dir.path().to_path_buf();
    let server = zadig_server::start(
        cfg,
        Arc::new(Down(Arc::new(inner))),
        Arc::new(zadig_server::clock::SystemClock),
        listener,
    )
    .await
    .unwrap();
    let r = crate::harness::client()
        .get(format!("http://{}/healthz", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["type"], "error");
    server.shutdown().await;
}
