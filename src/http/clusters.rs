//! `/openapi/system/cluster`: register, list, update and unregister Kubernetes clusters
//! (spec/environments.md §3). The kubeconfig is accepted, never returned.

use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Identity;
use crate::cluster::model::ClusterInput;
use crate::cluster::service::{self, ClusterView, Created};
use crate::error::{ApiResult, ErrorBody};
use crate::http::{Json, Path, Query, Success};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_cluster, list_clusters))
        .routes(routes!(update_cluster, delete_cluster))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only the clusters offered to this project.
    #[serde(rename = "projectName")]
    pub project_name: Option<String>,
}

/// Register a cluster by kubeconfig (system admins).
#[utoipa::path(post, path = "/openapi/system/cluster", tag = "clusters", request_body = ClusterInput,
    responses((status = 200, body = Created), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "name taken (code 6641)")))]
async fn create_cluster(
    State(state): State<AppState>,
    caller: Identity,
    Json(input): Json<ClusterInput>,
) -> ApiResult<Json<Created>> {
    Ok(Json(service::create(&state, &caller, input).await?))
}

/// List the clusters (the local one too when the server runs in a cluster).
#[utoipa::path(get, path = "/openapi/system/cluster", tag = "clusters", params(ListQuery),
    responses((status = 200, body = Vec<ClusterView>)))]
async fn list_clusters(
    State(state): State<AppState>,
    _caller: Identity,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<ClusterView>>> {
    Ok(Json(
        service::list(&state, q.project_name.as_deref()).await?,
    ))
}

/// Change a cluster's name, description, projects or kubeconfig (system admins).
#[utoipa::path(put, path = "/openapi/system/cluster/{id}", tag = "clusters",
    params(("id" = String, Path)), request_body = ClusterInput,
    responses((status = 200, body = Success), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "unknown cluster (code 6643)"),
        (status = 409, body = ErrorBody, description = "name taken (code 6642)")))]
async fn update_cluster(
    State(state): State<AppState>,
    caller: Identity,
    Path(id): Path<String>,
    Json(input): Json<ClusterInput>,
) -> ApiResult<Json<Success>> {
    service::update(&state, &caller, &id, input).await?;
    Ok(Success::new())
}

/// Unregister a cluster no environment uses (system admins).
#[utoipa::path(delete, path = "/openapi/system/cluster/{id}", tag = "clusters",
    params(("id" = String, Path)),
    responses((status = 200, body = Success), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "unknown cluster (code 6643)"),
        (status = 409, body = ErrorBody, description = "environments use it (code 6644)")))]
async fn delete_cluster(
    State(state): State<AppState>,
    caller: Identity,
    Path(id): Path<String>,
) -> ApiResult<Json<Success>> {
    service::delete(&state, &caller, &id).await?;
    Ok(Success::new())
}
