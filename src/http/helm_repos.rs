//! Helm chart repositories: our extension `/openapi/system/helm` (the chart repos delivery
//! versions push to). `password` is accepted but never returned.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Identity;
use crate::delivery::registry::{self, HelmRepo, HelmRepoInput};
use crate::error::{ApiResult, ErrorBody};
use crate::http::delivery::Created;
use crate::http::{Json, Path, Success};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_repo, list_repos))
        .routes(routes!(get_repo, update_repo, delete_repo))
}

/// A chart repository as shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct HelmRepoView {
    pub id: String,
    pub repo_name: String,
    pub url: String,
    pub username: String,
    pub plain_http: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<HelmRepo> for HelmRepoView {
    fn from(r: HelmRepo) -> Self {
        Self {
            id: r.id,
            repo_name: r.repo_name,
            url: r.url,
            username: r.username,
            plain_http: r.plain_http,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Add a chart repository (system admins): `oci://host/path` or `host/path` (OCI registry),
/// `http(s)://…` (ChartMuseum API).
#[utoipa::path(post, path = "/openapi/system/helm", tag = "registries", request_body = HelmRepoInput,
    responses((status = 200, body = Created), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_repo(
    State(state): State<AppState>,
    caller: Identity,
    Json(input): Json<HelmRepoInput>,
) -> ApiResult<Json<Created>> {
    Ok(Created::new(
        registry::create_repo(&state, &caller, input).await?.id,
    ))
}

/// List the chart repositories.
#[utoipa::path(get, path = "/openapi/system/helm", tag = "registries",
    responses((status = 200, body = Vec<HelmRepoView>)))]
async fn list_repos(
    State(state): State<AppState>,
    _caller: Identity,
) -> ApiResult<Json<Vec<HelmRepoView>>> {
    let list = state.delivery.registries.repos().await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

/// One chart repository.
#[utoipa::path(get, path = "/openapi/system/helm/{id}", tag = "registries",
    params(("id" = String, Path)),
    responses((status = 200, body = HelmRepoView), (status = 404, body = ErrorBody)))]
async fn get_repo(
    State(state): State<AppState>,
    _caller: Identity,
    Path(id): Path<String>,
) -> ApiResult<Json<HelmRepoView>> {
    Ok(Json(registry::get_repo(&state, &id).await?.into()))
}

/// Update a chart repository (system admins); an absent `password` is kept.
#[utoipa::path(put, path = "/openapi/system/helm/{id}", tag = "registries",
    params(("id" = String, Path)), request_body = HelmRepoInput,
    responses((status = 200, body = Success), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn update_repo(
    State(state): State<AppState>,
    caller: Identity,
    Path(id): Path<String>,
    Json(input): Json<HelmRepoInput>,
) -> ApiResult<Json<Success>> {
    registry::update_repo(&state, &caller, &id, input).await?;
    Ok(Success::new())
}

/// Delete a chart repository (system admins).
#[utoipa::path(delete, path = "/openapi/system/helm/{id}", tag = "registries",
    params(("id" = String, Path)),
    responses((status = 200, body = Success), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_repo(
    State(state): State<AppState>,
    caller: Identity,
    Path(id): Path<String>,
) -> ApiResult<Json<Success>> {
    registry::delete_repo(&state, &caller, &id).await?;
    Ok(Success::new())
}
