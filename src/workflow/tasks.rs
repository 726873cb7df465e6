//! The task API at the data level (spec/workflow.md §2.3, §2.4, §2.6–2.8, §2.15, §5.7, §5.8):
//! list, detail, cancel, retry, remark and manual stage execution (votes are in
//! [`crate::workflow::votes`]). The engine runs tasks; these functions change the stored task
//! with conditional writes (`TaskStore::save`) and notify the engine.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::limits::Paging;
use crate::state::AppState;
use crate::store::retry::Attempts;
use crate::validate;
use crate::workflow::approval::{
    ERROR_HANDLING, ErrorDecision, ErrorHandling, GateUser, ManualExec,
};
use crate::workflow::definitions;
use crate::workflow::error::{Kind, Op, refuse};
use crate::workflow::expand;
use crate::workflow::model::{ErrorPolicy, Workflow};
use crate::workflow::notify::pending;
use crate::workflow::task::{ApproveOrReject, ApproveUser, StageTask, Status, Task, Timed};

/// A 409 for a task that kept changing under a conditional write.
pub(super) fn raced(what: &str) -> ApiError {
    ApiError::conflict(format!(
        "{what}: the task kept changing while this request was applied; retry"
    ))
}

/// What a change to a freshly read task asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Write the changed task (conditionally; a lost race reads and changes it again).
    Write,
    /// The task is already as asked: nothing to write.
    Unchanged,
}

/// The read–modify–conditional-write loop over one task (see `store::retry`): `change` edits
/// the task as read (or refuses with the caller's error); the answer says whether a write
/// happened, so the caller logs and notifies the engine only then, with the task as written (or
/// as read, when unchanged). A task that keeps changing ends in 409 naming `what`.
async fn update(
    state: &AppState,
    workflow: &str,
    task_id: i64,
    op: Op,
    what: &str,
    mut change: impl FnMut(&mut Task) -> ApiResult<Change>,
) -> ApiResult<(Change, Task)> {
    let mut attempts = Attempts::new();
    while attempts.next().await {
        let mut t = get(state, workflow, task_id, op).await?;
        if change(&mut t)? == Change::Unchanged {
            return Ok((Change::Unchanged, t));
        }
        if state.tasks.save(&mut t).await? {
            return Ok((Change::Write, t));
        }
    }
    Err(raced(what))
}

/// One page of a workflow's tasks (newest first) and the total.
pub async fn list(
    state: &AppState,
    workflow: &str,
    project: &str,
    p: Paging,
) -> ApiResult<(Workflow, Vec<Task>, u64)> {
    validate::name("workflowKey", workflow)?;
    validate::name("projectKey", project)?;
    let wf = definitions::find_in(state, workflow, project, Op::FindWorkflow).await?;
    let (tasks, total) = state.tasks.page(project, workflow, p).await?;
    Ok((wf, tasks, total))
}

/// A task by workflow and id; unknown → 404 with `code`.
pub async fn get(state: &AppState, workflow: &str, task_id: i64, op: Op) -> ApiResult<Task> {
    state.tasks.get(workflow, task_id).await?.ok_or_else(|| {
        refuse(
            Kind::NotFound,
            op,
            format!("task {workflow}:{task_id} not found"),
        )
    })
}

pub use crate::workflow::task_view::{MASK, cost_seconds, job_spec_view};

/// Cancel a task (`DELETE /openapi/workflows/custom/task`): any unfinished task becomes
/// `cancelled`; a passed task → 400/6163 with the seed's text; other finished tasks → 409.
pub async fn cancel(
    state: &AppState,
    caller: &Identity,
    workflow: &str,
    task_id: i64,
) -> ApiResult<()> {
    let change = |t: &mut Task| {
        match t.status {
            Status::Passed => {
                return Err(refuse(
                    Kind::BadRequest,
                    Op::CancelTask,
                    format!("task: {workflow}:{task_id} is passed, cannot cancel"),
                ));
            }
            Status::Cancelled => return Ok(Change::Unchanged),
            s if s.is_final() => {
                return Err(refuse(
                    Kind::Conflict,
                    Op::CancelTask,
                    format!("task: {workflow}:{task_id} is {s}, cannot cancel"),
                ));
            }
            _ => {}
        }
        // A task nobody started ends now (and is told so); a running one ends when the engine
        // winds it down.
        let unclaimed = [Status::Waiting, Status::Created].contains(&t.status);
        t.status = Status::Cancelled;
        t.task_revoker = caller.name.clone();
        if unclaimed {
            t.end_time = state.clock.now();
            pending::record(t, Status::Cancelled, state.clock.now_ms());
        }
        Ok(Change::Write)
    };
    let (written, mut task) =
        update(state, workflow, task_id, Op::CancelTask, "cancel", change).await?;
    if written == Change::Write {
        tracing::info!(workflow = %workflow, task_id, "task {workflow}#{task_id} cancelled by {}", caller.account);
        pending::flush(state, &mut task).await;
        crate::engine::task_cancelled(state, workflow, task_id);
    }
    Ok(())
}

fn finished_ok(s: Status) -> bool {
    [Status::Passed, Status::Skipped, Status::Unstable].contains(&s)
}

/// Retry a task (`POST /openapi/workflows/custom/:workflowKey/task/:taskID`, spec §5.7): same
/// task id; stages and job tasks that did not pass are reset (their specs regenerated from
/// the stored definition), passed work is kept; the task is queued again.
pub async fn retry(
    state: &AppState,
    caller: &Identity,
    workflow: &str,
    task_id: i64,
) -> ApiResult<()> {
    let change = |t: &mut Task| {
        if ![
            Status::Failed,
            Status::Timeout,
            Status::Cancelled,
            Status::Reject,
        ]
        .contains(&t.status)
        {
            return Err(refuse(
                Kind::Conflict,
                Op::GetTask,
                format!(
                    "task {workflow}:{task_id} is {}: only failed, timeout, cancelled or rejected tasks can be retried",
                    t.status
                ),
            ));
        }
        let fresh = regenerated_specs(t);
        for stage in &mut t.stages {
            if !finished_ok(stage.status) {
                reset_stage(stage, &fresh);
            }
        }
        t.retry_num += 1;
        t.start_time = 0;
        t.task_revoker.clear();
        requeue(t, state.clock.now_ms());
        Ok(Change::Write)
    };
    let (_, mut task) = update(state, workflow, task_id, Op::GetTask, "retry", change).await?;
    tracing::info!(workflow = %workflow, task_id, "task {workflow}#{task_id} retried by {}", caller.account);
    pending::flush(state, &mut task).await;
    crate::engine::task_queued(state);
    Ok(())
}

/// Set a task's remark (`PUT /openapi/workflows/custom/:workflowKey/task/:taskID`).
pub async fn set_remark(
    state: &AppState,
    caller: &Identity,
    workflow: &str,
    task_id: i64,
    remark: &str,
) -> ApiResult<()> {
    let change = |t: &mut Task| {
        if t.remark == remark {
            return Ok(Change::Unchanged);
        }
        t.remark = remark.to_string();
        Ok(Change::Write)
    };
    if update(state, workflow, task_id, Op::GetTask, "remark", change)
        .await?
        .0
        == Change::Write
    {
        tracing::info!(workflow = %workflow, task_id, "remark of task {workflow}#{task_id} set by {}", caller.account);
    }
    Ok(())
}

/// A stage to run again: its approval votes cleared, its job tasks that did not pass reset
/// (specs from `fresh` when given).
fn reset_stage(stage: &mut StageTask, fresh: &HashMap<String, Value>) {
    stage.reset();
    if let Some(a) = stage.approval.as_mut() {
        a.reject_or_approve = ApproveOrReject::None;
        a.wait_start_ms = 0;
        for u in &mut a.approve_users {
            *u = ApproveUser {
                user_id: u.user_id.clone(),
                user_name: u.user_name.clone(),
                ..ApproveUser::default()
            };
        }
    }
    for job in &mut stage.jobs {
        if finished_ok(job.status) {
            continue;
        }
        job.reset();
        job.outputs.clear();
        if let Some(spec) = fresh.get(&job.name) {
            job.spec = spec.clone();
        }
    }
}

/// Put a task back in the queue (the engine resumes it at its first stage not done), telling
/// its notifications `created` (as Zadig does on a retry or a manual stage run).
fn requeue(t: &mut Task, now_ms: i64) {
    t.status = Status::Waiting;
    t.queued_at_ms = now_ms;
    t.end_time = 0;
    t.error.clear();
    t.lease_owner.clear();
    t.lease_until_ms = 0;
    pending::record(t, Status::Created, now_ms);
}

/// The stage a paused task waits at (spec §2.15, §5.8).
pub struct ManualExecState {
    pub task: Task,
    /// Index of the paused stage.
    pub stage: usize,
    /// Its `manual_exec`, read.
    pub manual: ManualExec,
    /// Whether the caller may run it.
    pub can_execute: bool,
}

/// The paused stage of a task, for `GET …/task/:taskID/manual-exec`: the task must be of
/// `project` and `pause`d at a stage with `manual_exec.enabled`.
pub async fn manual_exec_state(
    state: &AppState,
    caller: &Identity,
    workflow: &str,
    task_id: i64,
    project: &str,
) -> ApiResult<ManualExecState> {
    let task = get(state, workflow, task_id, Op::GetTask).await?;
    let (stage, manual) = paused_stage(&task, project)?;
    let can_execute = may_execute(&task, &manual, caller);
    Ok(ManualExecState {
        task,
        stage,
        manual,
        can_execute,
    })
}

/// The index of the stage `task` is paused at, and its `manual_exec`.
fn paused_stage(task: &Task, project: &str) -> ApiResult<(usize, ManualExec)> {
    if task.project_name != project {
        return Err(refuse(
            Kind::NotFound,
            Op::GetTask,
            format!(
                "task {}:{} is not in project {project:?} (`projectKey`)",
                task.workflow_name, task.task_id
            ),
        ));
    }
    if task.status != Status::Pause {
        return Err(ApiError::conflict(format!(
            "task {}:{} is {}: only a paused task can be executed manually",
            task.workflow_name, task.task_id, task.status
        )));
    }
    let none = || ApiError::conflict("workflow task has no stage waiting for manual execution");
    let stage = task
        .stages
        .iter()
        .position(|s| s.status == Status::Pause)
        .ok_or_else(none)?;
    let field = format!("stages[{stage}].manual_exec");
    let manual = ManualExec::read(&task.stages[stage].manual_exec, &field)?;
    if !manual.enabled {
        return Err(none());
    }
    Ok((stage, manual))
}

/// The stage's listed users and system admins may start it.
fn may_execute(task: &Task, m: &ManualExec, caller: &Identity) -> bool {
    caller.is_admin || GateUser::names(&m.manual_exec_users, caller, is_creator(task, caller))
}

fn is_creator(task: &Task, caller: &Identity) -> bool {
    task.task_creator == caller.name || task.task_creator == caller.account
}

/// Decide on a failed job waiting under the `manual_check` error policy (our extension,
/// spec §5.3): `ignore` makes it `unstable` and the task goes on, `reject` keeps its failure.
/// Allowed: the policy's `approval_users` (the task creator when none are listed) and admins.
pub async fn handle_job_error(
    state: &AppState,
    caller: &Identity,
    workflow: &str,
    task_id: i64,
    job_name: &str,
    decision: &str,
) -> ApiResult<()> {
    let decision = ErrorDecision::read("decision", decision)?;
    let change = |t: &mut Task| {
        let Some((si, ji)) = t.stages.iter().enumerate().find_map(|(si, s)| {
            s.jobs
                .iter()
                .position(|j| j.name == job_name || j.key == job_name)
                .map(|ji| (si, ji))
        }) else {
            return Err(ApiError::not_found(format!(
                "task {workflow}:{task_id} has no job {job_name:?}"
            )));
        };
        let job = &t.stages[si].jobs[ji];
        if job.status != Status::WaitForManualErrorHandling {
            return Err(ApiError::conflict(format!(
                "job {job_name} of task {workflow}:{task_id} is {:?}: it is not waiting for manual error handling",
                job.status
            )));
        }
        // The policy was read when the job failed under it; it reads the same now.
        let allowed = ErrorPolicy::of(&job.error_policy)
            .map_err(ApiError::internal)?
            .approval_users;
        if !(caller.is_admin
            || GateUser::names(&allowed, caller, is_creator(t, caller))
            || (allowed.is_empty() && is_creator(t, caller)))
        {
            return Err(ApiError::forbidden(format!(
                "user {} may not handle the error of job {job_name}",
                caller.account
            )));
        }
        let now = state.clock.now();
        let Some(spec) = t.stages[si].jobs[ji].spec.as_object_mut() else {
            return Err(ApiError::conflict(format!(
                "job {job_name} has no spec to record the decision on"
            )));
        };
        let record = ErrorHandling {
            decision,
            user: caller.name.clone(),
            time: now,
        };
        spec.insert(ERROR_HANDLING.into(), json!(record));
        let job = &mut t.stages[si].jobs[ji];
        job.error_handler_user_id.clone_from(&caller.uid);
        job.error_handler_username.clone_from(&caller.name);
        Ok(Change::Write)
    };
    update(
        state,
        workflow,
        task_id,
        Op::GetTask,
        "error handling",
        change,
    )
    .await?;
    tracing::info!(workflow = %workflow, task_id, "{} chose {decision:?} for the failed job {job_name} of {workflow}#{task_id}", caller.account);
    crate::engine::approval_recorded(state, workflow, task_id);
    Ok(())
}

/// Run a paused stage (`POST …/task/:taskID/manual-exec`, spec §5.8): the stage is marked
/// executed, it and the later stages are reset and the task is queued again.
pub async fn manual_exec(
    state: &AppState,
    caller: &Identity,
    workflow: &str,
    task_id: i64,
    project: &str,
    stage_name: &str,
) -> ApiResult<()> {
    let change = |task: &mut Task| {
        let (stage, manual) = paused_stage(task, project)?;
        let can_execute = may_execute(task, &manual, caller);
        if task.stages[stage].name != stage_name {
            return Err(ApiError::conflict(format!(
                "stage {stage_name} is not waiting for manual execution"
            )));
        }
        if !can_execute {
            return Err(ApiError::forbidden(format!(
                "user {} is not allowed to manually execute stage {stage_name}",
                caller.account
            )));
        }
        if let Some(prev) = stage.checked_sub(1).map(|i| &task.stages[i])
            && !finished_ok(prev.status)
        {
            return Err(ApiError::conflict(format!(
                "previous stage {} status is not passed or skipped",
                prev.name
            )));
        }
        let fresh = regenerated_specs(task);
        for s in &mut task.stages[stage..] {
            reset_stage(s, &fresh);
        }
        if let Some(m) = task.stages[stage].manual_exec.as_object_mut() {
            m.insert("executed".into(), Value::Bool(true));
        }
        requeue(task, state.clock.now_ms());
        Ok(Change::Write)
    };
    let (_, mut task) = update(
        state,
        workflow,
        task_id,
        Op::GetTask,
        "manual execution",
        change,
    )
    .await?;
    tracing::info!(workflow = %workflow, task_id, "stage {stage_name} of task {workflow}#{task_id} executed manually by {}", caller.account);
    pending::flush(state, &mut task).await;
    crate::engine::task_queued(state);
    Ok(())
}

/// Job-task specs rebuilt from the task's stored definition, by job-task name.
fn regenerated_specs(t: &Task) -> HashMap<String, Value> {
    let Ok(wf) = serde_json::from_value::<Workflow>(t.workflow_args.clone()) else {
        return HashMap::new();
    };
    let runs = |j: &str| wf.job(j).is_some_and(|j| !j.skipped);
    match expand::stages(&wf, &runs) {
        Ok(stages) => stages
            .into_iter()
            .flat_map(|s| s.jobs)
            .map(|j| (j.name, j.spec))
            .collect(),
        Err(_) => HashMap::new(),
    }
}
