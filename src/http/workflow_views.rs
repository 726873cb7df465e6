//! Workflow views (seed 002 "Workflow View"; spec/workflow.md §2.12, §6).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Identity;
use crate::error::{ApiResult, ErrorBody};
use crate::http::query::ProjectKey;
use crate::http::{Json, Path, Query, Success};
use crate::state::AppState;
use crate::workflow::views::{self, EntryInput};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_views, create_view))
        .routes(routes!(edit_view, delete_view))
}

/// A workflow of a view.
#[derive(Debug, Serialize, ToSchema)]
pub struct ViewWorkflow {
    pub workflow_key: String,
    /// `custom` (or `product`).
    pub workflow_type: String,
}

/// A view (seed 002 "Get a Workflow View List").
#[derive(Debug, Serialize, ToSchema)]
pub struct ViewResponse {
    pub name: String,
    pub project_key: String,
    pub workflows: Vec<ViewWorkflow>,
    pub update_time: i64,
    pub update_by: String,
}

/// The views of a project, by name descending (seed 002; spec §2.12).
#[utoipa::path(get, path = "/openapi/workflows/view", tag = "workflow views", params(ProjectKey),
    responses((status = 200, body = Vec<ViewResponse>), (status = 400, body = ErrorBody)))]
async fn list_views(
    State(state): State<AppState>,
    _caller: Identity,
    Query(q): Query<ProjectKey>,
) -> ApiResult<Json<Vec<ViewResponse>>> {
    let list = views::list(&state, &q.project_key).await?;
    Ok(Json(
        list.into_iter()
            .map(|v| ViewResponse {
                workflows: v
                    .listed()
                    .map(|(k, t)| ViewWorkflow {
                        workflow_key: k.to_string(),
                        workflow_type: t.to_string(),
                    })
                    .collect(),
                name: v.name,
                project_key: v.project_name,
                update_time: v.update_time,
                update_by: v.update_by,
            })
            .collect(),
    ))
}

/// A workflow in a create request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ViewWorkflowInput {
    #[serde(default)]
    pub workflow_key: String,
    /// `custom` or `product`.
    #[serde(default)]
    pub workflow_type: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateViewRequest {
    #[serde(default)]
    pub project_key: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub workflow_list: Vec<ViewWorkflowInput>,
}

/// The view entries of a request: `(workflow_key, workflow_type, enabled)` each.
fn entries(list: impl Iterator<Item = (String, String, bool)>) -> Vec<EntryInput> {
    list.map(|(workflow_key, workflow_type, enabled)| EntryInput {
        workflow_key,
        workflow_type,
        enabled,
    })
    .collect()
}

/// Create a view (seed 002 "Create a Workflow View"; spec §6).
#[utoipa::path(post, path = "/openapi/workflows/view", tag = "workflow views", request_body = CreateViewRequest,
    responses((status = 200, body = Success), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_view(
    State(state): State<AppState>,
    caller: Identity,
    Json(req): Json<CreateViewRequest>,
) -> ApiResult<Json<Success>> {
    let entries = entries(
        req.workflow_list
            .into_iter()
            .map(|w| (w.workflow_key, w.workflow_type, true)),
    );
    views::create(&state, &caller, &req.project_key, &req.name, &entries).await?;
    Ok(Success::new())
}

/// A workflow in an edit request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ViewChange {
    #[serde(default)]
    pub workflow_key: String,
    #[serde(default)]
    pub workflow_type: String,
    /// `true` adds the workflow to the view, `false` removes it.
    pub enabled: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct EditViewRequest {
    #[serde(default)]
    pub workflow_list: Vec<ViewChange>,
}

/// Add workflows to a view or remove them (seed 002 "Edit Workflow View"; spec §6).
#[utoipa::path(put, path = "/openapi/workflows/view/{viewName}", tag = "workflow views",
    params(("viewName" = String, Path), ProjectKey), request_body = EditViewRequest,
    responses((status = 200, body = Success), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn edit_view(
    State(state): State<AppState>,
    caller: Identity,
    Path(name): Path<String>,
    Query(q): Query<ProjectKey>,
    Json(req): Json<EditViewRequest>,
) -> ApiResult<Json<Success>> {
    let entries = entries(
        req.workflow_list
            .into_iter()
            .map(|w| (w.workflow_key, w.workflow_type, w.enabled)),
    );
    views::edit(&state, &caller, &q.project_key, &name, &entries).await?;
    Ok(Success::new())
}

/// Delete a view; unknown → 404 with code 6894 (seed 002 "Delete the Workflow View").
#[utoipa::path(delete, path = "/openapi/workflows/view/{viewName}", tag = "workflow views",
    params(("viewName" = String, Path), ProjectKey),
    responses((status = 200, body = Success), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_view(
    State(state): State<AppState>,
    _caller: Identity,
    Path(name): Path<String>,
    Query(q): Query<ProjectKey>,
) -> ApiResult<Json<Success>> {
    views::delete(&state, &q.project_key, &name).await?;
    Ok(Success::new())
}
