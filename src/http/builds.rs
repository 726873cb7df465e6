//! `/openapi/build`: builds (seed 004, spec/build.md §2–9). Thin handlers; the rules are in
//! `crate::build::service`.

use axum::extract::State;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Identity;
use crate::build::input::{BuildRequest, TemplateBuildRequest};
use crate::build::service;
use crate::build::view::{BuildDetail, BuildList};
use crate::error::{ApiResult, ErrorBody};
use crate::http::extract::decode_object;
use crate::http::query::{PageQuery, ProjectKey};
use crate::http::{Json, Path, Query, Success};
use crate::limits;
use crate::state::AppState;
use crate::validate;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(
            create_build,
            update_build,
            list_builds,
            delete_build
        ))
        .routes(routes!(update_template_build))
        .routes(routes!(build_detail))
}

/// The body of `POST`/`PUT /openapi/build`: a full definition, or with `?source=template` a
/// template build.
// The derived `Deserialize` only documents the two shapes (`untagged`); a body is decoded by
// `source` (`BuildBody::decode`), so its errors name the fields of the one shape meant.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
enum BuildBody {
    Full(Box<BuildRequest>),
    Template(TemplateBuildRequest),
}

impl BuildBody {
    fn decode(q: &WriteQuery, body: serde_json::Value) -> ApiResult<Self> {
        Ok(if q.is_template() {
            Self::Template(decode_object(body)?)
        } else {
            Self::Full(Box::new(decode_object(body)?))
        })
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct WriteQuery {
    /// The project; the body's `project_key` wins and they may not disagree.
    pub project_key: Option<String>,
    /// `template`: the body is a template build (`template_name`, `target_services`).
    pub source: Option<String>,
}

impl WriteQuery {
    fn is_template(&self) -> bool {
        self.source.as_deref() == Some("template")
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default, rename_all = "camelCase")]
pub struct DetailQuery {
    /// For a template build: the service whose repositories and variables to show.
    pub service_name: String,
    pub service_module: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct DeleteQuery {
    /// The build.
    pub name: Option<String>,
    /// The project (optional: build names are unique across projects).
    pub project_key: Option<String>,
}

/// Create a build (seed 004 "Create Build"), or a template build with `?source=template`
/// ("Create Build from Template", spec/build.md §4, §6.2).
#[utoipa::path(post, path = "/openapi/build", tag = "builds", params(WriteQuery),
    request_body = BuildBody,
    responses((status = 200, body = Success), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "unknown template"),
        (status = 409, body = ErrorBody, description = "name taken (code 6520)")))]
async fn create_build(
    State(state): State<AppState>,
    caller: Identity,
    Query(q): Query<WriteQuery>,
    Json(body): Json<serde_json::Value>,
) -> ApiResult<Json<Success>> {
    write(&state, &caller, &q, body, false).await
}

/// Replace a build's definition (seed 004 "Update Build", spec/build.md §5); with
/// `?source=template` update a template build as `PUT /openapi/build/{name}/template` does.
#[utoipa::path(put, path = "/openapi/build", tag = "builds", params(WriteQuery),
    request_body = BuildBody,
    responses((status = 200, body = Success), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not the build's creator or an admin"),
        (status = 404, body = ErrorBody, description = "unknown build (code 6521) or template")))]
async fn update_build(
    State(state): State<AppState>,
    caller: Identity,
    Query(q): Query<WriteQuery>,
    Json(body): Json<serde_json::Value>,
) -> ApiResult<Json<Success>> {
    write(&state, &caller, &q, body, true).await
}

/// `POST`/`PUT /openapi/build`: decode the body by `source`, then create or update.
async fn write(
    state: &AppState,
    caller: &Identity,
    q: &WriteQuery,
    body: serde_json::Value,
    update: bool,
) -> ApiResult<Json<Success>> {
    let project = q.project_key.as_deref();
    match (BuildBody::decode(q, body)?, update) {
        (BuildBody::Template(t), false) => {
            service::create_from_template(state, caller, &t, project).await?
        }
        (BuildBody::Full(req), false) => service::create(state, caller, &req, project).await?,
        (BuildBody::Template(t), true) => {
            service::update_from_template(state, caller, None, &t, project).await?
        }
        (BuildBody::Full(req), true) => service::update(state, caller, &req, project).await?,
    }
    Ok(Success::new())
}

/// Update a template build: its template and services (seed 004 "Update Build from
/// Template", spec/build.md §6.4).
#[utoipa::path(put, path = "/openapi/build/{name}/template", tag = "builds",
    params(("name" = String, Path, description = "build name"), WriteQuery),
    request_body = TemplateBuildRequest,
    responses((status = 200, body = Success), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not the build's creator or an admin"),
        (status = 404, body = ErrorBody, description = "unknown build (code 6523) or template")))]
async fn update_template_build(
    State(state): State<AppState>,
    caller: Identity,
    Path(name): Path<String>,
    Query(q): Query<WriteQuery>,
    Json(body): Json<serde_json::Value>,
) -> ApiResult<Json<Success>> {
    validate::name("name", &name)?;
    let req: TemplateBuildRequest = decode_object(body)?;
    service::update_from_template(&state, &caller, Some(&name), &req, q.project_key.as_deref())
        .await?;
    Ok(Success::new())
}

/// List a project's builds (seed 004 "Query Build List", spec/build.md §7).
#[utoipa::path(get, path = "/openapi/build", tag = "builds", params(ProjectKey, PageQuery),
    responses((status = 200, body = BuildList), (status = 400, body = ErrorBody)))]
async fn list_builds(
    State(state): State<AppState>,
    _caller: Identity,
    Query(q): Query<ProjectKey>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<BuildList>> {
    validate::name("projectKey", &q.project_key)?;
    let p = page.check(&limits::BUILDS_PAGE)?;
    Ok(Json(service::list(&state, &q.project_key, p).await?))
}

/// A build's detail, credentials masked (seed 004 "Get Build Details", spec/build.md §8).
#[utoipa::path(get, path = "/openapi/build/{buildName}/detail", tag = "builds",
    params(("buildName" = String, Path), ProjectKey, DetailQuery),
    responses((status = 200, body = BuildDetail), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "unknown build (code 6523)")))]
async fn build_detail(
    State(state): State<AppState>,
    _caller: Identity,
    Path(name): Path<String>,
    Query(p): Query<ProjectKey>,
    Query(q): Query<DetailQuery>,
) -> ApiResult<Json<BuildDetail>> {
    validate::name("buildName", &name)?;
    validate::name("projectKey", &p.project_key)?;
    let detail = service::detail(
        &state,
        &p.project_key,
        &name,
        &q.service_name,
        &q.service_module,
    );
    Ok(Json(detail.await?))
}

/// Delete a build: its creator or an admin (seed 004 "Delete Build", spec/build.md §9); unknown → 404 (code 6524).
#[utoipa::path(delete, path = "/openapi/build", tag = "builds", params(DeleteQuery),
    responses((status = 200, body = Success), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not the build's creator or an admin"),
        (status = 404, body = ErrorBody, description = "unknown build (code 6524)")))]
async fn delete_build(
    State(state): State<AppState>,
    caller: Identity,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<Json<Success>> {
    let name = q.name.as_deref().unwrap_or_default();
    validate::name("name", name)?;
    let project = q.project_key.as_deref().filter(|p| !p.is_empty());
    service::delete(&state, &caller, name, project).await?;
    Ok(Success::new())
}
