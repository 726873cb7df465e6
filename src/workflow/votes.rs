//! The approve API at the data level (seed 002 "Approval Workflow"; spec/workflow.md §2.8): a
//! listed approver's vote on a stage, or on an `approval` job, waiting for approval. The vote
//! is recorded with a conditional write; the engine decides the outcome when notified.

use serde_json::Value;

use crate::auth::Identity;
use crate::engine::approval::JobApproval;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::retry::Attempts;
use crate::validate;
use crate::workflow::error::{Kind, Op, refuse};
use crate::workflow::jobs::Runs;
use crate::workflow::task::{ApproveOrReject, ApproveUser, Status};
use crate::workflow::tasks::raced;

/// An approval vote (`POST /openapi/workflows/custom/task/approve`).
#[derive(Debug, Clone)]
pub struct Vote {
    pub task_id: i64,
    pub workflow_key: String,
    /// The stage to approve; the name of a waiting `approval` job (or job task) works too.
    pub stage_name: String,
    pub approve: bool,
    pub comment: String,
}

fn approve_error(kind: Kind, what: impl Into<String>) -> ApiError {
    refuse(kind, Op::ApproveTask, what)
}

/// Record `caller`'s vote on the stage (or approval job) waiting for approval. The caller must
/// be a listed approver (system admins may always vote) who has not voted yet; the engine
/// decides the outcome when notified.
pub async fn approve(state: &AppState, caller: &Identity, vote: &Vote) -> ApiResult<()> {
    validate::name("workflow_key", &vote.workflow_key)?;
    validate::name("stage_name", &vote.stage_name)?;
    if vote.task_id <= 0 {
        return Err(ApiError::bad_request(
            "`task_id` is required (a positive task id)",
        ));
    }
    let (wf, id, stage) = (&vote.workflow_key, vote.task_id, &vote.stage_name);
    let mut attempts = Attempts::new();
    while attempts.next().await {
        let mut t = state.tasks.get(wf, id).await?.ok_or_else(|| {
            approve_error(
                Kind::NotFound,
                format!("can not find approved workflow: {wf}, taskID: {id},jobName: {stage}"),
            )
        })?;
        let nothing = || {
            approve_error(
                Kind::Conflict,
                format!("workflow {wf} ID {id} stage {stage} do not need approve"),
            )
        };
        let now = state.clock.now();
        if let Some(st) = t
            .stages
            .iter_mut()
            .find(|s| &s.name == stage && s.approval.as_ref().is_some_and(|a| a.enabled))
        {
            let waiting = st.status == Status::WaitForApproval;
            let Some(a) = st
                .approval
                .as_mut()
                .filter(|a| waiting && a.reject_or_approve.is_none())
            else {
                return Err(nothing());
            };
            record(&mut a.approve_users, caller, vote, now)?;
        } else {
            let job = t
                .stages
                .iter_mut()
                .flat_map(|s| s.jobs.iter_mut())
                .find(|j| {
                    j.kind().is_some_and(|t| t.kind().runs() == Runs::Votes)
                        && (&j.name == stage || &j.key == stage)
                        && j.status == Status::WaitForApproval
                })
                .ok_or_else(nothing)?;
            // The engine fails a job whose spec does not read, so one waiting here reads; if
            // it did not, recording on a guessed list would overwrite the approvers.
            let mut users = JobApproval::from_spec(&job.spec)
                .map_err(|e| {
                    ApiError::internal(format!("approval job {} of {wf}#{id}: {e}", job.name))
                })?
                .users;
            record(&mut users, caller, vote, now)?;
            let users = serde_json::to_value(users).map_err(ApiError::internal)?;
            match job
                .spec
                .get_mut("native_approval")
                .and_then(Value::as_object_mut)
            {
                Some(na) => {
                    na.insert("approve_users".into(), users);
                }
                None => return Err(nothing()),
            }
        }
        if state.tasks.save(&mut t).await? {
            tracing::info!(workflow = %wf, task_id = id, "{} voted {} on {wf}#{id} stage {stage}", caller.account, ApproveOrReject::of(vote.approve));
            crate::engine::approval_recorded(state, wf, id);
            return Ok(());
        }
    }
    Err(raced("approve"))
}

fn record(users: &mut Vec<ApproveUser>, caller: &Identity, vote: &Vote, now: i64) -> ApiResult<()> {
    let at = users.iter().position(|u| {
        (!u.user_id.is_empty() && u.user_id == caller.uid)
            || (!u.user_name.is_empty()
                && (u.user_name == caller.account || u.user_name == caller.name))
    });
    let at = match at {
        Some(at) => at,
        None if caller.is_admin => {
            users.push(ApproveUser {
                user_id: caller.uid.clone(),
                user_name: caller.account.clone(),
                ..ApproveUser::default()
            });
            users.len() - 1
        }
        None => {
            return Err(approve_error(
                Kind::Forbidden,
                format!("user {} has no authority to Approve", caller.account),
            ));
        }
    };
    let u = &mut users[at];
    if !u.reject_or_approve.is_none() {
        return Err(approve_error(
            Kind::Conflict,
            format!("{} have {} already", caller.account, u.reject_or_approve),
        ));
    }
    u.reject_or_approve = ApproveOrReject::of(vote.approve);
    u.comment = vote.comment.clone();
    u.operation_time = now;
    if u.user_id.is_empty() {
        u.user_id = caller.uid.clone();
    }
    Ok(())
}
