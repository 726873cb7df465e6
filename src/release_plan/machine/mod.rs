//! The release-plan state machine as a pure function: `(plan, event, context) → outcome`.
//!
//! [`step`] decides everything about a change — whether it is allowed (and which error a
//! client sees if not), the new plan (status, timestamps, jobs, approval votes), and the
//! effects the service must carry out after saving it: hooks to send, workflow tasks to start,
//! operation records to write. It does no I/O and reads the time only from [`Ctx`], so the
//! property tests (`proptests.rs`) drive it with random event sequences.
//!
//! Spec/release-plan.md §4 with DESIGN.md §1.5's fixes: a failed job does not finish a plan;
//! the native-approval `timeout` is enforced; the release window is enforced on execute/retry
//! and by the scheduler ([`Event::Tick`]). `success` and `cancel` are terminal.
//!
//! This module holds the public types (events, context, effects, rejections), the [`step`]
//! entry point and the private `Step` working state; the event handlers live in the
//! submodules by area: `planning` (create, edit, status API), `approval`, `execution` (jobs
//! and workflow tasks), `callback` (external checks), `timeouts` (the scheduler tick),
//! `permissions` (who may edit or act), `transitions` (the status tables) and `shared`
//! (moves, hooks, logs and bookkeeping used by all of them).

mod approval;
mod callback;
mod execution;
mod permissions;
mod planning;
#[cfg(test)]
mod proptests;
mod shared;
#[cfg(test)]
mod tests;
mod timeouts;
mod transitions;

use crate::wire::wire_enum;
use serde_json::{Value, json};

use super::hooks;
use super::model::{
    Approval, ApprovalStatus, HookEvent, HookSnapshot, JobKind, JobSpec, JobStatus, ReleaseJob,
    ReleasePlan, Status, TaskStatus,
};

pub use permissions::{may_edit, require_editor};
pub use planning::create;
pub use transitions::{is_kept_transition, status_api_allows};

/// How long after its time a scheduled execution still fires when the plan only then reaches
/// `executing` (Zadig's cron fires timestamps up to 30 s in the past, spec §6.2).
pub const SCHEDULE_GRACE_SECS: i64 = 30;

/// Display name of the system user (spec conventions).
pub const SYSTEM_NAME: &str = "系统";

/// Who causes an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub uid: String,
    pub name: String,
    pub account: String,
    pub is_admin: bool,
}

impl Actor {
    /// The scheduler and other background work.
    pub fn system() -> Self {
        Self {
            uid: String::new(),
            name: SYSTEM_NAME.to_string(),
            account: "system".to_string(),
            is_admin: true,
        }
    }
}

/// A job of an edit, already validated (and, for workflow jobs, resolved) by the service.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// Used unless an existing job with the same type and name keeps its id.
    pub fresh_id: String,
    pub name: String,
    pub manager: String,
    pub manager_id: String,
    pub kind: JobKind,
    pub spec: JobSpec,
}

/// A plan's editable content (create and PATCH), validated by the service.
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    pub name: String,
    pub manager: String,
    pub manager_id: String,
    pub manager_identity_type: String,
    pub start_time: i64,
    pub end_time: i64,
    pub schedule_execute_time: i64,
    pub description: String,
    pub approval: Option<Approval>,
    pub jobs: Vec<NewJob>,
}

wire_enum! {
    /// The result a release-plan callback reports.
    pub enum CallbackResult {
        Success = "success",
        Failed = "failed",
    }
}

/// Everything that can happen to a plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// PATCH: replace metadata and jobs (spec §2.4); a re-plan.
    Edit { actor: Actor, content: Content },
    /// The status API (spec §4.2).
    SetStatus { actor: Actor, target: Status },
    /// A native-approval vote (spec §7.2).
    Vote {
        actor: Actor,
        approve: bool,
        comment: String,
    },
    /// Complete a text job / start a workflow job (spec §5.3).
    Execute {
        actor: Actor,
        job_id: String,
        kind: JobKind,
        remark: String,
    },
    Skip {
        actor: Actor,
        job_id: String,
        kind: JobKind,
        remark: String,
    },
    Retry {
        actor: Actor,
        job_id: String,
        kind: JobKind,
    },
    /// The workflow service created the task of a job marked `running`.
    TaskStarted {
        job_id: String,
        workflow_key: String,
        task_id: i64,
    },
    /// Starting the task failed: put the job back as it was (`revert_to`, an API call that
    /// answers the error) or mark it failed (the scheduler).
    TaskStartFailed {
        job_id: String,
        reason: String,
        revert_to: Option<ReleaseJob>,
    },
    /// The job's workflow task reached a final status (spec §5.6).
    TaskFinished {
        job_id: String,
        task_id: i64,
        task_status: TaskStatus,
    },
    /// `POST /api/callback/release_plan` (spec §2.5, §8.4).
    Callback {
        actor: Actor,
        hook_event: HookEvent,
        instance_code: String,
        result: CallbackResult,
        reason: String,
    },
    /// Time passed: approval timeout, window expiry, scheduled execution (spec §6).
    Tick,
}

impl Event {
    /// Who causes the event (`None`: the system).
    pub fn actor(&self) -> Option<&Actor> {
        match self {
            Event::Edit { actor, .. }
            | Event::SetStatus { actor, .. }
            | Event::Vote { actor, .. }
            | Event::Execute { actor, .. }
            | Event::Skip { actor, .. }
            | Event::Retry { actor, .. }
            | Event::Callback { actor, .. } => Some(actor),
            Event::TaskStarted { .. }
            | Event::TaskStartFailed { .. }
            | Event::TaskFinished { .. }
            | Event::Tick => None,
        }
    }

    /// Whether the event may re-plan (and so needs the current hook setting to snapshot).
    pub fn may_replan(&self) -> bool {
        matches!(
            self,
            Event::Edit { .. }
                | Event::SetStatus {
                    target: Status::Planning,
                    ..
                }
        )
    }
}

/// What the machine needs from outside: the time, fresh randomness, the system hook setting.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub now_ms: i64,
    /// A fresh 16-hex code, used if the event (re-)plans or submits an approval.
    pub fresh_code: &'a str,
    /// The current system hook setting, snapshotted on a re-plan.
    pub hook_setting: &'a HookSnapshot,
}

impl Ctx<'_> {
    pub fn now(&self) -> i64 {
        self.now_ms.div_euclid(1000)
    }
}

/// An operation record to write (spec §9).
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub username: String,
    pub account: String,
    pub verb: &'static str,
    pub target_type: &'static str,
    pub target_name: String,
    pub before: Value,
    pub after: Value,
    pub detail: String,
}

/// What the service does after saving the new plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Queue the outgoing hook (body built from the plan at that point of the step).
    Hook {
        event: HookEvent,
        body: String,
    },
    /// Start the workflow task of a job just marked `running`.
    StartTask {
        job_id: String,
    },
    /// Cancel a workflow task the plan no longer waits for (re-plan, spec §4.4 step 4).
    CancelTask {
        workflow_key: String,
        task_id: i64,
    },
    Log(LogEntry),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    BadRequest,
    Forbidden,
    NotFound,
    Conflict,
}

/// Why an event is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub kind: RejectKind,
    pub message: String,
}

impl Rejection {
    fn new(kind: RejectKind, m: impl Into<String>) -> Self {
        Self {
            kind,
            message: m.into(),
        }
    }
    fn conflict(m: impl Into<String>) -> Self {
        Self::new(RejectKind::Conflict, m)
    }
    fn forbidden(m: impl Into<String>) -> Self {
        Self::new(RejectKind::Forbidden, m)
    }
    fn bad_request(m: impl Into<String>) -> Self {
        Self::new(RejectKind::BadRequest, m)
    }
    fn not_found(m: impl Into<String>) -> Self {
        Self::new(RejectKind::NotFound, m)
    }
}

/// The result of a step.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub plan: ReleasePlan,
    pub effects: Vec<Effect>,
    /// Every status change, in order (a step may pass through several statuses).
    pub transitions: Vec<(Status, Status)>,
    /// Save the plan, but answer this error (e.g. an execute after the window: the plan is
    /// saved as `timeout` and the call fails).
    pub error: Option<Rejection>,
}

impl Outcome {
    /// Nothing to save and nothing to do.
    pub fn is_noop(&self, before: &ReleasePlan) -> bool {
        self.effects.is_empty() && self.plan == *before
    }
}

/// Apply `event` to `plan` at `ctx`.
pub fn step(plan: &ReleasePlan, event: &Event, ctx: &Ctx<'_>) -> Result<Outcome, Rejection> {
    let mut s = Step {
        p: plan.clone(),
        fx: Vec::new(),
        trail: Vec::new(),
        ctx,
        now: ctx.now(),
        who: event.actor().cloned().unwrap_or_else(Actor::system),
        error: None,
    };
    match event {
        Event::Edit { content, .. } => {
            s.authorize_edit(content)?;
            s.edit(content)?;
        }
        Event::SetStatus { target, .. } => s.set_status(*target)?,
        Event::Vote {
            approve, comment, ..
        } => s.vote(*approve, comment)?,
        Event::Execute {
            job_id,
            kind,
            remark,
            ..
        } => s.execute(job_id, *kind, remark)?,
        Event::Skip {
            job_id,
            kind,
            remark,
            ..
        } => s.skip(job_id, *kind, remark)?,
        Event::Retry { job_id, kind, .. } => s.retry(job_id, *kind)?,
        Event::TaskStarted {
            job_id,
            workflow_key,
            task_id,
        } => s.task_started(job_id, workflow_key, *task_id),
        Event::TaskStartFailed {
            job_id,
            reason,
            revert_to,
        } => s.task_start_failed(job_id, reason, revert_to.as_ref()),
        Event::TaskFinished {
            job_id,
            task_id,
            task_status,
        } => s.task_finished(job_id, *task_id, *task_status),
        Event::Callback {
            hook_event,
            instance_code,
            result,
            reason,
            ..
        } => s.callback(*hook_event, instance_code, *result, reason)?,
        Event::Tick => s.tick(),
    }
    s.normalize();
    Ok(Outcome {
        plan: s.p,
        effects: s.fx,
        transitions: s.trail,
        error: s.error,
    })
}

struct Step<'a> {
    p: ReleasePlan,
    fx: Vec<Effect>,
    trail: Vec<(Status, Status)>,
    ctx: &'a Ctx<'a>,
    now: i64,
    who: Actor,
    error: Option<Rejection>,
}
