//! Jobs run as Kubernetes Jobs (the Kubernetes executor, issue 15) against the Kubernetes API
//! emulator, on both backends: a freestyle job and a zadig-build job on the cluster pass with
//! their outputs and their log (live over SSE while the Job runs), a failing script fails with
//! its log kept, an image that cannot be pulled fails naming it, cancel deletes the Job, and a
//! server killed with SIGKILL while a Job runs is restarted: the task ends and the Job is gone.
//!
//! The emulator's stand-in kubelet runs a Job pod's *first container's command* as a local
//! process and ignores init containers and volumes. So these tests set
//! `engine_kube_agent_path` to the server binary under test (its `job-agent` subcommand is the
//! agent) and configure no agent image: the init container that copies the agent into a real
//! pod is not exercised here (its spec is unit-tested in `engine::kube::spec`).

use std::time::Duration;

use serde_json::{Value, json};
use zadig_server::config::Config;
use zadig_server::workflow::task::JobTask;

use crate::build::create_shell_build;
use crate::clusters::{add_cluster, kubeconfig};
use crate::deploy_jobs::{build_ship, create_web_build, detail, image_of};
use crate::engine::{
    api_cancel, freestyle, full_log, job, queue_stage, read_events, scratch, stage, task,
    wait_status,
};
use crate::engine_restart::{free_port, healthy, insert_task, poll, serve, server_env};
use crate::environments::{apply_shop, seed_env};
use crate::harness::{ADMIN_TOKEN, Kind, TestApp, client};
use crate::kube_emulator::Emulator;
use crate::projects::create_project;

const LIMIT: Duration = Duration::from_secs(60);
const NS: &str = "koderover-agent";
const ENDED: &[&str] = &["passed", "failed", "cancelled", "timeout"];

/// The server binary: the job agent the emulator's kubelet runs.
const AGENT: &str = env!("CARGO_BIN_EXE_zadig-server");

/// A server configured for Kubernetes jobs, an emulator and the emulator's cluster id.
async fn kube_app(kind: Kind) -> Option<(TestApp, Emulator, String)> {
    kube_app_with(kind, |_| {}).await
}

/// [`kube_app`] with a further config `tweak`.
async fn kube_app_with(
    kind: Kind,
    tweak: impl FnOnce(&mut Config),
) -> Option<(TestApp, Emulator, String)> {
    let emu = Emulator::start().await?;
    let app = TestApp::start_with(kind, |c| {
        kube_config(c);
        tweak(c);
    })
    .await?;
    create_project(&app, "demo").await;
    let id = add_cluster(&app, "emu", &emu.kubeconfig).await;
    Some((app, emu, id))
}

/// Kubernetes jobs run the server binary as their agent, in images named after `build_os`.
fn kube_config(c: &mut Config) {
    c.engine_kube_agent_path = AGENT.to_string();
    for os in ["ubuntu 20.04", "ubuntu 22.04"] {
        c.engine_kube_images.insert(os.into(), os.replace(' ', ":"));
    }
}

/// A freestyle job placed on `cluster` with build_os `ubuntu 22.04`, declaring output RESULT.
fn kube_freestyle(name: &str, script: &str, cluster: &str) -> JobTask {
    let mut j = freestyle(name, script);
    j.spec = json!({"script": script, "script_type": "shell",
        "runtime": {"build_os": "ubuntu 22.04"},
        "advanced_setting": {"cluster_id": cluster, "outputs": [{"name": "RESULT"}]}});
    j
}

/// The emulator's Jobs in the jobs' namespace.
async fn jobs(emu: &Emulator) -> Vec<Value> {
    emu.objects("Job", NS).await
}

/// Wait until the emulator holds no Job and runs no job process.
async fn nothing_left(emu: &Emulator) {
    for _ in 0..600 {
        let procs = emu.processes().await;
        if jobs(emu).await.is_empty() && !procs.iter().any(|p| p["running"] == true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "Jobs or processes left: {:?} {:?}",
        jobs(emu).await,
        emu.processes().await
    );
}

/// The end of a test: nothing may be left on the emulator; then the server stops.
async fn finish(app: TestApp, emu: &Emulator) {
    nothing_left(emu).await;
    app.stop().await;
}

async fn passes_with_outputs_and_a_live_log(kind: Kind) {
    let Some((app, emu, cluster)) = kube_app(kind).await else {
        return;
    };
    let dir = scratch();
    let go = dir.path().join("go");
    let script = format!(
        "for i in 1 2 3; do echo line-$i; done\nwhile [ ! -f {} ]; do sleep 0.1; done\nsleep 11\nRESULT=done-$WORKFLOW-$TASK_ID\necho finished",
        go.display()
    );
    let id = queue_stage(
        &app,
        "kjob",
        stage("s", false, vec![kube_freestyle("run", &script, &cluster)]),
    )
    .await;
    wait_status(&app, "kjob", id, &["running"]).await;
    let resp = app
        .client
        .get(app.url(&format!("/openapi/logs/sse/v4/workflow/kjob/{id}/run/100")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut resp = resp;
    let mut buf = String::new();
    let (lines, ended) = read_events(&mut resp, &mut buf, |d| {
        d.iter().any(|l| l.ends_with("line-3"))
    })
    .await;
    assert!(!ended, "{lines:?}");
    // The Job runs in the emulator while its lines arrive: they came live.
    assert_eq!(job(&task(&app, "kjob", id).await, "run").status, "running");
    let running = jobs(&emu).await;
    assert_eq!(running.len(), 1, "{running:?}");
    let kj = &running[0];
    assert_eq!(kj["spec"]["backoffLimit"], 0);
    assert_eq!(kj["metadata"]["labels"]["s-type"], "freestyle");
    assert_eq!(kj["metadata"]["labels"]["zadig-server/workflow"], "kjob");
    // The job reaches the pod through a Secret the Job owns (it goes with the Job).
    let name = kj["metadata"]["name"].as_str().unwrap();
    let secret = emu
        .object("Secret", NS, name)
        .await
        .expect("the job's Secret");
    let owner = &secret["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["name"].as_str()),
        (Some("Job"), Some(name))
    );
    let env = &kj["spec"]["template"]["spec"]["containers"][0]["env"][0];
    assert_eq!(env["valueFrom"]["secretKeyRef"]["name"], name);
    // Then the job is silent for longer than kube_request_timeout_secs (the log stream's read
    // timeout): its last line still arrives.
    std::fs::write(&go, "").unwrap();
    let t = wait_status(&app, "kjob", id, ENDED).await;
    let j = job(&t, "run");
    assert_eq!(j.status, "passed", "{}", j.error);
    assert_eq!(j.outputs["RESULT"], format!("done-kjob-{id}"));
    let log = full_log(&app, "kjob", id, "run").await;
    assert!(
        log.contains("as Kubernetes Job koderover-agent/kjob-"),
        "{log}"
    );
    assert!(
        log.contains("   line-1") && log.contains("   finished"),
        "{log}"
    );
    // A reopened log stream skips what was read: no line twice.
    assert_eq!(log.matches("   line-1").count(), 1, "{log}");
    assert!(log.contains("Job Status: success"), "{log}");
    assert!(!log.contains("zadig-agent-report"), "{log}");
    finish(app, &emu).await;
}
crate::kind_test!(passes_with_outputs_and_a_live_log);

async fn failures_name_their_reason(kind: Kind) {
    let Some((app, emu, cluster)) = kube_app(kind).await else {
        return;
    };
    let exits = kube_freestyle("exits", "echo before-the-failure\nexit 3", &cluster);
    let mut pull = kube_freestyle("pull", "echo never", &cluster);
    pull.spec["runtime"] =
        json!({"image_from": "custom", "image_id": "reg.example.com/badimage:1"});
    let mut unmapped = kube_freestyle("unmapped", "echo never", &cluster);
    unmapped.spec["runtime"] = json!({"build_os": "centos 7"});
    let nowhere = kube_freestyle("nowhere", "echo never", "no-such-cluster");
    let dead = add_cluster(&app, "dead", &kubeconfig("https://127.0.0.1:9", "t")).await;
    let unreachable = kube_freestyle("unreachable", "echo never", &dead);
    let id = queue_stage(
        &app,
        "kfail",
        stage("s", true, vec![exits, pull, unmapped, nowhere, unreachable]),
    )
    .await;
    let t = wait_status(&app, "kfail", id, ENDED).await;
    let e = job(&t, "exits");
    assert_eq!(e.status, "failed");
    assert!(e.error.contains("exit code 3"), "{}", e.error);
    let log = full_log(&app, "kfail", id, "exits").await;
    assert!(log.contains("before-the-failure"), "{log}");
    let p = job(&t, "pull");
    assert_eq!(p.status, "failed");
    assert!(
        p.error.contains("reg.example.com/badimage:1"),
        "{}",
        p.error
    );
    let u = job(&t, "unmapped");
    assert!(
        u.error.contains("\"centos 7\"") && u.error.contains("engine_kube_images"),
        "{}",
        u.error
    );
    let n = job(&t, "nowhere");
    assert!(n.error.contains("no-such-cluster"), "{}", n.error);
    let d = job(&t, "unreachable");
    assert!(
        d.error.contains("cluster \"dead\"") && d.error.contains("unreachable"),
        "{}",
        d.error
    );
    finish(app, &emu).await;
}
crate::kind_test!(failures_name_their_reason);

async fn timeout_deletes_the_job(kind: Kind) {
    let Some((app, emu, cluster)) = kube_app(kind).await else {
        return;
    };
    let mut spin = kube_freestyle("spin", "while true; do sleep 0.2; done", &cluster);
    spin.spec["advanced_setting"]["timeout"] = json!(1);
    let id = queue_stage(&app, "ktimeout", stage("s", false, vec![spin])).await;
    running_pod(&emu).await;
    // The business clock passes the job's 1-minute timeout.
    app.clock.advance(Duration::from_secs(61));
    let t = wait_status(&app, "ktimeout", id, ENDED).await;
    let j = job(&t, "spin");
    assert_eq!(j.status, "timeout", "{}", j.error);
    finish(app, &emu).await;
}
crate::kind_test!(timeout_deletes_the_job);

async fn cancel_deletes_the_job(kind: Kind) {
    let Some((app, emu, cluster)) = kube_app(kind).await else {
        return;
    };
    let script = "echo started\nwhile true; do sleep 0.2; done";
    let id = queue_stage(
        &app,
        "kcancel",
        stage("s", false, vec![kube_freestyle("spin", script, &cluster)]),
    )
    .await;
    // Running in the emulator: the Job exists and its process runs.
    running_pod(&emu).await;
    api_cancel(&app, "kcancel", id).await;
    // The job ends within the executor's bound (the Job's deletion included).
    let t = app
        .wait_for(
            "the task to end cancelled",
            Duration::from_secs(5),
            || async {
                let t = task(&app, "kcancel", id).await;
                (t.end_time > 0 && t.lease_owner.is_empty()).then_some(t)
            },
        )
        .await;
    assert_eq!(t.status, "cancelled");
    assert_eq!(job(&t, "spin").status, "cancelled");
    finish(app, &emu).await;
}
crate::kind_test!(cancel_deletes_the_job);

async fn build_job_runs_on_the_cluster(kind: Kind) {
    let Some((app, emu, _)) = kube_app(kind).await else {
        return;
    };
    let script = "echo \"building $SERVICE as $IMAGE\"\nVERSION_OUT=v42";
    let extra = json!({"advanced_settings": {"outputs": ["VERSION_OUT"], "cluster_name": "emu"}});
    create_shell_build(&app, "demo", "web-build", script, ("web", "web-mod"), extra).await;
    let mut build = freestyle("build", "");
    build.job_type = "zadig-build".into();
    build.spec = json!({"service_name": "web", "service_module": "web-mod",
        "build_name": "web-build", "image_name": "web-img"});
    let id = queue_stage(&app, "kbuild", stage("b", false, vec![build])).await;
    let t = wait_status(&app, "kbuild", id, ENDED).await;
    let b = job(&t, "build");
    assert_eq!(b.status, "passed", "{}", b.error);
    assert_eq!(b.outputs["VERSION_OUT"], "v42");
    assert!(b.outputs["IMAGE"].contains("web-img:"), "{:?}", b.outputs);
    let log = full_log(&app, "kbuild", id, "build").await;
    assert!(
        log.contains("as Kubernetes Job koderover-agent/kbuild-"),
        "{log}"
    );
    assert!(
        log.contains(&format!("building web as {}", b.outputs["IMAGE"])),
        "{log}"
    );
    finish(app, &emu).await;
}
crate::kind_test!(build_job_runs_on_the_cluster);

async fn kill_9_while_a_job_runs(kind: Kind) {
    let Some(emu) = Emulator::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let Some((config, mut env)) = server_env(kind, dir.path(), port) else {
        return;
    };
    env.push(("ZADIG_ENGINE_KUBE_AGENT_PATH".into(), AGENT.into()));
    let mut server = serve(&env);
    healthy(port).await;
    let c = client();
    let base = format!("http://127.0.0.1:{port}");
    c.post(format!("{base}/openapi/projects/project"))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({"project_name": "Project demo", "project_key": "demo", "is_public": true,
            "description": "d", "project_type": "yaml"}),
        )
        .send()
        .await
        .unwrap();
    let r: Value = c
        .post(format!("{base}/openapi/system/cluster"))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({"name": "emu", "description": "d", "type": "kubeconfig",
            "kube_config": emu.kubeconfig, "project_names": ["demo"]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cluster = r["cluster"]["cluster_id"].as_str().unwrap().to_string();

    // A job that runs until stopped, on the cluster, in a custom image.
    let mut spin = kube_freestyle("spin", "while true; do sleep 0.2; done", &cluster);
    spin.spec["runtime"] = json!({"image_from": "custom", "image_id": "ubuntu:22.04"});
    let tasks = insert_task(&config, "kcrash", spin).await;
    running_pod(&emu).await;

    // SIGKILL: the Job outlives the server.
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    assert_eq!(jobs(&emu).await.len(), 1);

    // The restarted server fails the task (its owner is gone) and deletes the Job.
    let server = serve(&env);
    healthy(port).await;
    let t = poll("the task to be recovered", LIMIT, || async {
        let t = tasks.get("kcrash", 1).await.ok()??;
        (t.status != "running").then_some(t)
    })
    .await;
    assert_eq!(t.status, "failed");
    assert_eq!(t.error, "server restarted while the task was running");
    nothing_left(&emu).await;
    drop(server);
}
crate::kind_test!(kill_9_while_a_job_runs);

/// The pod of the (only) running Job, once its process runs.
async fn running_pod(emu: &Emulator) -> String {
    poll("the job's process to run", LIMIT, || async {
        let running = emu.processes().await.iter().any(|p| p["running"] == true);
        let pods = emu.objects("Pod", NS).await;
        let pod = pods.first()?["metadata"]["name"].as_str()?.to_string();
        running.then_some(pod)
    })
    .await
}

/// Run a spinning job `run` in a task of `workflow`, force its pod's `status` once it runs,
/// and return the error of the failed job (nothing is left behind).
async fn forced_end(
    app: &TestApp,
    emu: &Emulator,
    cluster: &str,
    workflow: &str,
    status: Value,
) -> String {
    let spin = kube_freestyle("run", "while true; do sleep 0.2; done", cluster);
    let id = queue_stage(app, workflow, stage("s", false, vec![spin])).await;
    let pod = running_pod(emu).await;
    emu.set_status("Pod", NS, &pod, status).await;
    let t = wait_status(app, workflow, id, ENDED).await;
    let j = job(&t, "run");
    assert_eq!(j.status, "failed");
    nothing_left(emu).await;
    j.error.clone()
}

async fn pod_status_failures(kind: Kind) {
    let Some((app, emu, cluster)) = kube_app_with(kind, |c| c.engine_kube_pending_secs = 2).await
    else {
        return;
    };
    // The container killed for memory (forced through the emulator's side door).
    let oom = forced_end(
        &app,
        &emu,
        &cluster,
        "koom",
        json!({"phase": "Failed",
        "containerStatuses": [{"name": "run", "image": "ubuntu:22.04", "imageID": "",
        "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
    )
    .await;
    assert!(oom.contains("OOMKilled"), "{oom}");
    // A pod that cannot be scheduled fails the job after engine_kube_pending_secs.
    let pending = forced_end(
        &app,
        &emu,
        &cluster,
        "kpending",
        json!({"phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 Insufficient memory."}]}),
    )
    .await;
    assert!(
        pending.contains("engine_kube_pending_secs") && pending.contains("Insufficient memory"),
        "{pending}"
    );
    finish(app, &emu).await;
}
crate::kind_test!(pod_status_failures);

/// Issue 15's whole flow: a workflow whose zadig-build job runs as a Kubernetes Job (its log
/// read over SSE while the Job runs) and whose zadig-deploy job then deploys the built image
/// into an environment on the same cluster: the emulator's Deployment holds that image.
async fn build_on_the_cluster_then_deploy(kind: Kind) {
    let Some(emu) = Emulator::start().await else {
        return;
    };
    let Some(app) = TestApp::start_with(kind, kube_config).await else {
        return;
    };
    seed_env(&app, &emu).await;
    apply_shop(&app, LIMIT).await;
    let dir = scratch();
    let go = dir.path().join("go");
    let script = format!(
        "echo \"building $IMAGE\"\nwhile [ ! -f {} ]; do sleep 0.1; done\necho built",
        go.display()
    );
    create_web_build(&app, &script, json!({"cluster_name": "emu"})).await;
    let id = build_ship(&app, "ship", true).await;
    let build = app
        .wait_for("the build job to run", LIMIT, || async {
            let d = detail(&app, "ship", id).await;
            let j = &d["stages"][0]["jobs"][0];
            (j["status"] == "running").then(|| j["name"].as_str().map(str::to_string))?
        })
        .await;
    let mut resp = app
        .client
        .get(app.url(&format!(
            "/openapi/logs/sse/v4/workflow/ship/{id}/{build}/100"
        )))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut buf = String::new();
    let (lines, ended) = read_events(&mut resp, &mut buf, |d| {
        d.iter().any(|l| l.contains("building web:"))
    })
    .await;
    assert!(!ended, "{lines:?}");
    // The build's line came while its Kubernetes Job runs.
    assert_eq!(jobs(&emu).await.len(), 1);
    std::fs::write(&go, "").unwrap();
    let d = app
        .wait_for("the task to end", LIMIT, || async {
            let d = detail(&app, "ship", id).await;
            ENDED.contains(&d["status"].as_str()?).then_some(d)
        })
        .await;
    assert_eq!(d["status"], "passed", "{d}");
    let built = d["stages"][0]["jobs"][0]["spec"]["image"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(built.starts_with("web:"), "{built}");
    assert_eq!(image_of(&emu, "Deployment", "web").await, built);
    finish(app, &emu).await;
}
crate::kind_test!(build_on_the_cluster_then_deploy);
