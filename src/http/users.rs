//! Users and API tokens (our extension, DESIGN.md §1.3 and §5).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{self, CreateUserError, Identity, NewUser, hash_token, new_token};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::query::PageQuery;
use crate::http::{Json, Path, Query, Success};
use crate::limits;
use crate::state::AppState;
use crate::store::users::User;
use crate::validate;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_user, list_users))
        .routes(routes!(get_user, delete_user))
        .routes(routes!(rotate_token))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateUserRequest {
    pub account: String,
    pub name: Option<String>,
    /// Defaults to `system`.
    pub identity_type: Option<String>,
    #[serde(default)]
    pub is_admin: bool,
}

/// A user as the API shows it (never with a token hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub uid: String,
    pub account: String,
    pub name: String,
    pub identity_type: String,
    pub is_admin: bool,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            uid: u.id,
            account: u.account,
            name: u.name,
            identity_type: u.identity_type,
            is_admin: u.is_admin,
        }
    }
}

/// A user with their new API token, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserWithToken {
    #[serde(flatten)]
    pub user: UserView,
    pub api_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserView>,
    pub total: u64,
}

/// Create a user (admin only); the answer carries the user's API token, shown once.
#[utoipa::path(post, path = "/openapi/users", tag = "users", request_body = CreateUserRequest,
    responses((status = 200, body = UserWithToken), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_user(
    State(state): State<AppState>,
    caller: Identity,
    Json(req): Json<CreateUserRequest>,
) -> ApiResult<Json<UserWithToken>> {
    caller.require_admin()?;
    validate::name("account", &req.account)?;
    let name = req.name.unwrap_or_else(|| req.account.clone());
    validate::max_len("name", &name)?;
    let identity_type = req
        .identity_type
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "system".to_string());
    validate::max_len("identity_type", &identity_type)?;
    let token = new_token();
    let new = NewUser {
        account: req.account,
        name,
        identity_type,
        is_admin: req.is_admin,
    };
    let user = match auth::create_user(&state.users, new, &token, state.clock.now()).await {
        Ok(user) => user,
        Err(CreateUserError::Duplicate {
            account,
            identity_type,
        }) => {
            return Err(ApiError::conflict(format!(
                "a user with account {account:?} and identity_type {identity_type:?} already exists"
            )));
        }
        Err(CreateUserError::Store(e)) => return Err(e.into()),
    };
    tracing::info!(user.uid = %user.id, "user {} created by {}", user.account, caller.account);
    Ok(Json(UserWithToken {
        user: user.into(),
        api_token: token,
    }))
}

/// List users, oldest first.
#[utoipa::path(get, path = "/openapi/users", tag = "users", params(PageQuery),
    responses((status = 200, body = UserList), (status = 400, body = ErrorBody)))]
async fn list_users(
    State(state): State<AppState>,
    _caller: Identity,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<UserList>> {
    let p = q.check(&limits::USERS_PAGE)?;
    let (users, total) = state.users.page(p).await?;
    Ok(Json(UserList {
        users: users.into_iter().map(Into::into).collect(),
        total,
    }))
}

async fn find_user(state: &AppState, uid: &str) -> ApiResult<User> {
    state.users.get(uid).await?.ok_or_else(|| not_found(uid))
}

fn not_found(uid: &str) -> ApiError {
    ApiError::not_found(format!("user {uid} not found"))
}

/// One user.
#[utoipa::path(get, path = "/openapi/users/{uid}", tag = "users",
    params(("uid" = String, Path)),
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody)))]
async fn get_user(
    State(state): State<AppState>,
    _caller: Identity,
    Path(uid): Path<String>,
) -> ApiResult<Json<UserView>> {
    Ok(Json(find_user(&state, &uid).await?.into()))
}

/// Delete a user (admin only); their token stops working at once.
#[utoipa::path(delete, path = "/openapi/users/{uid}", tag = "users",
    params(("uid" = String, Path)),
    responses((status = 200, body = Success), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_user(
    State(state): State<AppState>,
    caller: Identity,
    Path(uid): Path<String>,
) -> ApiResult<Json<Success>> {
    caller.require_admin()?;
    if !state.users.delete(&uid).await? {
        return Err(not_found(&uid));
    }
    state.token_cache.forget_user(&uid);
    tracing::info!(user.uid = %uid, "user {uid} deleted by {}", caller.account);
    Ok(Success::new())
}

/// Issue a new API token for a user (themselves, or anyone for an admin); the old one stops
/// working at once.
#[utoipa::path(post, path = "/openapi/users/{uid}/token", tag = "users",
    params(("uid" = String, Path)),
    responses((status = 200, body = UserWithToken), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn rotate_token(
    State(state): State<AppState>,
    caller: Identity,
    Path(uid): Path<String>,
) -> ApiResult<Json<UserWithToken>> {
    caller.require_self_or_admin(&uid, "user themselves")?;
    let user = find_user(&state, &uid).await?;
    let token = new_token();
    if !state
        .users
        .set_token_hash(&uid, &hash_token(&token))
        .await?
    {
        return Err(not_found(&uid));
    }
    state.token_cache.forget_user(&uid);
    tracing::info!(user.uid = %uid, "token of user {} rotated by {}", user.account, caller.account);
    Ok(Json(UserWithToken {
        user: user.into(),
        api_token: token,
    }))
}
