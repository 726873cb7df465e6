//! The dashboard: server-rendered HTML pages under `/ui/` for release plans, workflows and
//! their tasks (with live job logs) and delivery versions.
//!
//! Everything is in the binary: templates (minijinja, compiled in with `include_str!`), the
//! stylesheet and a small script. Pages read through the stores and act through the same
//! services the API handlers call, with the signed-in user's [`crate::auth::Identity`], so a
//! dashboard user can do exactly what their API token can; buttons are shown only when the
//! service would allow the action. Reading works without JavaScript; the script only follows
//! live logs and refreshes a running task. Every response carries a strict
//! Content-Security-Policy and the other headers of [`SECURITY_HEADERS`].

pub mod delivery;
pub mod logs;
pub mod plans;
pub mod render;
pub mod session;
pub mod signin;
pub mod tasks;

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};

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
        .route(
            "/ui/logout",
            get(signin::sign_out_page).post(signin::sign_out),
        )
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
            get(logs::events),
        )
        .route(
            "/ui/workflows/{key}/tasks/{id}/jobs/{job}/log",
            get(logs::full),
        )
        .route("/ui/delivery", get(delivery::list))
        .route("/ui/delivery/{id}", get(delivery::detail))
        .route("/ui/delivery/{id}/retry", post(delivery::retry))
        .route("/ui/{*rest}", any(unknown_page))
        .layer(axum::middleware::map_response(security_headers))
}

/// A dashboard path no route has: the error page, not the API's JSON.
async fn unknown_page(uri: axum::http::Uri) -> Response {
    render::error_page(
        StatusCode::NOT_FOUND,
        &format!("There is no dashboard page at {}.", uri.path()),
    )
}

/// What every dashboard response carries. The pages load only their own stylesheet and
/// script (no inline script, style or handler: an injected one does not run even if escaping
/// ever failed), connect only to this server (the log stream, the task refresh), post forms
/// only here, and are never framed (clickjacking the approve buttons); nothing is sniffed
/// into another type (the plain-text log), and no address leaves in a `Referer`.
const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
];

async fn security_headers(mut resp: Response) -> Response {
    let headers = resp.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(*name, header::HeaderValue::from_static(value));
    }
    resp
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

/// A page's query string. One that does not read (`?page=abc`) is a 400 page naming the
/// parameter, not axum's plain-text rejection.
pub struct UiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S>
    for UiQuery<T>
{
    type Rejection = UiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, UiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e| UiError::Status(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

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
        session::check_csrf(state, &viewer, &headers, form.get("csrf"))
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
