//! Release-plan pages: the list and a plan's detail (status timeline from the operation
//! records, approval with votes, jobs with links to their workflow tasks) and its actions, each
//! through [`crate::release_plan::service`] as the API does.

use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::render::{page, urlencode};
use super::session::Viewer;
use super::{Posted, UiError, UiQuery, UiResult, done};
use crate::auth::Identity;
use crate::release_plan::input::{ApproveInput, JobActionInput};
use crate::release_plan::machine::status_api_allows;
use crate::release_plan::model::{JobKind, JobStatus, ReleaseJob, ReleasePlan, Status};
use crate::release_plan::service::{self, JobAction};
use crate::release_plan::store::LogEntry;
use crate::state::AppState;
use crate::store::{Dir, Filter, FindOptions};

/// `GET /ui/plans`: newest first, with status, manager, window and schedule.
pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    UiQuery(q): UiQuery<super::ListQuery>,
) -> UiResult {
    let p = q.paging();
    let opts = FindOptions::sort("index", Dir::Desc).page(p.num, p.size);
    let plans = state.release_plans.find(&Filter::All, &opts).await?;
    let total = state.release_plans.count(&Filter::All).await?;
    let rows: Vec<Value> = plans
        .iter()
        .map(|p| {
            json!({
                "id": p.id, "index": p.index, "name": p.name, "status": p.status.as_str(),
                "manager": p.manager, "start_time": p.start_time, "end_time": p.end_time,
                "schedule_execute_time": p.schedule_execute_time, "jobs": p.jobs.len(),
            })
        })
        .collect();
    Ok(page(
        "plans.html",
        Some(&viewer),
        json!({
            "title": "Release plans", "nav": "plans", "plans": rows, "total": total,
            "page": p.num, "has_next": super::has_next(p, total),
        }),
    ))
}

async fn load(state: &AppState, id: &str) -> UiResult<ReleasePlan> {
    crate::validate::object_id("id", id)?;
    state.release_plans.get(id).await?.ok_or_else(|| {
        UiError::Status(
            axum::http::StatusCode::NOT_FOUND,
            format!("release plan {id} not found"),
        )
    })
}

/// The release manager or an admin (the machine's rule for status changes and every job).
fn plan_owner(p: &ReleasePlan, who: &Identity) -> bool {
    who.is_admin || (!p.manager_id.is_empty() && p.manager_id == who.uid)
}

/// A job's owner, the plan owner or an admin (spec §5.2).
fn job_owner(p: &ReleasePlan, j: &ReleaseJob, who: &Identity) -> bool {
    plan_owner(p, who) || (!j.manager_id.is_empty() && j.manager_id == who.uid)
}

/// The actions the machine would accept on `j` from `who` now.
fn job_actions(p: &ReleasePlan, j: &ReleaseJob, who: &Identity) -> Vec<&'static str> {
    if p.status != Status::Executing || !job_owner(p, j, who) {
        return Vec::new();
    }
    let mut out = Vec::new();
    if j.status == JobStatus::Todo {
        out.push("execute");
    }
    if matches!(j.status, JobStatus::Todo | JobStatus::Failed) {
        out.push("skip");
    }
    if j.status == JobStatus::Failed && j.kind == JobKind::Workflow {
        out.push("retry");
    }
    out
}

fn verb_en(v: &str) -> &str {
    match v {
        "新建" => "Created",
        "更新" => "Updated",
        "删除" => "Deleted",
        "执行" => "Executed",
        "重试" => "Retried",
        "跳过" => "Skipped",
        other => other,
    }
}

fn target_en(t: &str) -> &str {
    match t {
        "release_plan" => "release plan",
        "release_plan_status" => "status",
        "metadata" => "metadata",
        "release_job" => "release job",
        "approval" => "approval",
        "description" => "description",
        other => other,
    }
}

fn timeline(records: Vec<LogEntry>) -> Vec<Value> {
    // Stored newest first; a timeline reads oldest first.
    records
        .into_iter()
        .rev()
        .map(|r| {
            let change = match (&r.before, &r.after) {
                (Value::String(b), Value::String(a)) if r.target_type == "release_plan_status" => {
                    Some((b.clone(), a.clone()))
                }
                _ => None,
            };
            let detail = match r.detail.as_str() {
                "审批通过" => "Approval passed".to_string(),
                "审批被拒绝" => "Approval rejected".to_string(),
                d if change.is_some() || d.starts_with("状态从") => String::new(),
                d => d.to_string(),
            };
            json!({
                "time": r.created_at, "user": if r.username == "系统" { "System" } else { &r.username },
                "verb": verb_en(&r.verb), "target": target_en(&r.target_type),
                "name": r.target_name, "from": change.as_ref().map(|c| &c.0),
                "to": change.as_ref().map(|c| &c.1), "detail": detail,
            })
        })
        .collect()
}

/// `GET /ui/plans/{id}`
pub async fn detail(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> UiResult {
    let plan = load(&state, &id).await?;
    let records = state.release_plans.logs_of(&id).await?;
    let who = &viewer.identity;
    let owner = plan_owner(&plan, who);
    let targets: Vec<&str> = if owner {
        Status::ALL
            .iter()
            .copied()
            .filter(|t| status_api_allows(plan.status, *t))
            .map(Status::as_str)
            .collect()
    } else {
        Vec::new()
    };
    let native = plan
        .approval
        .as_ref()
        .filter(|a| a.enabled && a.kind == "native")
        .and_then(|a| a.native_approval.as_ref());
    let can_vote = plan.status == Status::WaitForApproval
        && native.is_some_and(|n| {
            n.approve_users
                .iter()
                .any(|u| u.user_id == who.uid && u.reject_or_approve.is_none())
        });
    let jobs: Vec<Value> = plan
        .jobs
        .iter()
        .map(|j| {
            let task = (j.kind == JobKind::Workflow && j.spec.task_id > 0).then(|| {
                format!(
                    "/ui/workflows/{}/tasks/{}",
                    urlencode(&j.spec.workflow_key),
                    j.spec.task_id
                )
            });
            json!({
                "id": j.id, "name": j.name, "type": j.kind.as_str(), "status": j.status.as_str(),
                "manager": j.manager, "executed_by": j.executed_by,
                "executed_time": j.executed_time, "error": j.error,
                "content": j.spec.content, "remark": j.spec.remark,
                "workflow_key": j.spec.workflow_key, "task_id": j.spec.task_id,
                "task_status": j.spec.status, "task_url": task,
                "actions": job_actions(&plan, j, who),
            })
        })
        .collect();
    let approval = plan.approval.as_ref().map(|a| {
        json!({
            "enabled": a.enabled, "type": a.kind, "status": a.status, "description": a.description,
            "needed": native.map(|n| n.needed_approvers.max(1)),
            "timeout": native.map(|n| n.timeout),
            "users": native.map(|n| &n.approve_users),
        })
    });
    Ok(page(
        "plan.html",
        Some(&viewer),
        json!({
            "title": format!("Plan {}", plan.name), "nav": "plans",
            "plan": {
                "id": plan.id, "index": plan.index, "name": plan.name, "status": plan.status.as_str(),
                "manager": plan.manager, "description": plan.description,
                "start_time": plan.start_time, "end_time": plan.end_time,
                "schedule_execute_time": plan.schedule_execute_time,
                "created_by": plan.created_by, "create_time": plan.create_time,
                "external_check_failed_reason": plan.external_check_failed_reason,
            },
            "approval": approval, "can_vote": can_vote, "jobs": jobs,
            "timeline": timeline(records), "status_targets": targets,
        }),
    ))
}

fn back(id: &str) -> String {
    format!("/ui/plans/{id}")
}

/// `POST /ui/plans/{id}/approve` (`approve=true|false`, `comment`).
pub async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { viewer, form }: Posted,
) -> UiResult {
    let input = ApproveInput {
        approve: form.get("approve") == Some("true"),
        comment: form.get("comment").unwrap_or_default().to_string(),
    };
    service::approve(&state, &viewer.identity, &id, input).await?;
    Ok(done(&back(&id)))
}

/// `POST /ui/plans/{id}/status` (`status`).
pub async fn set_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { viewer, form }: Posted,
) -> UiResult {
    let target = form.get("status").unwrap_or_default();
    service::set_status(&state, &viewer.identity, &id, target).await?;
    Ok(done(&back(&id)))
}

/// `POST /ui/plans/{id}/jobs/{job}/{execute|skip|retry}` (`remark` for text jobs).
pub async fn job_action(
    State(state): State<AppState>,
    Path((id, job, action)): Path<(String, String, String)>,
    Posted { viewer, form }: Posted,
) -> UiResult {
    let action = match action.as_str() {
        "execute" => JobAction::Execute,
        "skip" => JobAction::Skip,
        "retry" => JobAction::Retry,
        other => {
            return Err(UiError::Status(
                axum::http::StatusCode::NOT_FOUND,
                format!("no release-job action {other:?}"),
            ));
        }
    };
    let plan = load(&state, &id).await?;
    let kind = plan
        .job(&job)
        .map_or("text", |j| j.kind.as_str())
        .to_string();
    let input = JobActionInput {
        id: job,
        name: String::new(),
        kind,
        spec: json!({"remark": form.get("remark").unwrap_or_default()}),
    };
    service::job_action(&state, &viewer.identity, &id, action, input).await?;
    Ok(done(&back(&id)))
}
