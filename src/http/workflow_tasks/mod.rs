//! Workflow tasks (seed 002; spec/workflow.md §2.3–2.8, §3): execute, list, detail, cancel,
//! retry and approve; the detail's views are in [`detail`], manual execution of a paused
//! stage in [`manual_exec`].

mod detail;
mod manual_exec;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Identity;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::query::PageQuery;
use crate::http::workflows::WorkflowKeyPath;
use crate::http::{Json, Path, Query, Success};
use crate::limits;
use crate::state::AppState;
use crate::validate;
use crate::workflow::error::Op;
use crate::workflow::execute::{self, ExecuteInput};
use crate::workflow::task::Status as TaskStatus;
use crate::workflow::{tasks, votes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(execute_workflow, task_detail, cancel_task))
        .routes(routes!(approve_task))
        .routes(routes!(list_tasks))
        .routes(routes!(retry_task, set_remark))
        .routes(routes!(
            manual_exec::manual_exec_state,
            manual_exec::manual_exec
        ))
        .routes(routes!(handle_job_error))
}

/// The execute body (seed 002 "Execute the Workflow").
#[derive(Debug, Deserialize, ToSchema)]
pub struct ExecuteRequest {
    #[serde(default)]
    pub project_key: String,
    #[serde(default)]
    pub workflow_key: String,
    /// Global parameters: `[{name, type, value, repo}]`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub parameters: Value,
    /// Per-job inputs: `[{job_name, job_type, parameters}]`; jobs not listed are skipped.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub inputs: Value,
    /// Notification overrides: `[{id, type, <type>_notification_config}]`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub notify_inputs: Value,
    /// The pre-approval ticket (its `approval_id`) for workflows that require one (our
    /// extension; Zadig refuses such workflows on the OpenAPI).
    #[serde(default)]
    pub approval_ticket_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExecuteResponse {
    pub project_name: String,
    pub workflow_name: String,
    pub task_id: i64,
}

/// Execute a workflow (seed 002 "Execute the Workflow"; spec §3): the task is created
/// `waiting` and run by the engine.
#[utoipa::path(post, path = "/openapi/workflows/custom/task", tag = "workflow tasks",
    request_body = ExecuteRequest,
    responses((status = 200, body = ExecuteResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn execute_workflow(
    State(state): State<AppState>,
    caller: Identity,
    Json(req): Json<ExecuteRequest>,
) -> ApiResult<Json<ExecuteResponse>> {
    let input = ExecuteInput {
        project_key: req.project_key,
        workflow_key: req.workflow_key,
        parameters: req.parameters,
        inputs: req.inputs,
        notify_inputs: req.notify_inputs,
        approval_ticket_id: req.approval_ticket_id,
    };
    let t = execute::execute(&state, &caller, input, None, true).await?;
    Ok(Json(ExecuteResponse {
        project_name: t.project_name,
        workflow_name: t.workflow_name,
        task_id: t.task_id,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct TaskQuery {
    pub task_id: Option<i64>,
    #[serde(default)]
    pub workflow_key: String,
}

impl TaskQuery {
    fn key(&self) -> ApiResult<(&str, i64)> {
        validate::name("workflowKey", &self.workflow_key)?;
        match self.task_id {
            Some(id) if id > 0 => Ok((&self.workflow_key, id)),
            Some(id) => Err(ApiError::bad_request(format!(
                "`taskId` must be a positive task id, got {id}"
            ))),
            None => Err(ApiError::bad_request("`taskId` is required")),
        }
    }
}

/// A task's detail (seed 002 "Get Workflow Task Details"; spec §2.4). Tasks of deleted
/// workflows are still found.
#[utoipa::path(get, path = "/openapi/workflows/custom/task", tag = "workflow tasks", params(TaskQuery),
    responses((status = 200, body = detail::TaskDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn task_detail(
    State(state): State<AppState>,
    _caller: Identity,
    Query(q): Query<TaskQuery>,
) -> ApiResult<Json<detail::TaskDetail>> {
    let (wf, id) = q.key()?;
    let t = tasks::get(&state, wf, id, Op::GetTask).await?;
    let notifications = crate::workflow::notify::outbox::for_detail(&state, &t).await;
    Ok(Json(detail::detail(t, notifications, state.clock.now())))
}

/// Cancel a task (seed 002 "Cancel Workflow Tasks"; spec §2.6).
#[utoipa::path(delete, path = "/openapi/workflows/custom/task", tag = "workflow tasks", params(TaskQuery),
    responses((status = 200, body = Success), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn cancel_task(
    State(state): State<AppState>,
    caller: Identity,
    Query(q): Query<TaskQuery>,
) -> ApiResult<Json<Success>> {
    let (wf, id) = q.key()?;
    tasks::cancel(&state, &caller, wf, id).await?;
    Ok(Success::new())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListTasksQuery {
    #[serde(rename = "projectKey", default)]
    pub project_key: String,
    /// Alias of `pageNum`.
    pub page: Option<i64>,
}

/// One task in the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskItem {
    pub workflow_key: String,
    pub workflow_name: String,
    pub project_key: String,
    pub task_id: i64,
    pub task_creator: String,
    pub create_time: i64,
    pub start_time: i64,
    pub end_time: i64,
    pub status: TaskStatus,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskList {
    pub total: u64,
    pub workflow_tasks: Vec<TaskItem>,
}

/// A workflow's tasks, newest first (seed 002 "Get a Workflow Task List"; spec §2.3).
#[utoipa::path(get, path = "/openapi/workflows/custom/{workflowKey}/tasks", tag = "workflow tasks",
    params(WorkflowKeyPath, ListTasksQuery, PageQuery),
    responses((status = 200, body = TaskList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_tasks(
    State(state): State<AppState>,
    _caller: Identity,
    Path(WorkflowKeyPath { workflow_key: key }): Path<WorkflowKeyPath>,
    Query(q): Query<ListTasksQuery>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<TaskList>> {
    let p = page.check_with_alias(&limits::WORKFLOW_TASKS_PAGE, q.page)?;
    let (wf, list, total) = tasks::list(&state, &key, &q.project_key, p).await?;
    Ok(Json(TaskList {
        total,
        workflow_tasks: list
            .into_iter()
            .map(|t| TaskItem {
                workflow_key: t.workflow_name,
                workflow_name: wf.display_name.clone(),
                project_key: t.project_name,
                task_id: t.task_id,
                task_creator: t.task_creator,
                create_time: t.create_time,
                start_time: t.start_time,
                end_time: t.end_time,
                status: t.status,
            })
            .collect(),
    }))
}

/// Retry a failed, timed-out, cancelled or rejected task under the same id (seed 002 "Retry
/// the Workflow Task"; spec §2.7, §5.7).
#[utoipa::path(post, path = "/openapi/workflows/custom/{workflowKey}/task/{taskID}", tag = "workflow tasks",
    params(TaskPath, ProjectQuery),
    responses((status = 200, body = Success), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn retry_task(
    State(state): State<AppState>,
    caller: Identity,
    Path(path): Path<TaskPath>,
    Query(_q): Query<ProjectQuery>,
) -> ApiResult<Json<Success>> {
    let (key, id) = path.check()?;
    tasks::retry(&state, &caller, key, id).await?;
    Ok(Success::new())
}

/// `POST …/job/:jobName/error-handling` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ErrorHandlingRequest {
    /// `ignore` (the job becomes `unstable` and the task goes on) or `reject` (it stays failed).
    #[serde(default)]
    pub decision: String,
}

/// Decide on a failed job that waits under the `manual_check` error policy (our extension;
/// spec/workflow.md §5.3 — Zadig offers this only in its UI).
#[utoipa::path(post, path = "/openapi/workflows/custom/{workflowKey}/task/{taskID}/job/{jobName}/error-handling", tag = "workflow tasks",
    params(("workflowKey" = String, Path, description = "Workflow key"), ("taskID" = i64, Path, description = "Task id"),
        ("jobName" = String, Path, description = "Job task name (or the job's key)")),
    request_body = ErrorHandlingRequest,
    responses((status = 200, body = Success), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn handle_job_error(
    State(state): State<AppState>,
    caller: Identity,
    Path((key, id, job)): Path<(String, String, String)>,
    Json(body): Json<ErrorHandlingRequest>,
) -> ApiResult<Json<Success>> {
    let id = task_path(&key, &id)?;
    tasks::handle_job_error(&state, &caller, &key, id, &job, body.decision.trim()).await?;
    Ok(Success::new())
}

/// `PUT …/task/:taskID` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RemarkRequest {
    #[serde(default)]
    pub remark: String,
}

/// Set a task's remark (spec/workflow.md §2.15; Zadig's OpenAPI, not in seed 002).
#[utoipa::path(put, path = "/openapi/workflows/custom/{workflowKey}/task/{taskID}", tag = "workflow tasks",
    params(TaskPath),
    request_body = RemarkRequest,
    responses((status = 200, body = Success), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn set_remark(
    State(state): State<AppState>,
    caller: Identity,
    Path(path): Path<TaskPath>,
    Json(body): Json<RemarkRequest>,
) -> ApiResult<Json<Success>> {
    let (key, id) = path.check()?;
    if body.remark.chars().count() > MAX_REMARK {
        return Err(ApiError::bad_request(format!(
            "`remark` is longer than {MAX_REMARK} characters"
        )));
    }
    tasks::set_remark(&state, &caller, key, id, &body.remark).await?;
    Ok(Success::new())
}

/// Longest task remark.
const MAX_REMARK: usize = 4096;

/// The `{workflowKey}/{taskID}` path of a task route: its OpenAPI parameters and its
/// extractor (`taskID` is read as text so that [`TaskPath::check`] names it).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TaskPath {
    /// Workflow key
    #[serde(rename = "workflowKey")]
    pub workflow_key: String,
    /// Task id
    #[serde(rename = "taskID")]
    #[param(value_type = i64)]
    pub task_id: String,
}

impl TaskPath {
    /// The workflow key and the positive task id, or a 400 naming the parameter.
    fn check(&self) -> ApiResult<(&str, i64)> {
        Ok((
            &self.workflow_key,
            task_path(&self.workflow_key, &self.task_id)?,
        ))
    }
}

/// The `{workflowKey}`/`{taskID}` path of a task, checked.
fn task_path(key: &str, id: &str) -> ApiResult<i64> {
    validate::name("workflowKey", key)?;
    id.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::bad_request(format!("`taskID` must be a positive task id, got {id:?}"))
    })
}

/// The query's `projectKey`, which manual execution requires.
fn required_project(q: &ProjectQuery) -> ApiResult<&str> {
    if q.project_key.is_empty() {
        return Err(ApiError::bad_request("`projectKey` is required"));
    }
    Ok(&q.project_key)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectQuery {
    /// Retry: accepted for compatibility (the task is found by workflow and id); manual
    /// execution: required, the task's project.
    #[serde(rename = "projectKey", default)]
    pub project_key: String,
}

/// An approval vote (seed 002 "Approval Workflow").
#[derive(Debug, Deserialize, ToSchema)]
pub struct ApproveRequest {
    #[serde(default)]
    pub task_id: i64,
    #[serde(default)]
    pub workflow_key: String,
    /// The stage waiting for approval (the name of a waiting `approval` job works too).
    #[serde(default)]
    pub stage_name: String,
    /// `true` approves; absent or `false` rejects (as in Zadig).
    #[serde(default)]
    pub approve: bool,
    #[serde(default)]
    pub comment: String,
}

/// Approve or reject a stage waiting for approval (seed 002 "Approval Workflow"; spec §2.8).
#[utoipa::path(post, path = "/openapi/workflows/custom/task/approve", tag = "workflow tasks",
    request_body = ApproveRequest,
    responses((status = 200, body = Success), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn approve_task(
    State(state): State<AppState>,
    caller: Identity,
    Json(req): Json<ApproveRequest>,
) -> ApiResult<Json<Success>> {
    let vote = votes::Vote {
        task_id: req.task_id,
        workflow_key: req.workflow_key,
        stage_name: req.stage_name,
        approve: req.approve,
        comment: req.comment,
    };
    votes::approve(&state, &caller, &vote).await?;
    Ok(Success::new())
}
