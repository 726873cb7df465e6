//! The `zadig-server` binary: config errors name the key, `user create` prints a working token,
//! SIGTERM shuts down gracefully.

use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_zadig-server");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[test]
fn a_bad_config_value_stops_the_server_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (key, value, needle) in [
        ("ZADIG_LISTEN", "not-an-address", "listen"),
        ("ZADIG_STORAGE", "postgres", "storage"),
        ("ZADIG_BODY_LIMIT", "-5", "body_limit"),
        ("ZADIG_LOG_FORMAT", "xml", "log_format"),
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

#[tokio::test]
async fn user_create_then_serve_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["user", "create", "--account", "ci-bot", "--admin"])
        .env("ZADIG_DATA_DIR", dir.path())
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

    let port = free_port();
    let mut child = tokio::process::Command::new(BIN)
        .arg("serve")
        .env("ZADIG_DATA_DIR", dir.path())
        .env("ZADIG_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn server");
    let client = crate::harness::client();
    let url = format!("http://127.0.0.1:{port}/openapi/users");
    let mut status = None;
    for _ in 0..200 {
        if let Ok(r) = client.get(&url).bearer_auth(&token).send().await {
            status = Some(r.status().as_u16());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status,
        Some(200),
        "the CLI-created token works against the server"
    );

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
