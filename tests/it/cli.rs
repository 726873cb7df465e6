//! The `zadig-server` binary: config errors name the key, `user create` prints a working token,
//! jobs run with the default relative data dir, SIGTERM shuts down gracefully, the admin token
//! is erased from the environment block the server started with.

use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_zadig-server");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `zadig-server serve` in `dir` on a free port with `env` set, its logs (stderr) into
/// `logs`; the child and the port, once `token` is answered with `GET /openapi/users`'s status
/// (asserted to be 200, `what`).
async fn serve(
    dir: &std::path::Path,
    env: &[(&str, &str)],
    token: &str,
    what: &str,
    logs: Stdio,
) -> (tokio::process::Child, u16) {
    let port = free_port();
    let child = tokio::process::Command::new(BIN)
        .arg("serve")
        .current_dir(dir)
        .env("ZADIG_LISTEN", format!("127.0.0.1:{port}"))
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(logs)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn server");
    let client = crate::harness::client();
    let url = format!("http://127.0.0.1:{port}/openapi/users");
    let mut status = None;
    for _ in 0..200 {
        if let Ok(r) = client.get(&url).bearer_auth(token).send().await {
            status = Some(r.status().as_u16());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, Some(200), "{what}");
    (child, port)
}

#[test]
fn a_bad_config_value_stops_the_server_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (key, value, needle) in [
        ("ZADIG_LISTEN", "not-an-address", "listen"),
        ("ZADIG_STORAGE", "postgres", "storage"),
        ("ZADIG_BODY_LIMIT", "-5", "body_limit"),
        ("ZADIG_LOG_FORMAT", "xml", "log_format"),
        ("ZADIG_LOG", "zadig_server=loud", "key log"),
        ("ZADIG_ROLE", "scheduler", "role"),
        ("ZADIG_ROLE", "api", "key role"),
    ] {
        let out = Command::new(BIN)
            .arg("serve")
            .env(key, value)
            .env("ZADIG_DATA_DIR", dir.path())
            .output()
            .expect("run binary");
        assert!(
            !out.status.success(),
            "{key}={value} should stop the server"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(needle),
            "{key}: stderr {err:?} does not name {needle}"
        );
    }
}

/// The admin token given in the environment works, and is gone from the process's initial
/// environment block (`/proc/<pid>/environ`), which removing the variable alone leaves as it was.
#[tokio::test]
async fn the_admin_token_is_erased_from_the_server_environment() {
    let dir = tempfile::tempdir().unwrap();
    let token = format!("scrub-me-{}", free_port());
    let env = [
        ("ZADIG_ADMIN_TOKEN", token.as_str()),
        ("SCRUB_CHECK", "still-visible"),
    ];
    let (child, _) = serve(
        dir.path(),
        &env,
        &token,
        "the admin token works",
        Stdio::null(),
    )
    .await;
    let pid = child.id().expect("server pid");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("read environ");
    let environ = String::from_utf8_lossy(&environ);
    // Failures do not print the block: it holds this machine's whole environment.
    assert!(
        environ.contains("SCRUB_CHECK=still-visible"),
        "environ not read"
    );
    assert!(
        !environ.contains(&token),
        "the token is still in the environ block"
    );
}

/// A short `admin_token` draws a warning at start-up that gives its length, never the token.
#[tokio::test]
async fn a_short_admin_token_is_warned_of_by_its_length_only() {
    let dir = tempfile::tempdir().unwrap();
    let token = format!("short-secret-{}", free_port());
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let env = [("ZADIG_ADMIN_TOKEN", token.as_str()), ("ZADIG_LOG", "info")];
    let what = "the short admin token works";
    let (mut child, _) = serve(dir.path(), &env, &token, what, log.into()).await;
    child.kill().await.expect("stop the server");
    let logs = std::fs::read_to_string(&log_path).expect("read the logs");
    let warning = format!("admin_token is {} characters long", token.len());
    assert!(logs.contains(&warning), "no {warning:?} in {logs}");
    assert!(!logs.contains(&token), "the token is in the logs");
}

/// As the README runs it: the default, relative data dir (`./data`).
#[tokio::test]
async fn user_create_then_serve_run_a_job_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["user", "create", "--account", "ci-bot", "--admin"])
        .current_dir(dir.path())
        .output()
        .expect("run binary");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("api_token: "))
        .expect("token printed")
        .to_string();

    let what = "the CLI-created token works against the server";
    let (mut child, port) = serve(dir.path(), &[], &token, what, Stdio::null()).await;
    let client = crate::harness::client();

    // A job runs in its workspace under the relative data dir.
    let base = format!("http://127.0.0.1:{port}");
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let r = post(
        "/openapi/workflows/custom",
        serde_json::json!({
            "name": "cli-wf", "project": "demo", "concurrency_limit": 1,
            "stages": [{"name": "s", "parallel": true, "jobs": [{"name": "j", "type": "freestyle",
                "spec": {"script": "echo from-the-workspace-$TASK_ID"}}]}]
        }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let r = post(
        "/openapi/workflows/custom/task",
        serde_json::json!({
            "project_key": "demo", "workflow_key": "cli-wf",
            "inputs": [{"job_name": "j", "job_type": "freestyle", "parameters": {}}]
        }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let get = |path: String| {
        client
            .get(format!("{base}{path}"))
            .bearer_auth(&token)
            .send()
    };
    let mut last = serde_json::Value::Null;
    for _ in 0..600 {
        last = get("/openapi/workflows/custom/task?taskId=1&workflowKey=cli-wf".into())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ["passed", "failed"].contains(&last["status"].as_str().unwrap_or_default()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = get("/openapi/logs/log/v4/workflow/cli-wf/1/j".into())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(last["status"], "passed", "{log}");
    assert!(log.contains("from-the-workspace-1"), "{log}");

    let pid = child.id().expect("pid");
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
}
