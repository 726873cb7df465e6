//! Dashboard sessions: sign-in with an API token, the session cookie and CSRF protection.
//!
//! Signing in checks the API token exactly as the API does (its SHA-256 hash must belong to a
//! user) and stores a session in the `ui_sessions` collection: the SHA-256 of a random session
//! id (the cookie value; the id itself is never stored), the user, the hash of the token used,
//! a CSRF token and an expiry. Every request re-reads the user by that token hash, so rotating
//! the token or deleting the user ends the session at once, on every replica.
//!
//! The cookie is `HttpOnly; SameSite=Strict; Path=/`, `Secure` when the request came over TLS
//! (see [`secure_cookie`]), and expires after `ui_session_secs`. A `Secure` cookie is named
//! `__Host-zadig_session`: browsers accept that name only from a secure origin, for this host
//! alone (no `Domain`), so a sibling subdomain or a plain-http page cannot plant one; only
//! that name is read on such a request. State-changing forms carry the
//! session's CSRF token and are also refused when `Origin` names a host that is not this
//! server's (see [`check_origin`]) or `Sec-Fetch-Site` says `cross-site`.

use axum::extract::FromRequestParts;
use axum::http::HeaderName;
use axum::http::header::{COOKIE, HOST, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde::{Deserialize, Serialize};

use crate::auth::{Identity, hash_token, new_token};
use crate::state::AppState;
use crate::store::{Filter, StoreResult, Typed};
use crate::ui::UiError;

const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The session cookie's name on plain http.
pub const COOKIE_NAME: &str = "zadig_session";
/// The session cookie's name when it is `Secure` (see [`cookie_name`]).
pub const SECURE_COOKIE_NAME: &str = "__Host-zadig_session";

/// The session cookie's name: `__Host-` prefixed when it is `Secure` (the prefix requires
/// `Secure`, `Path=/` and no `Domain`, which [`set_cookie`] always gives it).
pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_COOKIE_NAME
    } else {
        COOKIE_NAME
    }
}
const COLLECTION: &str = "ui_sessions";

/// A stored session. `id` is the SHA-256 of the cookie value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub uid: String,
    /// Hash of the API token signed in with: the session lives as long as that token.
    pub token_hash: String,
    /// Sent back in every state-changing form.
    pub csrf: String,
    /// Unix seconds (business clock).
    pub expires_at: i64,
    pub created_at: i64,
}

fn store(state: &AppState) -> Typed<Session> {
    Typed::new(state.backend.as_ref(), COLLECTION)
}

/// Sign in with an API token: `Some((cookie value, session))`, or `None` for an unknown token.
pub async fn sign_in(state: &AppState, api_token: &str) -> StoreResult<Option<(String, Session)>> {
    let token_hash = hash_token(api_token.trim());
    let Some(user) = state.users.by_token_hash(&token_hash).await? else {
        return Ok(None);
    };
    let cookie = new_token();
    let now = state.clock.now();
    let lifetime = i64::try_from(state.config.ui_session_secs).unwrap_or(i64::MAX);
    let session = Session {
        id: hash_token(&cookie),
        uid: user.id,
        token_hash,
        csrf: new_token(),
        expires_at: now.saturating_add(lifetime),
        created_at: now,
    };
    let sessions = store(state);
    // Expired sessions of anyone are dropped here, so the collection stays small without a
    // background loop.
    sessions
        .coll
        .delete_many(&Filter::lt("expires_at", now))
        .await?;
    sessions.insert(&session).await?;
    Ok(Some((cookie, session)))
}

/// End the session of this cookie value (if any).
pub async fn sign_out(state: &AppState, cookie: &str) -> StoreResult<()> {
    store(state)
        .coll
        .delete_many(&Filter::id(&hash_token(cookie)))
        .await?;
    Ok(())
}

/// The session cookie's value in a request, if any: the cookie of [`cookie_name`]`(secure)`
/// (on a secure request, a plain `zadig_session` is not a session: anyone could have set it).
pub fn cookie_value(headers: &HeaderMap, secure: bool) -> Option<String> {
    let name = cookie_name(secure);
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Whether the `Secure` attribute is set: per `ui_cookie_secure` (`always`, `never`, or
/// `auto`: when the request arrived over TLS — an `https` URI, or `X-Forwarded-Proto: https`
/// from a TLS-terminating proxy; trusting that header can only make the cookie stricter).
pub fn secure_cookie(state: &AppState, headers: &HeaderMap, uri: &Uri) -> bool {
    match state.config.ui_cookie_secure.as_str() {
        "always" => true,
        "never" => false,
        _ => {
            uri.scheme_str() == Some("https")
                || headers
                    .get("x-forwarded-proto")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
        }
    }
}

/// The `Set-Cookie` value of a new session.
pub fn set_cookie(value: &str, max_age: u64, secure: bool) -> String {
    let name = cookie_name(secure);
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", 0, secure)
}

/// The signed-in user of a dashboard request. Pages redirect to the sign-in page without one.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub identity: Identity,
    pub csrf: String,
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, UiError> {
        let secure = secure_cookie(state, &parts.headers, &parts.uri);
        let viewer = match cookie_value(&parts.headers, secure) {
            Some(cookie) => viewer_of(state, &cookie).await?,
            None => None,
        };
        viewer.ok_or_else(|| {
            let next = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/ui/");
            UiError::SignIn(next.to_string())
        })
    }
}

/// The signed-in user of a session cookie value: `None` when the session does not exist, has
/// expired, or its token no longer belongs to its user (rotated, user deleted).
pub async fn viewer_of(state: &AppState, cookie: &str) -> StoreResult<Option<Viewer>> {
    let Some(session) = store(state).get(&hash_token(cookie)).await? else {
        return Ok(None);
    };
    if session.expires_at <= state.clock.now() {
        return Ok(None);
    }
    let Some(user) = state.users.by_token_hash(&session.token_hash).await? else {
        return Ok(None);
    };
    if user.id != session.uid {
        return Ok(None);
    }
    Ok(Some(Viewer {
        identity: Identity::from(&user),
        csrf: session.csrf,
    }))
}

/// The host a browser names in `Origin` (`scheme://host[:port]` → `host[:port]`).
fn origin_host(origin: &str) -> Option<&str> {
    origin.split_once("://").map(|(_, rest)| rest)
}

/// The hosts this server is reached at, as a browser names them in `Origin`: the request's
/// `Host`, the `X-Forwarded-Host` a reverse proxy sets, and the host of the configured
/// `public_url` (a proxy that does not pass the original `Host` on, as nginx by default).
/// Trusting the forwarded header is safe here: a cross-site page cannot add headers to a
/// form post (and the CSRF token is checked besides).
fn own_hosts<'a>(headers: &'a HeaderMap, public_url: &'a str) -> impl Iterator<Item = &'a str> {
    let header = |name| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
    };
    let public = origin_host(public_url)
        .map(|rest| rest.split('/').next().unwrap_or_default())
        .into_iter();
    header(HOST)
        .chain(header(X_FORWARDED_HOST))
        .chain(public)
        .filter(|h| !h.is_empty())
}

/// Refuse a cross-site form post: `Sec-Fetch-Site: cross-site`, or an `Origin` whose host is
/// none of this server's (see [`own_hosts`]). (Browsers send `Origin` on every POST; a
/// request without one is not from a browser and still needs the CSRF token, or a session,
/// to do anything.)
pub fn check_origin(headers: &HeaderMap, public_url: &str) -> Result<(), UiError> {
    let forbidden = |why: &str| UiError::Status(StatusCode::FORBIDDEN, why.to_string());
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
    {
        return Err(forbidden("cross-site form posts are refused"));
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default();
    let ours = origin_host(origin)
        .is_some_and(|o| own_hosts(headers, public_url).any(|h| o.eq_ignore_ascii_case(h)));
    if ours {
        Ok(())
    } else {
        Err(forbidden(
            "the form was posted from another origin (Origin is not this server's host; \
             behind a reverse proxy, pass the Host header on or set public_url)",
        ))
    }
}

/// Check a posted form's CSRF token (and its origin) against the viewer's session.
pub fn check_csrf(
    state: &AppState,
    viewer: &Viewer,
    headers: &HeaderMap,
    posted: Option<&str>,
) -> Result<(), UiError> {
    check_origin(headers, state.config.public_base())?;
    let posted = posted.unwrap_or_default();
    // Both are 64 hex characters from our own generator; compare without an early exit anyway.
    let same = posted.len() == viewer.csrf.len()
        && posted
            .bytes()
            .zip(viewer.csrf.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(UiError::Status(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or stale: reload the page and try again".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, "a=1; zadig_session=abc ; b=2".parse().unwrap());
        assert_eq!(cookie_value(&h, false).as_deref(), Some("abc"));
        // On a secure request only the `__Host-` cookie is a session.
        assert_eq!(cookie_value(&h, true), None);
        h.insert(
            COOKIE,
            "zadig_session=x; __Host-zadig_session=def".parse().unwrap(),
        );
        assert_eq!(cookie_value(&h, true).as_deref(), Some("def"));
        assert_eq!(cookie_value(&h, false).as_deref(), Some("x"));
        h.insert(COOKIE, "zadig_session=".parse().unwrap());
        assert_eq!(cookie_value(&h, false), None);
    }

    #[test]
    fn cookie_attributes() {
        let c = set_cookie("v", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(c.starts_with("__Host-zadig_session=v; Path=/;") && !c.contains("Domain"));
        let plain = set_cookie("v", 60, false);
        assert!(plain.starts_with("zadig_session=v;") && !plain.contains("Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }

    #[test]
    fn origin_must_match_host() {
        let mut h = HeaderMap::new();
        h.insert(HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(check_origin(&h, "").is_ok());
        h.insert(ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(check_origin(&h, "").is_ok());
        h.insert(ORIGIN, "https://evil.example".parse().unwrap());
        assert!(check_origin(&h, "").is_err());
        h.insert(ORIGIN, "null".parse().unwrap());
        assert!(check_origin(&h, "").is_err());
        // Behind a proxy that sends its own Host: the public URL's host, or X-Forwarded-Host.
        h.insert(ORIGIN, "https://zadig.example.com".parse().unwrap());
        assert!(check_origin(&h, "").is_err());
        assert!(check_origin(&h, "https://zadig.example.com/").is_ok());
        assert!(check_origin(&h, "https://other.example.com").is_err());
        h.insert(X_FORWARDED_HOST, "zadig.example.com".parse().unwrap());
        assert!(check_origin(&h, "").is_ok());
    }
}
