//! Processes that scale apart (`serve --role api|workers|both`, issue 15).
//!
//! - Two real `zadig-server serve` processes on one MongoDB, one API-only and one
//!   workers-only (skipped without `ZADIG_TEST_MONGODB_URI`: the embedded store belongs to one
//!   process): a workflow task created through the API process runs to `passed` in the worker
//!   process, its log is readable through the API process (full log and SSE), a cancel through
//!   the API process stops the job in the worker, a release plan's workflow job executed
//!   through the API process ends `done` when the worker's task passes, and both stop cleanly
//!   on SIGTERM.
//! - In-process, on MongoDB (the configuration refuses another role than `both` on the
//!   embedded store, tests/it/cli.rs): an API-only server leaves a task `waiting` (nothing
//!   runs it) and can still cancel it; a workers-only server serves only `/healthz` and
//!   `/metrics` and runs a task it finds in the store.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use zadig_server::config::Role;

use crate::engine::{freestyle, marked_sleep, new_task, process_gone, sleep_pids, stage};
use crate::engine_api::freestyle_job;
use crate::engine_restart::{free_port, healthy, poll};
use crate::harness::{ADMIN_TOKEN, Kind, TestApp, client, mongo_uri, send};
use crate::release_plan::{BASE, simple_body};

const WAIT: Duration = Duration::from_secs(30);

/// A `zadig-server serve` child process and a client for its listener.
struct Proc {
    child: tokio::process::Child,
    base: String,
    client: reqwest::Client,
}

impl Proc {
    async fn start(args: &[&str], env: &[(String, String)]) -> Self {
        let port = free_port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_zadig-server"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("ZADIG_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start zadig-server");
        healthy(port).await;
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: client(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, String) {
        let url = format!("{}{path}", self.base);
        let r = send(&self.client, method, &url, Some(ADMIN_TOKEN), body).await;
        (r.status.as_u16(), r.text)
    }

    /// A JSON answer that must be 200.
    async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, text) = self.send(method, path, body).await;
        assert_eq!(status, 200, "{path}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }

    async fn detail(&self, workflow: &str, id: i64) -> Value {
        let path = format!("/openapi/workflows/custom/task?taskId={id}&workflowKey={workflow}");
        self.ok(reqwest::Method::GET, &path, None).await
    }

    /// Whether this process' engine started a task (its metrics count them).
    async fn ran_tasks(&self) -> bool {
        let (_, metrics) = self.send(reqwest::Method::GET, "/metrics", None).await;
        metrics.contains("engine_tasks_started_total")
    }

    /// SIGTERM, then the exit status within a bounded wait.
    async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("pid");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .expect("wait")
    }
}

/// A one-job (`j`) freestyle workflow running `script`.
fn workflow_body(name: &str, script: &str) -> Value {
    json!({
        "name": name, "display_name": name, "project": "demo", "concurrency_limit": -1,
        "stages": [{"name": "s", "parallel": true, "jobs": [freestyle_job("j", script)]}],
    })
}

/// The execute body of a [`workflow_body`] workflow.
fn execute_body(name: &str) -> Value {
    json!({"project_key": "demo", "workflow_key": name, "parameters": [],
        "inputs": [{"job_name": "j", "job_type": "freestyle", "parameters": {}}]})
}

/// Create a [`workflow_body`] workflow and execute it through `api`; the task id.
async fn run_workflow(api: &Proc, name: &str, script: &str) -> i64 {
    let create = Some(workflow_body(name, script));
    api.ok(reqwest::Method::POST, "/api/aslan/workflow/v4", create)
        .await;
    let execute = Some(execute_body(name));
    let r = api
        .ok(
            reqwest::Method::POST,
            "/openapi/workflows/custom/task",
            execute,
        )
        .await;
    r["task_id"].as_i64().expect("task_id")
}

/// An in-process server with this role, on MongoDB (`None`: skipped).
async fn start_as(role: Role) -> Option<TestApp> {
    TestApp::start_with(Kind::Mongo, |c| {
        c.role = role;
        c.engine_sweep_interval_ms = 20;
    })
    .await
}

async fn wait_ended(api: &Proc, workflow: &str, id: i64) -> Value {
    poll(&format!("{workflow}#{id} to end"), WAIT, || async {
        let d = api.detail(workflow, id).await;
        (d["end_time"].as_i64().unwrap_or(0) > 0).then_some(d)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_worker_processes_on_one_mongodb() {
    let Some(uri) = mongo_uri() else { return };
    let keys = tempfile::tempdir().unwrap();
    let (api_dir, worker_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let common: Vec<(String, String)> = vec![
        ("ZADIG_STORAGE".into(), "mongodb".into()),
        ("ZADIG_MONGODB_URI".into(), uri),
        (
            "ZADIG_MONGODB_DATABASE".into(),
            format!("zt_{}", uuid::Uuid::new_v4().simple()),
        ),
        ("ZADIG_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
        // Replicas on one MongoDB share the key that seals credentials.
        (
            "ZADIG_SECRET_KEY_FILE".into(),
            keys.path()
                .join("secret.key")
                .to_string_lossy()
                .into_owned(),
        ),
        ("ZADIG_ENGINE_SWEEP_INTERVAL_MS".into(), "100".into()),
        ("ZADIG_LOG".into(), "warn".into()),
    ];
    let with_dir = |dir: &tempfile::TempDir, extra: &[(&str, &str)]| {
        let mut env = common.clone();
        env.push((
            "ZADIG_DATA_DIR".into(),
            dir.path().to_string_lossy().into_owned(),
        ));
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string())),
        );
        env
    };
    // The role by flag for one, by the `role` key's env var for the other. The API process
    // starts first: it creates the key file the worker then reads.
    let api = Proc::start(&["serve", "--role", "api"], &with_dir(&api_dir, &[])).await;
    let worker = Proc::start(
        &["serve"],
        &with_dir(&worker_dir, &[("ZADIG_ROLE", "workers")]),
    )
    .await;

    // The worker's listener answers probes and scrapes, not the API.
    let (status, _) = worker
        .send(reqwest::Method::GET, "/openapi/users", None)
        .await;
    assert_eq!(status, 404, "a workers-only process serves no API");
    let (status, _) = worker.send(reqwest::Method::GET, "/metrics", None).await;
    assert_eq!(status, 200);

    // A task created through the API process runs in the worker; its log is read through the
    // API process while it runs (SSE) and after (full log).
    let id = run_workflow(&api, "split", "echo first-line; sleep 1; echo second-line").await;
    let sse = api
        .send(
            reqwest::Method::GET,
            &format!("/openapi/logs/sse/v4/workflow/split/{id}/j/100"),
            None,
        )
        .await
        .1;
    assert!(
        sse.contains("event:message\ndata:") && sse.contains("   second-line"),
        "{sse}"
    );
    let d = wait_ended(&api, "split", id).await;
    assert_eq!(d["status"], "passed", "{d}");
    let (_, log) = api
        .send(
            reqwest::Method::GET,
            &format!("/openapi/logs/log/v4/workflow/split/{id}/j"),
            None,
        )
        .await;
    assert!(
        log.contains("   first-line") && log.contains("   second-line"),
        "{log}"
    );
    assert!(worker.ran_tasks().await, "the worker process ran the task");
    assert!(!api.ran_tasks().await, "the API process ran no task");

    // A cancel through the API process stops the job running in the worker.
    let (sleep, marker) = marked_sleep(300);
    let id = run_workflow(&api, "split-cancel", &format!("{sleep} & wait")).await;
    let pid = poll("the job's sleep in the worker", WAIT, || async {
        sleep_pids(&marker).first().copied()
    })
    .await;
    api.ok(
        reqwest::Method::DELETE,
        &format!("/openapi/workflows/custom/task?taskId={id}&workflowKey=split-cancel"),
        None,
    )
    .await;
    let d = wait_ended(&api, "split-cancel", id).await;
    assert_eq!(d["status"], "cancelled", "{d}");
    assert_eq!(d["stages"][0]["jobs"][0]["status"], "cancelled", "{d}");
    poll("the job's process to be gone", WAIT, || async {
        process_gone(pid).then_some(())
    })
    .await;

    // A release plan's workflow job executed through the API process: the worker runs its
    // task and reports the end to the plan.
    let plan = api
        .ok(
            reqwest::Method::POST,
            BASE,
            Some(simple_body("split-plan", "admin")),
        )
        .await["id"]
        .as_str()
        .expect("plan id")
        .to_string();
    let mut body = simple_body("split-plan", "admin");
    body["jobs"] = json!([{"name": "Workflow-1", "type": "workflow",
        "spec": {"workflow_key": "split", "project_key": "demo", "remark": "r", "parameters": [],
            "inputs": [{"job_name": "j", "job_type": "freestyle", "parameters": {}}]}}]);
    let at = |rest: &str| format!("{BASE}/{plan}{rest}");
    api.ok(reqwest::Method::PATCH, &at(""), Some(body)).await;
    for to in ["finish_planning", "executing"] {
        let path = at(&format!("/status/{to}"));
        api.ok(reqwest::Method::POST, &path, Some(json!({}))).await;
    }
    let job = api.ok(reqwest::Method::GET, &at(""), None).await["jobs"][0]["id"].clone();
    let call = json!({"id": job, "name": "x", "type": "workflow", "spec": {"remark": "r"}});
    api.ok(reqwest::Method::POST, &at("/execute"), Some(call))
        .await;
    let d = poll("the release job to be done", WAIT, || async {
        let d = api.ok(reqwest::Method::GET, &at(""), None).await;
        (d["jobs"][0]["status"] == "done").then_some(d)
    })
    .await;
    assert_eq!(d["status"], "success", "{d}");
    assert_eq!(d["jobs"][0]["spec"]["status"], "passed", "{d}");

    for (what, p) in [("api", api), ("workers", worker)] {
        let exit = p.terminate().await;
        assert!(
            exit.success(),
            "the {what} process exits 0 on SIGTERM: {exit:?}"
        );
    }
}

/// An API-only server queues but never runs: the task stays `waiting` (no dispatcher), and a
/// cancel still ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_role_alone_leaves_tasks_waiting() {
    let Some(app) = start_as(Role::Api).await else {
        return;
    };
    app.post(
        "/api/aslan/workflow/v4",
        workflow_body("idle", "echo never"),
    )
    .await
    .expect(200);
    let r = app
        .post("/openapi/workflows/custom/task", execute_body("idle"))
        .await;
    let id = r.expect(200)["task_id"].as_i64().unwrap();
    // Many dispatcher sweeps' worth of time: a dispatcher, had one started, would have run it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let detail = format!("/openapi/workflows/custom/task?taskId={id}&workflowKey=idle");
    assert_eq!(app.get(&detail).await.expect(200)["status"], "waiting");
    app.delete(&detail).await.expect(200);
    assert_eq!(app.get(&detail).await.expect(200)["status"], "cancelled");
    app.stop().await;
}

/// A workers-only server answers only `/healthz` and `/metrics` and runs what it finds in
/// the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_role_serves_no_api() {
    let Some(app) = start_as(Role::Workers).await else {
        return;
    };
    app.get("/healthz").await.expect(200);
    app.get("/metrics").await.expect(200);
    for path in ["/openapi/users", "/openapi.json", "/ui/"] {
        assert_eq!(app.get(path).await.status.as_u16(), 404, "{path}");
    }
    // Stored the way an API process stores it, without waking this process: the sweep finds it.
    let st = app.state();
    let task = new_task(
        "bg",
        1,
        st.clock.now_ms(),
        -1,
        vec![],
        vec![stage(
            "s",
            false,
            vec![freestyle("j", "echo from-the-worker")],
        )],
    );
    st.tasks.insert(&task).await.unwrap();
    let t = app
        .wait_for("the task to end", WAIT, || async {
            let t = st.tasks.get("bg", 1).await.ok()??;
            t.status.is_final().then_some(t)
        })
        .await;
    assert_eq!(t.status, "passed", "{}", t.error);
    app.stop().await;
}

/// `serve --role` takes only the three roles (clap names the flag and the values), and only
/// `both` on the embedded store.
#[test]
fn an_unknown_role_or_one_the_store_cannot_serve_is_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zadig-server"))
        .args(["serve", "--role", "scheduler"])
        .output()
        .expect("run binary");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--role") && err.contains("api") && err.contains("workers"),
        "{err}"
    );
    // A role other than `both` on the embedded store (the default storage) is refused too.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_zadig-server"))
        .args(["serve", "--role", "workers"])
        .env("ZADIG_DATA_DIR", dir.path())
        .output()
        .expect("run binary");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("key role") && err.contains("mongodb"), "{err}");
}
