//! Image registries: Zadig's `/openapi/system/registry` (DESIGN.md §5). `secret_key` is
//! accepted but never returned.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Identity;
use crate::delivery::registry::{self, Registry, RegistryInput};
use crate::error::{ApiResult, ErrorBody};
use crate::http::delivery::Created;
use crate::http::{Json, Path, Success};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_registry, list_registries))
        .routes(routes!(get_registry, update_registry))
}

/// A registry as shown: Zadig's OpenAPI fields (`registry_id`, `address`, `provider`,
/// `region`, `namespace`, `is_default`) plus `id` and the non-secret settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegistryView {
    pub id: String,
    pub registry_id: String,
    pub address: String,
    pub provider: String,
    pub namespace: String,
    pub is_default: bool,
    pub access_key: String,
    pub enable_tls: bool,
    pub tls_cert: String,
    pub region: String,
    pub update_time: i64,
    pub update_by: String,
}

impl From<Registry> for RegistryView {
    fn from(r: Registry) -> Self {
        Self {
            registry_id: r.id.clone(),
            id: r.id,
            address: r.address,
            provider: r.provider,
            namespace: r.namespace,
            is_default: r.is_default,
            access_key: r.access_key,
            enable_tls: r.enable_tls,
            tls_cert: r.tls_cert,
            region: r.region,
            update_time: r.updated_at,
            update_by: r.updated_by,
        }
    }
}

/// Add an image registry (system admins).
#[utoipa::path(post, path = "/openapi/system/registry", tag = "registries", request_body = RegistryInput,
    responses((status = 200, body = Created), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_registry(
    State(state): State<AppState>,
    caller: Identity,
    Json(input): Json<RegistryInput>,
) -> ApiResult<Json<Created>> {
    Ok(Created::new(
        registry::create_registry(&state, &caller, input).await?.id,
    ))
}

/// List the image registries.
#[utoipa::path(get, path = "/openapi/system/registry", tag = "registries",
    responses((status = 200, body = Vec<RegistryView>)))]
async fn list_registries(
    State(state): State<AppState>,
    _caller: Identity,
) -> ApiResult<Json<Vec<RegistryView>>> {
    let list = state.delivery.registries.registries().await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

/// One image registry (system admins, as in Zadig).
#[utoipa::path(get, path = "/openapi/system/registry/{id}", tag = "registries",
    params(("id" = String, Path)),
    responses((status = 200, body = RegistryView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_registry(
    State(state): State<AppState>,
    caller: Identity,
    Path(id): Path<String>,
) -> ApiResult<Json<RegistryView>> {
    caller.require_admin()?;
    Ok(Json(registry::get_registry(&state, &id).await?.into()))
}

/// Update an image registry (system admins); absent credentials are kept.
#[utoipa::path(put, path = "/openapi/system/registry/{id}", tag = "registries",
    params(("id" = String, Path)), request_body = RegistryInput,
    responses((status = 200, body = Success), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn update_registry(
    State(state): State<AppState>,
    caller: Identity,
    Path(id): Path<String>,
    Json(input): Json<RegistryInput>,
) -> ApiResult<Json<Success>> {
    registry::update_registry(&state, &caller, &id, input).await?;
    Ok(Success::new())
}
