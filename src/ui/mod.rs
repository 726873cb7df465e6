//! The dashboard: server-rendered HTML pages under `/ui/` for release plans, workflows and
//! their tasks (with live job logs) and delivery versions.
//!
//! Everything is in the binary: templates (minijinja, compiled in with `include_str!`), the
//! stylesheet and a small script. Pages read through the stores and act through the same
//! services the API handlers call, with the signed-in user's [`crate::auth::Identity`], so a
//! dashboard user can do exactly what their API token can; buttons are shown only when the
//! service would allow the action. Reading works without JavaScript; the script only follows
//! live logs and refreshes a running task.

pub mod delivery;
pub mod plans;
pub mod render;
pub mod session;
pub mod signin;
pub mod tasks;

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::limits::Paging;
use crate::state::AppState;
use crate::store::Filter;
use crate::store::StoreError;

/// The dashboard's routes (merged into the application router, under its middleware).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/plans") }))
        .route("/ui/assets/app.css", get(css))
        .route("/ui/assets/app.js", get(js))
        .route("/ui/login", get(signin::page).post(signin::sign_in))
        .route("/ui/logout", post(signin::sign_out))
        .route("/ui/plans", get(plans::list))
        .route("/ui/plans/{id}", get(plans::detail))
        .route("/ui/plans/{id}/approve", post(plans::approve))
        .route("/ui/plans/{id}/status", post(plans::set_status))
        .route(
            "/ui/plans/{id}/jobs/{job}/{action}",
            post(plans::job_action),
        )
        .route("/ui/workflows", get(tasks::workflows))
        .route("/ui/workflows/{key}", get(tasks::workflow))
        .route("/ui/workflows/{key}/tasks/{id}", get(tasks::task))
        .route("/ui/workflows/{key}/tasks/{id}/live", get(tasks::task_live))
        .route(
            "/ui/workflows/{key}/tasks/{id}/{action}",
            post(tasks::task_action),
        )
        .route(
            "/ui/workflows/{key}/tasks/{id}/jobs/{job}/events",
            get(tasks::log_events),
        )
        .route(
            "/ui/workflows/{key}/tasks/{id}/jobs/{job}/log",
            get(tasks::full_log),
        )
        .route("/ui/delivery", get(delivery::list))
        .route("/ui/delivery/{id}", get(delivery::detail))
        .route("/ui/delivery/{id}/retry", post(delivery::retry))
}

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// What a dashboard request can end in besides its page.
#[derive(Debug)]
pub enum UiError {
    /// Not signed in (or the session ended): go to the sign-in page, then back to this path.
    SignIn(String),
    /// An error page with this status and explanation.
    Status(StatusCode, String),
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        UiError::Status(e.status(), e.description)
    }
}

impl From<StoreError> for UiError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        match self {
            UiError::SignIn(next) => {
                let to = format!("/ui/login?next={}", render::urlencode(&next));
                Redirect::to(&to).into_response()
            }
            UiError::Status(status, message) => render::error_page(status, &message),
        }
    }
}

/// Result of a dashboard handler.
pub type UiResult<T = Response> = Result<T, UiError>;

/// The fields of an `application/x-www-form-urlencoded` body.
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &Bytes) -> Self {
        Self(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A form posted by a signed-in viewer, its CSRF token and origin checked: what every
/// dashboard action takes (it reads the body, so it is the last argument).
pub struct Posted {
    pub viewer: session::Viewer,
    pub form: Form,
}

impl axum::extract::FromRequest<AppState> for Posted {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &AppState) -> Result<Self, Response> {
        use axum::extract::FromRequestParts;
        let (mut parts, body) = req.into_parts();
        let viewer = session::Viewer::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let headers = parts.headers.clone();
        let body = Bytes::from_request(axum::extract::Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let form = Form::parse(&body);
        session::check_csrf(&viewer, &headers, form.get("csrf"))
            .map_err(IntoResponse::into_response)?;
        Ok(Self { viewer, form })
    }
}

/// After a successful action: back to `to` (post/redirect/get).
pub fn done(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Items per page of every list page.
const PAGE_SIZE: u64 = 25;
/// The last page a list offers (25,000,000 items); beyond it a page is empty anyway.
const MAX_PAGE: u64 = 1_000_000;

/// The query of a list page: an optional project and a page number.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct ListQuery {
    project: String,
    page: Option<u64>,
}

impl ListQuery {
    /// The page asked for, 1 when absent, at most [`MAX_PAGE`] (so no offset can overflow).
    fn paging(&self) -> Paging {
        Paging {
            num: self.page.unwrap_or(1).clamp(1, MAX_PAGE),
            size: PAGE_SIZE,
        }
    }

    /// Everything, or the documents whose `field` is the project asked for.
    fn project_filter(&self, field: &str) -> Filter {
        if self.project.is_empty() {
            Filter::All
        } else {
            Filter::eq(field, self.project.as_str())
        }
    }
}

/// Whether a page after `p` has items.
fn has_next(p: Paging, total: u64) -> bool {
    p.num.saturating_mul(p.size) < total
}
