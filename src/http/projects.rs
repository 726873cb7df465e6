//! `/openapi/projects/project`: projects (spec/environments.md §2). Thin handlers; the rules
//! are in `crate::project::service`.

use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Identity;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::query::PageQuery;
use crate::http::{Json, Query, Success};
use crate::project::PROJECTS_PAGE;
use crate::project::service::{
    self, CreateProjectRequest, GlobalVariables, InitYamlRequest, ProjectDetail, ProjectList,
};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_project, list_projects, delete_project))
        .routes(routes!(init_yaml))
        .routes(routes!(init_helm))
        .routes(routes!(project_detail))
        .routes(routes!(global_variables))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyQuery {
    /// The project key.
    #[serde(rename = "projectKey")]
    pub project_key: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct DeleteQuery {
    /// The project key.
    pub project_key: Option<String>,
    /// Zadig: whether deleting environments also deletes their namespaces. Must be a boolean
    /// (`true`/`false`/`1`/`0`); a project with environments is not deleted here (409).
    pub is_delete: Option<String>,
}

/// `projectKey`: required, a valid key.
pub fn project_key(v: &Option<String>) -> ApiResult<&str> {
    let v = v.as_deref().unwrap_or_default();
    service::check_key("projectKey", v)?;
    Ok(v)
}

/// Create a K8s YAML project (spec §2.1, P1). Admins only.
#[utoipa::path(post, path = "/openapi/projects/project", tag = "projects",
    request_body = CreateProjectRequest,
    responses((status = 200, body = Success),
        (status = 400, body = ErrorBody, description = "a missing or invalid field; `project_type` other than `yaml`"),
        (status = 403, body = ErrorBody, description = "not a system admin"),
        (status = 409, body = ErrorBody, description = "key or display name taken (code 6060)")))]
async fn create_project(
    State(state): State<AppState>,
    caller: Identity,
    Json(req): Json<CreateProjectRequest>,
) -> ApiResult<Json<Success>> {
    service::create(&state, &caller, &req).await?;
    Ok(Success::new())
}

/// Create a K8s YAML project with its services (spec §2.2, P2). Admins only; nothing is
/// stored when any service is invalid.
#[utoipa::path(post, path = "/openapi/projects/project/init/yaml", tag = "projects",
    request_body = InitYamlRequest,
    responses((status = 200, body = Success),
        (status = 400, body = ErrorBody, description = "a missing or invalid field, bad service YAML (code 6045), a non-empty `env_list`"),
        (status = 403, body = ErrorBody, description = "not a system admin"),
        (status = 409, body = ErrorBody, description = "key or display name taken (code 6060)")))]
async fn init_yaml(
    State(state): State<AppState>,
    caller: Identity,
    Json(req): Json<InitYamlRequest>,
) -> ApiResult<Json<Success>> {
    service::init_yaml(&state, &caller, &req).await?;
    Ok(Success::new())
}

/// Zadig's Helm-chart project initialization: not supported here, always 400.
#[utoipa::path(post, path = "/openapi/projects/project/init/helm", tag = "projects",
    request_body(content = Object, description = "Zadig's Helm project body (ignored)"),
    responses((status = 400, body = ErrorBody, description = "Helm-chart projects are not supported")))]
async fn init_helm(_caller: Identity) -> ApiResult<Json<Success>> {
    Err(ApiError::bad_request(
        "Helm-chart projects are not supported by this server: only K8s YAML projects \
         (`POST /openapi/projects/project/init/yaml`)",
    ))
}

/// List projects, most recently updated first (spec §2.3, P3).
#[utoipa::path(get, path = "/openapi/projects/project", tag = "projects", params(PageQuery),
    responses((status = 200, body = ProjectList)))]
async fn list_projects(
    State(state): State<AppState>,
    _caller: Identity,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<ProjectList>> {
    let p = q.check(&PROJECTS_PAGE)?;
    Ok(Json(service::list(&state, p).await?))
}

/// A project's detail (spec §2.4, P4).
#[utoipa::path(get, path = "/openapi/projects/project/detail", tag = "projects", params(KeyQuery),
    responses((status = 200, body = ProjectDetail),
        (status = 404, body = ErrorBody, description = "unknown project")))]
async fn project_detail(
    State(state): State<AppState>,
    _caller: Identity,
    Query(q): Query<KeyQuery>,
) -> ApiResult<Json<ProjectDetail>> {
    Ok(Json(
        service::detail(&state, project_key(&q.project_key)?).await?,
    ))
}

/// Delete a project and its services (spec §2.5, P5). Admins only.
#[utoipa::path(delete, path = "/openapi/projects/project", tag = "projects", params(DeleteQuery),
    responses((status = 200, body = Success),
        (status = 403, body = ErrorBody, description = "not a system admin"),
        (status = 404, body = ErrorBody, description = "unknown project"),
        (status = 409, body = ErrorBody, description = "the project still has environments (code 6063)")))]
async fn delete_project(
    State(state): State<AppState>,
    caller: Identity,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<Json<Success>> {
    let key = project_key(&q.project_key)?;
    service::parse_is_delete(q.is_delete.as_deref())?;
    service::delete(&state, &caller, key).await?;
    Ok(Success::new())
}

/// A project's global variables (spec §2.6, P6).
#[utoipa::path(get, path = "/openapi/projects/project/globalVariable", tag = "projects",
    params(KeyQuery),
    responses((status = 200, body = GlobalVariables),
        (status = 404, body = ErrorBody, description = "unknown project")))]
async fn global_variables(
    State(state): State<AppState>,
    _caller: Identity,
    Query(q): Query<KeyQuery>,
) -> ApiResult<Json<GlobalVariables>> {
    let key = project_key(&q.project_key)?;
    Ok(Json(service::global_variables(&state, key).await?))
}
