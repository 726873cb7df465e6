//! The release-plan document (spec/release-plan.md §3) and its parts.
//!
//! One plan is one document in `release_plans`. The public fields keep Zadig's names and order
//! (seed 001's detail example), so the stored document minus [`Internal`] is the detail answer.
//! [`Internal`] holds our bookkeeping: what the scheduler must do and when, pending outgoing
//! hooks (kept in the plan so they are saved atomically with the transition that caused them)
//! and the background-work claim.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::wire::wire_enum;

pub use crate::workflow::task::Status as TaskStatus;

wire_enum! {
    /// Plan statuses (spec §4.1).
    #[derive(PartialOrd, Ord)]
    pub enum Status as "PlanStatus" {
        Planning = "planning",
        FinishPlanning = "finish_planning",
        WaitForApproval = "wait_for_approval",
        Executing = "executing",
        Denied = "denied",
        Timeout = "timeout",
        Success = "success",
        Cancel = "cancel",
        WaitForFinishPlanningExternalCheck = "wait_for_finish_planning_external_check",
        WaitForExecuteExternalCheck = "wait_for_execute_external_check",
        WaitForAllDoneExternalCheck = "wait_for_all_done_external_check",
        WaitForFinishPlanningExternalCheckFailed = "wait_for_finish_planning_external_check_failed",
        WaitForExecuteExternalCheckFailed = "wait_for_execute_external_check_failed",
        WaitForAllDoneExternalCheckFailed = "wait_for_all_done_external_check_failed",
    }
}

impl Status {
    /// Nothing leaves these (DESIGN.md §1.5: a failed job never finishes a plan, so no retry
    /// can reopen a `success`).
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Success | Status::Cancel)
    }

    /// Waiting for an external check, or that check failed: only re-plan or cancel leave it
    /// through the status API.
    pub fn is_external_check(self) -> bool {
        matches!(
            self,
            Status::WaitForFinishPlanningExternalCheck
                | Status::WaitForExecuteExternalCheck
                | Status::WaitForAllDoneExternalCheck
                | Status::WaitForFinishPlanningExternalCheckFailed
                | Status::WaitForExecuteExternalCheckFailed
                | Status::WaitForAllDoneExternalCheckFailed
        )
    }
}

wire_enum! {
    /// The three events of the outgoing hook (spec §8.2) and of the callback.
    pub enum HookEvent as "HookEvent" {
        FinishPlanning = "finish_planning",
        StartExecute = "start_execute",
        AllJobDone = "all_job_done",
    }
}

impl HookEvent {
    /// The status a plan waits in for this event's external check.
    pub fn wait_status(self) -> Status {
        match self {
            HookEvent::FinishPlanning => Status::WaitForFinishPlanningExternalCheck,
            HookEvent::StartExecute => Status::WaitForExecuteExternalCheck,
            HookEvent::AllJobDone => Status::WaitForAllDoneExternalCheck,
        }
    }

    /// The status a failed check leaves the plan in.
    pub fn failed_status(self) -> Status {
        match self {
            HookEvent::FinishPlanning => Status::WaitForFinishPlanningExternalCheckFailed,
            HookEvent::StartExecute => Status::WaitForExecuteExternalCheckFailed,
            HookEvent::AllJobDone => Status::WaitForAllDoneExternalCheckFailed,
        }
    }
}

wire_enum! {
    /// Release-job types.
    pub enum JobKind as "ReleaseJobKind" {
        Text = "text",
        Workflow = "workflow",
    }
}

wire_enum! {
    /// Release-job statuses (spec §5.1); `""` before the first execution cycle.
    #[derive(Default)]
    pub enum JobStatus as "ReleaseJobStatus" {
        #[default]
        Unset = "",
        Todo = "todo",
        Running = "running",
        Done = "done",
        Skipped = "skipped",
        Failed = "failed",
    }
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A job's `spec`. Text jobs use `content`/`remark`; workflow jobs the workflow reference, its
/// execute input, the resolved workflow definition and the task it runs. Empty fields are
/// omitted, so a text job shows `{content, remark}` and a workflow job never shows `content`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct JobSpec {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub content: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub remark: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub workflow_key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub project_key: String,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub parameters: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub inputs: Value,
    /// The workflow definition with `parameters`/`inputs` applied (from the workflow service).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub workflow: Value,
    /// The workflow task's status as last seen (`prepare` until it is known).
    #[serde(skip_serializing_if = "TaskStatus::is_not_run")]
    pub status: TaskStatus,
    #[serde(skip_serializing_if = "is_zero")]
    pub task_id: i64,
}

/// One release job (spec §3.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseJob {
    pub id: String,
    pub name: String,
    /// Optional per-job owner (spec §5.2).
    #[serde(default)]
    pub manager: String,
    #[serde(default)]
    pub manager_id: String,
    #[serde(rename = "type")]
    pub kind: JobKind,
    pub spec: JobSpec,
    #[serde(default)]
    pub status: JobStatus,
    #[serde(default)]
    pub last_status: JobStatus,
    #[serde(default)]
    pub updated: bool,
    #[serde(default)]
    pub executed_by: String,
    #[serde(default)]
    pub executed_time: i64,
    /// Why the job failed (a workflow task that did not pass, or could not start).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// One approver of a native approval, with their vote (the workflow task's shape).
pub use crate::workflow::task::{ApproveOrReject, ApproveUser};

/// Zadig's own approval (spec §3.4, §7.2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct NativeApproval {
    /// Minutes from entering `wait_for_approval`; 0 = no limit.
    pub timeout: i64,
    pub approve_users: Vec<ApproveUser>,
    pub needed_approvers: i64,
    pub reject_or_approve: ApproveOrReject,
    pub instance_code: String,
}

wire_enum! {
    /// A plan approval's outcome (`approval.status`, spec §7): undecided until the votes (or the
    /// IM approval) decide it or its time runs out.
    #[derive(Default)]
    pub enum ApprovalStatus as "PlanApprovalStatus" {
        #[default]
        Undecided = "",
        Passed = "passed",
        Reject = "reject",
        Timeout = "timeout",
    }
}

/// A plan's approval configuration and outcome (spec §3.4). IM approvals (Lark, DingTalk,
/// WorkWX) are kept verbatim.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Approval {
    pub enabled: bool,
    pub status: ApprovalStatus,
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub native_approval: Option<NativeApproval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lark_approval: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dingtalk_approval: Option<Value>,
    /// Any other key the client sent (`workwx_approval`, `start_time`, …), kept verbatim.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl Approval {
    /// Approval counts only when present and enabled (spec §3.4).
    pub fn is_on(a: &Option<Approval>) -> bool {
        a.as_ref().is_some_and(|a| a.enabled)
    }

    /// Forget any decision and votes (create, PATCH, submitting again).
    pub fn clear_runtime(&mut self) {
        self.status = ApprovalStatus::Undecided;
        if let Some(n) = &mut self.native_approval {
            n.reject_or_approve = ApproveOrReject::None;
            n.instance_code.clear();
            for u in &mut n.approve_users {
                u.reject_or_approve = ApproveOrReject::None;
                u.comment.clear();
                u.operation_time = 0;
            }
        }
    }
}

/// The part of the hook setting a plan snapshots (spec §8.1): which events fire and whether
/// the plan waits for the callback.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct HookSnapshot {
    pub enable: bool,
    pub enable_call_back: bool,
    pub hook_events: Vec<HookEvent>,
}

impl HookSnapshot {
    /// The hook for `e` is sent.
    pub fn fires(s: &Option<HookSnapshot>, e: HookEvent) -> bool {
        s.as_ref()
            .is_some_and(|s| s.enable && s.hook_events.contains(&e))
    }

    /// The plan waits for the callback of `e`.
    pub fn waits(s: &Option<HookSnapshot>, e: HookEvent) -> bool {
        Self::fires(s, e) && s.as_ref().is_some_and(|s| s.enable_call_back)
    }
}

/// An outgoing hook not delivered yet. The body is built at the transition, so it shows the
/// plan as it was then; the address and secret are read at delivery (spec §8.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingHook {
    /// Also sent as `X-Zadig-Event-UUID`, stable across attempts so receivers can dedupe.
    pub id: String,
    pub event: HookEvent,
    pub body: String,
    #[serde(default)]
    pub attempts: u32,
    /// Business-clock ms of the next attempt.
    pub next_attempt_ms: i64,
    #[serde(default)]
    pub last_error: String,
}

/// The last accepted callback, so that an identical repeat is answered as success.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackKey {
    pub hook_event: HookEvent,
    pub instance_code: String,
    pub result: String,
}

/// Our bookkeeping, stored under `internal` and never shown by the API.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Internal {
    pub manager_identity_type: String,
    /// The uid of the plan's creator, who may edit it beside the manager (docs/security.md).
    /// Plans stored before it was recorded have none: only the manager and admins edit those.
    pub creator_id: String,
    /// The uid of who asked for the plan to execute (the status call to `executing`, or the
    /// submission an approval then passed; never the approver): its scheduled execution acts
    /// for them (docs/security.md). Plans from before it was recorded have none: their
    /// manager's rights apply.
    pub executor_id: String,
    /// Seconds: when the scheduled execution is due (0: nothing to fire). Set on entering
    /// `executing`, cleared when fired or when the plan leaves `executing`.
    pub schedule_at: i64,
    /// Business-clock ms when the scheduled execution was applied (benchmarks read it).
    pub schedule_fired_ms: i64,
    /// Seconds: when a native approval times out (0: no limit / not waiting).
    pub approval_deadline: i64,
    /// Jobs in `running` (the reconciler looks at these plans).
    pub running_jobs: i64,
    pub pending_hooks: Vec<PendingHook>,
    /// Business-clock ms when the first pending hook is due (0: none).
    pub hook_due_ms: i64,
    /// Background-work claim: which process works on the plan, until when (wall-clock ms).
    pub claim_owner: String,
    pub claim_until_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_callback: Option<CallbackKey>,
}

/// A release plan (spec §3.1). Field order follows seed 001's detail example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReleasePlan {
    pub id: String,
    pub index: i64,
    pub name: String,
    pub manager: String,
    pub manager_id: String,
    #[serde(default)]
    pub start_time: i64,
    #[serde(default)]
    pub end_time: i64,
    #[serde(default)]
    pub schedule_execute_time: i64,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub create_time: i64,
    #[serde(default)]
    pub updated_by: String,
    #[serde(default)]
    pub update_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    #[serde(default)]
    pub jobs: Vec<ReleaseJob>,
    pub status: Status,
    #[serde(default)]
    pub planning_time: i64,
    #[serde(default)]
    pub approval_time: i64,
    #[serde(default)]
    pub executing_time: i64,
    #[serde(default)]
    pub success_time: i64,
    #[serde(default)]
    pub finish_planning_time: i64,
    #[serde(default)]
    pub instance_code: String,
    pub hook_settings: Option<HookSnapshot>,
    #[serde(default)]
    pub wait_for_finish_planning_external_check_time: i64,
    #[serde(default)]
    pub wait_for_execute_external_check_time: i64,
    #[serde(default)]
    pub wait_for_all_done_external_check_time: i64,
    #[serde(default)]
    pub external_check_failed_reason: String,
    /// Bumped on every write; every write is conditional on it.
    #[serde(default)]
    pub version: i64,
    #[serde(default)]
    #[schema(ignore)]
    pub internal: Internal,
}

impl ReleasePlan {
    pub fn job(&self, id: &str) -> Option<&ReleaseJob> {
        self.jobs.iter().find(|j| j.id == id)
    }

    pub fn job_mut(&mut self, id: &str) -> Option<&mut ReleaseJob> {
        self.jobs.iter_mut().find(|j| j.id == id)
    }
}

/// The key under which [`Internal`] is stored; the API strips it.
pub const INTERNAL_KEY: &str = "internal";
