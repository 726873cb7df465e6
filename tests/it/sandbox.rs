//! The job sandbox, attacked through the API as a non-admin user (issue: "a job can read the
//! admin token and the database"). The real binary runs as the README starts it — the admin
//! token in its environment, jobs launched by its own sandbox stages — on both backends, with
//! the default sandbox settings (jobs write nowhere but their own directory).

use std::os::unix::fs::PermissionsExt;
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
        self.run_jobs(name, defs).await
    }

    /// Create a workflow of one stage running the freestyle jobs `defs` in parallel, execute it.
    async fn run_jobs(&self, name: &str, defs: Vec<Value>) -> i64 {
        let names: Vec<String> = defs
            .iter()
            .map(|d| d["name"].as_str().unwrap_or_default().to_string())
            .collect();
        let workflow = json!({
            "name": name, "display_name": name, "project": "demo", "concurrency_limit": -1,
            "stages": [{"name": "s", "parallel": true, "jobs": defs}],
        });
        self.post("/api/aslan/workflow/v4", workflow)
            .await
            .expect(200);
        let inputs: Vec<Value> = names
            .iter()
            .map(|j| json!({"job_name": j, "job_type": "freestyle", "parameters": {}}))
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

/// A freestyle job running `script` that declares the outputs `outputs`.
fn output_job(name: &str, script: &str, outputs: &[&str]) -> Value {
    let outputs: Vec<Value> = outputs.iter().map(|o| json!({"name": o})).collect();
    json!({"name": name, "type": "freestyle", "spec": {"script": script, "envs": [],
        "properties": {"timeout": 5}, "advanced_setting": {"outputs": outputs}}})
}

/// The job task `name` of the task's first stage.
fn job_of<'a>(t: &'a Value, name: &str) -> &'a Value {
    t["stages"][0]["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["name"] == name))
        .unwrap_or_else(|| panic!("no job {name} in {t}"))
}

/// Audit F1: a job links its output file (or the results directory) to a file only root may
/// read, or to `/proc/self/environ`; the server, reading the outputs outside the sandbox,
/// must not follow the link. The job fails naming the output; the value reaches neither
/// the task nor the log.
async fn outputs_linked_elsewhere_are_refused(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let canary = "root-only-canary-2718281828";
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, canary).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("OUT"), canary).unwrap();
    let Some((server, api)) = start(kind, &dir.path().join("data")).await else {
        return;
    };
    // `trap - EXIT`: the output trap would otherwise write through the link as the job user.
    let link = |target: &str| {
        format!(
            r#"R="$WORKSPACE/../zadig/results"; trap - EXIT; ln -sf {target} "$R/OUT"; echo linked; exit 0"#
        )
    };
    let environ = link("/proc/self/environ");
    let file = link(&secret.to_string_lossy());
    let whole_dir = format!(
        r#"R="$WORKSPACE/../zadig/results"; trap - EXIT; rm -rf "$R"; ln -s {} "$R"; echo linked; exit 0"#,
        outside.display()
    );
    let fine = "OUT=plain-value-42";
    let id = api
        .run_jobs(
            "outleak",
            vec![
                output_job("environ", &environ, &["OUT"]),
                output_job("file", &file, &["OUT"]),
                output_job("dir", &whole_dir, &["OUT"]),
                output_job("fine", fine, &["OUT"]),
            ],
        )
        .await;
    let t = api.wait_end("outleak", id).await;
    assert_eq!(t["status"], "failed", "{t}");
    for (job, what) in [
        ("environ", "zadig/results/OUT is a symbolic link"),
        ("file", "zadig/results/OUT is a symbolic link"),
        ("dir", "zadig/results is a symbolic link"),
    ] {
        let j = job_of(&t, job);
        assert_eq!(j["status"], "failed", "{job}: {j}");
        let err = j["error"].as_str().unwrap_or_default();
        assert!(
            err.contains(&format!("output OUT cannot be read: {what}")),
            "{job}: {err}"
        );
        let log = api.log("outleak", id, job).await;
        assert!(log.contains("linked"), "{job}: {log}");
        for leak in [ADMIN, "ZADIG_", canary] {
            assert!(!log.contains(leak), "{job}'s log holds {leak:?}:\n{log}");
        }
    }
    // A job writing its output the ordinary way is not refused.
    let fine = job_of(&t, "fine");
    assert_eq!(fine["status"], "passed", "{fine}");
    let text = t.to_string();
    for leak in [ADMIN, "ZADIG_ADMIN_TOKEN", canary] {
        assert!(!text.contains(leak), "the task holds {leak:?}: {text}");
    }
    drop(server);
}
crate::kind_test!(outputs_linked_elsewhere_are_refused);

/// Run a zadig-build job of the build `name` (in project `demo`, service `name`/`m`) whose
/// script is `script`, followed by the image step (a second script, written by the server),
/// with `path` as the job's PATH. The task when it ended, and the job's log.
async fn run_image_build(api: &Api, name: &str, script: &str, path: &str) -> (Value, String) {
    let build = json!({"name": name, "project_key": "demo", "infrastructure": "kubernetes",
        "build_os": "ubuntu 20.04", "installs": [], "script_type": "shell", "build_script": script,
        "services": [{"service_name": name, "service_module": "m"}],
        "parameters": [{"key": "PATH", "type": "string", "default_value": path}],
        "docker_build_step": {"dockerfile_source": "local", "build_context_dir": ".",
            "dockerfile_directory": "Dockerfile", "build_args": "--build-arg A=1"}});
    api.post("/openapi/build?projectKey=demo", build)
        .await
        .expect(200);
    let workflow = json!({"name": name, "display_name": name, "project": "demo",
        "concurrency_limit": -1, "stages": [{"name": "build", "parallel": true, "jobs": [
            {"name": "build", "type": "zadig-build", "spec": {"docker_registry_id": "",
                "service_and_builds": [{"service_name": name, "service_module": "m",
                    "image_name": name, "build_name": name}]}}]}]});
    api.post("/openapi/workflows/custom", workflow)
        .await
        .expect(200);
    let execute = json!({"project_key": "demo", "workflow_key": name, "parameters": [],
        "inputs": [{"job_name": "build", "job_type": "zadig-build", "parameters": {
            "registry": "", "service_list": [{"service_name": name, "service_module": "m"}]}}]});
    let r = api.post("/openapi/workflows/custom/task", execute).await;
    let id = r.expect(200)["task_id"].as_i64().expect("task_id");
    let t = api.wait_end(name, id).await;
    let job = t["stages"][0]["jobs"][0]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let log = api.log(name, id, &job).await;
    (t, log)
}

/// Audit F2: a build's script replaces the script file of the image step that follows (or the
/// whole `zadig` directory) with a link to a path outside; the server writes the image step's
/// script as root and must not write through the link. Replacing the file: the image step runs
/// its own script; replacing the directory: the job fails naming it (the first thing the
/// server opens there is the script's output). The targets stay
/// untouched either way.
async fn script_files_are_not_written_through_links(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target.txt");
    std::fs::write(&target, "untouched").unwrap();
    let absent = dir.path().join("created.txt");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    // A stand-in for docker the job user can run (the image step checks it is on the PATH).
    let bin = tempfile::Builder::new()
        .prefix("zadig-fake-docker")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let docker = bin.path().join("docker");
    std::fs::write(&docker, "#!/bin/sh\necho \"fake-docker $*\"\n").unwrap();
    std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", bin.path().display());
    let Some((server, api)) = start(kind, &dir.path().join("data")).await else {
        return;
    };
    let swap = |to: &Path| {
        format!(
            r#"D="$WORKSPACE/../zadig"; rm -f "$D/script.sh"; ln -s {} "$D/script.sh"; echo swapped"#,
            to.display()
        )
    };
    for (name, script) in [("swapfile", swap(&target)), ("swapabsent", swap(&absent))] {
        let (t, log) = run_image_build(&api, name, &script, &path).await;
        assert_eq!(t["status"], "passed", "{name}: {t}\n{log}");
        assert!(log.contains("swapped"), "{name}: {log}");
        assert!(
            log.contains("fake-docker build --rm=true --build-arg A=1"),
            "{name}: the image step runs its own script:\n{log}"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
        assert!(!absent.exists(), "the server created {}", absent.display());
    }
    let swap_dir = format!(
        r#"D="$WORKSPACE/../zadig"; mv "$D" "$D.old"; ln -s {} "$D"; echo swapped"#,
        outside.display()
    );
    let (t, log) = run_image_build(&api, "swapdir", &swap_dir, &path).await;
    let j = &t["stages"][0]["jobs"][0];
    assert_eq!(j["status"], "failed", "{j}\n{log}");
    let err = j["error"].as_str().unwrap_or_default();
    // Refused when the server reads the build script's outputs, before it would write the
    // image step's script.
    assert!(
        err.contains("output IMAGE cannot be read: zadig is a symbolic link"),
        "{err}"
    );
    assert!(log.contains("swapped"), "{log}");
    assert!(!log.contains("fake-docker build"), "{log}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
    assert!(!absent.exists(), "the server created {}", absent.display());
    let written: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
    assert!(
        written.is_empty(),
        "the server wrote into {}",
        outside.display()
    );
    drop(server);
}
crate::kind_test!(script_files_are_not_written_through_links);
