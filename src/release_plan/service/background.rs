//! Work without a request: the engine's notification that a release job's task ended, the
//! scheduler's tick and reconcile, and starting the workflow tasks of running jobs.

use super::{
    Applied, apply, apply_from, apply_recorded, cancel_tasks, record, release, release_ref,
    scheduled_identity,
};
use crate::auth::Identity;
use crate::error::{ApiResult, ErrorKind};
use crate::release_plan::machine::Event;
use crate::release_plan::model::{JobKind, JobStatus, ReleasePlan, TaskStatus};
use crate::state::AppState;
use crate::workflow::ReleaseRef;

/// Start the workflow tasks of the jobs a saved change marked `running`. `manual`: an API call
/// that answers the first failure (the job is put back as it was); otherwise (scheduler) a
/// failure marks the job `failed` with the reason and the others still start.
pub(super) async fn start_tasks(
    state: &AppState,
    applied: &Applied,
    caller: &Identity,
    manual: bool,
) -> ApiResult<()> {
    let plan = &applied.plan;
    for job_id in applied.started_jobs() {
        let Some(job) = plan.job(job_id) else {
            continue;
        };
        let release = release_ref(plan, &job.id);
        let s = &job.spec;
        let started = crate::workflow::start_release_task(
            state,
            &s.project_key,
            &s.workflow_key,
            &s.parameters,
            &s.inputs,
            caller,
            release,
        )
        .await;
        match started {
            Ok(task) => {
                let ev = Event::TaskStarted {
                    job_id: job.id.clone(),
                    workflow_key: s.workflow_key.clone(),
                    task_id: task.task_id,
                };
                let started = apply(state, &plan.id, &ev, false).await?;
                cancel_tasks(state, &started, caller).await;
                tracing::info!(release_plan.id = %plan.id, "release job {} started workflow {} task {}", job.name, s.workflow_key, task.task_id);
            }
            Err(err) => {
                tracing::warn!(release_plan.id = %plan.id, "release job {} could not start workflow {}: {}", job.name, s.workflow_key, err.description);
                let reason = format!(
                    "cannot start workflow {}: {}",
                    s.workflow_key, err.description
                );
                start_failed(state, applied, job_id, reason, manual).await?;
                if manual {
                    return Err(err);
                }
            }
        }
    }
    Ok(())
}

/// Starting the task of job `job_id` failed for `reason`: an API call (`manual`) puts the job
/// back as it was (and answers the error); the scheduler marks it failed.
async fn start_failed(
    state: &AppState,
    applied: &Applied,
    job_id: &str,
    reason: String,
    manual: bool,
) -> ApiResult<()> {
    let revert_to = if manual {
        applied.before.job(job_id).cloned()
    } else {
        None
    };
    let ev = Event::TaskStartFailed {
        job_id: job_id.to_string(),
        reason,
        revert_to,
    };
    let reverted = apply(state, &applied.plan.id, &ev, false).await?;
    record(state, &reverted.plan, &reverted.effects).await;
    Ok(())
}

/// The engine's notification that a release job's task ended (see [`crate::release_plan::on_workflow_task_finished`]).
pub async fn task_finished(
    state: &AppState,
    release: &ReleaseRef,
    task_id: i64,
    status: TaskStatus,
) -> ApiResult<()> {
    let event = Event::TaskFinished {
        job_id: release.job_id.clone(),
        task_id,
        task_status: status,
    };
    match apply_recorded(state, &release.plan_id, &event).await {
        Ok(_) => Ok(()),
        // The plan was deleted meanwhile: nothing to follow.
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The scheduler's step on a claimed plan: timeouts and the scheduled execution, then the
/// tasks of the jobs it started.
pub async fn tick(state: &AppState, claimed: ReleasePlan) -> ApiResult<()> {
    let id = claimed.id.clone();
    let applied = apply_from(state, &id, Some(claimed), &Event::Tick, true).await?;
    record(state, &applied.plan, &applied.effects).await;
    if applied.plan.status != applied.before.status {
        tracing::info!(release_plan.id = %id, "release plan {id} moved {} -> {}", applied.before.status, applied.plan.status);
    }
    if applied.started_jobs().next().is_none() {
        return Ok(());
    }
    match scheduled_identity(state, &applied.plan).await {
        Ok(who) => start_tasks(state, &applied, &who, false).await,
        // Nobody to act for: the jobs fail saying so. (A store error is left to the reconciler,
        // which fails jobs whose task never started once their lease has passed.)
        Err(e) if e.kind == ErrorKind::Forbidden => {
            for job_id in applied.started_jobs() {
                start_failed(state, &applied, job_id, e.description.clone(), false).await?;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Follow the running workflow jobs of a claimed plan: apply a final task status the engine's
/// notification may have missed (a crash), and fail jobs whose task was never started.
pub async fn reconcile(state: &AppState, plan: &ReleasePlan) -> ApiResult<()> {
    let now = state.clock.now();
    let lease = i64::try_from(state.config.release_plan_lease_secs).unwrap_or(i64::MAX);
    for job in plan
        .jobs
        .iter()
        .filter(|j| j.kind == JobKind::Workflow && j.status == JobStatus::Running)
    {
        let release = release_ref(plan, &job.id);
        if job.spec.task_id > 0 {
            let status =
                crate::workflow::task_status(state, &job.spec.workflow_key, job.spec.task_id)
                    .await?;
            match status {
                Some(s) if s.is_final() => {
                    task_finished(state, &release, job.spec.task_id, s).await?;
                }
                Some(_) => {}
                None => {
                    let reason = format!(
                        "workflow {} task {} no longer exists",
                        job.spec.workflow_key, job.spec.task_id
                    );
                    task_finished(state, &release, job.spec.task_id, TaskStatus::Failed).await?;
                    tracing::warn!(release_plan.id = %plan.id, "release job {}: {reason}", job.name);
                }
            }
        } else if job.executed_time + lease < now {
            let ev = Event::TaskStartFailed {
                job_id: job.id.clone(),
                reason: "the workflow task was never started (the server stopped while starting it); retry the job".to_string(),
                revert_to: None,
            };
            apply_recorded(state, &plan.id, &ev).await?;
        }
    }
    release(state, &plan.id).await;
    Ok(())
}
