//! Unit tests of the machine: shared fixtures (actors, jobs, plans, contexts) and example-based
//! scenarios for editors, completion, re-planning, approval, the window and callbacks.

use super::*;
use crate::release_plan::model::{ApproveUser, NativeApproval};

pub(super) const T0_MS: i64 = 1_700_000_000_000;
pub(super) const MANAGER: &str = "u-manager";
pub(super) const APPROVERS: [&str; 2] = ["u-a1", "u-a2"];
pub(super) const ACTORS: [&str; 5] = [MANAGER, "u-a1", "u-a2", "u-other", "u-admin"];
pub(super) const TASK_STATUSES: [TaskStatus; 7] = [
    TaskStatus::Passed,
    TaskStatus::Failed,
    TaskStatus::Timeout,
    TaskStatus::Cancelled,
    TaskStatus::Reject,
    TaskStatus::Running,
    TaskStatus::Created,
];

pub(super) fn actor(uid: &str) -> Actor {
    Actor {
        uid: uid.to_string(),
        name: uid.to_string(),
        account: uid.to_string(),
        is_admin: uid == "u-admin",
    }
}

pub(super) fn job(i: usize, kind: JobKind, status: JobStatus) -> ReleaseJob {
    ReleaseJob {
        id: format!("job-{i}"),
        name: format!("job {i}"),
        manager: String::new(),
        manager_id: String::new(),
        kind,
        spec: JobSpec {
            content: "do it".into(),
            workflow_key: if kind == JobKind::Workflow {
                "wf".into()
            } else {
                String::new()
            },
            ..JobSpec::default()
        },
        status,
        last_status: JobStatus::Unset,
        updated: false,
        executed_by: String::new(),
        executed_time: 0,
        error: String::new(),
    }
}

pub(super) fn native(needed: i64, timeout: i64) -> Approval {
    Approval {
        enabled: true,
        kind: "native".into(),
        native_approval: Some(NativeApproval {
            timeout,
            needed_approvers: needed,
            approve_users: APPROVERS
                .iter()
                .map(|u| ApproveUser {
                    user_id: (*u).to_string(),
                    user_name: (*u).to_string(),
                    ..ApproveUser::default()
                })
                .collect(),
            ..NativeApproval::default()
        }),
        ..Approval::default()
    }
}

/// A plan named `plan` that MANAGER manages, with no window, approval or jobs.
fn content() -> Content {
    Content {
        name: "plan".into(),
        manager: "manager".into(),
        manager_id: MANAGER.into(),
        manager_identity_type: "system".into(),
        start_time: 0,
        end_time: 0,
        schedule_execute_time: 0,
        description: String::new(),
        approval: None,
        jobs: Vec::new(),
    }
}

pub(super) fn plan(jobs: Vec<ReleaseJob>) -> ReleasePlan {
    let ctx = Ctx {
        now_ms: T0_MS,
        fresh_code: "0123456789abcdef",
        hook_setting: &HookSnapshot::default(),
    };
    let content = content();
    let mut p = create("p1", 1, &content, &actor(MANAGER), &ctx).plan;
    p.jobs = jobs;
    p
}

pub(super) fn ctx_at(now_ms: i64, hooks: &HookSnapshot) -> Ctx<'_> {
    Ctx {
        now_ms,
        fresh_code: "fedcba9876543210",
        hook_setting: hooks,
    }
}

pub(super) fn run(p: &ReleasePlan, e: Event, now_ms: i64) -> Result<Outcome, Rejection> {
    step(p, &e, &ctx_at(now_ms, &HookSnapshot::default()))
}

pub(super) fn set(p: &ReleasePlan, target: Status, now_ms: i64) -> ReleasePlan {
    let out = run(
        p,
        Event::SetStatus {
            actor: actor(MANAGER),
            target,
        },
        now_ms,
    )
    .unwrap_or_else(|r| panic!("{target}: {}", r.message));
    out.plan
}

#[test]
fn editors_are_the_manager_the_creator_and_admins() {
    let hooks = HookSnapshot::default();
    let ctx = ctx_at(T0_MS, &hooks);
    let mut content = content();
    // u-a1 creates a plan that MANAGER manages.
    let p = create("p1", 1, &content, &actor("u-a1"), &ctx).plan;
    assert_eq!(p.internal.creator_id, "u-a1");
    let edit = |p: &ReleasePlan, who: &str, c: &Content| {
        step(
            p,
            &Event::Edit {
                actor: actor(who),
                content: c.clone(),
            },
            &ctx,
        )
    };
    for who in [MANAGER, "u-a1", "u-admin"] {
        assert!(edit(&p, who, &content).is_ok(), "{who} edits");
    }
    assert_eq!(
        edit(&p, "u-other", &content).unwrap_err().kind,
        RejectKind::Forbidden
    );
    // Handing over: the manager and admins, not the creator.
    content.manager_id = "u-a1".into();
    assert_eq!(
        edit(&p, "u-a1", &content).unwrap_err().kind,
        RejectKind::Forbidden
    );
    assert!(edit(&p, MANAGER, &content).is_ok());
    assert!(edit(&p, "u-admin", &content).is_ok());
    // A plan stored before creators were recorded: only the manager and admins.
    let mut old = p.clone();
    old.internal.creator_id.clear();
    assert!(!may_edit(&old, &actor("u-a1")));
    assert!(may_edit(&old, &actor(MANAGER)));
    assert!(may_edit(&old, &actor("u-admin")));
    // A stored document without the field reads as such a plan.
    let mut doc = serde_json::to_value(&p).unwrap();
    doc["internal"]
        .as_object_mut()
        .unwrap()
        .remove("creator_id");
    let read: ReleasePlan = serde_json::from_value(doc).unwrap();
    assert_eq!(read.internal.creator_id, "");
}

#[test]
fn text_jobs_complete_the_plan() {
    let p = plan(vec![
        job(0, JobKind::Text, JobStatus::Unset),
        job(1, JobKind::Text, JobStatus::Unset),
    ]);
    let p = set(&p, Status::FinishPlanning, T0_MS);
    let p = set(&p, Status::Executing, T0_MS + 1000);
    assert_eq!(p.executing_time, T0_MS / 1000 + 1);
    assert!(p.jobs.iter().all(|j| j.status == JobStatus::Todo));
    let exec = |p: &ReleasePlan, id: &str, who: &str| {
        run(
            p,
            Event::Execute {
                actor: actor(who),
                job_id: id.into(),
                kind: JobKind::Text,
                remark: "ok".into(),
            },
            T0_MS + 2000,
        )
    };
    let denied = exec(&p, "job-0", "u-other").unwrap_err();
    assert_eq!(denied.kind, RejectKind::Forbidden);
    let p = exec(&p, "job-0", MANAGER).map(|o| o.plan).unwrap();
    assert_eq!(p.status, Status::Executing);
    assert_eq!(
        exec(&p, "job-0", MANAGER).unwrap_err().kind,
        RejectKind::Conflict
    );
    let out = run(
        &p,
        Event::Skip {
            actor: actor("u-admin"),
            job_id: "job-1".into(),
            kind: JobKind::Text,
            remark: String::new(),
        },
        T0_MS + 3000,
    )
    .unwrap();
    assert_eq!(out.plan.status, Status::Success);
    assert_eq!(out.plan.success_time, T0_MS / 1000 + 3);
}

#[test]
fn a_re_plan_cancels_running_tasks_and_late_starts() {
    let p = plan(vec![
        job(0, JobKind::Workflow, JobStatus::Unset),
        job(1, JobKind::Workflow, JobStatus::Unset),
    ]);
    let mut p = set(
        &set(&p, Status::FinishPlanning, T0_MS),
        Status::Executing,
        T0_MS,
    );
    for (i, task_id) in [(0, 7), (1, 0)] {
        p.jobs[i].status = JobStatus::Running;
        p.jobs[i].spec.workflow_key = format!("wf-{i}");
        p.jobs[i].spec.task_id = task_id;
    }
    let out = run(
        &p,
        Event::SetStatus {
            actor: actor(MANAGER),
            target: Status::Planning,
        },
        T0_MS,
    )
    .unwrap();
    let cancels: Vec<_> = out
        .effects
        .iter()
        .filter(|e| matches!(e, Effect::CancelTask { .. }))
        .collect();
    assert_eq!(
        cancels,
        [&Effect::CancelTask {
            workflow_key: "wf-0".into(),
            task_id: 7
        }]
    );
    // Job 1's task was still being created: it is cancelled when its start is reported.
    let late = run(
        &out.plan,
        Event::TaskStarted {
            job_id: "job-1".into(),
            workflow_key: "wf-1".into(),
            task_id: 3,
        },
        T0_MS,
    )
    .unwrap();
    assert_eq!(
        late.effects,
        [Effect::CancelTask {
            workflow_key: "wf-1".into(),
            task_id: 3
        }]
    );
    assert_eq!(late.plan.jobs[1].status, JobStatus::Todo);
}

#[test]
fn failed_workflow_job_blocks_completion_until_retried_or_skipped() {
    let p = plan(vec![job(0, JobKind::Workflow, JobStatus::Unset)]);
    let p = set(
        &set(&p, Status::FinishPlanning, T0_MS),
        Status::Executing,
        T0_MS,
    );
    let out = run(
        &p,
        Event::Execute {
            actor: actor(MANAGER),
            job_id: "job-0".into(),
            kind: JobKind::Workflow,
            remark: String::new(),
        },
        T0_MS,
    )
    .unwrap();
    assert!(out.effects.contains(&Effect::StartTask {
        job_id: "job-0".into()
    }));
    let p = run(
        &out.plan,
        Event::TaskStarted {
            job_id: "job-0".into(),
            workflow_key: "wf".into(),
            task_id: 7,
        },
        T0_MS,
    )
    .unwrap()
    .plan;
    let fin = |p: &ReleasePlan, task_id, st: TaskStatus| {
        run(
            p,
            Event::TaskFinished {
                job_id: "job-0".into(),
                task_id,
                task_status: st,
            },
            T0_MS,
        )
        .unwrap()
        .plan
    };
    // A stale task's result changes nothing.
    assert_eq!(fin(&p, 6, TaskStatus::Passed), p);
    let p = fin(&p, 7, TaskStatus::Failed);
    assert_eq!(p.jobs[0].status, JobStatus::Failed);
    assert_eq!(p.status, Status::Executing);
    // Repeating the notification is harmless.
    assert_eq!(fin(&p, 7, TaskStatus::Failed), p);
    let p = run(
        &p,
        Event::Retry {
            actor: actor(MANAGER),
            job_id: "job-0".into(),
            kind: JobKind::Workflow,
        },
        T0_MS,
    )
    .unwrap()
    .plan;
    assert_eq!(p.jobs[0].status, JobStatus::Running);
    assert_eq!(p.jobs[0].spec.task_id, 0);
    let p = fin(&p, 8, TaskStatus::Passed);
    assert_eq!(p.status, Status::Success);
}

#[test]
fn native_approval_quorum_rejection_and_timeout() {
    let mut p = plan(vec![job(0, JobKind::Text, JobStatus::Unset)]);
    p.approval = Some(native(2, 5));
    let p = set(&p, Status::FinishPlanning, T0_MS);
    let err = run(
        &p,
        Event::SetStatus {
            actor: actor(MANAGER),
            target: Status::Executing,
        },
        T0_MS,
    )
    .unwrap_err();
    assert_eq!(err.kind, RejectKind::Conflict);
    let waiting = set(&p, Status::WaitForApproval, T0_MS);
    assert_eq!(waiting.internal.approval_deadline, T0_MS / 1000 + 300);
    let vote = |p: &ReleasePlan, who: &str, approve: bool| {
        run(
            p,
            Event::Vote {
                actor: actor(who),
                approve,
                comment: "c".into(),
            },
            T0_MS + 1000,
        )
    };
    assert_eq!(
        vote(&waiting, "u-other", true).unwrap_err().kind,
        RejectKind::Forbidden
    );
    let one = vote(&waiting, "u-a1", true).unwrap().plan;
    assert_eq!(one.status, Status::WaitForApproval);
    assert_eq!(
        vote(&one, "u-a1", true).unwrap_err().kind,
        RejectKind::Conflict
    );
    let two = vote(&one, "u-a2", true).unwrap().plan;
    assert_eq!(two.status, Status::Executing);
    assert_eq!(
        two.approval.as_ref().map(|a| a.status.as_str()),
        Some("passed")
    );
    assert_eq!(two.approval_time, T0_MS / 1000 + 1);
    let denied = vote(&one, "u-a2", false).unwrap().plan;
    assert_eq!(denied.status, Status::Denied);
    // No decision within 5 minutes: timeout.
    let early = run(&waiting, Event::Tick, T0_MS + 299_000).unwrap();
    assert!(early.is_noop(&waiting));
    let late = run(&waiting, Event::Tick, T0_MS + 300_000).unwrap().plan;
    assert_eq!(late.status, Status::Timeout);
}

#[test]
fn window_and_schedule() {
    let mut p = plan(vec![
        job(0, JobKind::Workflow, JobStatus::Unset),
        job(1, JobKind::Text, JobStatus::Unset),
    ]);
    let t0 = T0_MS / 1000;
    p.start_time = t0;
    p.end_time = t0 + 100;
    p.schedule_execute_time = t0 + 50;
    let p = set(
        &set(&p, Status::FinishPlanning, T0_MS),
        Status::Executing,
        T0_MS,
    );
    assert_eq!(p.internal.schedule_at, t0 + 50);
    assert!(run(&p, Event::Tick, T0_MS + 49_000).unwrap().is_noop(&p));
    let fired = run(&p, Event::Tick, T0_MS + 50_000).unwrap();
    assert_eq!(fired.plan.internal.schedule_at, 0);
    assert_eq!(
        fired
            .effects
            .iter()
            .filter(|e| matches!(e, Effect::StartTask { .. }))
            .count(),
        1
    );
    assert_eq!(fired.plan.jobs[0].executed_by, SYSTEM_NAME);
    assert_eq!(fired.plan.jobs[1].status, JobStatus::Todo);
    // Once only.
    assert!(
        run(&fired.plan, Event::Tick, T0_MS + 51_000)
            .unwrap()
            .is_noop(&fired.plan)
    );
    // After the window: executing the text job times the plan out and fails.
    let late = run(
        &fired.plan,
        Event::Execute {
            actor: actor(MANAGER),
            job_id: "job-1".into(),
            kind: JobKind::Text,
            remark: String::new(),
        },
        T0_MS + 101_000,
    )
    .unwrap();
    assert_eq!(late.plan.status, Status::Timeout);
    assert!(late.error.is_some());
    let ticked = run(&fired.plan, Event::Tick, T0_MS + 101_000).unwrap().plan;
    assert_eq!(ticked.status, Status::Timeout);
}

#[test]
fn external_checks_and_callbacks() {
    let hooks = HookSnapshot {
        enable: true,
        enable_call_back: true,
        hook_events: HookEvent::ALL.to_vec(),
    };
    let mut p = plan(vec![job(0, JobKind::Text, JobStatus::Unset)]);
    p.hook_settings = Some(hooks);
    let out = run(
        &p,
        Event::SetStatus {
            actor: actor(MANAGER),
            target: Status::FinishPlanning,
        },
        T0_MS,
    )
    .unwrap();
    assert_eq!(out.plan.status, Status::WaitForFinishPlanningExternalCheck);
    assert!(matches!(
        out.effects.last(),
        Some(Effect::Hook {
            event: HookEvent::FinishPlanning,
            ..
        })
    ));
    let cb = |p: &ReleasePlan, e: HookEvent, code: &str, ok: bool| {
        run(
            p,
            Event::Callback {
                actor: actor("u-other"),
                hook_event: e,
                instance_code: code.into(),
                result: if ok {
                    CallbackResult::Success
                } else {
                    CallbackResult::Failed
                },
                reason: "r".into(),
            },
            T0_MS + 5000,
        )
    };
    let code = out.plan.instance_code.clone();
    assert_eq!(
        cb(&out.plan, HookEvent::FinishPlanning, "bad", true)
            .unwrap_err()
            .kind,
        RejectKind::Conflict
    );
    assert_eq!(
        cb(&out.plan, HookEvent::AllJobDone, &code, true)
            .unwrap_err()
            .kind,
        RejectKind::Conflict
    );
    // Without approval, a passed finish-planning check goes straight on to executing.
    let p = cb(&out.plan, HookEvent::FinishPlanning, &code, true)
        .unwrap()
        .plan;
    assert_eq!(p.status, Status::Executing);
    assert_eq!(
        p.wait_for_finish_planning_external_check_time,
        T0_MS / 1000 + 5
    );
    // An identical repeat is harmless.
    assert!(
        cb(&p, HookEvent::FinishPlanning, &code, true)
            .unwrap()
            .is_noop(&p)
    );
    let failed = cb(&out.plan, HookEvent::FinishPlanning, &code, false)
        .unwrap()
        .plan;
    assert_eq!(
        failed.status,
        Status::WaitForFinishPlanningExternalCheckFailed
    );
    assert_eq!(failed.external_check_failed_reason, "r");
}

#[test]
fn status_api_table_is_within_the_kept_transitions() {
    for &from in Status::ALL {
        for &to in Status::ALL {
            if status_api_allows(from, to) {
                assert!(is_kept_transition(from, to), "{from} -> {to}");
            }
        }
    }
}
