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
    let mut cmd = std::process::Command::new(&validator);
    succeeds(
        cmd.arg(&file),
        "openapi-spec-validator rejects /openapi.json",
    );
}

/// Run `cmd`; unless it exits 0, fail with `what` and its output.
fn succeeds(cmd: &mut std::process::Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
    assert!(
        out.status.success(),
        "{what}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Release-plan details as the server renders them (from the stored document) match the
/// `ReleasePlan` schema the document gives the detail route: a plan with a native approval
/// that finished planning, and one executing with a job done. Checked with the `jsonschema` package
/// of the validator's Python environment (skipped, as above, when there is none).
#[tokio::test]
async fn release_plan_details_match_their_schema() {
    use crate::harness::ADMIN_TOKEN;
    use crate::release_plan::{
        create_with_text_jobs, detail, executing_plan, job_call, job_ids, seed_create_body,
        set_status, simple_body,
    };

    let Some(validator) = validator() else {
        eprintln!("skipped: openapi-spec-validator (and its Python) is not installed");
        return;
    };
    // The validator's venv has `jsonschema` (a dependency of openapi-spec-validator).
    let python = validator.with_file_name("python");
    let python = if python.exists() {
        python
    } else {
        "python3".into()
    };

    let app = TestApp::start(Kind::Embedded)
        .await
        .expect("embedded always runs");
    let spec = app.get("/openapi.json").await.expect(200).clone();
    let waiting = create_with_text_jobs(&app, seed_create_body(), 2).await;
    set_status(&app, &waiting, "finish_planning")
        .await
        .expect(200);
    let running = executing_plan(&app, simple_body("running", "admin"), 2).await;
    let first = job_ids(&detail(&app, &running).await)[0].clone();
    job_call(&app, ADMIN_TOKEN, &running, "execute", &first, "text")
        .await
        .expect(200);
    let details = vec![detail(&app, &waiting).await, detail(&app, &running).await];
    app.stop().await;
    assert_eq!(details[0]["status"], "finish_planning");
    assert!(details[0]["approval"]["native_approval"].is_object());
    assert_eq!(details[1]["jobs"][0]["status"], "done");

    let dir = tempfile::tempdir().expect("tempdir");
    let (spec_file, docs_file) = (dir.path().join("spec.json"), dir.path().join("docs.json"));
    std::fs::write(&spec_file, serde_json::to_vec(&spec).expect("json")).expect("write");
    std::fs::write(&docs_file, serde_json::to_vec(&details).expect("json")).expect("write");
    let check = r##"
import json, sys
from jsonschema import Draft202012Validator
spec, docs = (json.load(open(p)) for p in sys.argv[1:3])
v = Draft202012Validator({"$ref": "#/components/schemas/ReleasePlan", "components": spec["components"]})
errors = [f"detail {i} at {e.json_path}: {e.message}" for i, d in enumerate(docs) for e in v.iter_errors(d)]
print("\n".join(errors))
sys.exit(1 if errors else 0)
"##;
    let mut cmd = std::process::Command::new(&python);
    cmd.args(["-c", check]).arg(&spec_file).arg(&docs_file);
    succeeds(&mut cmd, "a release-plan detail does not match its schema");
}

/// utoipa names a component schema after its Rust type and keeps one schema per name, so two
/// `ToSchema` types of one name leave one of them documented with the other's schema (audit:
/// S3 answered with E9's `ServiceDetail`). Every schema name in `src/` is unique: a type
/// whose name is taken gets `#[schema(as = …)]`.
#[test]
fn schema_names_are_unique() {
    let mut seen: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut stack = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read source");
                for (name, line) in schema_names(&text) {
                    seen.entry(name)
                        .or_default()
                        .push(format!("{}:{line}", path.display()));
                }
            }
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, at)| at.len() > 1).collect();
    assert!(twice.is_empty(), "schema names defined twice: {twice:#?}");
    assert!(
        seen.len() > 100,
        "the scan found only {} schemas",
        seen.len()
    );
}

/// The schema names a source file declares, with their lines: a `ToSchema` derive's type (or
/// its `#[schema(as = …)]`), and `wire_enum!`'s `enum X as "Name"`.
fn schema_names(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let (mut derive, mut alias) = (false, None);
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        let words: Vec<&str> = l
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '"'))
            .filter(|w| !w.is_empty())
            .collect();
        if l.starts_with("#[derive") && l.contains("ToSchema") {
            (derive, alias) = (true, None);
        } else if derive && l.starts_with("#[schema(as") {
            alias = words.last().map(|w| w.to_string());
        } else if let Some(at) = words.iter().position(|w| *w == "struct" || *w == "enum") {
            if let Some(quoted) = words
                .get(at + 3)
                .filter(|_| words.get(at + 2) == Some(&"as"))
            {
                out.push((quoted.trim_matches('"').to_string(), i + 1));
            } else if derive && let Some(name) = words.get(at + 1) {
                out.push((alias.take().unwrap_or_else(|| name.to_string()), i + 1));
            }
            derive = false;
        }
    }
    out
}
