//! Waiting in a running task for people: a stage's native approval, an `approval` job's
//! votes, and the decision on a failed job under the `manual_check` error policy
//! (spec/workflow.md §5.3, §5.5).

use std::time::Duration;

use serde::Deserialize;

use super::Registered;
use super::approval::{self, Decision, JobApproval};
use super::executor;
use super::runner::{JobRun, now};
use super::task_ctl::{Ctl, Stop};
use super::work;
use crate::state::AppState;
use crate::workflow::approval::{ERROR_HANDLING, ErrorDecision, ErrorHandling};
use crate::workflow::notify::pending;
use crate::workflow::task::{ApproveOrReject, JobTask, Status, Task, Timed};

pub(super) fn stage_approval_error(stage: &crate::workflow::task::StageTask) -> String {
    let kind = stage.approval.as_ref().map_or("", |a| a.kind.as_str());
    work::missing_integration(&format!("stage approval of type {kind}"), "im")
}

/// Wait for a stage's native approval. `Waiting` comes back when the wait ended without a
/// decision: the task was cancelled, or the approval type needs an integration.
pub(super) async fn stage_approval(
    state: &AppState,
    ctl: &Ctl,
    reg: &Registered,
    si: usize,
) -> Result<Decision, Stop> {
    let at_ms = state.clock.now_ms();
    let kind = {
        let mut c = ctl.lock().await;
        c.update(|t| {
            if t.status != Status::Cancelled {
                t.status = Status::WaitForApproval;
            }
            let s = &mut t.stages[si];
            s.status = Status::WaitForApproval;
            if let Some(a) = &mut s.approval {
                a.reject_or_approve = ApproveOrReject::None;
                approval::clear_votes(&mut a.approve_users);
                a.wait_start_ms = at_ms;
            }
            pending::record(t, Status::WaitForApproval, at_ms);
        })
        .await?;
        pending::flush(state, &mut c.task).await;
        c.task.stages[si]
            .approval
            .as_ref()
            .map(|a| a.kind.clone())
            .unwrap_or_default()
    };
    if !(kind.is_empty() || kind == "native") {
        return Ok(Decision::Waiting);
    }
    let decision = wait_votes(state, ctl, reg, |t| {
        let a = t.stages[si].approval.clone().unwrap_or_default();
        let deadline = approval::deadline_ms(a.wait_start_ms, a.timeout);
        (
            approval::decide(
                &a.approve_users,
                a.needed_approvers,
                deadline,
                state.clock.now_ms(),
            ),
            deadline,
        )
    })
    .await?;
    let mut c = ctl.lock().await;
    c.update(|t| {
        let approved = decision == Decision::Approved;
        if approved && t.status == Status::WaitForApproval {
            t.status = Status::Running;
        }
        let s = &mut t.stages[si];
        if approved {
            s.status = Status::Running;
        }
        if let Some(a) = &mut s.approval {
            a.reject_or_approve = match decision {
                Decision::Approved => ApproveOrReject::Approve,
                Decision::Rejected(_) => ApproveOrReject::Reject,
                _ => ApproveOrReject::None,
            };
        }
    })
    .await?;
    Ok(decision)
}

/// Wait until `decide` (run on the latest task) says something else than `Waiting`, waking
/// on a vote, the deadline, the cancel token, and a periodic re-read (votes recorded through
/// another replica). `Waiting` comes back when cancelled.
async fn wait_votes(
    state: &AppState,
    ctl: &Ctl,
    reg: &Registered,
    decide: impl Fn(&Task) -> (Decision, i64),
) -> Result<Decision, Stop> {
    let sweep = Duration::from_millis(state.config.engine_sweep_interval_ms);
    loop {
        let voted = reg.votes.notified();
        let (decision, deadline) = decide(&ctl.lock().await.task);
        if decision != Decision::Waiting {
            return Ok(decision);
        }
        tokio::select! {
            () = reg.cancel.cancelled() => return Ok(Decision::Waiting),
            () = voted => {}
            () = state.clock.sleep_until(deadline) => {}
            () = tokio::time::sleep(sweep) => {}
        }
        ctl.lock().await.refresh().await?;
    }
}

/// A failed job under the `manual_check` error policy (spec §5.3): it waits, holding the
/// task's slot, until a user records `ignore` (→ `Approved`: the job becomes `unstable`) or
/// `reject` (→ `Rejected`: the job keeps its failure) in its spec's `error_handling`; `Waiting`
/// when the task was cancelled meanwhile.
pub(super) async fn manual_error_handling(
    this: JobRun<'_>,
    end: &executor::JobEnd,
) -> Result<Decision, Stop> {
    this.set(|j| {
        j.status = Status::WaitForManualErrorHandling;
        j.error = end.error.clone();
        j.outputs = end.outputs.clone();
        if let Some(spec) = j.spec.as_object_mut() {
            spec.remove(ERROR_HANDLING);
        }
        j.error_handler_user_id.clear();
        j.error_handler_username.clear();
    })
    .await?;
    // No deadline: the decision is a person's (a cancel ends the wait); the wait is re-armed
    // every day.
    const DAY_MS: i64 = 24 * 3600 * 1000;
    this.wait(|j| {
        let decision = match j.spec.get(ERROR_HANDLING).map(ErrorHandling::deserialize) {
            None => Decision::Waiting,
            Some(Ok(h)) => match h.decision {
                ErrorDecision::Ignore => Decision::Approved,
                ErrorDecision::Reject => Decision::Rejected(h.user),
            },
            // Recorded by the API as an ErrorHandling: one that does not read is not ours to
            // guess at.
            Some(Err(e)) => Decision::Invalid(format!("the recorded `{ERROR_HANDLING}`: {e}")),
        };
        (decision, this.state.clock.now_ms() + DAY_MS)
    })
    .await
}

impl JobRun<'_> {
    /// [`wait_votes`] deciding from this job task.
    async fn wait(&self, decide: impl Fn(&JobTask) -> (Decision, i64)) -> Result<Decision, Stop> {
        wait_votes(self.state, self.ctl, self.reg, |t| decide(self.of(t))).await
    }
}

/// An `approval` job: waits for the votes recorded on its spec.
pub(super) async fn approval_job(this: JobRun<'_>) -> Result<Status, Stop> {
    let state = this.state;
    let at = now(state);
    this.set_telling(Some(Status::WaitForApproval), |j| {
        j.begin(Status::WaitForApproval, at);
        approval::clear_job_votes(&mut j.spec);
    })
    .await?;
    let read = JobApproval::from_spec(&this.of(&this.ctl.lock().await.task).spec);
    let (st, error) = match read {
        // A spec that does not decode fails the job naming the field.
        Err(error) => (Status::Failed, error),
        Ok(a) if a.kind != "native" => (
            Status::Failed,
            work::missing_integration(&format!("approval ({})", a.kind), "im"),
        ),
        Ok(_) => {
            let decision = this
                .wait(|j| match JobApproval::from_spec(&j.spec) {
                    Ok(a) => {
                        let deadline = approval::deadline_ms(
                            j.start_time.saturating_mul(1000),
                            a.timeout_minutes,
                        );
                        let now_ms = state.clock.now_ms();
                        let d = approval::decide(&a.users, a.needed_approvers, deadline, now_ms);
                        (d, deadline)
                    }
                    Err(error) => (Decision::Invalid(error), 0),
                })
                .await?;
            match decision {
                Decision::Approved => (Status::Passed, String::new()),
                Decision::Rejected(u) => (Status::Reject, format!("{u} reject this task")),
                Decision::TimedOut => (Status::Timeout, "approval timed out".to_string()),
                Decision::Waiting => (Status::Cancelled, "workflow was canceled".to_string()),
                Decision::Invalid(error) => (Status::Failed, error),
            }
        }
    };
    let at = now(state);
    this.set(|j| j.end(st, &error, at)).await?;
    Ok(st)
}
