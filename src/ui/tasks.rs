//! Workflow pages: the workflow list, a workflow's tasks, and a task page with its stage graph,
//! a job's log (live while the job runs, in full once it ended) and the task actions (cancel,
//! retry, approve, manual execution), each through [`crate::workflow::tasks`] as the API does.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::render::{page, render, urlencode};
use super::session::Viewer;
use super::{Posted, UiError, UiQuery, UiResult, done};
use crate::auth::Identity;
use crate::engine::approval::JobApproval;
use crate::state::AppState;
use crate::store::{Dir, FindOptions, Typed};
use crate::workflow::error::Op;
use crate::workflow::jobs::Runs;
use crate::workflow::model::Workflow;
use crate::workflow::task::{ApproveUser, JobTask, StageTask, Status, Task};
use crate::workflow::{tasks, votes};

/// `GET /ui/workflows[?project=]`: every workflow (of one project when asked).
pub async fn workflows(
    State(state): State<AppState>,
    viewer: Viewer,
    UiQuery(q): UiQuery<super::ListQuery>,
) -> UiResult {
    let docs: Typed<Workflow> = Typed::new(state.backend.as_ref(), "workflows");
    let filter = q.project_filter("project");
    let p = q.paging();
    let opts = FindOptions::sort("project", Dir::Asc)
        .then("name", Dir::Asc)
        .page(p.num, p.size);
    let (found, total) = docs.page(&filter, &opts).await?;
    let list: Vec<Value> = found
        .into_iter()
        .map(|w| {
            json!({
                "name": w.name, "display_name": w.display_name, "project": w.project,
                "description": w.description, "stages": w.stages.len(), "disabled": w.disabled,
            })
        })
        .collect();
    Ok(page(
        "workflows.html",
        Some(&viewer),
        json!({
            "title": "Workflows", "nav": "workflows", "workflows": list, "project": q.project,
            "total": total, "page": p.num, "has_next": super::has_next(p, total),
        }),
    ))
}

/// `GET /ui/workflows/{key}`: the workflow's tasks, newest first.
pub async fn workflow(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(key): Path<String>,
    UiQuery(q): UiQuery<super::ListQuery>,
) -> UiResult {
    crate::validate::name("workflowKey", &key)?;
    let wf = state.workflows.get(&key).await?.ok_or_else(|| {
        UiError::Status(StatusCode::NOT_FOUND, format!("workflow {key} not found"))
    })?;
    let p = q.paging();
    let (_, list, total) = tasks::list(&state, &key, &wf.project, p).await?;
    let now = state.clock.now();
    let rows: Vec<Value> = list
        .iter()
        .map(|t| {
            json!({
                "task_id": t.task_id, "status": t.status, "creator": t.task_creator,
                "create_time": t.create_time, "duration": task_seconds(t, now),
                "remark": t.remark,
            })
        })
        .collect();
    Ok(page(
        "workflow.html",
        Some(&viewer),
        json!({
            "title": format!("Workflow {}", wf.name), "nav": "workflows",
            "workflow": {"name": wf.name, "display_name": wf.display_name, "project": wf.project,
                         "description": wf.description},
            "tasks": rows, "total": total, "page": p.num, "has_next": super::has_next(p, total),
        }),
    ))
}

fn task_seconds(t: &Task, now: i64) -> i64 {
    match (t.start_time, t.end_time) {
        (0, _) => 0,
        (s, 0) => (now - s).max(0),
        (s, e) => (e - s).max(0),
    }
}

fn stage_seconds(s: &StageTask, now: i64) -> i64 {
    match (s.start_time, s.end_time) {
        (0, _) => 0,
        (st, 0) => (now - st).max(0),
        (st, e) => (e - st).max(0),
    }
}

/// Whether `who` is named in an approver list (or may vote anyway: admins).
fn may_vote(users: &[ApproveUser], who: &Identity) -> bool {
    let named = users.iter().find(|u| {
        (!u.user_id.is_empty() && u.user_id == who.uid)
            || (!u.user_name.is_empty() && (u.user_name == who.account || u.user_name == who.name))
    });
    match named {
        Some(u) => u.reject_or_approve.is_none(),
        None => who.is_admin,
    }
}

pub(super) async fn load(state: &AppState, key: &str, id: &str) -> UiResult<Task> {
    crate::validate::name("workflowKey", key)?;
    let id = parse_id(id)?;
    Ok(tasks::get(state, key, id, Op::GetTask).await?)
}

fn parse_id(id: &str) -> UiResult<i64> {
    id.trim().parse::<i64>().map_err(|_| {
        UiError::Status(
            StatusCode::BAD_REQUEST,
            format!("`taskID` must be an integer, got {id:?}"),
        )
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TaskQuery {
    job: String,
}

/// The task's live part (status, actions, stage graph) as template data.
async fn task_view(state: &AppState, t: &Task, who: &Identity, selected: &str) -> Value {
    let now = state.clock.now();
    let base = format!(
        "/ui/workflows/{}/tasks/{}",
        urlencode(&t.workflow_name),
        t.task_id
    );
    // Whether the caller may run the stage a paused task waits at: the service's own answer.
    let manual = if t.status == Status::Pause {
        tasks::manual_exec_state(state, who, &t.workflow_name, t.task_id, &t.project_name)
            .await
            .ok()
            .map(|m| (m.stage, m.can_execute))
    } else {
        None
    };
    let stages: Vec<Value> = t
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let approval = s.approval.as_ref().filter(|a| a.enabled).map(|a| {
                let waiting = s.status == Status::WaitForApproval && a.reject_or_approve.is_none();
                json!({
                    "description": a.description, "type": a.kind, "outcome": a.reject_or_approve,
                    "needed": a.needed_approvers.max(1), "users": a.approve_users,
                    "waiting": waiting, "can_vote": waiting && may_vote(&a.approve_users, who),
                })
            });
            let jobs: Vec<Value> = s
                .jobs
                .iter()
                .map(|j| {
                    let waits = j.kind().is_some_and(|t| t.kind().runs() == Runs::Votes)
                        && j.status == Status::WaitForApproval;
                    // A spec that does not read fails its job (the engine): nobody votes on it.
                    let can_vote = waits
                        && JobApproval::from_spec(&j.spec).is_ok_and(|a| may_vote(&a.users, who));
                    json!({
                        "name": j.name, "display_name": j.display_name, "type": j.job_type,
                        "status": j.status, "error": j.error,
                        "duration": tasks::cost_seconds(j, now),
                        "selected": j.name == selected,
                        "url": format!("{base}?job={}#log", urlencode(&j.name)),
                        "can_vote": can_vote,
                    })
                })
                .collect();
            json!({
                "name": s.name, "status": s.status, "parallel": s.parallel, "error": s.error,
                "duration": stage_seconds(s, now), "approval": approval, "jobs": jobs,
                "manual": manual.filter(|(at, _)| *at == i).map(|(_, can)| json!({"can_execute": can})),
            })
        })
        .collect();
    let retryable = [
        Status::Failed,
        Status::Timeout,
        Status::Cancelled,
        Status::Reject,
    ]
    .contains(&t.status);
    json!({
        "workflow": t.workflow_name, "display_name": t.workflow_display_name,
        "project": t.project_name, "task_id": t.task_id, "status": t.status,
        "final": t.status.is_final(), "creator": t.task_creator,
        "revoker": t.task_revoker, "create_time": t.create_time, "start_time": t.start_time,
        "end_time": t.end_time, "duration": task_seconds(t, now), "remark": t.remark,
        "error": t.error, "url": base,
        "release": t.release.as_ref().map(|r| json!({
            "url": format!("/ui/plans/{}", r.plan_id), "name": r.plan_name, "index": r.plan_index,
        })),
        "can_cancel": !t.status.is_final(),
        "can_retry": retryable,
        "stages": stages,
    })
}

/// `GET /ui/workflows/{key}/tasks/{id}[?job=]`
pub async fn task(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((key, id)): Path<(String, String)>,
    UiQuery(q): UiQuery<TaskQuery>,
) -> UiResult {
    let t = load(&state, &key, &id).await?;
    let jobs: Vec<&JobTask> = t.stages.iter().flat_map(|s| s.jobs.iter()).collect();
    // The job shown: the one asked for, else the first running one, else the last started.
    let job = jobs
        .iter()
        .find(|j| !q.job.is_empty() && j.name == q.job)
        .or_else(|| jobs.iter().find(|j| j.status == Status::Running))
        .or_else(|| jobs.iter().rev().find(|j| j.start_time > 0))
        .or_else(|| jobs.first())
        .copied();
    let selected = job.map(|j| j.name.clone()).unwrap_or_default();
    let view = task_view(&state, &t, &viewer.identity, &selected).await;
    let log = match job {
        Some(j) => Some(super::logs::section(&state, &t, j).await?),
        None => None,
    };
    Ok(page(
        "task.html",
        Some(&viewer),
        json!({
            "title": format!("{} #{}", t.workflow_name, t.task_id), "nav": "workflows",
            "task": view, "log": log,
        }),
    ))
}

/// `GET …/tasks/{id}/live?job=`: the task's live part alone, which the script swaps in.
pub async fn task_live(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((key, id)): Path<(String, String)>,
    UiQuery(q): UiQuery<TaskQuery>,
) -> UiResult {
    let t = load(&state, &key, &id).await?;
    let view = task_view(&state, &t, &viewer.identity, &q.job).await;
    let ctx = json!({"task": view, "csrf": viewer.csrf});
    match render("task_live.html", &ctx) {
        Ok(html) => Ok((
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            html,
        )
            .into_response()),
        Err(e) => Err(crate::error::ApiError::internal(format!("task_live.html: {e:#}")).into()),
    }
}

/// `POST …/tasks/{id}/{cancel|retry|approve|manual-exec}`
pub async fn task_action(
    State(state): State<AppState>,
    Path((key, id, action)): Path<(String, String, String)>,
    Posted { viewer, form }: Posted,
) -> UiResult {
    crate::validate::name("workflowKey", &key)?;
    let task_id = parse_id(&id)?;
    let who = &viewer.identity;
    match action.as_str() {
        "cancel" => tasks::cancel(&state, who, &key, task_id).await?,
        "retry" => tasks::retry(&state, who, &key, task_id).await?,
        "approve" => {
            let vote = votes::Vote {
                task_id,
                workflow_key: key.clone(),
                stage_name: form.get("stage").unwrap_or_default().to_string(),
                approve: form.get("approve") == Some("true"),
                comment: form.get("comment").unwrap_or_default().to_string(),
            };
            votes::approve(&state, who, &vote).await?;
        }
        "manual-exec" => {
            let t = load(&state, &key, &id).await?;
            let stage = form.get("stage").unwrap_or_default();
            tasks::manual_exec(&state, who, &key, task_id, &t.project_name, stage).await?;
        }
        other => {
            return Err(UiError::Status(
                StatusCode::NOT_FOUND,
                format!("no task action {other:?}"),
            ));
        }
    }
    let back = format!("/ui/workflows/{}/tasks/{task_id}", urlencode(&key));
    Ok(match form.get("job") {
        Some(j) if !j.is_empty() => done(&format!("{back}?job={}", urlencode(j))),
        _ => done(&back),
    })
}
