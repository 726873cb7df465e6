//! Manual execution of a paused stage (spec/workflow.md §2.15, §5.8; Zadig's OpenAPI, not in
//! seed 002).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ProjectQuery, TaskPath, required_project};
use crate::auth::Identity;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{Json, Path, Query, Success};
use crate::state::AppState;
use crate::workflow::task::Status as TaskStatus;
use crate::workflow::tasks;

/// Who may run a paused stage (the stage's `manual_exec_users`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ManualExecutor {
    #[serde(rename = "type")]
    pub kind: String,
    pub user_id: String,
    pub user_name: String,
    pub group_id: String,
    pub group_name: String,
}

/// The stage a paused task waits at.
#[derive(Debug, Serialize, ToSchema)]
pub struct ManualExecView {
    pub project_key: String,
    pub workflow_key: String,
    pub task_id: i64,
    pub status: TaskStatus,
    pub stage_name: String,
    /// Whether the caller may run the stage.
    pub can_execute: bool,
    pub executors: Vec<ManualExecutor>,
}

/// The stage a task paused at for manual execution (spec/workflow.md §2.15, §5.8; Zadig's
/// OpenAPI, not in seed 002).
#[utoipa::path(get, path = "/openapi/workflows/custom/{workflowKey}/task/{taskID}/manual-exec", tag = "workflow tasks",
    params(TaskPath, ProjectQuery),
    responses((status = 200, body = ManualExecView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn manual_exec_state(
    State(state): State<AppState>,
    caller: Identity,
    Path(path): Path<TaskPath>,
    Query(q): Query<ProjectQuery>,
) -> ApiResult<Json<ManualExecView>> {
    let (key, id) = path.check()?;
    let project = required_project(&q)?;
    let m = tasks::manual_exec_state(&state, &caller, key, id, project).await?;
    let stage = &m.task.stages[m.stage];
    let executors = m
        .manual
        .manual_exec_users
        .iter()
        .map(|u| ManualExecutor {
            kind: u.kind.clone(),
            user_id: u.user_id.clone(),
            user_name: u.user_name.clone(),
            group_id: u.group_id.clone(),
            group_name: u.group_name.clone(),
        })
        .collect();
    Ok(Json(ManualExecView {
        project_key: m.task.project_name.clone(),
        workflow_key: m.task.workflow_name.clone(),
        task_id: m.task.task_id,
        status: m.task.status,
        stage_name: stage.name.clone(),
        can_execute: m.can_execute,
        executors,
    }))
}

/// `POST …/manual-exec` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ManualExecRequest {
    #[serde(default)]
    pub stage_name: String,
}

/// Run the stage a task paused at; the task is queued again and resumes there
/// (spec/workflow.md §2.15, §5.8).
#[utoipa::path(post, path = "/openapi/workflows/custom/{workflowKey}/task/{taskID}/manual-exec", tag = "workflow tasks",
    params(TaskPath, ProjectQuery),
    request_body = ManualExecRequest,
    responses((status = 200, body = Success), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn manual_exec(
    State(state): State<AppState>,
    caller: Identity,
    Path(path): Path<TaskPath>,
    Query(q): Query<ProjectQuery>,
    Json(body): Json<ManualExecRequest>,
) -> ApiResult<Json<Success>> {
    let (key, id) = path.check()?;
    let project = required_project(&q)?;
    if body.stage_name.trim().is_empty() {
        return Err(ApiError::bad_request("`stage_name` is required"));
    }
    tasks::manual_exec(&state, &caller, key, id, project, &body.stage_name).await?;
    Ok(Success::new())
}
