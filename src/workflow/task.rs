//! The workflow task record: one execution of a workflow (spec/workflow.md §3.7–3.8, §5), shared
//! by the workflow API (which creates, cancels, retries and approves tasks) and the engine
//! (which runs them).
//!
//! A task is one document in `workflow_tasks`, unique on (`workflow_name`, `task_id`). Writers
//! never read-modify-write blindly: every change goes through a conditional update on
//! `version` (or on `status`), so an API call and the engine racing on one task cannot lose
//! each other's writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::limits::Paging;
use crate::secrets::SecretBox;
use crate::store::{Backend, Dir, Filter, FindOptions, StoreResult, Typed};
use crate::wire::wire_enum;
use crate::workflow::ReleaseRef;
use crate::workflow::notify::pending::Notice;

wire_enum! {
    /// A task's, stage's or job task's status (spec/workflow.md §5.2), with Zadig's strings on
    /// the wire and in storage.
    #[derive(Default)]
    pub enum Status as "TaskStatus" {
        Created = "created",
        Waiting = "waiting",
        Running = "running",
        Passed = "passed",
        Failed = "failed",
        Timeout = "timeout",
        Cancelled = "cancelled",
        Reject = "reject",
        Pause = "pause",
        WaitForApproval = "wait_for_approval",
        /// A failed job whose `manual_check` error policy waits for someone to ignore or reject.
        WaitForManualErrorHandling = "wait_for_manual_error_handling",
        Skipped = "skipped",
        Unstable = "unstable",
        Prepare = "prepare",
        /// A stage or job task not started (yet).
        #[default]
        NotRun = "",
    }
}

impl Status {
    /// Final task statuses: the task leaves the queue and never runs again (unless retried).
    pub const FINAL: &'static [Status] = &[
        Status::Passed,
        Status::Failed,
        Status::Timeout,
        Status::Cancelled,
        Status::Reject,
        Status::Skipped,
    ];

    /// Not started yet (`""`): a field that is absent on the wire.
    pub fn is_not_run(&self) -> bool {
        *self == Self::NotRun
    }

    /// Whether a task with this status is done (see [`Self::FINAL`]).
    pub fn is_final(self) -> bool {
        Self::FINAL.contains(&self)
    }
}

wire_enum! {
    /// A vote, or the outcome of a native approval: Zadig's `ApproveOrReject`, on the wire as
    /// `reject_or_approve`; `""` while there is none.
    #[derive(Default)]
    pub enum ApproveOrReject as "ApproveOrReject" {
        #[default]
        None = "",
        Approve = "approve",
        Reject = "reject",
    }
}

impl ApproveOrReject {
    /// The vote of an approve call (`approve: true` or `false`).
    pub fn of(approve: bool) -> Self {
        if approve { Self::Approve } else { Self::Reject }
    }

    pub fn is_none(self) -> bool {
        self == Self::None
    }
}

/// One vote (or pending approver) of a stage's or a release plan's native approval, in the
/// seed's shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct ApproveUser {
    pub user_id: String,
    pub user_name: String,
    pub reject_or_approve: ApproveOrReject,
    pub comment: String,
    pub operation_time: i64,
}

/// A stage's native approval as the task records it (seed 002 task detail `approval`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StageApproval {
    pub enabled: bool,
    /// `native`, `lark`, `dingtalk`, `workwx`.
    #[serde(rename = "type")]
    pub kind: String,
    pub approve_users: Vec<ApproveUser>,
    /// Minutes; 0 means the default (60).
    pub timeout: i64,
    /// Approvals needed; 0 means one (not an automatic pass, see docs/compatibility.md).
    pub needed_approvers: i64,
    pub description: String,
    /// The outcome, none while undecided.
    pub reject_or_approve: ApproveOrReject,
    /// When the stage started waiting (ms, business clock) — the timeout counts from here.
    pub wait_start_ms: i64,
    /// The type-specific configuration as defined on the workflow (kept verbatim).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One job task (a workflow job may expand into several, e.g. one per service).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobTask {
    /// The job-task name: unique in the task; the key of its log.
    pub name: String,
    /// The workflow job's name.
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub origin_name: String,
    #[serde(rename = "type")]
    pub job_type: String,
    /// [`Status::NotRun`] until started.
    #[serde(default)]
    pub status: Status,
    #[serde(default)]
    pub start_time: i64,
    #[serde(default)]
    pub end_time: i64,
    #[serde(default)]
    pub error: String,
    /// The job task's spec (the workflow job's spec with the execute inputs merged, narrowed to
    /// this job task). Unknown fields are kept. For an `approval` job the approve API records
    /// votes on `spec.native_approval.approve_users[]` (the [`ApproveUser`] shape) while the job
    /// is `wait_for_approval`; the engine decides from them (src/engine/approval.rs).
    #[serde(default)]
    pub spec: Value,
    #[serde(default)]
    pub run_policy: String,
    #[serde(default)]
    pub error_policy: Value,
    #[serde(default)]
    pub execute_policy: Value,
    #[serde(default)]
    pub retry_count: i64,
    /// Outputs recorded when the job ended (`IMAGE`, `IMAGETAG`, `PKG_FILE`, declared ones).
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// Who decided on the failed job under the `manual_check` error policy (Zadig's
    /// `error_handler_user_id` / `error_handler_username`); empty otherwise.
    #[serde(default)]
    pub error_handler_user_id: String,
    #[serde(default)]
    pub error_handler_username: String,
}

/// What a stage and a job task share: a status entered at a start time and left at an end
/// time, with an error. Their shapes stay Zadig's two (the fields stand in different places);
/// starting and ending them is written once here.
pub trait Timed {
    /// The status, start time, end time and error.
    fn timing(&mut self) -> (&mut Status, &mut i64, &mut i64, &mut String);

    /// Enter `status` at `at`: a new start, no end and no error yet.
    fn begin(&mut self, status: Status, at: i64) {
        let (s, start, end, error) = self.timing();
        (*s, *start, *end) = (status, at, 0);
        error.clear();
    }

    /// Back to not run: no start, no end, no error (a stage or job to run again).
    fn reset(&mut self) {
        self.begin(Status::NotRun, 0);
    }

    /// End in `status` at `at` with `error` (`""` for none); the start stays.
    fn end(&mut self, status: Status, error: &str, at: i64) {
        let (s, _, end, e) = self.timing();
        (*s, *end) = (status, at);
        error.clone_into(e);
    }
}

/// Both types name the fields alike.
macro_rules! timed {
    ($($t:ty),*) => {$(
        impl Timed for $t {
            fn timing(&mut self) -> (&mut Status, &mut i64, &mut i64, &mut String) {
                (&mut self.status, &mut self.start_time, &mut self.end_time, &mut self.error)
            }
        }
    )*};
}
timed!(JobTask, StageTask);

/// One stage of a task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageTask {
    pub name: String,
    #[serde(default)]
    pub status: Status,
    #[serde(default)]
    pub start_time: i64,
    #[serde(default)]
    pub end_time: i64,
    #[serde(default)]
    pub parallel: bool,
    pub approval: Option<StageApproval>,
    #[serde(default)]
    pub manual_exec: Value,
    #[serde(default)]
    pub jobs: Vec<JobTask>,
    #[serde(default)]
    pub error: String,
}

/// A workflow task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Storage id (24 hex).
    pub id: String,
    pub task_id: i64,
    pub workflow_name: String,
    #[serde(default)]
    pub workflow_display_name: String,
    pub project_name: String,
    /// Workflow parameters after the execute input.
    #[serde(default)]
    pub params: Vec<Value>,
    pub status: Status,
    #[serde(default)]
    pub task_creator: String,
    #[serde(default)]
    pub task_creator_account: String,
    #[serde(default)]
    pub task_creator_id: String,
    #[serde(default)]
    pub task_revoker: String,
    #[serde(default)]
    pub create_time: i64,
    #[serde(default)]
    pub start_time: i64,
    #[serde(default)]
    pub end_time: i64,
    #[serde(default)]
    pub stages: Vec<StageTask>,
    #[serde(default)]
    pub remark: String,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub retry_num: i64,
    #[serde(default)]
    pub approval_ticket_id: String,
    #[serde(default)]
    pub approval_id: String,
    /// Set when a release-plan job started this task (DESIGN.md §5).
    pub release: Option<ReleaseRef>,
    #[serde(default)]
    pub notify_inputs: Value,
    /// The workflow definition with the execute input applied (used to regenerate job tasks on
    /// retry).
    #[serde(default)]
    pub workflow_args: Value,
    /// The workflow's `concurrency_limit` when the task was created (-1 unlimited).
    #[serde(default)]
    pub concurrency_limit: i64,
    /// Archived with its deleted workflow: hidden from lists, still found by detail.
    #[serde(default)]
    pub is_deleted: bool,
    /// Engine bookkeeping: which process runs the task, until when (wall-clock ms).
    #[serde(default)]
    pub lease_owner: String,
    #[serde(default)]
    pub lease_until_ms: i64,
    /// Bumped on every write; conditional updates compare it.
    #[serde(default)]
    pub version: i64,
    /// Business-clock ms when the task was queued (dispatch order).
    #[serde(default)]
    pub queued_at_ms: i64,
    /// Engine bookkeeping: the release plan (if any) was told about the task's current final
    /// status. Reset when the engine claims the task.
    #[serde(default)]
    pub final_notified: bool,
    /// Notifications of status changes written with them and not queued yet (the task's half
    /// of the outbox, `workflow::notify::pending`).
    #[serde(default)]
    pub notify_pending: Vec<Notice>,
    /// Business-clock ms when the oldest of `notify_pending` was recorded; 0 when none (what
    /// the background sweep looks for).
    #[serde(default)]
    pub notify_pending_ms: i64,
    /// The sequence number of the last notice recorded.
    #[serde(default)]
    pub notify_seq: i64,
}

/// Queries over `workflow_tasks`.
#[derive(Clone)]
pub struct TaskStore {
    pub tasks: Typed<Task>,
}

impl TaskStore {
    /// Credential variables (parameters, job variables) are encrypted at rest.
    pub fn new(backend: &dyn Backend, secrets: &Arc<SecretBox>) -> Self {
        Self {
            tasks: Typed::new(backend, "workflow_tasks").sealed_vars(secrets, None),
        }
    }

    pub fn key(workflow: &str, task_id: i64) -> Filter {
        Filter::eq("workflow_name", workflow).and(Filter::eq("task_id", task_id))
    }

    pub async fn insert(&self, task: &Task) -> StoreResult<()> {
        self.tasks.insert(task).await
    }

    pub async fn get(&self, workflow: &str, task_id: i64) -> StoreResult<Option<Task>> {
        self.tasks.find_one(&Self::key(workflow, task_id)).await
    }

    /// Write `task` if nobody wrote since it was read (its `version` still matches); bumps the
    /// version. `Ok(false)`: someone else won; re-read and decide again.
    pub async fn save(&self, task: &mut Task) -> StoreResult<bool> {
        let filter = Filter::id(&task.id).and(Filter::eq("version", task.version));
        task.version += 1;
        let ok = self.tasks.replace(&filter, task).await?;
        if !ok {
            task.version -= 1;
        }
        Ok(ok)
    }

    /// Tasks of a workflow (not archived), newest first, and their total.
    pub async fn page(
        &self,
        project: &str,
        workflow: &str,
        p: Paging,
    ) -> StoreResult<(Vec<Task>, u64)> {
        let filter = Filter::eq("workflow_name", workflow)
            .and(Filter::eq("project_name", project))
            .and(Filter::eq("is_deleted", false));
        let opts = FindOptions::sort("task_id", Dir::Desc).page(p.num, p.size);
        self.tasks.page(&filter, &opts).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        crate::workflow::assert_wire_names(
            Status::ALL,
            |s| s as usize,
            Status::as_str,
            Status::parse,
        );
        assert_eq!(Status::default().as_str(), "");
    }
}
