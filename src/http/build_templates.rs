//! `/openapi/templates/build`: build templates (our extension; Zadig manages them on an internal
//! API only). Bodies and answers are Zadig's template document (spec/build.md §3.7, DESIGN.md §5).

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Identity;
use crate::build::input::TemplateRequest;
use crate::build::templates;
use crate::build::view::{TemplateList, TemplateView};
use crate::error::{ApiResult, ErrorBody};
use crate::http::extract::decode_object;
use crate::http::query::PageQuery;
use crate::http::{Json, Path, Query, Success};
use crate::limits;
use crate::state::AppState;
use crate::validate;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_template, list_templates))
        .routes(routes!(get_template, update_template, delete_template))
}

/// Create a build template (system admins; names are unique).
#[utoipa::path(post, path = "/openapi/templates/build", tag = "build templates",
    request_body = TemplateRequest,
    responses((status = 200, body = Success), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not a system admin"),
        (status = 409, body = ErrorBody, description = "name taken")))]
async fn create_template(
    State(state): State<AppState>,
    caller: Identity,
    Json(body): Json<serde_json::Value>,
) -> ApiResult<Json<Success>> {
    let req: TemplateRequest = decode_object(body)?;
    templates::create_template(&state, &caller, &req).await?;
    Ok(Success::new())
}

/// List build templates, oldest first.
#[utoipa::path(get, path = "/openapi/templates/build", tag = "build templates", params(PageQuery),
    responses((status = 200, body = TemplateList), (status = 400, body = ErrorBody)))]
async fn list_templates(
    State(state): State<AppState>,
    _caller: Identity,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<TemplateList>> {
    let p = q.check(&limits::BUILD_TEMPLATES_PAGE)?;
    Ok(Json(templates::list_templates(&state, p).await?))
}

/// One build template; credential defaults shown as `********`.
#[utoipa::path(get, path = "/openapi/templates/build/{name}", tag = "build templates",
    params(("name" = String, Path)),
    responses((status = 200, body = TemplateView), (status = 404, body = ErrorBody)))]
async fn get_template(
    State(state): State<AppState>,
    _caller: Identity,
    Path(name): Path<String>,
) -> ApiResult<Json<TemplateView>> {
    validate::name("name", &name)?;
    Ok(Json(templates::get_template(&state, &name).await?))
}

/// Replace a build template (system admins; a different `name` in the body renames it); builds using it
/// follow at their next run.
#[utoipa::path(put, path = "/openapi/templates/build/{name}", tag = "build templates",
    params(("name" = String, Path)), request_body = TemplateRequest,
    responses((status = 200, body = Success), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not a system admin"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn update_template(
    State(state): State<AppState>,
    caller: Identity,
    Path(name): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> ApiResult<Json<Success>> {
    validate::name("name", &name)?;
    let req: TemplateRequest = decode_object(body)?;
    templates::update_template(&state, &caller, &name, &req).await?;
    Ok(Success::new())
}

/// Delete a build template (system admins); 409 while a build uses it.
#[utoipa::path(delete, path = "/openapi/templates/build/{name}", tag = "build templates",
    params(("name" = String, Path)),
    responses((status = 200, body = Success),
        (status = 403, body = ErrorBody, description = "not a system admin"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "used by builds")))]
async fn delete_template(
    State(state): State<AppState>,
    caller: Identity,
    Path(name): Path<String>,
) -> ApiResult<Json<Success>> {
    validate::name("name", &name)?;
    templates::delete_template(&state, &caller, &name).await?;
    Ok(Success::new())
}
