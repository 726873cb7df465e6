//! The dashboard in a real headless Chromium (Debian's `chromium`), driven over the Chrome
//! DevTools Protocol by `ui_browser.py` (standard-library Python): sign in; create a plan
//! through the API and see it in the list; open a task whose job prints lines slowly and see
//! lines appear before the job ends; approve a waiting stage with the button and see the task
//! go on; drop the connection under a following log and see it go on with every line once;
//! markup in names, descriptions and log lines shows as text and never runs, and no page needs
//! anything its Content-Security-Policy blocks; a user without rights does not see the execute
//! button and gets 403 posting the form anyway; sign out.
//!
//! Skipped with a message when no Chromium is installed, unless
//! `ZADIG_TEST_REQUIRE_CHROMIUM=1` (as `.ci/run` sets) makes that a failure. With
//! `ZADIG_UI_SCREENSHOTS=<dir>` the script saves its screenshots there (docs/ui/ holds the
//! committed ones).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::harness::{ADMIN_TOKEN, Kind, TestApp};
use crate::kind_test;
use crate::ui::{approved_stage, shell_job};

fn chromium() -> Option<PathBuf> {
    let candidates = [
        std::env::var("CHROMIUM").unwrap_or_default(),
        "/usr/bin/chromium".into(),
        "/usr/bin/chromium-browser".into(),
        "/usr/bin/google-chrome".into(),
    ];
    candidates
        .into_iter()
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

async fn browser_flow(kind: Kind) {
    let Some(chromium) = chromium() else {
        if std::env::var("ZADIG_TEST_REQUIRE_CHROMIUM").as_deref() == Ok("1") {
            panic!("ZADIG_TEST_REQUIRE_CHROMIUM=1 but no chromium is installed");
        }
        eprintln!("skipped: no chromium (install Debian's `chromium` to run the browser test)");
        return;
    };
    let Some(app) = TestApp::start(kind).await else {
        return;
    };
    let (_, user_token) = app.create_user("viewer", false).await;
    // `slow` prints twelve lines half a second apart; the second stage waits for approval.
    app.post("/api/aslan/workflow/v4", json!({
        "name": "spring-train", "display_name": "Spring train", "project": "demo",
        "description": "build, approve, ship", "concurrency_limit": -1,
        "stages": [
            {"name": "build", "parallel": true, "jobs": [
                shell_job("slow", "for i in $(seq 1 12); do echo \"line $i: compiling module $i\"; sleep 0.5; done", 60),
                shell_job("lint", "echo 'lint: 0 warnings'", 60)]},
            approved_stage("release", "Ship to production?", 10, vec![shell_job("ship", "echo 'shipped v1.4.0'", 60)]),
        ]})).await.expect(200);
    app.post(
        "/api/aslan/workflow/v4",
        json!({
        "name": "ticker", "project": "demo", "concurrency_limit": -1,
        "stages": [{"name": "s", "jobs": [shell_job("tick",
            "for i in $(seq 1 40); do echo \"tick $i\"; sleep 0.25; done", 10)]}]}),
    )
    .await
    .expect(200);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/ui_browser.py");
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(&script)
        .env("ZADIG_UI_BASE", &app.base)
        .env("ZADIG_UI_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("ZADIG_UI_USER_TOKEN", &user_token)
        .env("ZADIG_UI_WORKFLOW", "spring-train")
        .env("ZADIG_UI_TICKER", "ticker")
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .expect("the browser script finished within 240 s")
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser script failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("all checks passed"), "{stdout}\n{stderr}");

    // What the browser did went through the services: the task passed with the admin's vote.
    let d = app
        .get("/openapi/workflows/custom/task?taskId=1&workflowKey=spring-train")
        .await
        .expect(200)
        .clone();
    assert_eq!(d["status"], "passed", "{d}");
    assert_eq!(
        d["stages"][1]["approval"]["approve_users"][0]["comment"], "Looks good",
        "{d}"
    );
    app.stop().await;
}

kind_test!(browser_flow);
