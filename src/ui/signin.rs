//! Sign-in and sign-out pages.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::render;
use super::session;
use super::{Form, UiQuery, UiResult};
use crate::auth::throttle::Client;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

/// Only local dashboard paths are followed after sign-in (no open redirect), and only in
/// visible ASCII (what the dashboard's own sign-in redirects send): the value becomes the
/// `Location` header, where a control character cannot go, and URL parsers drop tabs and
/// newlines, which would make the browser read another URL than the one checked here.
fn safe_next(next: &str) -> &str {
    let local = next.starts_with("/ui/") && !next.contains('\\');
    if local && next.bytes().all(|b| b.is_ascii_graphic()) {
        next
    } else {
        "/ui/plans"
    }
}

/// The sign-in form, with an error when a try failed.
fn form_page(next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let mut resp = render::page(
        "login.html",
        None,
        json!({"title": "Sign in", "next": safe_next(next), "error": error}),
    );
    *resp.status_mut() = status;
    resp
}

/// `GET /ui/login?next=`: the sign-in form.
pub async fn page(UiQuery(q): UiQuery<NextQuery>) -> Response {
    form_page(&q.next, None, StatusCode::OK)
}

/// `POST /ui/login` (`token`, `next`): check the API token and start a session. A client that
/// made too many failed attempts (API or dashboard alike) gets a 429 page, its token unchecked.
pub async fn sign_in(
    State(state): State<AppState>,
    client: Client,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> UiResult {
    session::check_origin(&headers, state.config.public_base())?;
    let form = Form::parse(&body);
    let next = form.get("next").unwrap_or_default().to_string();
    let token = form.get("token").unwrap_or_default();
    if token.trim().is_empty() {
        return Ok(form_page(
            &next,
            Some("Enter your API token."),
            StatusCode::BAD_REQUEST,
        ));
    }
    let clock = state.clock.as_ref();
    let refused = |m: &str| render::error_page(StatusCode::TOO_MANY_REQUESTS, m);
    let attempt = match state.auth_throttle.attempt(&client, clock, refused).await {
        Ok(attempt) => attempt,
        Err(refused) => return Ok(refused),
    };
    let secure = session::secure_cookie(&state, &headers, &uri);
    let Some((cookie, s)) = session::sign_in(&state, token).await? else {
        attempt.failed(clock).await;
        // The browser's session (if any) is left as it was: a mistyped token signs nobody out.
        return Ok(form_page(
            &next,
            Some("This API token is not valid (unknown or revoked)."),
            StatusCode::UNAUTHORIZED,
        ));
    };
    attempt.succeeded();
    // A new sign-in in this browser ends the session it had (whoever's it was): a session id
    // is never carried across sign-ins.
    if let Some(previous) = session::cookie_value(&headers, secure) {
        session::sign_out(&state, &previous).await?;
    }
    tracing::info!(uid = %s.uid, "dashboard sign-in of user {}", s.uid);
    let set = session::set_cookie(&cookie, state.config.ui_session_secs, secure);
    let mut resp = Redirect::to(safe_next(&next)).into_response();
    if let Ok(v) = HeaderValue::from_str(&set) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// `GET /ui/logout`: a page whose button signs out (a link or a prefetch does not: only the
/// POST below, with the session's CSRF token, ends a session). Without a session: the
/// sign-in page.
pub async fn sign_out_page(viewer: Result<session::Viewer, super::UiError>) -> Response {
    match viewer {
        Ok(viewer) => render::page("logout.html", Some(&viewer), json!({"title": "Sign out"})),
        Err(_) => Redirect::to("/ui/login").into_response(),
    }
}

/// `POST /ui/logout`: end the session and clear the cookie.
pub async fn sign_out(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    _: super::Posted,
) -> UiResult {
    let secure = session::secure_cookie(&state, &headers, &uri);
    if let Some(cookie) = session::cookie_value(&headers, secure) {
        session::sign_out(&state, &cookie).await?;
    }
    let mut resp = Redirect::to("/ui/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(secure)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}
