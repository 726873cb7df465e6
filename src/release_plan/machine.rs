//! The release-plan state machine as a pure function: `(plan, event, context) → outcome`.
//!
//! [`step`] decides everything about a change — whether it is allowed (and which error a
//! client sees if not), the new plan (status, timestamps, jobs, approval votes), and the
//! effects the service must carry out after saving it: hooks to send, workflow tasks to start,
//! operation records to write. It does no I/O and reads the time only from [`Ctx`], so the
//! property tests below drive it with random event sequences.
//!
//! Spec/release-plan.md §4 with DESIGN.md §1.5's fixes: a failed job does not finish a plan;
//! the native-approval `timeout` is enforced; the release window is enforced on execute/retry
//! and by the scheduler ([`Event::Tick`]). `success` and `cancel` are terminal.

use serde_json::{Value, json};

use super::hooks;
use super::model::{
    Approval, HookEvent, HookSnapshot, JobKind, JobSpec, JobStatus, ReleaseJob, ReleasePlan, Status,
};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackResult {
    Success,
    Failed,
}

impl CallbackResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackResult::Success => "success",
            CallbackResult::Failed => "failed",
        }
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
    TaskStarted { job_id: String, task_id: i64 },
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
        task_status: String,
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
    fn conflict(m: impl Into<String>) -> Self {
        Self {
            kind: RejectKind::Conflict,
            message: m.into(),
        }
    }
    fn forbidden(m: impl Into<String>) -> Self {
        Self {
            kind: RejectKind::Forbidden,
            message: m.into(),
        }
    }
    fn bad_request(m: impl Into<String>) -> Self {
        Self {
            kind: RejectKind::BadRequest,
            message: m.into(),
        }
    }
    fn not_found(m: impl Into<String>) -> Self {
        Self {
            kind: RejectKind::NotFound,
            message: m.into(),
        }
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

/// The targets the status API accepts from each status (spec §4.2, tightened: the moves that
/// belong to callbacks, approvals and the scheduler are not offered here).
pub fn status_api_allows(from: Status, to: Status) -> bool {
    use Status::*;
    match from {
        Planning => to == FinishPlanning,
        FinishPlanning => matches!(to, Planning | WaitForApproval | Executing),
        Executing => matches!(to, Planning | Success | Cancel),
        WaitForApproval | Timeout | Denied => matches!(to, Planning | Cancel),
        s if s.is_external_check() => matches!(to, Planning | Cancel),
        _ => false,
    }
}

/// Every status change the machine can make (spec §4.3, the rows we keep).
pub fn is_kept_transition(from: Status, to: Status) -> bool {
    use Status::*;
    if from.is_terminal() {
        return false;
    }
    if to == Planning {
        // Re-plan through the status API or PATCH.
        return !matches!(from, Planning | Success | Cancel);
    }
    match from {
        Planning => matches!(to, FinishPlanning | WaitForFinishPlanningExternalCheck),
        FinishPlanning => matches!(
            to,
            WaitForApproval | Executing | WaitForExecuteExternalCheck
        ),
        WaitForApproval => matches!(
            to,
            Executing | WaitForExecuteExternalCheck | Denied | Timeout | Cancel
        ),
        Executing => matches!(to, Success | WaitForAllDoneExternalCheck | Timeout | Cancel),
        WaitForFinishPlanningExternalCheck => matches!(
            to,
            FinishPlanning | WaitForFinishPlanningExternalCheckFailed | Cancel
        ),
        WaitForExecuteExternalCheck => {
            matches!(to, Executing | WaitForExecuteExternalCheckFailed | Cancel)
        }
        WaitForAllDoneExternalCheck => {
            matches!(to, Success | WaitForAllDoneExternalCheckFailed | Cancel)
        }
        Timeout | Denied => to == Cancel,
        s if s.is_external_check() => to == Cancel,
        _ => false,
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
        who: Actor::system(),
        error: None,
    };
    match event {
        Event::Edit { actor, content } => {
            s.who = actor.clone();
            s.edit(content)?;
        }
        Event::SetStatus { actor, target } => {
            s.who = actor.clone();
            s.set_status(*target)?;
        }
        Event::Vote {
            actor,
            approve,
            comment,
        } => {
            s.who = actor.clone();
            s.vote(*approve, comment)?;
        }
        Event::Execute {
            actor,
            job_id,
            kind,
            remark,
        } => {
            s.who = actor.clone();
            s.execute(job_id, *kind, remark)?;
        }
        Event::Skip {
            actor,
            job_id,
            kind,
            remark,
        } => {
            s.who = actor.clone();
            s.skip(job_id, *kind, remark)?;
        }
        Event::Retry {
            actor,
            job_id,
            kind,
        } => {
            s.who = actor.clone();
            s.retry(job_id, *kind)?;
        }
        Event::TaskStarted { job_id, task_id } => s.task_started(job_id, *task_id),
        Event::TaskStartFailed {
            job_id,
            reason,
            revert_to,
        } => s.task_start_failed(job_id, reason, revert_to.as_ref()),
        Event::TaskFinished {
            job_id,
            task_id,
            task_status,
        } => s.task_finished(job_id, *task_id, task_status),
        Event::Callback {
            actor,
            hook_event,
            instance_code,
            result,
            reason,
        } => {
            s.who = actor.clone();
            s.callback(*hook_event, instance_code, *result, reason)?;
        }
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

/// What a job looks like in an operation record (spec §9).
fn job_snapshot(j: &ReleaseJob) -> Value {
    let mut v = json!({
        "type": j.kind.as_str(),
        "status": j.status.as_str(),
        "executed_by": j.executed_by,
        "executed_time": j.executed_time,
        "remark": j.spec.remark,
    });
    if j.kind == JobKind::Workflow {
        v["workflow_status"] = json!(j.spec.status);
        v["task_id"] = json!(j.spec.task_id);
    }
    v
}

impl Step<'_> {
    fn log(&mut self, verb: &'static str, target_type: &'static str, target_name: &str) -> usize {
        self.fx.push(Effect::Log(LogEntry {
            username: self.who.name.clone(),
            account: self.who.account.clone(),
            verb,
            target_type,
            target_name: target_name.to_string(),
            before: Value::Null,
            after: Value::Null,
            detail: String::new(),
        }));
        self.fx.len() - 1
    }

    fn log_with(
        &mut self,
        verb: &'static str,
        target_type: &'static str,
        target_name: &str,
        before: Value,
        after: Value,
        detail: String,
    ) {
        let i = self.log(verb, target_type, target_name);
        if let Some(Effect::Log(l)) = self.fx.get_mut(i) {
            l.before = before;
            l.after = after;
            l.detail = detail;
        }
    }

    fn plan_owner(&self) -> bool {
        self.who.is_admin || (!self.p.manager_id.is_empty() && self.who.uid == self.p.manager_id)
    }

    fn require_plan_owner(&self, what: &str) -> Result<(), Rejection> {
        if self.plan_owner() {
            Ok(())
        } else {
            Err(Rejection::forbidden(format!(
                "only the release manager {} or a system admin may {what} release plan {}; user {} is neither",
                self.p.manager, self.p.name, self.who.account
            )))
        }
    }

    /// spec §5.2: a job owner, the plan owner or an admin.
    fn require_job_owner(&self, job: &ReleaseJob) -> Result<(), Rejection> {
        if self.plan_owner() || (!job.manager_id.is_empty() && self.who.uid == job.manager_id) {
            return Ok(());
        }
        let owners = if job.manager.is_empty() {
            format!("the release manager {}", self.p.manager)
        } else {
            format!(
                "the job owner {} or the release manager {}",
                job.manager, self.p.manager
            )
        };
        Err(Rejection::forbidden(format!(
            "user {} is not the manager of the job {}: only {owners} or a system admin may act on it",
            self.who.account, job.name
        )))
    }

    fn move_to(&mut self, to: Status) {
        let from = self.p.status;
        if from == to {
            return;
        }
        self.trail.push((from, to));
        self.p.status = to;
        match to {
            Status::Planning => self.p.planning_time = self.now,
            Status::FinishPlanning => self.p.finish_planning_time = self.now,
            Status::Executing => self.p.executing_time = self.now,
            Status::Success => self.p.success_time = self.now,
            _ => {}
        }
        self.log_with(
            "更新",
            "release_plan_status",
            "发布计划状态",
            json!(from.as_str()),
            json!(to.as_str()),
            format!("状态从 {from} 变更为 {to}"),
        );
    }

    fn hook(&mut self, event: HookEvent) {
        if HookSnapshot::fires(&self.p.hook_settings, event) {
            let body = hooks::body(&self.p, event);
            self.fx.push(Effect::Hook { event, body });
        }
    }

    fn waits(&self, event: HookEvent) -> bool {
        HookSnapshot::waits(&self.p.hook_settings, event)
    }

    fn approval_passed(&self) -> bool {
        !Approval::is_on(&self.p.approval)
            || self
                .p
                .approval
                .as_ref()
                .is_some_and(|a| a.status == "passed")
    }

    /// Back to `planning` for a new cycle (spec §4.4): jobs remember their status, a fresh
    /// instance code and hook snapshot, approval decisions forgotten. Timestamps are kept (they
    /// say when each state was last entered and never move backwards).
    fn replan(&mut self) {
        for j in &mut self.p.jobs {
            j.last_status = j.status;
            j.status = JobStatus::Todo;
            j.updated = false;
        }
        self.p.hook_settings = Some(self.ctx.hook_setting.clone());
        self.p.instance_code = self.ctx.fresh_code.to_string();
        self.p.external_check_failed_reason.clear();
        self.p.internal.last_callback = None;
        if let Some(a) = &mut self.p.approval {
            a.clear_runtime();
        }
        self.move_to(Status::Planning);
    }

    /// Jobs for a new execution: those done in the previous cycle and not edited stay done.
    fn prepare_jobs(&mut self) {
        for j in &mut self.p.jobs {
            if j.last_status == JobStatus::Done && !j.updated {
                j.status = JobStatus::Done;
                continue;
            }
            j.status = JobStatus::Todo;
            j.executed_by.clear();
            j.executed_time = 0;
            j.error.clear();
            if j.kind == JobKind::Workflow {
                j.spec.task_id = 0;
                j.spec.status.clear();
            }
        }
    }

    /// Into `executing` without an external check (spec S3/A1/C2/C4 after their checks);
    /// `hook` sends start_execute (callbacks never send hooks, spec §8.5).
    fn start_executing(&mut self, hook: bool) {
        self.move_to(Status::Executing);
        self.prepare_jobs();
        let at = self.p.schedule_execute_time;
        self.p.internal.schedule_at = if at != 0 && at + SCHEDULE_GRACE_SECS >= self.now {
            at
        } else {
            0
        };
        if hook {
            self.hook(HookEvent::StartExecute);
        }
        self.complete_if_done();
    }

    /// Towards `executing`: through the start-execute check when the plan waits for it.
    fn enter_executing(&mut self) {
        if self.waits(HookEvent::StartExecute) {
            self.move_to(Status::WaitForExecuteExternalCheck);
            self.hook(HookEvent::StartExecute);
        } else {
            self.start_executing(true);
        }
    }

    /// Every job done or skipped → `success` (or the all-done check) — spec E2 with the
    /// DESIGN.md §1.5 fix: `failed` does not count.
    fn complete_if_done(&mut self) {
        if self.p.status != Status::Executing || self.p.jobs.is_empty() {
            return;
        }
        let all = self
            .p
            .jobs
            .iter()
            .all(|j| matches!(j.status, JobStatus::Done | JobStatus::Skipped));
        if !all {
            return;
        }
        if self.waits(HookEvent::AllJobDone) {
            self.move_to(Status::WaitForAllDoneExternalCheck);
        } else {
            self.move_to(Status::Success);
        }
        self.hook(HookEvent::AllJobDone);
    }

    fn touch(&mut self) {
        self.p.updated_by = self.who.name.clone();
        self.p.update_time = self.now;
    }

    fn edit(&mut self, c: &Content) -> Result<(), Rejection> {
        let st = self.p.status;
        if matches!(
            st,
            Status::Executing | Status::Success | Status::WaitForApproval | Status::Cancel
        ) {
            return Err(Rejection::conflict(format!(
                "release plan {} is {st}: a plan cannot be edited while executing, success, wait_for_approval or cancel",
                self.p.name
            )));
        }
        let p = &mut self.p;
        p.name = c.name.clone();
        p.manager = c.manager.clone();
        p.manager_id = c.manager_id.clone();
        p.internal.manager_identity_type = c.manager_identity_type.clone();
        p.start_time = c.start_time;
        p.end_time = c.end_time;
        p.schedule_execute_time = c.schedule_execute_time;
        p.description = c.description.clone();
        p.approval = c.approval.clone();
        if let Some(a) = &mut p.approval {
            a.clear_runtime();
        }
        // spec §2.4 step 9: a job keeps its id when an old job has the same type and name.
        let mut old: Vec<Option<&ReleaseJob>> = plan_jobs(&self.p.jobs);
        let jobs: Vec<ReleaseJob> = c
            .jobs
            .iter()
            .map(|n| {
                let reused = old
                    .iter_mut()
                    .find(|o| o.is_some_and(|o| o.kind == n.kind && o.name == n.name))
                    .and_then(Option::take)
                    .map(|o| o.id.clone());
                ReleaseJob {
                    id: reused.unwrap_or_else(|| n.fresh_id.clone()),
                    name: n.name.clone(),
                    manager: n.manager.clone(),
                    manager_id: n.manager_id.clone(),
                    kind: n.kind,
                    spec: n.spec.clone(),
                    status: JobStatus::Unset,
                    last_status: JobStatus::Unset,
                    updated: false,
                    executed_by: String::new(),
                    executed_time: 0,
                    error: String::new(),
                }
            })
            .collect();
        self.p.jobs = jobs;
        self.touch();
        let name = self.p.name.clone();
        self.log("更新", "release_plan", &name);
        self.replan();
        // A PATCH leaves the jobs' runtime empty (spec §2.4), unlike a status-API re-plan.
        for j in &mut self.p.jobs {
            j.status = JobStatus::Unset;
            j.last_status = JobStatus::Unset;
        }
        Ok(())
    }

    fn set_status(&mut self, target: Status) -> Result<(), Rejection> {
        self.require_plan_owner("change the status of")?;
        let from = self.p.status;
        if target == from {
            return Err(Rejection::conflict(format!(
                "release plan {} is already {from}",
                self.p.name
            )));
        }
        if !status_api_allows(from, target) {
            return Err(Rejection::conflict(format!(
                "cannot change the status of release plan {} from {from} to {target}",
                self.p.name
            )));
        }
        match target {
            Status::Planning => self.replan(),
            Status::Cancel => self.move_to(Status::Cancel),
            Status::Success => self.move_to(Status::Success),
            Status::FinishPlanning => {
                if self.p.jobs.is_empty() {
                    return Err(Rejection::conflict(format!(
                        "release plan {} has no jobs: add jobs (PATCH) before finishing planning",
                        self.p.name
                    )));
                }
                self.p.planning_time = self.now;
                if self.waits(HookEvent::FinishPlanning) {
                    self.move_to(Status::WaitForFinishPlanningExternalCheck);
                } else {
                    self.move_to(Status::FinishPlanning);
                }
                self.hook(HookEvent::FinishPlanning);
            }
            Status::WaitForApproval => self.submit_approval()?,
            Status::Executing => {
                if !self.approval_passed() {
                    let st = self.p.approval.as_ref().map(|a| a.status.clone());
                    return Err(Rejection::conflict(format!(
                        "approval status is {:?}: release plan {} cannot execute before its approval passed (submit it with status wait_for_approval)",
                        st.unwrap_or_default(),
                        self.p.name
                    )));
                }
                self.enter_executing();
            }
            other => {
                return Err(Rejection::conflict(format!(
                    "cannot change the status of release plan {} from {from} to {other}",
                    self.p.name
                )));
            }
        }
        Ok(())
    }

    /// spec S2 and §7.2; IM approvals need an integration we do not have.
    fn submit_approval(&mut self) -> Result<(), Rejection> {
        let name = self.p.name.clone();
        let Some(a) = self.p.approval.as_mut().filter(|a| a.enabled) else {
            return Err(Rejection::conflict(format!(
                "release plan {name} has no approval enabled: nothing to submit"
            )));
        };
        if a.kind != "native" {
            return Err(Rejection::conflict(format!(
                "release plan {name} uses a {} approval, which needs the {} integration; zadig-server has no IM approval integration configured (only type native can be submitted)",
                a.kind,
                im_name(&a.kind)
            )));
        }
        a.clear_runtime();
        let Some(n) = a.native_approval.as_mut() else {
            return Err(Rejection::conflict(format!(
                "release plan {name} has a native approval without native_approval"
            )));
        };
        n.instance_code = self.ctx.fresh_code.to_string();
        self.p.internal.approval_deadline = if n.timeout > 0 {
            self.now + n.timeout * 60
        } else {
            0
        };
        self.move_to(Status::WaitForApproval);
        Ok(())
    }

    fn vote(&mut self, approve: bool, comment: &str) -> Result<(), Rejection> {
        let name = self.p.name.clone();
        if self.p.status != Status::WaitForApproval {
            return Err(Rejection::conflict(format!(
                "release plan {name} is {}, not wait_for_approval: there is nothing to approve",
                self.p.status
            )));
        }
        let now = self.now;
        let uid = self.who.uid.clone();
        let account = self.who.account.clone();
        let Some(native) = self
            .p
            .approval
            .as_mut()
            .filter(|a| a.kind == "native")
            .and_then(|a| a.native_approval.as_mut())
        else {
            return Err(Rejection::conflict(format!(
                "release plan {name} has no native approval"
            )));
        };
        let Some(u) = native.approve_users.iter_mut().find(|u| u.user_id == uid) else {
            return Err(Rejection::forbidden(format!(
                "user {account} is not an approver of release plan {name}"
            )));
        };
        if !u.reject_or_approve.is_empty() {
            return Err(Rejection::conflict(format!(
                "user {account} has already voted {} on release plan {name}",
                u.reject_or_approve
            )));
        }
        u.reject_or_approve = if approve { "approve" } else { "reject" }.to_string();
        u.comment = comment.to_string();
        u.operation_time = now;
        let approvals = native
            .approve_users
            .iter()
            .filter(|u| u.reject_or_approve == "approve")
            .count();
        let needed = usize::try_from(native.needed_approvers.max(1)).unwrap_or(1);
        let decision = if !approve {
            Some("reject")
        } else if approvals >= needed {
            Some("approve")
        } else {
            None
        };
        if let Some(d) = decision {
            native.reject_or_approve = d.to_string();
        }
        self.log_with(
            "更新",
            "approval",
            "审批",
            Value::Null,
            json!(if approve { "approve" } else { "reject" }),
            comment.to_string(),
        );
        match decision {
            Some("reject") => {
                if let Some(a) = &mut self.p.approval {
                    a.status = "reject".to_string();
                }
                self.p.approval_time = now;
                self.move_to(Status::Denied);
            }
            Some(_) => {
                if let Some(a) = &mut self.p.approval {
                    a.status = "passed".to_string();
                }
                self.p.approval_time = now;
                self.enter_executing();
            }
            None => {}
        }
        Ok(())
    }

    /// Find a job and run the checks shared by execute/skip/retry.
    fn acting_job(&self, job_id: &str, kind: JobKind) -> Result<ReleaseJob, Rejection> {
        let job = self.p.job(job_id).cloned().ok_or_else(|| {
            Rejection::not_found(format!(
                "release job {job_id} not found in release plan {}",
                self.p.name
            ))
        })?;
        self.require_job_owner(&job)?;
        if job.kind != kind {
            return Err(Rejection::bad_request(format!(
                "`type` is {} but release job {} is a {} job",
                kind.as_str(),
                job.name,
                job.kind.as_str()
            )));
        }
        Ok(job)
    }

    fn require_executing(&self, verb: &str, job: &ReleaseJob) -> Result<(), Rejection> {
        if self.p.status == Status::Executing {
            Ok(())
        } else {
            Err(Rejection::conflict(format!(
                "release plan {} is {}, not executing: job {} cannot be {verb}",
                self.p.name, self.p.status, job.name
            )))
        }
    }

    /// The release window (spec T1). With `expire`, a closed window times the plan out (saved)
    /// and the call fails; returns false when the caller must stop.
    fn window_open(&mut self, expire: bool) -> Result<bool, Rejection> {
        let (start, end) = (self.p.start_time, self.p.end_time);
        if start != 0 && self.now < start {
            return Err(Rejection::conflict(format!(
                "release plan {} is not in the release time range: the window opens at {start}",
                self.p.name
            )));
        }
        if end != 0 && self.now > end {
            let err = Rejection::conflict(format!(
                "release plan {} is not in the release time range: the window closed at {end}",
                self.p.name
            ));
            if !expire {
                return Err(err);
            }
            self.move_to(Status::Timeout);
            self.error = Some(Rejection {
                message: format!("{}; the plan timed out", err.message),
                ..err
            });
            return Ok(false);
        }
        Ok(true)
    }

    /// Mark a workflow job running; the service starts its task after the save.
    fn start_job(&mut self, job_id: &str) {
        let (name, now) = (self.who.name.clone(), self.now);
        if let Some(j) = self.p.job_mut(job_id) {
            j.status = JobStatus::Running;
            j.spec.task_id = 0;
            j.spec.status = "prepare".to_string();
            j.error.clear();
            j.executed_by = name;
            j.executed_time = now;
        }
        self.fx.push(Effect::StartTask {
            job_id: job_id.to_string(),
        });
    }

    fn log_job(&mut self, verb: &'static str, before: &ReleaseJob) {
        let after = self.p.job(&before.id).map(job_snapshot).unwrap_or_default();
        self.log_with(
            verb,
            "release_job",
            &before.name,
            job_snapshot(before),
            after,
            String::new(),
        );
    }

    fn execute(&mut self, job_id: &str, kind: JobKind, remark: &str) -> Result<(), Rejection> {
        let job = self.acting_job(job_id, kind)?;
        self.require_executing("executed", &job)?;
        if !self.window_open(true)? {
            return Ok(());
        }
        match job.kind {
            JobKind::Text => {
                if job.status != JobStatus::Todo {
                    return Err(Rejection::conflict(format!(
                        "release job {} is {}: only a todo job can be completed",
                        job.name,
                        job.status.as_str()
                    )));
                }
                let (name, now) = (self.who.name.clone(), self.now);
                if let Some(j) = self.p.job_mut(job_id) {
                    j.spec.remark = remark.to_string();
                    j.status = JobStatus::Done;
                    j.executed_by = name;
                    j.executed_time = now;
                }
            }
            JobKind::Workflow => {
                if !matches!(job.status, JobStatus::Todo | JobStatus::Failed) {
                    return Err(Rejection::conflict(format!(
                        "release job {} is {}: only a todo or failed workflow job can be executed",
                        job.name,
                        job.status.as_str()
                    )));
                }
                self.start_job(job_id);
            }
        }
        self.touch();
        self.log_job("执行", &job);
        self.complete_if_done();
        Ok(())
    }

    fn skip(&mut self, job_id: &str, kind: JobKind, remark: &str) -> Result<(), Rejection> {
        let job = self.acting_job(job_id, kind)?;
        self.require_executing("skipped", &job)?;
        self.window_open(false)?;
        if !matches!(job.status, JobStatus::Todo | JobStatus::Failed) {
            return Err(Rejection::conflict(format!(
                "release job {} is {}: only a todo or failed job can be skipped",
                job.name,
                job.status.as_str()
            )));
        }
        let (name, now) = (self.who.name.clone(), self.now);
        if let Some(j) = self.p.job_mut(job_id) {
            j.status = JobStatus::Skipped;
            j.executed_by = name;
            j.executed_time = now;
            if !remark.is_empty() {
                j.spec.remark = remark.to_string();
            }
        }
        self.touch();
        self.log_job("跳过", &job);
        self.complete_if_done();
        Ok(())
    }

    fn retry(&mut self, job_id: &str, kind: JobKind) -> Result<(), Rejection> {
        if kind == JobKind::Text {
            return Err(Rejection::bad_request(
                "text release job does not support retry (`type` must be workflow)",
            ));
        }
        let job = self.acting_job(job_id, kind)?;
        self.require_executing("retried", &job)?;
        if !self.window_open(true)? {
            return Ok(());
        }
        if job.status != JobStatus::Failed {
            return Err(Rejection::conflict(format!(
                "release job {} is {}: only a failed job can be retried",
                job.name,
                job.status.as_str()
            )));
        }
        self.start_job(job_id);
        self.touch();
        self.log_job("重试", &job);
        Ok(())
    }

    fn running_without_task(&self, job_id: &str) -> bool {
        self.p
            .job(job_id)
            .is_some_and(|j| j.status == JobStatus::Running && j.spec.task_id == 0)
    }

    fn task_started(&mut self, job_id: &str, task_id: i64) {
        if self.running_without_task(job_id)
            && let Some(j) = self.p.job_mut(job_id)
        {
            j.spec.task_id = task_id;
        }
    }

    fn task_start_failed(&mut self, job_id: &str, reason: &str, revert: Option<&ReleaseJob>) {
        if !self.running_without_task(job_id) {
            return;
        }
        let Some(before) = self.p.job(job_id).cloned() else {
            return;
        };
        if let Some(j) = self.p.job_mut(job_id) {
            match revert {
                Some(prev) => *j = prev.clone(),
                None => {
                    j.status = JobStatus::Failed;
                    j.spec.status = "failed".to_string();
                    j.error = reason.to_string();
                }
            }
        }
        if revert.is_none() {
            self.log_job("执行", &before);
        }
    }

    fn task_finished(&mut self, job_id: &str, task_id: i64, task_status: &str) {
        let Some(before) = self.p.job(job_id).cloned() else {
            return;
        };
        let ours = before.status == JobStatus::Running
            && (before.spec.task_id == task_id || before.spec.task_id == 0);
        let new_status = match task_status {
            "passed" => JobStatus::Done,
            "failed" | "timeout" | "cancelled" | "reject" => JobStatus::Failed,
            _ => return,
        };
        if !ours {
            return;
        }
        let workflow = before.spec.workflow_key.clone();
        if let Some(j) = self.p.job_mut(job_id) {
            j.status = new_status;
            j.spec.task_id = task_id;
            j.spec.status = task_status.to_string();
            if new_status == JobStatus::Failed {
                j.error = format!("workflow {workflow} task {task_id} ended {task_status}");
            }
        }
        self.log_job("更新", &before);
        self.complete_if_done();
    }

    fn callback(
        &mut self,
        event: HookEvent,
        code: &str,
        result: CallbackResult,
        reason: &str,
    ) -> Result<(), Rejection> {
        if code != self.p.instance_code {
            return Err(Rejection::conflict(format!(
                "release plan instance code is not correct, name: {}, instance code: {code}: it does not match the plan's current instance_code",
                self.p.name
            )));
        }
        let key = super::model::CallbackKey {
            hook_event: event,
            instance_code: code.to_string(),
            result: result.as_str().to_string(),
        };
        if self.p.internal.last_callback.as_ref() == Some(&key) {
            // An identical repeat of the accepted callback: already applied.
            return Ok(());
        }
        if self.p.status != event.wait_status() {
            return Err(Rejection::conflict(format!(
                "release plan {} is {}, not waiting for the {} external check",
                self.p.name,
                self.p.status,
                event.as_str()
            )));
        }
        if result == CallbackResult::Success
            && event == HookEvent::StartExecute
            && !self.approval_passed()
        {
            return Err(Rejection::conflict(format!(
                "approval of release plan {} has not passed: it cannot execute",
                self.p.name
            )));
        }
        let now = self.now;
        match event {
            HookEvent::FinishPlanning => self.p.wait_for_finish_planning_external_check_time = now,
            HookEvent::StartExecute => self.p.wait_for_execute_external_check_time = now,
            HookEvent::AllJobDone => self.p.wait_for_all_done_external_check_time = now,
        }
        self.p.internal.last_callback = Some(key);
        match result {
            CallbackResult::Failed => {
                self.p.external_check_failed_reason = reason.to_string();
                self.move_to(event.failed_status());
            }
            CallbackResult::Success => match event {
                HookEvent::FinishPlanning => {
                    self.move_to(Status::FinishPlanning);
                    // spec C2/§8.5: without approval the plan goes straight on, no hook.
                    if !Approval::is_on(&self.p.approval) {
                        self.start_executing(false);
                    }
                }
                HookEvent::StartExecute => self.start_executing(false),
                HookEvent::AllJobDone => self.move_to(Status::Success),
            },
        }
        Ok(())
    }

    fn tick(&mut self) {
        let now = self.now;
        let deadline = self.p.internal.approval_deadline;
        if self.p.status == Status::WaitForApproval && deadline > 0 && now >= deadline {
            if let Some(a) = &mut self.p.approval {
                a.status = "timeout".to_string();
            }
            self.p.approval_time = now;
            self.move_to(Status::Timeout);
        }
        if self.p.status == Status::Executing && self.p.end_time != 0 && now > self.p.end_time {
            self.move_to(Status::Timeout);
        }
        let at = self.p.internal.schedule_at;
        if self.p.status == Status::Executing && at > 0 && now >= at {
            self.p.internal.schedule_at = 0;
            self.p.internal.schedule_fired_ms = self.ctx.now_ms;
            let in_window = self.p.start_time == 0 || now >= self.p.start_time;
            if in_window && self.approval_passed() {
                let due: Vec<ReleaseJob> = self
                    .p
                    .jobs
                    .iter()
                    .filter(|j| {
                        j.kind == JobKind::Workflow
                            && matches!(j.status, JobStatus::Todo | JobStatus::Failed)
                    })
                    .cloned()
                    .collect();
                for job in &due {
                    self.start_job(&job.id);
                    self.log_job("执行", job);
                }
                if !due.is_empty() {
                    self.touch();
                }
            }
        }
    }

    /// Keep the derived fields in step with the plan.
    fn normalize(&mut self) {
        let i = &mut self.p.internal;
        if self.p.status != Status::Executing {
            i.schedule_at = 0;
        }
        if self.p.status != Status::WaitForApproval {
            i.approval_deadline = 0;
        }
        i.running_jobs = self
            .p
            .jobs
            .iter()
            .filter(|j| j.status == JobStatus::Running)
            .count()
            .try_into()
            .unwrap_or(i64::MAX);
    }
}

fn plan_jobs(jobs: &[ReleaseJob]) -> Vec<Option<&ReleaseJob>> {
    jobs.iter().map(Some).collect()
}

fn im_name(kind: &str) -> &'static str {
    match kind {
        "lark" | "lark_intl" => "Lark (Feishu)",
        "dingtalk" => "DingTalk",
        "workwx" => "WeCom (WorkWX)",
        _ => "IM",
    }
}

/// A new plan from validated content (spec P0): `planning`, a fresh instance code and hook
/// snapshot, version 1.
pub fn create(id: &str, index: i64, content: &Content, actor: &Actor, ctx: &Ctx<'_>) -> Outcome {
    let now = ctx.now();
    let blank = ReleasePlan {
        id: id.to_string(),
        index,
        name: String::new(),
        manager: String::new(),
        manager_id: String::new(),
        start_time: 0,
        end_time: 0,
        schedule_execute_time: 0,
        description: String::new(),
        created_by: actor.name.clone(),
        create_time: now,
        updated_by: String::new(),
        update_time: 0,
        approval: None,
        jobs: Vec::new(),
        status: Status::Planning,
        planning_time: 0,
        approval_time: 0,
        executing_time: 0,
        success_time: 0,
        finish_planning_time: 0,
        instance_code: String::new(),
        hook_settings: None,
        wait_for_finish_planning_external_check_time: 0,
        wait_for_execute_external_check_time: 0,
        wait_for_all_done_external_check_time: 0,
        external_check_failed_reason: String::new(),
        version: 0,
        internal: Default::default(),
    };
    let mut s = Step {
        p: blank,
        fx: Vec::new(),
        trail: Vec::new(),
        ctx,
        now,
        who: actor.clone(),
        error: None,
    };
    // Editing a blank plan in `planning` cannot be refused.
    let _ = s.edit(content);
    s.fx.clear();
    let name = s.p.name.clone();
    s.log("新建", "release_plan", &name);
    s.p.version = 1;
    s.normalize();
    Outcome {
        plan: s.p,
        effects: s.fx,
        transitions: s.trail,
        error: None,
    }
}
