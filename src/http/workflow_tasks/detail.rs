//! The task-detail view (seed 002 "Get Workflow Task Details"; spec §2.4): stages, jobs,
//! approvals, parameters with credential values masked.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::workflow::notify::outbox::{Send, SendState};
use crate::workflow::params::Param;
use crate::workflow::task::{
    ApproveOrReject, JobTask, StageApproval, StageTask, Status as TaskStatus, Task,
};
use crate::workflow::tasks;

/// One vote in a stage approval.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApproveUserView {
    pub user_id: String,
    pub user_name: String,
    pub reject_or_approve: ApproveOrReject,
    pub comment: String,
    pub operation_time: i64,
}

/// A stage's approval in task detail (seed 002).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalView {
    pub enabled: bool,
    #[serde(rename = "type")]
    pub kind: String,
    pub approve_users: Vec<ApproveUserView>,
    /// Minutes.
    pub timeout: i64,
    pub needed_approvers: i64,
    pub description: String,
    /// `""` while undecided.
    pub reject_or_approve: ApproveOrReject,
}

impl From<&StageApproval> for ApprovalView {
    fn from(a: &StageApproval) -> Self {
        Self {
            enabled: a.enabled,
            kind: a.kind.clone(),
            approve_users: a
                .approve_users
                .iter()
                .map(|u| ApproveUserView {
                    user_id: u.user_id.clone(),
                    user_name: u.user_name.clone(),
                    reject_or_approve: u.reject_or_approve,
                    comment: u.comment.clone(),
                    operation_time: u.operation_time,
                })
                .collect(),
            timeout: a.timeout,
            needed_approvers: a.needed_approvers,
            description: a.description.clone(),
            reject_or_approve: a.reject_or_approve,
        }
    }
}

/// A job task in task detail.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobTaskView {
    pub name: String,
    pub key: String,
    pub display_name: String,
    pub origin_name: String,
    #[serde(rename = "type")]
    pub job_type: String,
    pub status: TaskStatus,
    pub start_time: i64,
    pub end_time: i64,
    pub cost_seconds: i64,
    pub error: String,
    /// The type-specific summary (spec §2.4); credential values masked.
    #[schema(value_type = Object)]
    pub spec: Value,
    /// The job's error policy as defined (`null` when it has none).
    #[schema(value_type = Option<Object>)]
    pub error_policy: Value,
    pub retry_count: i64,
    #[schema(value_type = Object)]
    pub job_info: Value,
    pub reverted: bool,
    pub breakpoint_before: bool,
    pub breakpoint_after: bool,
    /// Who ignored or rejected the failed job under the `manual_check` error policy; empty
    /// otherwise.
    pub error_handler_user_id: String,
    pub error_handler_username: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StageTaskView {
    pub name: String,
    pub status: TaskStatus,
    pub start_time: i64,
    pub end_time: i64,
    pub parallel: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalView>,
    /// The stage's manual-execution setting (`null` when it has none).
    #[schema(value_type = Option<Object>)]
    pub manual_exec: Value,
    pub jobs: Vec<JobTaskView>,
    pub error: String,
}

/// The release plan that started a task (Zadig's `ReleasePlanRef`), plus the release job's id
/// (our extension).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReleasePlanRef {
    /// The plan's id (24 hex).
    pub id: String,
    pub name: String,
    pub index: i64,
    /// The release job that started the task (not in Zadig).
    pub job_id: String,
}

/// What became of one notification of the task (our extension; see docs/compatibility.md):
/// the setting (`notify_ctls[ctl]`), the status it told, and whether it was sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationView {
    /// Index of the setting in the workflow's `notify_ctls`.
    pub ctl: usize,
    pub webhook_type: String,
    /// The task status the message tells.
    pub status: TaskStatus,
    /// `pending` (waiting for its next attempt), `sent` or `failed` (given up).
    pub state: SendState,
    pub attempts: u32,
    /// Why the last attempt failed, or why it cannot be sent (`""` once sent).
    pub error: String,
    /// When it was sent or given up (Unix seconds; 0 while pending).
    pub time: i64,
}

impl From<Send> for NotificationView {
    fn from(s: Send) -> Self {
        Self {
            ctl: s.ctl,
            webhook_type: s.webhook_type,
            status: s.event,
            state: s.state,
            attempts: s.attempts,
            error: s.error,
            time: s.done_at,
        }
    }
}

/// Task detail (seed 002 "Get Workflow Task Details").
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskDetail {
    pub task_id: i64,
    pub workflow_key: String,
    pub workflow_name: String,
    pub project_key: String,
    #[schema(value_type = Vec<Object>)]
    pub params: Vec<Value>,
    pub status: TaskStatus,
    pub task_creator: String,
    pub task_revoker: String,
    pub create_time: i64,
    pub start_time: i64,
    pub end_time: i64,
    pub stages: Vec<StageTaskView>,
    pub error: String,
    pub remark: String,
    pub retry_num: i64,
    pub reverted: bool,
    pub is_restart: bool,
    pub debug: bool,
    pub approval_ticket_id: String,
    pub approval_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_plan: Option<ReleasePlanRef>,
    /// The task's notifications, oldest first (our extension; absent when it has none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<NotificationView>,
}

/// A parameter as task detail shows it: credential values masked ([`Param::is_secret`], which
/// also takes one that does not decode as a credential; `default` too).
fn param_view(p: &Value) -> Value {
    let mut p = crate::masking::masked(p.clone());
    if Param::is_secret(&p)
        && let Some(m) = p.as_object_mut()
    {
        m.insert("value".into(), Value::String(tasks::MASK.into()));
    }
    p
}

/// The detail of task `t` at `now` (running jobs' cost counts up to `now`).
pub(super) fn detail(t: Task, notifications: Vec<Send>, now: i64) -> TaskDetail {
    let stages = t.stages.iter().map(|s| stage_view(s, now)).collect();
    TaskDetail {
        task_id: t.task_id,
        workflow_key: t.workflow_name,
        workflow_name: t.workflow_display_name,
        project_key: t.project_name,
        params: t.params.iter().map(param_view).collect(),
        status: t.status,
        task_creator: t.task_creator,
        task_revoker: t.task_revoker,
        create_time: t.create_time,
        start_time: t.start_time,
        end_time: t.end_time,
        stages,
        error: t.error,
        remark: t.remark,
        retry_num: t.retry_num,
        reverted: false,
        is_restart: t.retry_num > 0,
        debug: false,
        approval_ticket_id: t.approval_ticket_id,
        approval_id: t.approval_id,
        release_plan: t.release.map(|r| ReleasePlanRef {
            id: r.plan_id,
            name: r.plan_name,
            index: r.plan_index,
            job_id: r.job_id,
        }),
        notifications: notifications.into_iter().map(Into::into).collect(),
    }
}

fn stage_view(s: &StageTask, now: i64) -> StageTaskView {
    StageTaskView {
        name: s.name.clone(),
        status: s.status,
        start_time: s.start_time,
        end_time: s.end_time,
        parallel: s.parallel,
        approval: s.approval.as_ref().map(ApprovalView::from),
        manual_exec: s.manual_exec.clone(),
        error: s.error.clone(),
        jobs: s.jobs.iter().map(|j| job_view(j, now)).collect(),
    }
}

fn job_view(j: &JobTask, now: i64) -> JobTaskView {
    let mut info = serde_json::Map::new();
    // The workflow job's name (the key also names the item: `<job>.<service>`).
    let job_name = match j.origin_name.as_str() {
        "" => &j.key,
        origin => origin,
    };
    info.insert("job_name".into(), Value::String(job_name.to_string()));
    for k in ["service_name", "service_module"] {
        if let Some(v) = j
            .spec
            .get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
        {
            info.insert(k.into(), Value::String(v.to_string()));
        }
    }
    JobTaskView {
        name: j.name.clone(),
        key: j.key.clone(),
        display_name: j.display_name.clone(),
        origin_name: j.origin_name.clone(),
        job_type: j.job_type.clone(),
        status: j.status,
        start_time: j.start_time,
        end_time: j.end_time,
        cost_seconds: tasks::cost_seconds(j, now),
        error: j.error.clone(),
        // Each view masks its variables; this also covers clone tokens and unknown types.
        spec: crate::masking::masked(tasks::job_spec_view(j)),
        error_policy: j.error_policy.clone(),
        retry_count: j.retry_count,
        job_info: Value::Object(info),
        reverted: false,
        breakpoint_before: false,
        breakpoint_after: false,
        error_handler_user_id: j.error_handler_user_id.clone(),
        error_handler_username: j.error_handler_username.clone(),
    }
}
