//! Authentication: API tokens, the caller's [`Identity`], and the admin bootstrap.
//!
//! Every `/openapi/*` and `/api/*` route goes through [`require_auth`]: the token comes from
//! `?token=` (which wins, as in Zadig) or `Authorization: <scheme> <token>`; it is hashed and
//! looked up; the user found becomes the request's [`Identity`]. Tokens are 32 random bytes,
//! shown once, stored only as SHA-256 hashes (DESIGN.md §1.3). Wrong tokens are counted per
//! client, and a client with too many is refused for a while ([`throttle`]).

pub mod throttle;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult, ErrorKind};
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::users::{User, UserStore};

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Identity {
    pub uid: String,
    pub account: String,
    pub name: String,
    pub identity_type: String,
    pub is_admin: bool,
}

impl Identity {
    /// 403 unless the caller is a system admin.
    pub fn require_admin(&self) -> ApiResult<()> {
        if self.is_admin {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "user {} is not a system admin",
                self.account
            )))
        }
    }

    /// 403 unless the caller is `uid` or an admin.
    pub fn require_self_or_admin(&self, uid: &str, what: &str) -> ApiResult<()> {
        if self.is_admin || self.uid == uid {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "only the {what} or a system admin may do this; user {} is neither",
                self.account
            )))
        }
    }
}

impl Identity {
    /// 403 unless the caller is a system admin or `owner_uid`, the uid recorded as the owner
    /// of `what` (e.g. "workflow wf"). Documents stored before owners were recorded have an
    /// empty owner: only admins may change those (docs/security.md).
    pub fn require_owner_or_admin(&self, owner_uid: &str, what: &str) -> ApiResult<()> {
        if self.is_admin || (!owner_uid.is_empty() && self.uid == owner_uid) {
            return Ok(());
        }
        Err(ApiError::forbidden(if owner_uid.is_empty() {
            format!(
                "{what} has no recorded owner: only a system admin may change it; user {} is not one",
                self.account
            )
        } else {
            format!(
                "only the creator of {what} or a system admin may change it; user {} is neither",
                self.account
            )
        }))
    }
}

impl From<&User> for Identity {
    fn from(u: &User) -> Self {
        Self {
            uid: u.id.clone(),
            account: u.account.clone(),
            name: u.name.clone(),
            identity_type: u.identity_type.clone(),
            is_admin: u.is_admin,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Identity>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("authentication required"))
    }
}

/// A fresh API token: 32 random bytes as 64 hex characters.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// What a new user is made of; [`create_user`] adds the id, token hash and timestamp.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub account: String,
    pub name: String,
    pub identity_type: String,
    pub is_admin: bool,
}

/// Why [`create_user`] did not create the user.
#[derive(Debug)]
pub enum CreateUserError {
    /// A user with this (account, identity_type) already exists.
    Duplicate {
        account: String,
        identity_type: String,
    },
    /// Any other store failure.
    Store(StoreError),
}

/// The one way to create a user (HTTP `POST /openapi/users`, `zadig-server user create` and
/// the admin bootstrap): a fresh uid, the hash of `token`, `created_at = now`; inserted into
/// `users`, a duplicate (account, identity_type) being [`CreateUserError::Duplicate`].
pub async fn create_user(
    users: &UserStore,
    new: NewUser,
    token: &str,
    now: i64,
) -> Result<User, CreateUserError> {
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        account: new.account,
        name: new.name,
        identity_type: new.identity_type,
        is_admin: new.is_admin,
        token_hash: hash_token(token),
        created_at: now,
    };
    match users.insert(&user).await {
        Ok(()) => Ok(user),
        Err(StoreError::Duplicate(_)) => Err(CreateUserError::Duplicate {
            account: user.account,
            identity_type: user.identity_type,
        }),
        Err(e) => Err(CreateUserError::Store(e)),
    }
}

/// The token of a request: `?token=` first, then the second word of `Authorization`.
fn token_of(parts: &Parts) -> Result<String, ApiError> {
    if let Some(q) = parts.uri.query() {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            if k == "token" && !v.is_empty() {
                return Ok(v.into_owned());
            }
        }
    }
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthorized(
                "missing API token: send `Authorization: Bearer <token>` or `?token=<token>`",
            )
        })?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
    let words: Vec<&str> = value.split(' ').collect();
    match words.as_slice() {
        [_scheme, token] if !token.is_empty() => Ok((*token).to_string()),
        _ => Err(ApiError::unauthorized(
            "malformed Authorization header: expected `Bearer <token>`",
        )),
    }
}

/// Middleware: resolve the caller, or answer 401 (no token or a wrong one) or 429 (this client
/// made too many failed attempts: the token is not checked; see [`throttle`]).
pub async fn require_auth(
    State(state): State<AppState>,
    client: throttle::Client,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let hash = hash_token(&token_of(&parts)?);
    let clock = state.clock.as_ref();
    let refused = |m: &str| ApiError::new(ErrorKind::TooManyRequests, m).into_response();
    let attempt = match state.auth_throttle.attempt(&client, clock, refused).await {
        Ok(attempt) => attempt,
        Err(refused) => return Ok(refused),
    };
    let Some(identity) = identify(&state, hash).await? else {
        attempt.failed(clock).await;
        return Err(ApiError::unauthorized("invalid or revoked API token"));
    };
    attempt.succeeded();
    parts.extensions.insert(identity);
    Ok(next.run(Request::from_parts(parts, body)).await)
}

/// The user whose token has this hash (through the cache).
async fn identify(state: &AppState, hash: String) -> Result<Option<Identity>, StoreError> {
    if let Some(identity) = state.token_cache.get(&hash) {
        return Ok(Some(identity));
    }
    let Some(user) = state.users.by_token_hash(&hash).await? else {
        return Ok(None);
    };
    let identity = Identity::from(&user);
    state.token_cache.put(hash, identity.clone());
    Ok(Some(identity))
}

/// Token-hash → identity cache, so an authenticated request costs no store read.
///
/// Only enabled on the embedded store: there one process owns the database, so invalidating
/// on rotate/delete in-process makes a revoked token fail at once. With MongoDB another replica
/// may revoke a token, so every request reads the store.
pub struct TokenCache {
    enabled: bool,
    map: std::sync::RwLock<std::collections::HashMap<String, Identity>>,
}

/// Beyond this many cached tokens the cache starts over (bounded memory).
const TOKEN_CACHE_MAX: usize = 10_000;

impl TokenCache {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            map: std::sync::RwLock::new(std::collections::HashMap::new()),
        }
    }

    fn get(&self, hash: &str) -> Option<Identity> {
        if !self.enabled {
            return None;
        }
        self.map.read().ok()?.get(hash).cloned()
    }

    fn put(&self, hash: String, identity: Identity) {
        if !self.enabled {
            return;
        }
        if let Ok(mut map) = self.map.write() {
            if map.len() >= TOKEN_CACHE_MAX {
                map.clear();
            }
            map.insert(hash, identity);
        }
    }

    /// Forget every cached token of `uid` (its token changed, or it was deleted).
    pub fn forget_user(&self, uid: &str) {
        if let Ok(mut map) = self.map.write() {
            map.retain(|_, identity| identity.uid != uid);
        }
    }
}

/// Below this many characters, `admin_token` draws a warning at start.
const ADMIN_TOKEN_MIN_LEN: usize = 32;

/// Make sure the admin `admin` exists and its token is `token` (idempotent; a changed value
/// replaces the old token).
pub async fn bootstrap_admin(state: &AppState, token: &str) -> anyhow::Result<()> {
    if token.chars().count() < ADMIN_TOKEN_MIN_LEN {
        // The length only, never the token.
        tracing::warn!(
            "admin_token is {} characters long; use at least {ADMIN_TOKEN_MIN_LEN} random ones \
             (`openssl rand -hex 32`): failed attempts are throttled per client, not in total",
            token.chars().count()
        );
    }
    let hash = hash_token(token);
    if let Some(existing) = state.users.by_account("admin", "system").await? {
        if existing.token_hash != hash || !existing.is_admin {
            state.users.make_admin(&existing.id, &hash).await?;
            state.token_cache.forget_user(&existing.id);
        }
        return Ok(());
    }
    let admin = NewUser {
        account: "admin".into(),
        name: "admin".into(),
        identity_type: "system".into(),
        is_admin: true,
    };
    match create_user(&state.users, admin, token, state.clock.now()).await {
        // Another replica created it at the same moment: theirs has the same token.
        Ok(_) | Err(CreateUserError::Duplicate { .. }) => Ok(()),
        Err(CreateUserError::Store(e)) => Err(e.into()),
    }
}
