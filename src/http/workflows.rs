//! Workflow definitions (seed 002 "Workflow"; spec/workflow.md §2.1, §2.2, §2.9–2.11):
//! create/update on Zadig's internal paths `/api/aslan/workflow/v4` and their OpenAPI aliases
//! `/openapi/workflows/custom`, list, detail and delete.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Identity;
use crate::error::{ApiResult, ErrorBody};
use crate::http::query::ProjectKey;
use crate::http::{Json, Path, Query, Success};
use crate::masking;
use crate::state::AppState;
use crate::validate;
use crate::workflow::definitions;
use crate::workflow::error::Op;
use crate::workflow::model::{Stage, Workflow};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_workflow))
        .routes(routes!(update_workflow))
        .routes(routes!(create_workflow_alias, delete_workflow))
        .routes(routes!(update_workflow_alias))
        .routes(routes!(list_workflows))
        .routes(routes!(workflow_detail))
}

/// The `{workflowKey}` path of a workflow route: its OpenAPI parameter and its extractor.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct WorkflowKeyPath {
    /// Workflow key
    #[serde(rename = "workflowKey")]
    pub workflow_key: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CreateQuery {
    /// Also list the new workflow in this view of its project.
    #[serde(rename = "viewName")]
    pub view_name: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UpdateQuery {
    /// The workflow's project (optional; when given it must be the workflow's).
    #[serde(rename = "projectName")]
    pub project_name: Option<String>,
}

/// Create a workflow (seed 002 "Create a Workflow"; spec §2.9). Both freestyle formats are
/// accepted (`properties`/`steps` is converted to the current one).
#[utoipa::path(post, path = "/api/aslan/workflow/v4", tag = "workflows", params(CreateQuery),
    request_body(content = Object, description = "The workflow definition (spec/workflow.md §1)"),
    responses((status = 200, body = Success), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_workflow(
    State(state): State<AppState>,
    caller: Identity,
    Query(q): Query<CreateQuery>,
    Json(wf): Json<Workflow>,
) -> ApiResult<Json<Success>> {
    definitions::create(&state, &caller, wf, q.view_name.as_deref()).await?;
    Ok(Success::new())
}

/// Create a workflow: the OpenAPI alias of `POST /api/aslan/workflow/v4` (spec §2.9).
#[utoipa::path(post, path = "/openapi/workflows/custom", tag = "workflows", params(CreateQuery),
    request_body(content = Object, description = "The workflow definition (spec/workflow.md §1)"),
    responses((status = 200, body = Success), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_workflow_alias(
    state: State<AppState>,
    caller: Identity,
    q: Query<CreateQuery>,
    body: Json<Workflow>,
) -> ApiResult<Json<Success>> {
    create_workflow(state, caller, q, body).await
}

/// Update a workflow (seed 002 "Update Workflow"; spec §2.10): the body replaces the
/// definition; the key stays the path's. A credential value sent back as `********` keeps the
/// stored value.
#[utoipa::path(put, path = "/api/aslan/workflow/v4/{name}", tag = "workflows",
    params(("name" = String, Path, description = "Workflow key"), UpdateQuery),
    request_body(content = Object, description = "The workflow definition (spec/workflow.md §1)"),
    responses((status = 200, body = Success), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody, description = "not the workflow's creator or an admin"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn update_workflow(
    State(state): State<AppState>,
    caller: Identity,
    Path(name): Path<String>,
    Query(q): Query<UpdateQuery>,
    Json(wf): Json<Workflow>,
) -> ApiResult<Json<Success>> {
    definitions::update(&state, &caller, &name, q.project_name.as_deref(), wf).await?;
    Ok(Success::new())
}

/// Update a workflow: the OpenAPI alias of `PUT /api/aslan/workflow/v4/:name` (spec §2.10).
#[utoipa::path(put, path = "/openapi/workflows/custom/{workflowKey}", tag = "workflows",
    params(WorkflowKeyPath, UpdateQuery),
    request_body(content = Object, description = "The workflow definition (spec/workflow.md §1)"),
    responses((status = 200, body = Success), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody, description = "not the workflow's creator or an admin"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn update_workflow_alias(
    state: State<AppState>,
    caller: Identity,
    Path(path): Path<WorkflowKeyPath>,
    q: Query<UpdateQuery>,
    body: Json<Workflow>,
) -> ApiResult<Json<Success>> {
    update_workflow(state, caller, Path(path.workflow_key), q, body).await
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default, rename_all = "camelCase")]
pub struct DeleteQuery {
    pub workflow_key: String,
    pub project_key: String,
}

/// Delete a workflow: its creator or an admin (seed 002 "Delete Workflow"; spec §2.11).
#[utoipa::path(delete, path = "/openapi/workflows/custom", tag = "workflows", params(DeleteQuery),
    responses((status = 200, body = Success), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody, description = "not the workflow's creator or an admin"), (status = 404, body = ErrorBody)))]
async fn delete_workflow(
    State(state): State<AppState>,
    caller: Identity,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<Json<Success>> {
    definitions::delete(&state, &caller, &q.workflow_key, &q.project_key).await?;
    Ok(Success::new())
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default, rename_all = "camelCase")]
pub struct ListQuery {
    pub project_key: String,
    /// Only the workflows of this view.
    pub view_name: Option<String>,
}

/// One workflow in the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowItem {
    pub workflow_key: String,
    pub workflow_name: String,
    pub update_by: String,
    pub update_time: i64,
    /// Always `custom`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowList {
    pub workflows: Vec<WorkflowItem>,
}

/// List the workflows of a project, optionally of one view (seed 002 "Get a Workflow List";
/// spec §2.1).
#[utoipa::path(get, path = "/openapi/workflows", tag = "workflows", params(ListQuery),
    responses((status = 200, body = WorkflowList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_workflows(
    State(state): State<AppState>,
    _caller: Identity,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<WorkflowList>> {
    let list = definitions::list(&state, &q.project_key, q.view_name.as_deref()).await?;
    Ok(Json(WorkflowList {
        workflows: list
            .into_iter()
            .map(|w| WorkflowItem {
                workflow_key: w.name,
                workflow_name: w.display_name,
                update_by: w.updated_by,
                update_time: w.update_time,
                kind: "custom",
            })
            .collect(),
    }))
}

/// A stage in the detail view.
#[derive(Debug, Serialize, ToSchema)]
pub struct StageView {
    pub name: String,
    pub parallel: bool,
    /// The stage approval in the seed's shape (also `Timeout`/`NeededApprovers`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub approval: Option<Value>,
    /// The stored jobs, verbatim.
    #[schema(value_type = Vec<Object>)]
    pub jobs: Vec<Value>,
}

/// Workflow detail (seed 002 "Get Workflow Details").
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowDetail {
    pub workflow_key: String,
    pub workflow_name: String,
    pub project_key: String,
    pub description: String,
    pub created_by: String,
    pub create_time: i64,
    pub updated_by: String,
    pub update_time: i64,
    #[schema(value_type = Vec<Object>)]
    pub params: Vec<Value>,
    pub stages: Vec<StageView>,
    /// Notification settings; hook addresses and webhook tokens show as `********` (sent
    /// back so, they keep their stored values).
    #[schema(value_type = Vec<Object>)]
    pub notify_ctls: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub share_storages: Vec<Value>,
    pub concurrency_limit: i64,
}

/// The stage approval as the seed's detail shows it: the stored settings, plus the
/// capitalised `Timeout`/`NeededApprovers` keys of Zadig's detail view.
fn approval_view(a: &Value) -> Value {
    let mut a = a.clone();
    if let Some(na) = a.get_mut("native_approval").and_then(Value::as_object_mut) {
        let timeout = na.get("timeout").cloned().unwrap_or(json!(0));
        let needed = na.get("needed_approvers").cloned().unwrap_or(json!(0));
        na.insert("Timeout".into(), timeout);
        na.insert("NeededApprovers".into(), needed);
    }
    a
}

fn stage_view(s: Stage) -> StageView {
    StageView {
        approval: s.approval.as_ref().map(approval_view),
        jobs: s
            .jobs
            .iter()
            .map(|j| masking::masked(serde_json::to_value(j).unwrap_or(Value::Null)))
            .collect(),
        name: s.name,
        parallel: s.parallel,
    }
}

/// A workflow's definition (seed 002 "Get Workflow Details"; spec §2.2); credential values
/// (`is_credential`) and notification hook addresses and tokens show as `********`.
#[utoipa::path(get, path = "/openapi/workflows/custom/{workflowKey}/detail", tag = "workflows",
    params(WorkflowKeyPath, ProjectKey),
    responses((status = 200, body = WorkflowDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn workflow_detail(
    State(state): State<AppState>,
    _caller: Identity,
    Path(WorkflowKeyPath { workflow_key: key }): Path<WorkflowKeyPath>,
    Query(q): Query<ProjectKey>,
) -> ApiResult<Json<WorkflowDetail>> {
    validate::name("workflowKey", &key)?;
    validate::name("projectKey", &q.project_key)?;
    let wf = definitions::find_in(&state, &key, &q.project_key, Op::FindWorkflow).await?;
    Ok(Json(WorkflowDetail {
        workflow_key: wf.name,
        workflow_name: wf.display_name,
        project_key: wf.project,
        description: wf.description,
        created_by: wf.created_by,
        create_time: wf.create_time,
        updated_by: wf.updated_by,
        update_time: wf.update_time,
        params: wf.params.into_iter().map(masking::masked).collect(),
        stages: wf.stages.into_iter().map(stage_view).collect(),
        notify_ctls: wf.notify_ctls.into_iter().map(masking::masked).collect(),
        share_storages: wf.share_storages,
        concurrency_limit: wf.concurrency_limit,
    }))
}
