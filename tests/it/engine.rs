//! The workflow engine, black-box: tasks run for real (bash processes) on a real server, on
//! both storage backends. Tasks are stored the way the workflow API stores them and the engine
//! is notified the same way; their progress is observed in the store and through the log
//! routes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zadig_server::engine;
use zadig_server::store::{Filter, FindOptions};
use zadig_server::workflow::task::{
    ApproveOrReject, ApproveUser, JobTask, StageApproval, StageTask, Status, Task,
};

use crate::backend_test;
use crate::build::create_shell_build;
use crate::harness::{ADMIN_TOKEN, TestApp};

const WAIT: Duration = Duration::from_secs(30);

pub fn freestyle(name: &str, script: &str) -> JobTask {
    JobTask {
        name: name.to_string(),
        key: name.to_string(),
        origin_name: name.to_string(),
        display_name: name.to_string(),
        job_type: "freestyle".to_string(),
        spec: json!({"script": script, "script_type": "shell"}),
        ..JobTask::default()
    }
}

pub fn stage(name: &str, parallel: bool, jobs: Vec<JobTask>) -> StageTask {
    StageTask {
        name: name.to_string(),
        parallel,
        jobs,
        ..StageTask::default()
    }
}

/// A waiting task as the workflow API stores it.
pub fn new_task(
    workflow: &str,
    task_id: i64,
    now_ms: i64,
    limit: i64,
    params: Vec<Value>,
    stages: Vec<StageTask>,
) -> Task {
    let now = now_ms / 1000;
    Task {
        id: zadig_server::validate::new_object_id(now),
        task_id,
        workflow_name: workflow.to_string(),
        workflow_display_name: workflow.to_string(),
        project_name: "demo".to_string(),
        params,
        status: Status::Waiting,
        task_creator: "admin".to_string(),
        create_time: now,
        start_time: now,
        stages,
        concurrency_limit: limit,
        queued_at_ms: now_ms,
        ..Task::default()
    }
}

/// Store a waiting task the way the workflow API does and wake the engine.
pub async fn queue(
    app: &TestApp,
    workflow: &str,
    limit: i64,
    params: Vec<Value>,
    stages: Vec<StageTask>,
) -> i64 {
    let st = app.state();
    let task_id = st
        .sequences
        .next(&format!("workflow_task:{workflow}"))
        .await
        .unwrap();
    let task = new_task(workflow, task_id, st.clock.now_ms(), limit, params, stages);
    st.tasks.insert(&task).await.unwrap();
    engine::task_queued(st);
    task_id
}

/// [`queue`] one stage, with no concurrency limit and no parameters.
pub async fn queue_stage(app: &TestApp, workflow: &str, stage: StageTask) -> i64 {
    queue(app, workflow, -1, vec![], vec![stage]).await
}

/// Reset a stage or job that did not pass (or was skipped or unstable) as a retry does:
/// not run, no times, no error. Whether it was reset.
fn reset_unfinished(
    status: &mut Status,
    start: &mut i64,
    end: &mut i64,
    error: &mut String,
) -> bool {
    if ["passed", "skipped", "unstable"].contains(&status.as_str()) {
        return false;
    }
    *status = Status::NotRun;
    *start = 0;
    *end = 0;
    error.clear();
    true
}

pub async fn task(app: &TestApp, workflow: &str, id: i64) -> Task {
    app.state().tasks.get(workflow, id).await.unwrap().unwrap()
}

/// Wait until the task's status is one of `statuses`.
pub async fn wait_status(app: &TestApp, workflow: &str, id: i64, statuses: &[&str]) -> Task {
    app.wait_for(
        &format!("{workflow}#{id} in {statuses:?}"),
        WAIT,
        || async {
            let t = task(app, workflow, id).await;
            statuses.contains(&t.status.as_str()).then_some(t)
        },
    )
    .await
}

pub fn job<'a>(t: &'a Task, name: &str) -> &'a JobTask {
    t.stages
        .iter()
        .flat_map(|s| &s.jobs)
        .find(|j| j.name == name)
        .unwrap_or_else(|| panic!("no job {name}"))
}

/// Apply `f` to the stored task with the API's conditional write.
async fn api_write(app: &TestApp, workflow: &str, id: i64, f: impl Fn(&mut Task)) {
    loop {
        let mut t = task(app, workflow, id).await;
        f(&mut t);
        if app.state().tasks.save(&mut t).await.unwrap() {
            return;
        }
    }
}

/// Cancel as the API does: store `cancelled`, then notify.
pub async fn api_cancel(app: &TestApp, workflow: &str, id: i64) {
    api_write(app, workflow, id, |t| {
        t.status = Status::Cancelled;
        t.task_revoker = "admin".into();
    })
    .await;
    engine::task_cancelled(app.state(), workflow, id);
}

pub async fn full_log(app: &TestApp, workflow: &str, id: i64, job: &str) -> String {
    let r = app
        .get(&format!(
            "/openapi/logs/log/v4/workflow/{workflow}/{id}/{job}"
        ))
        .await;
    r.expect(200);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{:?}",
        r.headers
    );
    r.text
}

/// A directory jobs may write to (the harness lets jobs write under the temp dir; when the
/// tests run as root, jobs run as an unprivileged user, so it is world-writable).
pub fn scratch() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// Hand a fixture tree to the user jobs run as (the tests run as root in CI, and then jobs
/// run as the unprivileged `engine_job_user`); a no-op for a non-root test run.
pub fn give_to_jobs(path: &Path) {
    if !nix::unistd::getuid().is_root() {
        return;
    }
    let (uid, gid) = zadig_server::config::Config::defaults().engine_job_ids();
    fn walk(p: &Path, uid: u32, gid: u32) {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
        if p.is_dir() && !p.is_symlink() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(&e.unwrap().path(), uid, gid);
            }
        }
    }
    walk(path, uid, gid);
}

/// A `sleep` the test can find from outside the job's PID namespace (inside it, `$!` is not
/// the pid the test sees): the script fragment and its marker.
pub fn marked_sleep(secs: u32) -> (String, String) {
    let marker = format!("{secs}.{:06}", uuid::Uuid::new_v4().as_u128() % 1_000_000);
    (format!("sleep {marker}"), marker)
}

/// The host pids of the running `sleep <marker>` processes.
pub fn sleep_pids(marker: &str) -> Vec<i32> {
    let wanted = format!("sleep\0{marker}\0");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.ends_with(wanted.as_bytes()) && !process_gone(*pid))
        })
        .collect()
}

/// Wait for the job's `sleep <marker>` to run; its host pid.
pub async fn find_sleep(app: &TestApp, marker: &str) -> i32 {
    app.wait_for("the job's sleep process", WAIT, || async {
        sleep_pids(marker).first().copied()
    })
    .await
}

/// Whether a process is gone (or a zombie nobody reaped yet).
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn sh_path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

backend_test! {
    async fn three_stage_workflow_runs_to_passed(app) {
        let dir = scratch();
        let out = sh_path(&dir.path().join("out"));
        let approval = StageApproval {
            enabled: true,
            kind: "native".into(),
            approve_users: vec![ApproveUser { user_id: "u1".into(), user_name: "alice".into(), ..ApproveUser::default() }],
            needed_approvers: 0,
            timeout: 5,
            ..StageApproval::default()
        };
        let mut gate = stage("approve", false, vec![freestyle("gated", "echo gated")]);
        gate.approval = Some(approval);
        let deploy = freestyle("deploy", &format!("echo \"v=$VERSION $PROJECT $WORKFLOW $TASK_ID {{{{.workflow.params.VERSION}}}}\" > {out}/deploy; echo CI=$CI ZADIG=$ZADIG"));
        let mut verify = freestyle("verify", "echo kind=$KIND; test -n \"$WORKSPACE\" && pwd");
        verify.spec["envs"] = json!([{"key": "KIND", "value": "blue", "type": "string", "is_credential": false}]);
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        give_to_jobs(&dir.path().join("out"));
        let id = queue(&app, "three", -1,
            vec![json!({"name": "VERSION", "type": "string", "value": "1.2.3", "is_credential": false})],
            vec![
                stage("build", true, vec![
                    freestyle("build-a", &format!("echo building a; touch {out}/a")),
                    freestyle("build-b", &format!("echo building b; touch {out}/b")),
                ]),
                gate,
                stage("deploy", false, vec![deploy, verify]),
            ]).await;

        // The approval stage waits; the task shows wait_for_approval and counts as active.
        let t = wait_status(&app, "three", id, &["wait_for_approval"]).await;
        assert_eq!(t.stages[0].status, "passed");
        assert_eq!(t.stages[1].status, "wait_for_approval");
        assert_eq!(job(&t, "gated").status, "");
        assert!(dir.path().join("out/a").exists() && dir.path().join("out/b").exists());
        // needed_approvers 0 is not an automatic pass: still waiting until someone approves.
        assert!(t.stages[1].approval.as_ref().unwrap().wait_start_ms > 0);

        api_write(&app, "three", id, |t| {
            let a = t.stages[1].approval.as_mut().unwrap();
            a.approve_users[0].reject_or_approve = ApproveOrReject::Approve;
            a.approve_users[0].comment = "LGTM".into();
        }).await;
        engine::approval_recorded(app.state(), "three", id);

        let t = wait_status(&app, "three", id, &["passed", "failed", "cancelled", "timeout", "reject"]).await;
        assert_eq!(t.status, "passed", "{t:#?}");
        assert!(t.start_time > 0 && t.end_time >= t.start_time);
        assert!(t.lease_owner.is_empty());
        for s in &t.stages {
            assert_eq!(s.status, "passed", "stage {}", s.name);
            assert!(s.start_time > 0 && s.end_time >= s.start_time);
            for j in &s.jobs {
                assert_eq!(j.status, "passed", "job {}: {}", j.name, j.error);
                assert!(j.start_time > 0 && j.end_time >= j.start_time);
            }
        }
        assert_eq!(t.stages[1].approval.as_ref().unwrap().reject_or_approve, "approve");
        let deployed = std::fs::read_to_string(dir.path().join("out/deploy")).unwrap();
        assert_eq!(deployed.trim(), format!("v=1.2.3 demo three {id} 1.2.3"));

        // Logs: the executor banner, the script's lines; the full log is plain text.
        let log = full_log(&app, "three", id, "deploy").await;
        assert!(log.starts_with("====================== job-executor Start ======================\n"), "{log}");
        assert!(log.contains("\tExecuting user script."), "{log}");
        assert!(log.contains("   CI=true ZADIG=true"), "{log}");
        assert!(log.contains("Job Status: success"), "{log}");
        assert!(log.contains("job-executor End. Duration:"), "{log}");
        let verify = full_log(&app, "three", id, "verify").await;
        assert!(verify.contains("kind=blue"), "{verify}");
        // Each job ran in a workspace of its own under the data dir, removed after the job.
        assert!(verify.contains(&format!("{}/three/{id}.verify.", app.config.engine_workspace_root().display())), "{verify}");
        let ws = app.config.engine_workspace_root().join("three");
        app.wait_for("the workspaces to be removed", WAIT, || async {
            (std::fs::read_dir(&ws).map(|d| d.count()).unwrap_or(0) == 0).then_some(())
        }).await;
        app.stop().await;
    }
}

backend_test! {
    async fn failing_script_fails_the_task_with_roll_up(app) {
        let id = queue(&app, "fails", -1, vec![], vec![
            stage("par", true, vec![freestyle("p-bad", "echo oops; exit 4"), freestyle("p-ok", "echo fine")]),
            stage("after", false, vec![freestyle("never", "echo never")]),
        ]).await;
        let t = wait_status(&app, "fails", id, &["failed", "passed"]).await;
        assert_eq!(t.status, "failed");
        // A parallel stage runs every job to its end even when one fails.
        assert_eq!(job(&t, "p-bad").status, "failed");
        assert!(job(&t, "p-bad").error.contains("exit code 4"), "{}", job(&t, "p-bad").error);
        assert_eq!(job(&t, "p-ok").status, "passed");
        assert_eq!(t.stages[0].status, "failed");
        // Later stages do not run.
        assert_eq!(t.stages[1].status, "");
        assert_eq!(job(&t, "never").status, "");
        let log = full_log(&app, "fails", id, "p-bad").await;
        assert!(log.contains("Failed to run: script failed: exit code 4."), "{log}");
        assert!(log.contains("Job Status: fail"), "{log}");

        // A sequential stage stops at the first failure; jobs after it keep "".
        let id = queue_stage(&app, "fails-seq", stage("seq", false, vec![freestyle("s-ok", "true"), freestyle("s-bad", "false"), freestyle("s-skip", "true")])).await;
        let t = wait_status(&app, "fails-seq", id, &["failed", "passed"]).await;
        assert_eq!(t.status, "failed");
        assert_eq!(job(&t, "s-ok").status, "passed");
        assert_eq!(job(&t, "s-bad").status, "failed");
        assert_eq!(job(&t, "s-skip").status, "");

        // Zadig runs scripts without -e: only the last command's status counts.
        let id = queue_stage(&app, "no-e", stage("s", false, vec![freestyle("j", "false\necho still here")])).await;
        assert_eq!(wait_status(&app, "no-e", id, &["failed", "passed"]).await.status, "passed");
        app.stop().await;
    }
}

backend_test! {
    async fn cancel_kills_the_running_job_within_two_seconds(app) {
        let dir = scratch();
        let (sleep, marker) = marked_sleep(30);
        let id = queue_stage(&app, "cancel", stage("s", false, vec![freestyle("sleeper", &format!("echo start; {sleep} & wait")), freestyle("next", "echo next")])).await;
        let pid = find_sleep(&app, &marker).await;
        assert_eq!(task(&app, "cancel", id).await.status, "running");
        let started = Instant::now();
        api_cancel(&app, "cancel", id).await;
        let t = app.wait_for("the task to end cancelled", Duration::from_secs(2), || async {
            let t = task(&app, "cancel", id).await;
            (t.end_time > 0 && t.lease_owner.is_empty()).then_some(t)
        }).await;
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        assert_eq!(t.status, "cancelled");
        assert_eq!(t.task_revoker, "admin");
        assert_eq!(job(&t, "sleeper").status, "cancelled");
        assert_eq!(job(&t, "next").status, "");
        assert_eq!(t.stages[0].status, "cancelled");
        app.wait_for("the sleep process to be gone", Duration::from_secs(2), || async { process_gone(pid).then_some(()) }).await;

        // Cancelling a task that still waits (concurrency 1 is taken) never runs it.
        let busy = queue(&app, "cancel-q", 1, vec![], vec![stage("s", false, vec![freestyle("j", &format!("sleep 30 & echo $! > {}; wait", sh_path(&dir.path().join("pid2"))))])]).await;
        let queued = queue(&app, "cancel-q", 1, vec![], vec![stage("s", false, vec![freestyle("j", "echo should not run")])]).await;
        wait_status(&app, "cancel-q", busy, &["running"]).await;
        assert_eq!(task(&app, "cancel-q", queued).await.status, "waiting");
        api_cancel(&app, "cancel-q", queued).await;
        api_cancel(&app, "cancel-q", busy).await;
        let t = app.wait_for("busy to end", WAIT, || async {
            let t = task(&app, "cancel-q", busy).await;
            (t.end_time > 0).then_some(t)
        }).await;
        assert_eq!(t.status, "cancelled");
        let q = task(&app, "cancel-q", queued).await;
        assert_eq!(q.status, "cancelled");
        assert_eq!(q.end_time, 0);
        assert_eq!(job(&q, "j").status, "");
        assert!(t.lease_owner.is_empty());
        app.stop().await;
    }
}

backend_test! {
    async fn retry_reruns_only_the_failed_job(app) {
        let dir = scratch();
        let counter = sh_path(&dir.path().join("count"));
        let marker = dir.path().join("marker");
        let id = queue(&app, "retry", -1, vec![], vec![
            stage("one", false, vec![freestyle("first", &format!("echo ran >> {counter}"))]),
            stage("two", false, vec![freestyle("flaky", &format!("echo try; test -f {}", sh_path(&marker)))]),
        ]).await;
        let t = wait_status(&app, "retry", id, &["failed", "passed"]).await;
        assert_eq!(t.status, "failed");
        assert_eq!(job(&t, "flaky").status, "failed");

        // Retry as the API does (spec §5.7): same task id, unfinished work reset, re-queued.
        std::fs::write(&marker, "").unwrap();
        let now_ms = app.state().clock.now_ms();
        api_write(&app, "retry", id, |t| {
            t.retry_num += 1;
            t.status = Status::Waiting;
            t.end_time = 0;
            t.error.clear();
            t.queued_at_ms = now_ms;
            for s in &mut t.stages {
                if reset_unfinished(&mut s.status, &mut s.start_time, &mut s.end_time, &mut s.error) {
                    for j in &mut s.jobs {
                        reset_unfinished(&mut j.status, &mut j.start_time, &mut j.end_time, &mut j.error);
                    }
                }
            }
        }).await;
        engine::task_queued(app.state());
        let t = wait_status(&app, "retry", id, &["failed", "passed"]).await;
        assert_eq!(t.status, "passed", "{t:#?}");
        assert_eq!(t.task_id, id);
        assert_eq!(std::fs::read_to_string(&counter).unwrap(), "ran\n", "the passed job ran again");
        assert_eq!(job(&t, "flaky").status, "passed");
        app.stop().await;
    }
}

backend_test! {
    async fn concurrency_limit_one_never_runs_two(app) {
        let dir = scratch();
        let lock = sh_path(&dir.path().join("lock"));
        let script = format!("mkdir {lock} || {{ echo overlap; exit 9; }}; sleep 0.3; rmdir {lock}");
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(queue(&app, "serial", 1, vec![], vec![stage("s", false, vec![freestyle("j", &script)])]).await);
        }
        // Another workflow is not held up by the first one's limit.
        let other = queue_stage(&app, "free", stage("s", false, vec![freestyle("j", "echo free")])).await;
        assert_eq!(wait_status(&app, "free", other, &["passed", "failed"]).await.status, "passed");
        let mut max_active = 0;
        let deadline = Instant::now() + WAIT;
        loop {
            let mut active = 0;
            let mut done = 0;
            // One read of all of them (a snapshot on SQLite), so a task that ends between two
            // reads is not counted beside the one that starts after it.
            let serial = app.state().tasks.tasks.find(&Filter::eq("workflow_name", "serial"), &FindOptions::default()).await.unwrap();
            assert_eq!(serial.len(), ids.len());
            for t in &serial {
                match t.status.as_str() {
                    "running" | "wait_for_approval" => active += 1,
                    "passed" | "failed" => done += 1,
                    _ => {}
                }
            }
            max_active = max_active.max(active);
            if done == ids.len() {
                break;
            }
            assert!(Instant::now() < deadline, "tasks did not finish");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(max_active, 1);
        for id in &ids {
            assert_eq!(task(&app, "serial", *id).await.status, "passed", "task {id} overlapped another");
        }
        app.stop().await;
    }
}

backend_test! {
    async fn timeout_kills_the_job(app) {
        let (sleep, marker) = marked_sleep(300);
        let mut j = freestyle("slow", "");
        j.spec = json!({
            "properties": {"timeout": 1},
            "steps": [{"name": "shell", "type": "shell", "spec": {"script": format!("{sleep} & wait")}}]
        });
        let id = queue_stage(&app, "slow", stage("s", false, vec![j])).await;
        let pid = find_sleep(&app, &marker).await;
        // The timeout (1 minute) runs on the business clock.
        app.clock.advance(Duration::from_secs(61));
        let t = wait_status(&app, "slow", id, &["timeout", "failed", "passed"]).await;
        assert_eq!(t.status, "timeout");
        assert_eq!(job(&t, "slow").status, "timeout");
        assert!(job(&t, "slow").error.contains("timed out after 1 minutes"), "{}", job(&t, "slow").error);
        app.wait_for("the sleep process to be gone", Duration::from_secs(5), || async { process_gone(pid).then_some(()) }).await;
        app.stop().await;
    }
}

backend_test! {
    async fn credentials_are_masked_in_logs(app) {
        let mut j = freestyle("secret", "echo \"token=$API_TOKEN pw=$DB_PASSWORD plain=$PLAIN\"; echo $API_TOKEN >&2; echo \"flag=$FLAGGED\"");
        j.spec["envs"] = json!([
            {"key": "DB_PASSWORD", "value": "hunter2-pw", "type": "string", "is_credential": true},
            {"key": "PLAIN", "value": "visible", "type": "string", "is_credential": false},
            // A flag of the wrong type is taken as a credential, not as plain text.
            {"key": "FLAGGED", "value": "flagged-s3cret", "type": "string", "is_credential": "true"},
        ]);
        let id = queue(&app, "mask", -1,
            vec![json!({"name": "API_TOKEN", "type": "string", "value": "s3cr3t-token", "is_credential": true})],
            vec![stage("s", false, vec![j])]).await;
        let t = wait_status(&app, "mask", id, &["passed", "failed"]).await;
        assert_eq!(t.status, "passed");
        let log = full_log(&app, "mask", id, "secret").await;
        assert!(log.contains("token=******** pw=******** plain=visible"), "{log}");
        assert!(!log.contains("s3cr3t-token") && !log.contains("hunter2-pw"), "{log}");
        assert!(log.contains("flag=********") && !log.contains("flagged-s3cret"), "{log}");
        // The SSE route serves the same stored, masked lines.
        let sse = app.get(&format!("/openapi/logs/sse/v4/workflow/mask/{id}/secret/1000")).await;
        sse.expect(200);
        assert!(sse.text.contains("data:[") && sse.text.contains("token=******** pw=********"), "{}", sse.text);
        assert!(!sse.text.contains("s3cr3t-token"));
        app.stop().await;
    }
}

backend_test! {
    async fn a_task_param_that_does_not_decode_fails_the_job_and_stays_masked(app) {
        // A credential flag stored as a string (before lint refused it) is not read as "not a
        // credential": the job fails naming the field instead of running with it in clear.
        let j = freestyle("secret", "echo \"token=$API_TOKEN\"");
        let id = queue(&app, "badparam", -1,
            vec![json!({"name": "API_TOKEN", "type": "string", "value": "s3cr3t-token", "is_credential": "true"})],
            vec![stage("s", false, vec![j])]).await;
        let t = wait_status(&app, "badparam", id, &["passed", "failed"]).await;
        assert_eq!(t.status, "failed");
        let err = &job(&t, "secret").error;
        assert!(err.contains("params[0].is_credential"), "{err}");
        let d = app.get(&format!("/openapi/workflows/custom/task?taskId={id}&workflowKey=badparam")).await;
        assert_eq!(d.expect(200)["params"][0]["value"], "********", "masked: it may be a credential");

        // A manual-execution gate stored with `enabled: "true"` is not read as "no gate": the
        // stage fails naming the field, and its job never runs.
        let mut gated = stage("gated", false, vec![freestyle("after", "echo ran")]);
        gated.manual_exec = json!({"enabled": "true"});
        let id = queue(&app, "badgate", -1, vec![], vec![gated]).await;
        let t = wait_status(&app, "badgate", id, &["passed", "failed"]).await;
        assert_eq!(t.status, "failed");
        assert!(t.stages[0].error.contains("manual_exec.enabled"), "{:?}", t.stages[0]);
        assert_ne!(job(&t, "after").status, "passed");
        app.stop().await;
    }
}

/// Read SSE events from a live response until `until` says stop; returns the data lines and
/// whether the stream ended.
pub async fn read_events(
    resp: &mut reqwest::Response,
    buf: &mut String,
    until: impl Fn(&[String]) -> bool,
) -> (Vec<String>, bool) {
    let mut data = Vec::new();
    loop {
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf[..end].to_string();
            buf.replace_range(..end + 2, "");
            for line in event.lines() {
                if let Some(d) = line.strip_prefix("data:") {
                    data.push(d.to_string());
                }
            }
            if until(&data) {
                return (data, false);
            }
        }
        match tokio::time::timeout(WAIT, resp.chunk())
            .await
            .expect("an SSE chunk in time")
            .unwrap()
        {
            Some(chunk) => buf.push_str(&String::from_utf8_lossy(&chunk)),
            None => return (data, true),
        }
    }
}

backend_test! {
    async fn sse_delivers_lines_before_the_job_ends(app) {
        let dir = scratch();
        let go = dir.path().join("go");
        let script = format!("for i in 1 2 3 4 5; do echo line-$i; done; printf 'cr\\rinside\\n'; while [ ! -f {} ]; do sleep 0.05; done; echo after", sh_path(&go));
        let id = queue_stage(&app, "sse", stage("s", false, vec![freestyle("tail", &script)])).await;
        wait_status(&app, "sse", id, &["running"]).await;
        let resp = app.client
            .get(app.url(&format!("/openapi/logs/sse/v4/workflow/sse/{id}/tail/100")))
            .bearer_auth(ADMIN_TOKEN)
            .send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        assert_eq!(resp.headers()["cache-control"], "no-cache");
        let mut resp = resp;
        let mut buf = String::new();
        let (lines, ended) = read_events(&mut resp, &mut buf, |d| d.iter().any(|l| l.ends_with("cr\\rinside"))).await;
        assert!(!ended);
        assert!(lines.iter().any(|l| l.ends_with("   line-5")), "{lines:?}");
        assert!(lines[0].starts_with("===================="), "{lines:?}");
        // The job is still running: the lines came live.
        assert_eq!(job(&task(&app, "sse", id).await, "tail").status, "running");
        // A client that goes away frees its reader at once.
        let quitter = app.client
            .get(app.url(&format!("/openapi/logs/sse/v4/workflow/sse/{id}/tail/1")))
            .bearer_auth(ADMIN_TOKEN)
            .send().await.unwrap();
        let mut quitter = quitter;
        assert!(quitter.chunk().await.unwrap().is_some());
        assert_eq!(app.state().engine.logs.followers(), 2);
        drop(quitter);
        app.wait_for("the reader to be freed", WAIT, || async { (app.state().engine.logs.followers() == 1).then_some(()) }).await;
        std::fs::write(&go, "").unwrap();
        let (rest, ended) = read_events(&mut resp, &mut buf, |_| false).await;
        assert!(ended, "the stream ends with the job");
        assert!(rest.iter().any(|l| l.ends_with("   after")), "{rest:?}");
        assert!(rest.last().unwrap().contains("job-executor End"), "{rest:?}");
        assert!(buf.is_empty());

        // After the end: the last `lines` lines, then the stream ends.
        let r = app.get(&format!("/openapi/logs/sse/v4/workflow/sse/{id}/tail/2")).await;
        r.expect(200);
        assert_eq!(r.text.matches("event:message\n").count(), 2, "{}", r.text);
        // `lines` not an integer → the default 10.
        let r = app.get(&format!("/openapi/logs/sse/v4/workflow/sse/{id}/tail/abc")).await;
        assert_eq!(r.text.matches("event:message\n").count(), 10, "{}", r.text);

        // A job that has not started yet: the stream waits for it, then follows it to its end.
        let go2 = dir.path().join("go2");
        let id = queue(&app, "sse", -1, vec![], vec![
            stage("first", false, vec![freestyle("gate", &format!("while [ ! -f {} ]; do sleep 0.05; done", sh_path(&go2)))]),
            stage("second", false, vec![freestyle("later", "echo later-line")]),
        ]).await;
        wait_status(&app, "sse", id, &["running"]).await;
        let mut resp = app.client
            .get(app.url(&format!("/openapi/logs/sse/v4/workflow/sse/{id}/later/10")))
            .bearer_auth(ADMIN_TOKEN)
            .send().await.unwrap();
        assert_eq!(job(&task(&app, "sse", id).await, "later").status, "");
        std::fs::write(&go2, "").unwrap();
        let mut buf = String::new();
        let (lines, ended) = read_events(&mut resp, &mut buf, |_| false).await;
        assert!(ended);
        assert!(lines.iter().any(|l| l.ends_with("   later-line")), "{lines:?}");
        app.stop().await;
    }
}

backend_test! {
    async fn log_routes_validate_and_answer_empty(app) {
        app.get("/openapi/logs/sse/v4/workflow/wf/abc/job/10").await.expect_error(400, "taskID");
        app.get("/openapi/logs/log/v4/workflow/wf/1x/job").await.expect_error(400, "taskID");
        let long = "j".repeat(300);
        app.get(&format!("/openapi/logs/log/v4/workflow/wf/1/{long}")).await.expect_error(400, "jobName");
        // Unknown task/job: an empty 200 (full log) and a stream that ends at once (SSE).
        let r = app.get("/openapi/logs/log/v4/workflow/nope/1/job").await;
        r.expect(200);
        assert_eq!(r.text, "");
        let r = app.get("/openapi/logs/sse/v4/workflow/nope/1/job/10").await;
        r.expect(200);
        assert_eq!(r.headers["content-type"], "text/event-stream");
        assert_eq!(r.text, "");
        // Auth is required.
        app.call(reqwest::Method::GET, "/openapi/logs/log/v4/workflow/nope/1/job", None, None).await.expect_error(401, "token");
        app.stop().await;
    }
}

backend_test! {
    async fn job_types_without_an_integration_fail_naming_it(app) {
        let mut deploy = freestyle("deploy", "");
        deploy.job_type = "istio-release".into();
        deploy.spec = json!({"cluster_id": "c", "namespace": "ns"});
        let mut plugin = freestyle("plugin", "");
        plugin.job_type = "plugin".into();
        let mut build = freestyle("build", "");
        build.job_type = "zadig-build".into();
        build.spec = json!({"service_name": "svc", "service_module": "svc", "build_name": "no-such-build"});
        let id = queue_stage(&app, "integrations", stage("s", true, vec![deploy, plugin, build])).await;
        let t = wait_status(&app, "integrations", id, &["failed", "passed"]).await;
        assert_eq!(t.status, "failed");
        let d = job(&t, "deploy");
        assert_eq!(d.status, "failed");
        assert!(d.error.contains("Istio releases are not implemented by this server"), "{}", d.error);
        assert!(job(&t, "plugin").error.contains("container runtime"), "{}", job(&t, "plugin").error);
        assert!(job(&t, "build").error.contains("no-such-build"), "{}", job(&t, "build").error);
        let log = full_log(&app, "integrations", id, "deploy").await;
        assert!(log.contains("Failed to run: job type istio-release cannot run"), "{log}");
        app.stop().await;
    }
}

backend_test! {
    async fn freestyle_steps_tools_and_git(app) {
        // A local git repository to clone.
        let dir = scratch();
        let repo = dir.path().join("code").join("acme").join("hello");
        std::fs::create_dir_all(&repo).unwrap();
        let git = |args: &[&str], cwd: &PathBuf| {
            let st = std::process::Command::new("git").args(args).current_dir(cwd)
                .env("GIT_AUTHOR_NAME", "t").env("GIT_AUTHOR_EMAIL", "t@e").env("GIT_COMMITTER_NAME", "t").env("GIT_COMMITTER_EMAIL", "t@e")
                .status().unwrap();
            assert!(st.success(), "git {args:?}");
        };
        git(&["init", "-q", "-b", "main"], &repo);
        std::fs::write(repo.join("README"), "hello from git\n").unwrap();
        git(&["add", "README"], &repo);
        git(&["commit", "-q", "-m", "first"], &repo);
        let first = String::from_utf8(std::process::Command::new("git").args(["rev-parse", "HEAD"]).current_dir(&repo).output().unwrap().stdout).unwrap().trim().to_string();
        std::fs::write(repo.join("README"), "second version\n").unwrap();
        git(&["commit", "-q", "-am", "second"], &repo);
        // git refuses to clone from a repository another user owns.
        give_to_jobs(dir.path());
        let code = dir.path().join("code").to_string_lossy().into_owned();

        let mut ok = freestyle("ok", "");
        ok.spec = json!({
            "properties": {"timeout": 10, "envs": [{"key": "GREETING", "value": "hi", "type": "string", "is_credential": false}]},
            "steps": [
                {"name": "tools", "type": "tools", "spec": {"installs": [{"name": "bash", "version": "5"}]}},
                {"name": "git", "type": "git", "spec": {"repos": [{"repo_owner": "acme", "repo_namespace": "acme", "repo_name": "hello", "branch": "main", "address": code, "source": "other"}]}},
                {"name": "shell", "type": "shell", "spec": {"script": "cat hello/README; echo $GREETING $REPONAME_0 $REPO_0 $hello_BRANCH"}}
            ]
        });
        let mut no_tool = freestyle("no-tool", "echo unreachable");
        no_tool.spec["runtime"] = json!({"installs": [{"name": "no-such-tool-xyz", "version": "1.0"}]});
        // A pinned commit is checked out; checkout_path places the clone.
        let mut pinned = freestyle("pinned", "cat src/app/README; echo commit=$hello_COMMIT_ID");
        pinned.spec["repos"] = json!([{"repo_owner": "acme", "repo_name": "hello", "branch": "main", "address": code,
            "enable_commit": true, "commit_id": first, "checkout_path": "src/app"}]);
        let mut bad_repo = freestyle("bad-repo", "echo unreachable");
        bad_repo.spec["repos"] = json!([{"repo_owner": "acme", "repo_name": "missing", "branch": "main", "address": code}]);
        let id = queue_stage(&app, "steps", stage("s", true, vec![ok, pinned, no_tool, bad_repo])).await;
        let t = wait_status(&app, "steps", id, &["failed", "passed"]).await;
        assert_eq!(job(&t, "ok").status, "passed", "{}", job(&t, "ok").error);
        let log = full_log(&app, "steps", id, "ok").await;
        assert!(log.contains("\tInstalling tools.") && log.contains("Tool bash 5: "), "{log}");
        assert!(log.contains("\tStart git clone."), "{log}");
        assert!(log.contains("   second version") && !log.contains("hello from git"), "{log}");
        assert!(log.contains("   hi hello hello main"), "{log}");
        assert_eq!(job(&t, "pinned").status, "passed", "{}", job(&t, "pinned").error);
        let log = full_log(&app, "steps", id, "pinned").await;
        assert!(log.contains("   hello from git") && log.contains(&format!("commit={first}")), "{log}");
        let e = &job(&t, "no-tool").error;
        assert!(e.contains("no-such-tool-xyz"), "{e}");
        let e = &job(&t, "bad-repo").error;
        assert!(e.contains("repo missing"), "{e}");
        app.stop().await;
    }
}

backend_test! {
    async fn build_job_runs_the_build_and_records_outputs(app) {
        let script = "set -e\necho \"building $SERVICE/$SERVICE_MODULE as $IMAGE pkg=$PKG_FILE mode=$MODE token=$TOKEN\"\necho \"registry $DOCKER_REGISTRY_HOST $DOCKER_REGISTRY_NAMESPACE $DOCKER_REGISTRY_AK $DOCKER_REGISTRY_SK\"\nVERSION_OUT=v42";
        create_shell_build(&app, "demo", "web-build", script, ("web", "web-mod"), json!({
            "parameters": [
                {"key": "MODE", "type": "string", "default_value": "debug"},
                {"key": "TOKEN", "type": "string", "default_value": "b-s3cr3t", "is_credential": true}
            ],
            "advanced_settings": {"outputs": ["VERSION_OUT"]}})).await;
        let reg = app.post("/openapi/system/registry", json!({
            "address": "https://reg.example.com", "provider": "native", "namespace": "team",
            "access_key": "robot", "secret_key": "reg-s3cr3t", "is_default": false
        })).await;
        let reg_id = reg.expect(200)["id"].as_str().unwrap().to_string();
        let mut build = freestyle("job-0-0-0-build", "");
        build.key = "build".into();
        build.origin_name = "build".into();
        build.job_type = "zadig-build".into();
        build.spec = json!({
            "service_name": "web", "service_module": "web-mod", "build_name": "web-build",
            "image_name": "web-img", "docker_registry_id": reg_id,
            "key_vals": [{"key": "MODE", "value": "release", "type": "string", "is_credential": false}]
        });
        let mut unknown_registry = build.clone();
        unknown_registry.name = "job-0-0-1-build".into();
        unknown_registry.spec["docker_registry_id"] = json!("no-such-registry");
        let uses = freestyle("use", "echo image={{.job.build.web.web-mod.output.IMAGE}} tag={{.job.build.web.web-mod.output.IMAGETAG}} v={{.job.build.web.web-mod.output.VERSION_OUT}}");
        let id = queue(&app, "builds", -1, vec![], vec![
            stage("build", true, vec![build]),
            stage("use", false, vec![uses]),
        ]).await;
        let t = wait_status(&app, "builds", id, &["passed", "failed"]).await;
        let b = job(&t, "job-0-0-0-build");
        assert_eq!(b.status, "passed", "{}", b.error);
        let image = b.outputs["IMAGE"].clone();
        assert!(image.starts_with("reg.example.com/team/web-img:") && image.contains(&format!("-{id}")), "{image}");
        assert_eq!(b.outputs["IMAGETAG"], image.split_once(':').unwrap().1);
        assert!(b.outputs["PKG_FILE"].starts_with("web-mod-") && b.outputs["PKG_FILE"].ends_with(".tar.gz"));
        assert_eq!(b.outputs["VERSION_OUT"], "v42");
        let log = full_log(&app, "builds", id, "job-0-0-0-build").await;
        assert!(log.contains(&format!("building web/web-mod as {image} pkg={} mode=release token=********", b.outputs["PKG_FILE"])), "{log}");
        assert!(log.contains("registry https://reg.example.com team robot ********"), "{log}");
        assert!(!log.contains("b-s3cr3t") && !log.contains("reg-s3cr3t"));
        let log = full_log(&app, "builds", id, "use").await;
        assert!(log.contains(&format!("image={image} tag={} v=v42", b.outputs["IMAGETAG"])), "{log}");
        assert_eq!(t.status, "passed");

        let id = queue_stage(&app, "builds", stage("build", true, vec![unknown_registry])).await;
        let t = wait_status(&app, "builds", id, &["passed", "failed"]).await;
        let e = &job(&t, "job-0-0-1-build").error;
        assert!(e.contains("no-such-registry") && e.contains("docker_registry_id"), "{e}");
        app.stop().await;
    }
}

fn gated(name: &str, needed: i64, timeout: i64) -> StageTask {
    let mut s = stage(
        name,
        false,
        vec![freestyle(&format!("{name}-job"), "echo after approval")],
    );
    s.approval = Some(StageApproval {
        enabled: true,
        kind: "native".into(),
        approve_users: vec![
            ApproveUser {
                user_id: "u1".into(),
                user_name: "alice".into(),
                ..ApproveUser::default()
            },
            ApproveUser {
                user_id: "u2".into(),
                user_name: "bob".into(),
                ..ApproveUser::default()
            },
        ],
        needed_approvers: needed,
        timeout,
        ..StageApproval::default()
    });
    s
}

async fn vote(app: &TestApp, workflow: &str, id: i64, stage: usize, user: usize, verdict: &str) {
    let verdict: ApproveOrReject = serde_json::from_value(serde_json::json!(verdict)).unwrap();
    api_write(app, workflow, id, |t| {
        let a = t.stages[stage].approval.as_mut().unwrap();
        a.approve_users[user].reject_or_approve = verdict;
        a.approve_users[user].operation_time = 1;
    })
    .await;
    engine::approval_recorded(app.state(), workflow, id);
}

backend_test! {
    async fn stage_approval_quorum_reject_and_timeout(app) {
        // Quorum of two: one approval is not enough.
        let id = queue_stage(&app, "quorum", gated("g", 2, 10)).await;
        wait_status(&app, "quorum", id, &["wait_for_approval"]).await;
        vote(&app, "quorum", id, 0, 0, "approve").await;
        // Still waiting after the vote was seen (the runner re-reads within the sweep interval).
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(task(&app, "quorum", id).await.status, "wait_for_approval");
        vote(&app, "quorum", id, 0, 1, "approve").await;
        assert_eq!(wait_status(&app, "quorum", id, &["passed", "failed", "reject"]).await.status, "passed");

        // Any reject rejects.
        let id = queue_stage(&app, "rejected", gated("g", 1, 10)).await;
        wait_status(&app, "rejected", id, &["wait_for_approval"]).await;
        vote(&app, "rejected", id, 0, 1, "reject").await;
        let t = wait_status(&app, "rejected", id, &["reject", "passed"]).await;
        assert_eq!(t.status, "reject");
        app.wait_for("the task end", WAIT, || async { (task(&app, "rejected", id).await.end_time > 0).then_some(()) }).await;
        let t = task(&app, "rejected", id).await;
        assert_eq!(t.stages[0].status, "reject");
        assert_eq!(t.stages[0].error, "bob reject this task");
        assert_eq!(t.stages[0].approval.as_ref().unwrap().reject_or_approve, "reject");
        assert_eq!(job(&t, "g-job").status, "", "no job of a rejected stage runs");

        // The timeout (minutes) runs on the business clock from when the stage started waiting.
        let id = queue_stage(&app, "late", gated("g", 1, 3)).await;
        wait_status(&app, "late", id, &["wait_for_approval"]).await;
        app.clock.advance(Duration::from_secs(2 * 60));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(task(&app, "late", id).await.status, "wait_for_approval");
        app.clock.advance(Duration::from_secs(61));
        let t = wait_status(&app, "late", id, &["timeout", "passed"]).await;
        assert_eq!(t.status, "timeout");
        assert_eq!(t.stages[0].status, "timeout");

        // Cancel ends the wait.
        let id = queue_stage(&app, "cancel-wait", gated("g", 1, 10)).await;
        wait_status(&app, "cancel-wait", id, &["wait_for_approval"]).await;
        api_cancel(&app, "cancel-wait", id).await;
        let t = app.wait_for("the cancelled end", Duration::from_secs(2), || async {
            let t = task(&app, "cancel-wait", id).await;
            (t.end_time > 0).then_some(t)
        }).await;
        assert_eq!(t.status, "cancelled");
        assert_eq!(t.stages[0].status, "cancelled");
        app.stop().await;
    }
}

backend_test! {
    async fn approval_job_and_error_policies(app) {
        let mut approval = freestyle("approve-it", "");
        approval.job_type = "approval".into();
        approval.spec = json!({"type": "native", "timeout": 5, "native_approval": {
            "approve_users": [{"user_id": "u1", "user_name": "alice"}], "needed_approvers": 1}});
        let mut ignored = freestyle("ignored", "exit 1");
        ignored.error_policy = json!({"policy": "ignore_error"});
        let id = queue(&app, "approval-job", -1, vec![], vec![
            stage("gate", false, vec![approval]),
            stage("after", false, vec![ignored, freestyle("next", "echo next")]),
        ]).await;
        let t = app.wait_for("the approval job to wait", WAIT, || async {
            let t = task(&app, "approval-job", id).await;
            (job(&t, "approve-it").status == "wait_for_approval").then_some(t)
        }).await;
        // An approval job keeps the task running.
        assert_eq!(t.status, "running");
        api_write(&app, "approval-job", id, |t| {
            let j = &mut t.stages[0].jobs[0];
            j.spec["native_approval"]["approve_users"][0]["reject_or_approve"] = json!("approve");
        }).await;
        engine::approval_recorded(app.state(), "approval-job", id);
        let t = wait_status(&app, "approval-job", id, &["passed", "failed"]).await;
        assert_eq!(t.status, "passed", "{t:#?}");
        assert_eq!(job(&t, "approve-it").status, "passed");
        // ignore_error: the failure becomes unstable, the stage and the task pass.
        assert_eq!(job(&t, "ignored").status, "unstable");
        assert_eq!(job(&t, "next").status, "passed");
        assert_eq!(t.stages[1].status, "passed");

        // retry: attempts 10 s apart on the business clock, stopping at the first pass.
        let dir = scratch();
        let marker = sh_path(&dir.path().join("tries"));
        let mut flaky = freestyle("flaky", &format!("echo x >> {marker}; test $(wc -l < {marker}) -ge 2"));
        flaky.error_policy = json!({"policy": "retry", "maximum_retry": 3});
        let id = queue_stage(&app, "retry-policy", stage("s", false, vec![flaky])).await;
        app.wait_for("the first attempt", WAIT, || async {
            let n = std::fs::read_to_string(&marker).map(|s| s.lines().count()).unwrap_or(0);
            (n == 1).then_some(())
        }).await;
        let t = app.wait_for("the retry pause", WAIT, || async {
            app.clock.advance(Duration::from_secs(11));
            let t = task(&app, "retry-policy", id).await;
            (t.status == "passed").then_some(t)
        }).await;
        assert_eq!(job(&t, "flaky").retry_count, 1);
        assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 2);

        // A stored spec whose approver does not read fails the job naming the field; the other
        // approver does not decide alone.
        let mut broken = freestyle("broken-gate", "");
        broken.job_type = "approval".into();
        broken.spec = json!({"type": "native", "native_approval": {"needed_approvers": 1, "approve_users": [
            {"user_id": "u1", "user_name": "alice", "reject_or_approve": "approve"}, {"user_id": 2, "user_name": "bob"}]}});
        let id = queue_stage(&app, "broken-approval", stage("gate", false, vec![broken])).await;
        let t = wait_status(&app, "broken-approval", id, &["passed", "failed"]).await;
        assert_eq!(t.status, "failed", "{t:#?}");
        let j = job(&t, "broken-gate");
        assert_eq!(j.status, "failed");
        assert!(j.error.starts_with("spec.native_approval.approve_users[1].user_id:"), "{}", j.error);
        app.stop().await;
    }
}

backend_test! {
    async fn two_replicas_run_each_task_exactly_once(app) {
        // A second server on the same store (its own process state, workspace and lease).
        let mut config = app.config.clone();
        let dir2 = scratch();
        config.engine_workspace_dir = dir2.path().join("ws");
        let backend = zadig_server::store::open(&config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let clock: std::sync::Arc<dyn zadig_server::clock::Clock> = std::sync::Arc::new(app.clock.clone());
        let second = zadig_server::start(config, backend, clock, listener).await.unwrap();
        assert_ne!(second.state.instance_id, app.state().instance_id);

        let dir = scratch();
        let ran = sh_path(&dir.path().join("ran"));
        let lock = sh_path(&dir.path().join("lock"));
        let mut ids = Vec::new();
        for _ in 0..12 {
            ids.push(queue_stage(&app, "shared", stage("s", false, vec![freestyle("j", &format!("echo $TASK_ID >> {ran}"))])).await);
        }
        // A limited workflow: never two at once across the replicas.
        let mut limited = Vec::new();
        for _ in 0..4 {
            limited.push(queue(&app, "one-at-a-time", 1, vec![], vec![stage("s", false, vec![freestyle("j", &format!("mkdir {lock} || exit 9; sleep 0.2; rmdir {lock}"))])]).await);
        }
        engine::task_queued(&second.state);
        for id in &ids {
            assert_eq!(wait_status(&app, "shared", *id, &["passed", "failed"]).await.status, "passed");
        }
        for id in &limited {
            assert_eq!(wait_status(&app, "one-at-a-time", *id, &["passed", "failed"]).await.status, "passed", "task {id}");
        }
        let mut lines: Vec<i64> = std::fs::read_to_string(&ran).unwrap().lines().map(|l| l.parse().unwrap()).collect();
        lines.sort_unstable();
        assert_eq!(lines, ids, "each task ran exactly once");

        // A cancel recorded through the first replica stops a job running on the second one.
        let (sleep, marker) = marked_sleep(30);
        let id = queue_stage(&app, "remote-cancel", stage("s", false, vec![freestyle("j", &format!("{sleep} & wait"))])).await;
        let pid = find_sleep(&app, &marker).await;
        // Cancel through the replica that does NOT run it.
        let on_second = second.state.engine.is_running_here("remote-cancel", id);
        assert!(on_second || app.state().engine.is_running_here("remote-cancel", id));
        let other = if on_second { app.state() } else { &second.state };
        api_write(&app, "remote-cancel", id, |t| t.status = Status::Cancelled).await;
        engine::task_cancelled(other, "remote-cancel", id);
        let t = app.wait_for("the cancelled end", Duration::from_secs(3), || async {
            let t = task(&app, "remote-cancel", id).await;
            (t.end_time > 0).then_some(t)
        }).await;
        assert_eq!(t.status, "cancelled", "ran on the second replica: {on_second}");
        app.wait_for("the process to be gone", Duration::from_secs(3), || async { process_gone(pid).then_some(()) }).await;
        second.shutdown().await;
        app.stop().await;
    }
}

backend_test! {
    async fn execute_policies_skip_run_or_fail_naming_the_field(app) {
        let policy = |kind: &str, verb: &str, value: &str| json!({"type": kind, "match_rule": "all",
            "rules": [{"field": "{{.workflow.params.ENV}}", "verb": verb, "value": value}]});
        let mut skipped = freestyle("skipped", "echo never");
        skipped.execute_policy = policy("skip", "==", "prod");
        let mut listed = freestyle("listed", "echo listed");
        listed.execute_policy = policy("execute", "in", "qa, prod");
        let mut unlisted = freestyle("unlisted", "echo unlisted");
        unlisted.execute_policy = policy("execute", "not-in", "qa, prod");
        // Stored before lint checked policies: the job fails naming the field, not a default.
        let mut broken = freestyle("broken", "echo never");
        broken.execute_policy = policy("execute", "~", "prod");
        let id = queue(&app, "policies", -1,
            vec![json!({"name": "ENV", "type": "string", "value": "prod"})],
            vec![stage("s", true, vec![skipped, listed, unlisted, broken])]).await;
        let t = wait_status(&app, "policies", id, &["passed", "failed"]).await;
        let statuses: Vec<&str> = ["skipped", "listed", "unlisted", "broken"].iter()
            .map(|n| job(&t, n).status.as_str()).collect();
        assert_eq!(statuses, ["skipped", "passed", "skipped", "failed"]);
        assert!(job(&t, "broken").error.contains("execute_policy.rules[0].verb"), "{}", job(&t, "broken").error);

        // Lint refuses such a policy when the workflow is saved.
        let mut wf = crate::workflows::echo_workflow("policy-lint", "demo");
        wf["stages"][0]["jobs"][0]["execute_policy"] = policy("sometimes", "==", "x");
        app.post("/api/aslan/workflow/v4", wf).await.expect_error(400, "stages[0].jobs[0].execute_policy.type");
        app.stop().await;
    }
}
