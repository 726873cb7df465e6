//! The served OpenAPI document is locked by a snapshot: a route added or changed shows up in
//! review. Update with `INSTA_UPDATE=always cargo test openapi` and read the diff.

use crate::harness::{Kind, TestApp};

#[tokio::test]
async fn spec_snapshot() {
    let app = TestApp::start(Kind::Embedded)
        .await
        .expect("embedded always runs");
    let r = app.get("/openapi.json").await;
    let spec = r.expect(200).clone();
    assert_eq!(spec["openapi"], "3.1.0");
    insta::assert_json_snapshot!("openapi", spec);
    let ui = app
        .client
        .get(app.url("/swagger-ui/"))
        .send()
        .await
        .expect("swagger");
    assert_eq!(ui.status(), 200);
    app.stop().await;
}
