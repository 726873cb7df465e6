//! The release-plan scheduler on the manual clock: window expiry, approval timeout, scheduled
//! execution (once, found from the store after a restart), and the reconciliation of running
//! workflow jobs.

use std::time::Duration;

use serde_json::json;
use zadig_server::clock::Clock;
use zadig_server::release_plan::model::{
    JobKind, JobSpec, JobStatus, ReleaseJob, ReleasePlan, Status,
};

use crate::backend_test;
use crate::harness::{ADMIN_TOKEN, Kind, TestApp};
use crate::release_plan::{
    approve_as, create_with_text_jobs, detail, executing_plan, job_call, logs, set_status,
    simple_body,
};

const LIMIT: Duration = Duration::from_secs(20);

/// A workflow job as the store keeps it (PATCH needs the workflow service to resolve one);
/// the fields not named take their stored defaults.
pub fn workflow_job(name: &str, workflow: &str, status: JobStatus, task_id: i64) -> ReleaseJob {
    let spec = JobSpec {
        workflow_key: workflow.to_string(),
        project_key: "demo".to_string(),
        parameters: json!([]),
        inputs: json!([]),
        workflow: json!({"name": workflow, "project": "demo", "stages": []}),
        task_id,
        ..JobSpec::default()
    };
    serde_json::from_value(json!({"id": uuid::Uuid::new_v4().to_string(), "name": name,
        "type": JobKind::Workflow, "spec": spec, "status": status}))
    .expect("a release job")
}

/// Change a stored plan directly (with its conditional update).
pub async fn edit_stored(app: &TestApp, id: &str, f: impl FnOnce(&mut ReleasePlan)) {
    let store = &app.state().release_plans;
    let mut p = store.get(id).await.unwrap().expect("plan");
    let v = p.version;
    f(&mut p);
    p.version = v + 1;
    p.internal.running_jobs = p
        .jobs
        .iter()
        .filter(|j| j.status == JobStatus::Running)
        .count() as i64;
    assert!(store.save(&p, v).await.unwrap(), "plan changed meanwhile");
}

pub async fn stored(app: &TestApp, id: &str) -> ReleasePlan {
    app.state()
        .release_plans
        .get(id)
        .await
        .unwrap()
        .expect("plan")
}

async fn wait_status(app: &TestApp, id: &str, status: &str) -> serde_json::Value {
    app.wait_for(&format!("plan {id} to be {status}"), LIMIT, || async {
        let d = detail(app, id).await;
        (d["status"] == status).then_some(d)
    })
    .await
}

/// Let the loops look at the store once more (for asserting that nothing happens).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(700)).await;
}

fn windowed(app: &TestApp, name: &str, before: i64, after: i64) -> serde_json::Value {
    let now = app.clock.now();
    let mut body = simple_body(name, "admin");
    body["start_time"] = json!(now - before);
    body["end_time"] = json!(now + after);
    body
}

backend_test! {
    async fn window_expiry_times_out_executing_plans(app) {
        let id = executing_plan(&app, windowed(&app, "w", 10, 100), 1).await;
        app.clock.advance(Duration::from_secs(100));
        settle().await;
        assert_eq!(detail(&app, &id).await["status"], "executing", "the window is still open at end_time");
        app.clock.advance(Duration::from_secs(1));
        wait_status(&app, &id, "timeout").await;
        // The operation record is written after the status change: wait for it too.
        let l = app.wait_for("the timeout record", LIMIT, || async {
            let l = logs(&app, &id).await;
            (l[0]["after"] == "timeout").then_some(l)
        }).await;
        assert_eq!(l[0]["username"], "系统");
        // timeout → planning or cancel only.
        set_status(&app, &id, "executing").await.expect_error(409, "from timeout to executing");
        set_status(&app, &id, "planning").await.expect(200);
        set_status(&app, &id, "cancel").await.expect_error(409, "from planning to cancel");
        app.stop().await;
    }
}

backend_test! {
    async fn execute_outside_the_window(app) {
        // Not open yet: refused, nothing changes.
        let now = app.clock.now();
        let mut body = simple_body("early", "admin");
        body["start_time"] = json!(now + 100);
        body["end_time"] = json!(now + 200);
        let early = executing_plan(&app, body, 1).await;
        let job = crate::release_plan::job_ids(&detail(&app, &early).await)[0].clone();
        job_call(&app, ADMIN_TOKEN, &early, "execute", &job, "text").await.expect_error(409, "release time range");
        assert_eq!(detail(&app, &early).await["status"], "executing");
        // Closed: the call fails and the plan is saved as timeout at once.
        let late = executing_plan(&app, windowed(&app, "late", 10, 5), 1).await;
        let job = crate::release_plan::job_ids(&detail(&app, &late).await)[0].clone();
        app.clock.set_ms((app.clock.now() + 6) * 1000);
        let r = job_call(&app, ADMIN_TOKEN, &late, "execute", &job, "text").await;
        // Either the call or the scheduler saw the closed window first; both end in timeout.
        assert_eq!(r.status.as_u16(), 409, "{}", r.text);
        assert_eq!(detail(&app, &late).await["status"], "timeout");
        app.stop().await;
    }
}

backend_test! {
    async fn native_approval_times_out(app) {
        let (_, ann) = app.create_user("ann", false).await;
        let mut body = simple_body("a", "admin");
        body["approval"] = json!({"enabled": true, "type": "native",
            "native_approval": {"timeout": 1, "approve_users": [{"user_name": "ann"}], "needed_approvers": 1}});
        let id = create_with_text_jobs(&app, body, 1).await;
        set_status(&app, &id, "finish_planning").await.expect(200);
        set_status(&app, &id, "wait_for_approval").await.expect(200);
        app.clock.advance(Duration::from_secs(59));
        settle().await;
        assert_eq!(detail(&app, &id).await["status"], "wait_for_approval");
        app.clock.advance(Duration::from_secs(1));
        let d = wait_status(&app, &id, "timeout").await;
        assert_eq!(d["approval"]["status"], "timeout");
        assert!(d["approval_time"].as_i64().unwrap() > 0);
        approve_as(&app, &ann, &id, true).await.expect_error(409, "timeout");
        app.stop().await;
    }
}

/// A plan with a text job and a workflow job on `workflow`, scheduled `delay` seconds from now,
/// moved to `executing`.
async fn scheduled_plan(app: &TestApp, workflow: &str, delay: i64) -> (String, String, String) {
    let now = app.clock.now();
    let mut body = simple_body("scheduled", "admin");
    body["start_time"] = json!(now - 10);
    body["end_time"] = json!(now + 10_000);
    body["schedule_execute_time"] = json!(now + delay);
    let id = create_with_text_jobs(app, body, 1).await;
    let wf = workflow_job("deploy", workflow, JobStatus::Unset, 0);
    let wf_id = wf.id.clone();
    edit_stored(app, &id, |p| p.jobs.push(wf)).await;
    set_status(app, &id, "finish_planning").await.expect(200);
    set_status(app, &id, "executing").await.expect(200);
    let p = stored(app, &id).await;
    assert_eq!(p.internal.schedule_at, now + delay);
    let text_id = p.jobs[0].id.clone();
    (id, wf_id, text_id)
}

fn system_executions(l: &[serde_json::Value]) -> usize {
    l.iter()
        .filter(|r| {
            r["verb"] == "执行" && r["username"] == "系统" && r["after"]["status"] == "running"
        })
        .count()
}

backend_test! {
    async fn scheduled_execution_fires_once(app) {
        let (id, wf, text) = scheduled_plan(&app, "ghost-wf", 60).await;
        app.clock.advance(Duration::from_secs(59));
        settle().await;
        assert_eq!(stored(&app, &id).await.internal.schedule_fired_ms, 0);
        app.clock.advance(Duration::from_secs(1));
        // The workflow does not exist (or, before the engine, cannot start): the scheduled start
        // fails the job with the reason; the text job is left to its owner.
        let d = app.wait_for("the scheduled start", LIMIT, || async {
            let d = detail(&app, &id).await;
            (d["jobs"][1]["status"] == "failed").then_some(d)
        }).await;
        let job = &d["jobs"][1];
        assert_eq!(job["id"], json!(wf));
        assert_eq!(job["executed_by"], "系统");
        assert!(job["error"].as_str().unwrap().contains("ghost-wf"), "{job}");
        assert_eq!(d["jobs"][0]["status"], "todo");
        assert_eq!(d["status"], "executing", "a failed job does not finish the plan");
        app.wait_for("the scheduled execution record", LIMIT, || async {
            (system_executions(&logs(&app, &id).await) == 1).then_some(())
        }).await;
        let fired = stored(&app, &id).await.internal;
        assert!(fired.schedule_fired_ms >= (app.clock.now() - 1) * 1000);
        assert_eq!(fired.schedule_at, 0);
        app.clock.advance(Duration::from_secs(600));
        settle().await;
        assert_eq!(system_executions(&logs(&app, &id).await), 1, "fired once");

        // Retrying also fails to start: the job stays failed. Skip it and finish by hand.
        let r = job_call(&app, ADMIN_TOKEN, &id, "retry", &wf, "workflow").await;
        assert!(matches!(r.status.as_u16(), 404 | 409), "{}", r.text);
        assert_eq!(detail(&app, &id).await["jobs"][1]["status"], "failed");
        job_call(&app, ADMIN_TOKEN, &id, "skip", &wf, "workflow").await.expect(200);
        job_call(&app, ADMIN_TOKEN, &id, "execute", &text, "text").await.expect(200);
        assert_eq!(detail(&app, &id).await["status"], "success");
        app.stop().await;
    }
}

backend_test! {
    async fn scheduled_execution_survives_a_restart(app) {
        let (id, _, _) = scheduled_plan(&app, "ghost-wf", 30).await;
        // Nothing is kept in memory: a new process finds the due plan in the store.
        let app = app.restart().await;
        app.clock.advance(Duration::from_secs(30));
        app.wait_for("the scheduled start after a restart", LIMIT, || async {
            let p = stored(&app, &id).await;
            (p.internal.schedule_fired_ms > 0 && p.jobs[1].status == JobStatus::Failed).then_some(())
        }).await;
        app.wait_for("one scheduled execution record", LIMIT, || async {
            (system_executions(&logs(&app, &id).await) == 1).then_some(())
        }).await;
        app.stop().await;
    }
}

backend_test! {
    async fn late_plans_do_not_fire_old_schedules(app) {
        // Reaching executing more than 30 s after the scheduled time: no scheduled execution.
        let now = app.clock.now();
        let mut body = simple_body("late", "admin");
        body["start_time"] = json!(now - 100);
        body["end_time"] = json!(now + 10_000);
        body["schedule_execute_time"] = json!(now - 31);
        let id = create_with_text_jobs(&app, body, 1).await;
        edit_stored(&app, &id, |p| p.jobs.push(workflow_job("deploy", "ghost-wf", JobStatus::Unset, 0))).await;
        set_status(&app, &id, "finish_planning").await.expect(200);
        set_status(&app, &id, "executing").await.expect(200);
        assert_eq!(stored(&app, &id).await.internal.schedule_at, 0);
        settle().await;
        assert_eq!(detail(&app, &id).await["jobs"][1]["status"], "todo");
        assert_eq!(Status::Executing, stored(&app, &id).await.status);
        app.stop().await;
    }
}

async fn reconcile_fails_unstarted(kind: Kind) {
    let Some(app) = TestApp::start_with(kind, |c| c.release_plan_reconcile_secs = 1).await else {
        return;
    };
    let id = executing_plan(&app, simple_body("r", "admin"), 1).await;
    let now = app.clock.now();
    let mut stuck = workflow_job("deploy", "ghost-wf", JobStatus::Running, 0);
    stuck.executed_time = now - 100;
    let stuck_id = stuck.id.clone();
    let mut fresh = workflow_job("fresh", "ghost-wf", JobStatus::Running, 0);
    fresh.executed_time = now;
    edit_stored(&app, &id, |p| {
        p.jobs.push(stuck);
        p.jobs.push(fresh);
    })
    .await;
    let d = app
        .wait_for("the reconciler", LIMIT, || async {
            let d = detail(&app, &id).await;
            (d["jobs"][1]["status"] == "failed").then_some(d)
        })
        .await;
    assert_eq!(d["jobs"][1]["id"], json!(stuck_id));
    assert!(
        d["jobs"][1]["error"]
            .as_str()
            .unwrap()
            .contains("never started")
    );
    // A job that started just now is left alone.
    assert_eq!(d["jobs"][2]["status"], "running");
    assert_eq!(stored(&app, &id).await.internal.running_jobs, 1);
    app.stop().await;
}

crate::kind_test!(reconcile_fails_unstarted);

backend_test! {
    async fn engine_notifications_move_jobs(app) {
        use zadig_server::release_plan::on_workflow_task_finished;
        use zadig_server::workflow::task::Status;
        use zadig_server::workflow::ReleaseRef;
        let id = executing_plan(&app, simple_body("n", "admin"), 1).await;
        let a = workflow_job("a", "wf-a", JobStatus::Running, 5);
        let b = workflow_job("b", "wf-b", JobStatus::Running, 7);
        let (a_id, b_id) = (a.id.clone(), b.id.clone());
        edit_stored(&app, &id, |p| {
            p.jobs.push(a);
            p.jobs.push(b);
        })
        .await;
        let text = crate::release_plan::job_ids(&detail(&app, &id).await)[0].clone();
        job_call(&app, ADMIN_TOKEN, &id, "execute", &text, "text").await.expect(200);
        let p = stored(&app, &id).await;
        let rref = |job: &str| ReleaseRef { plan_id: id.clone(), plan_name: p.name.clone(), plan_index: p.index, job_id: job.to_string() };
        let state = app.state();
        // A stale task or a non-final status changes nothing.
        on_workflow_task_finished(state, &rref(&a_id), 4, Status::Passed).await;
        on_workflow_task_finished(state, &rref(&a_id), 5, Status::Running).await;
        assert_eq!(stored(&app, &id).await.jobs[1].status, JobStatus::Running);
        on_workflow_task_finished(state, &rref(&a_id), 5, Status::Passed).await;
        on_workflow_task_finished(state, &rref(&b_id), 7, Status::Timeout).await;
        let d = detail(&app, &id).await;
        assert_eq!(d["jobs"][1]["status"], "done");
        assert_eq!(d["jobs"][1]["spec"]["status"], "passed");
        assert_eq!(d["jobs"][2]["status"], "failed");
        assert_eq!(d["status"], "executing");
        // Repeats are harmless.
        let v = stored(&app, &id).await.version;
        on_workflow_task_finished(state, &rref(&b_id), 7, Status::Timeout).await;
        on_workflow_task_finished(state, &rref(&a_id), 5, Status::Passed).await;
        assert_eq!(stored(&app, &id).await.version, v);
        // Unknown plans are ignored.
        let mut gone = rref(&a_id);
        gone.plan_id = "0123456789abcdef01234567".into();
        on_workflow_task_finished(state, &gone, 5, Status::Passed).await;
        job_call(&app, ADMIN_TOKEN, &id, "skip", &b_id, "workflow").await.expect(200);
        assert_eq!(detail(&app, &id).await["status"], "success");
        app.stop().await;
    }
}

backend_test! {
    async fn two_replicas_fire_each_schedule_once(app) {
        // A second server on the same store (on MongoDB with its own connection, as another
        // process would have), racing the first for every due plan.
        let backend = match app.kind {
            Kind::Mongo => zadig_server::store::open(&app.config).await.expect("store"),
            Kind::Embedded => app.backend.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let clock: std::sync::Arc<dyn Clock> = std::sync::Arc::new(app.clock.clone());
        let second = zadig_server::start(app.config.clone(), backend, clock, listener)
            .await
            .expect("second server");
        let mut ids = Vec::new();
        for _ in 0..12 {
            ids.push(scheduled_plan(&app, "ghost-wf", 30).await.0);
        }
        app.clock.advance(Duration::from_secs(30));
        app.wait_for("every scheduled execution", LIMIT, || async {
            for id in &ids {
                let p = stored(&app, id).await;
                if p.internal.schedule_fired_ms == 0 || p.jobs[1].status != JobStatus::Failed {
                    return None;
                }
            }
            Some(())
        })
        .await;
        settle().await;
        for id in &ids {
            assert_eq!(system_executions(&logs(&app, id).await), 1, "plan {id} fired more than once");
        }
        second.shutdown().await;
        app.stop().await;
    }
}
