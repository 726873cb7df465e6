//! The HTTP layer: one module per resource (routes + request/response types, no business
//! rules), the shared extractors, and the router with its middleware.
//!
//! Every route is registered together with its OpenAPI operation (`utoipa_axum::routes!`), so
//! the spec served at `/openapi.json` cannot drift from the router.

pub mod build_templates;
pub mod builds;
pub mod clusters;
pub mod delivery;
pub mod doc;
pub mod environments;
pub mod error;
pub mod extract;
pub mod groups;
pub mod helm_repos;
pub mod logs;
pub mod metrics;
pub mod projects;
pub mod query;
pub mod registries;
pub mod release_plans;
pub mod serve;
pub mod service;
pub mod service_templates;
pub mod tickets;
pub mod users;
pub mod workflow_tasks;
pub mod workflow_views;
pub mod workflows;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

pub use extract::{Json, Path, Query, Success};

use crate::error::ApiError;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "zadig-server",
        description = "Zadig's OpenAPI (release plans, workflows, builds, delivery versions), reimplemented in Rust. \
            Every /openapi and /api route needs `Authorization: Bearer <api token>` (or `?token=`). \
            A client that sent too many wrong tokens (auth_max_failures within auth_failure_window_secs) \
            is answered 429 with the error body and a Retry-After header, its token unchecked, until the window has passed.",
    ),
    modifiers(&SecurityAddon),
    security(("bearer" = []), ("token" = [])),
)]
struct ApiDoc;

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("token"))),
        );
    }
}

/// The routes that need a token: every `/openapi/*` and `/api/*` route.
fn protected() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(users::router())
        .merge(workflows::router())
        .merge(workflow_tasks::router())
        .merge(workflow_views::router())
        .merge(tickets::router())
        .merge(logs::router())
        .merge(release_plans::router())
        .merge(builds::router())
        .merge(build_templates::router())
        .merge(delivery::router())
        .merge(registries::router())
        .merge(helm_repos::router())
        .merge(clusters::router())
        .merge(environments::router())
        .merge(projects::router())
        .merge(service_templates::router())
}

/// The OpenAPI document of every route.
pub fn openapi() -> serde_json::Value {
    let (_, mut spec) = OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .merge(protected())
        .merge(service::router())
        .split_for_parts();
    spec.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc::finish(&spec)
}

/// The whole application router (only the service routes when the process' role does not
/// serve the API).
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let auth = middleware::from_fn_with_state(state.clone(), crate::auth::require_auth);
    let (api, _) = protected().route_layer(auth).split_for_parts();
    let (svc, _) = service::router().split_for_parts();
    let timeout = Duration::from_secs(state.config.request_timeout_secs);
    let mut routes = Router::new().merge(svc);
    // A workers-only process keeps its listener for probes and scraping: liveness and metrics.
    if state.config.role.serves_api() {
        routes = routes.merge(api).merge(crate::ui::router()).merge(
            SwaggerUi::new("/swagger-ui").external_url_unchecked("/openapi.json", openapi()),
        );
    }
    let app = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(metrics::track))
        .layer(middleware::from_fn_with_state(timeout, request_timeout))
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("a handler panicked").into_response()
        }))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                tracing::info_span!("request", method = %req.method(), uri = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state);
    // Rewriting the path must happen before routing, so the whole router sits behind it.
    Router::new().fallback_service(app.map_request(normalize_path))
}

/// Merge repeated slashes in the request path (`//openapi/users` → `/openapi/users`), as the
/// nginx in front of Zadig does (some SDKs join a base URL ending in `/` with a path starting
/// with one), and drop a trailing slash of an API path (`/openapi/workflows/` →
/// `/openapi/workflows`), which Zadig's router redirects to the path without it.
fn normalize_path(mut req: Request) -> Request {
    let path = req.uri().path();
    let trailing = path.ends_with('/') && is_api(path);
    if !path.contains("//") && !trailing {
        return req;
    }
    let mut merged = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && merged.ends_with('/')) {
            merged.push(c);
        }
    }
    if is_api(&merged) {
        while merged.ends_with('/') {
            merged.pop();
        }
    }
    if let Some(q) = req.uri().query() {
        merged.push('?');
        merged.push_str(q);
    }
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = merged.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// A path of the API (not the dashboard's or the documents', whose own routes end in `/`).
fn is_api(path: &str) -> bool {
    ["/openapi/", "/api/"].iter().any(|p| path.starts_with(p))
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

/// A method a route does not have. When the path matched only through a parameter segment
/// (`GET /api/aslan/workflow/v4/webhook` against `PUT …/v4/{name}`) the path is as unknown as
/// any other: 404, not 405.
async fn method_not_allowed(matched: Option<MatchedPath>, req: Request) -> ApiError {
    if matched.is_none_or(|m| m.as_str().contains('{')) {
        return not_found(req).await;
    }
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {} is not allowed on {}",
            req.method(),
            req.uri().path()
        ),
    )
}

/// Bound the time to produce a response. Streams (SSE logs) are not cut: once their headers
/// are out, the handler has returned. A handler that overruns is answered 503 but runs on to
/// its end in the background: every step it takes is bounded on its own, and a change cut
/// half-way (objects applied to a cluster, the record not saved, no rollback) would be worse
/// than one that finishes late. The client reads the outcome back.
async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    // The handler keeps the request's span (its logs carry the request id).
    let mut handler = tokio::spawn(tracing::Instrument::in_current_span(next.run(req)));
    match tokio::time::timeout(limit, &mut handler).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => ApiError::internal(format!("the handler failed: {e}")).into_response(),
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "request timed out after {}s (request_timeout_secs); a change it makes still \
                 completes: read the resource again",
                limit.as_secs()
            ),
        )
        .into_response(),
    }
}
