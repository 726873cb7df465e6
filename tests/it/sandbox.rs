//! The job sandbox, attacked through the API as a non-admin user (issue: "a job can read the
//! admin token and the database"). The real binary runs as the README starts it — the admin
//! token in its environment, jobs launched by its own sandbox stages — on both backends, with
//! the default sandbox settings (jobs write nowhere but their own directory).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::engine::{marked_sleep, sleep_pids};
use crate::engine_restart::{free_port, healthy, poll, serve};
use crate::harness::{Kind, Resp, client, mongo_uri, send};
use crate::ui::shell_job;

const ADMIN: &str = "sandbox-admin-token-that-no-job-may-ever-see-0123456789";

struct Api {
    base: String,
    token: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Resp {
        let url = format!("{}{path}", self.base);
        send(&client(), method, &url, Some(&self.token), body).await
    }

    async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Create the user `account` (named `name`).
    async fn add_user(&self, account: &str, name: &str) -> Resp {
        let body = json!({"account": account, "name": name});
        self.post("/openapi/users", body).await
    }

    /// Create a workflow of one stage running `jobs` (name, script) in parallel, execute it.
    async fn run(&self, name: &str, jobs: &[(&str, &str)]) -> i64 {
        let defs: Vec<Value> = jobs
            .iter()
            .map(|(j, script)| shell_job(j, script, 5))
            .collect();
        let workflow = json!({
            "name": name, "display_name": name, "project": "demo", "concurrency_limit": -1,
            "stages": [{"name": "s", "parallel": true, "jobs": defs}],
        });
        self.post("/api/aslan/workflow/v4", workflow)
            .await
            .expect(200);
        let inputs: Vec<Value> = jobs
            .iter()
            .map(|(j, _)| json!({"job_name": j, "job_type": "freestyle", "parameters": {}}))
            .collect();
        let execute = json!({
            "project_key": "demo", "workflow_key": name, "parameters": [], "inputs": inputs,
        });
        let r = self.post("/openapi/workflows/custom/task", execute).await;
        r.expect(200)["task_id"].as_i64().expect("task_id")
    }

    async fn task(&self, name: &str, id: i64) -> Value {
        let path = format!("/openapi/workflows/custom/task?taskId={id}&workflowKey={name}");
        self.call(reqwest::Method::GET, &path, None).await.body
    }

    async fn wait_end(&self, name: &str, id: i64) -> Value {
        poll("the task to end", Duration::from_secs(60), || async {
            let t = self.task(name, id).await;
            (t["end_time"].as_i64().unwrap_or(0) > 0).then_some(t)
        })
        .await
    }

    async fn log(&self, name: &str, id: i64, job: &str) -> String {
        let path = format!("/openapi/logs/log/v4/workflow/{name}/{id}/{job}");
        self.call(reqwest::Method::GET, &path, None).await.text
    }
}

/// Start the real binary with the admin token in its environment; a non-admin user's API.
async fn start(kind: Kind, data: &Path) -> Option<(crate::engine_restart::Server, Api)> {
    // `data` lies in a 0700 tempdir: the sandbox covers that closed ancestor so the job user
    // still reaches its workspace.
    let port = free_port();
    let mut env: Vec<(String, String)> = vec![
        ("ZADIG_LISTEN".into(), format!("127.0.0.1:{port}")),
        ("ZADIG_DATA_DIR".into(), data.to_string_lossy().into_owned()),
        ("ZADIG_ADMIN_TOKEN".into(), ADMIN.into()),
        ("ZADIG_LOG".into(), "warn".into()),
    ];
    match kind {
        Kind::Embedded => env.push(("ZADIG_STORAGE".into(), "embedded".into())),
        Kind::Mongo => {
            env.push(("ZADIG_STORAGE".into(), "mongodb".into()));
            env.push(("ZADIG_MONGODB_URI".into(), mongo_uri()?));
            env.push((
                "ZADIG_MONGODB_DATABASE".into(),
                format!("zt_{}", uuid::Uuid::new_v4().simple()),
            ));
        }
    }
    let server = serve(&env);
    healthy(port).await;
    let admin = Api {
        base: format!("http://127.0.0.1:{port}"),
        token: ADMIN.into(),
    };
    let user = admin.add_user("mallory", "Mallory").await;
    let token = user.expect(200)["api_token"]
        .as_str()
        .expect("api_token")
        .to_string();
    Some((
        server,
        Api {
            base: admin.base,
            token,
        },
    ))
}

async fn jobs_cannot_reach_secrets_data_or_the_server(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let Some((server, api)) = start(kind, &data).await else {
        return;
    };
    let server_pid = server.0.id();
    let d = data.to_string_lossy();
    let (sleep, marker) = marked_sleep(1000);
    let attack = format!(
        r#"echo "UID=$(id -u)"
for f in /proc/$PPID/environ /proc/{server_pid}/environ /proc/[0-9]*/environ; do tr '\0' '\n' < "$f"; done 2>&1
head -c 64 /proc/{server_pid}/mem 2>&1 | od -c | head -2
ls -la {d} {d}/workspace 2>&1
head -c 16 {d}/zadig.db 2>&1; echo
echo pwned >> {d}/zadig.db && echo DB_WRITTEN
test -r {d}/secret.key && echo KEY_READABLE
sqlite3 {d}/zadig.db "update c_users set doc=json_set(doc,'$.is_admin',json('true'))" 2>&1 && echo DB_UPDATED
echo pwned > /tmp/escaped-{marker} && echo TMP_WRITTEN
cat {d}/workspace/*/*/workspace/secret.txt 2>&1
find {d} -name secret.txt 2>&1
setsid {sleep} >/dev/null 2>&1 < /dev/null &
echo attack done"#
    );
    let victim = "echo victim-secret-3141 > $WORKSPACE/secret.txt; sleep 2; echo victim done";
    let id = api
        .run(
            "attack",
            &[
                ("victim", victim),
                ("attacker", &format!("sleep 1; {attack}")),
            ],
        )
        .await;
    let t = api.wait_end("attack", id).await;
    assert_eq!(t["status"], "passed", "{t}");
    let log = api.log("attack", id, "attacker").await;
    assert!(log.contains("attack done"), "{log}");
    for secret in [
        ADMIN,
        "ZADIG_ADMIN_TOKEN",
        "victim-secret-3141",
        "SQLite format",
        "DB_WRITTEN",
        "DB_UPDATED",
        "TMP_WRITTEN",
    ] {
        assert!(!log.contains(secret), "the job saw {secret:?}:\n{log}");
    }
    assert!(!Path::new(&format!("/tmp/escaped-{marker}")).exists());
    if nix::unistd::getuid().is_root() {
        assert!(
            log.contains("UID=65534"),
            "a job of a root server runs unprivileged:\n{log}"
        );
    } else {
        assert!(!log.contains("UID=0"), "{log}");
    }
    // The job ended: nothing it started is left, `setsid` or not.
    poll(
        "the setsid process to be gone",
        Duration::from_secs(5),
        || async { sleep_pids(&marker).is_empty().then_some(()) },
    )
    .await;
    // The user did not become admin.
    api.add_user("eve", "Eve").await.expect(403);
    drop(server);
}
crate::kind_test!(jobs_cannot_reach_secrets_data_or_the_server);

async fn cancel_kills_processes_that_left_the_group(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let Some((server, api)) = start(kind, &dir.path().join("data")).await else {
        return;
    };
    let (sleep, marker) = marked_sleep(1000);
    let id = api
        .run("escape", &[("j", &format!("setsid {sleep} >/dev/null 2>&1 < /dev/null & (setsid sh -c '{sleep} & sleep 1000' &) ; sleep 60"))])
        .await;
    poll(
        "the escaped processes to run",
        Duration::from_secs(30),
        || async { (sleep_pids(&marker).len() >= 2).then_some(()) },
    )
    .await;
    let cancel = format!("/openapi/workflows/custom/task?taskId={id}&workflowKey=escape");
    api.call(reqwest::Method::DELETE, &cancel, None)
        .await
        .expect(200);
    assert_eq!(api.wait_end("escape", id).await["status"], "cancelled");
    poll(
        "the escaped processes to be gone",
        Duration::from_secs(5),
        || async { sleep_pids(&marker).is_empty().then_some(()) },
    )
    .await;
    drop(server);
}
crate::kind_test!(cancel_kills_processes_that_left_the_group);

/// A sandbox that cannot start refuses jobs with an error naming what is missing — never runs
/// them unconfined.
async fn a_broken_sandbox_refuses_jobs(kind: Kind) {
    let Some(app) = crate::harness::TestApp::start_with(kind, |c| {
        c.engine_sandbox_launcher = "/nonexistent/zadig-server".into();
    })
    .await
    else {
        return;
    };
    let id = crate::engine::queue_stage(
        &app,
        "refused",
        crate::engine::stage("s", false, vec![crate::engine::freestyle("j", "echo ran")]),
    )
    .await;
    let t = crate::engine::wait_status(&app, "refused", id, &["failed", "passed"]).await;
    assert_eq!(t.status, "failed");
    let err = &t.stages[0].jobs[0].error;
    assert!(
        err.contains("sandbox launcher /nonexistent/zadig-server does not work"),
        "{err}"
    );
    app.stop().await;
}
crate::kind_test!(a_broken_sandbox_refuses_jobs);
