//! The served OpenAPI document is locked by a snapshot: a route added or changed shows up in
//! review. Update with `INSTA_UPDATE=always cargo test openapi` and read the diff.
//!
//! It is also checked by `openapi-spec-validator` (PyPI) when that is installed: `.ci/run`
//! installs it and sets `ZADIG_TEST_OPENAPI_VALIDATOR` to its path, which makes the check
//! required; elsewhere the test looks for `openapi-spec-validator` on the PATH (or in
//! `.venv/bin`) and skips with a message when there is none.

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

/// The validator to run: `ZADIG_TEST_OPENAPI_VALIDATOR` (required when set), else one found on
/// the PATH or in the worktree's `.venv`.
fn validator() -> Option<std::path::PathBuf> {
    if let Ok(v) = std::env::var("ZADIG_TEST_OPENAPI_VALIDATOR")
        && !v.is_empty()
    {
        return Some(v.into());
    }
    let local =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/openapi-spec-validator");
    if local.exists() {
        return Some(local);
    }
    std::process::Command::new("openapi-spec-validator")
        .arg("--help")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "openapi-spec-validator".into())
}

#[tokio::test]
async fn spec_is_valid_openapi() {
    let app = TestApp::start(Kind::Embedded)
        .await
        .expect("embedded always runs");
    let spec = app.get("/openapi.json").await.expect(200).clone();
    app.stop().await;

    // What the validator does not check: every response described, every protected operation
    // documents 401 with the error body, the open routes need no token.
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            for (status, resp) in op["responses"].as_object().expect("responses") {
                assert!(
                    resp["description"].as_str().is_some_and(|d| !d.is_empty()),
                    "{method} {path} {status} has no description"
                );
            }
            if path == "/healthz" || path == "/metrics" {
                assert_eq!(op["security"], serde_json::json!([]), "{path} is open");
            } else {
                assert_eq!(
                    op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} documents 401"
                );
            }
        }
    }

    let Some(validator) = validator() else {
        eprintln!(
            "skipped: openapi-spec-validator is not installed (pip install openapi-spec-validator)"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&spec).expect("json")).expect("write");
    let out = std::process::Command::new(&validator)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", validator.display()));
    assert!(
        out.status.success(),
        "openapi-spec-validator rejects /openapi.json:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
