//! Delivery versions: `/openapi/delivery/releases` (seed 003; spec/delivery.md §2).
//!
//! Detail is served both by id (seed) and by `detail?projectKey=&versionName=` (Zadig); it
//! carries the seed table's names (`id`, `version_name`, `project_key`, `description`,
//! `created_time`) and Zadig's (`version`, `project_name`, `desc`, `created_at`). Retry takes
//! `id`/`projectKey` from the query (Zadig) or the JSON body (seed).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Identity;
use crate::delivery::model::{
    DeliveryVersion, ImagePath, ItemStatus, NewVersion, TYPE_HELM, TYPE_K8S, VersionImage,
    VersionService, VersionStatus,
};
use crate::delivery::service;
use crate::error::{ApiResult, ErrorBody};
use crate::http::extract::{decode_json, decode_query};
use crate::http::query::PageQuery;
use crate::http::{Json, Path, Query, Success};
use crate::limits;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_versions))
        .routes(routes!(version_detail))
        .routes(routes!(get_version, delete_version))
        .routes(routes!(create_k8s))
        .routes(routes!(create_helm))
        .routes(routes!(retry_version))
        .routes(routes!(chart_package))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The project.
    #[serde(rename = "projectKey", default)]
    pub project_key: String,
}

/// A version in the list (seed 003 `DeliveryVersionInfo`).
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionListItem {
    pub id: String,
    pub version_name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub status: VersionStatus,
    pub labels: Vec<String>,
    pub description: String,
    pub created_by: String,
    /// Creation time (Unix seconds), the key Zadig sends.
    pub create_time: i64,
    /// The same, under the seed table's name.
    pub created_time: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionList {
    pub list: Vec<VersionListItem>,
    pub total: u64,
}

/// An image of a version.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageView {
    pub container_name: String,
    pub image_name: String,
    pub source_image: String,
    pub source_image_tag: String,
    pub target_image: String,
    pub target_image_tag: String,
    /// `null`, or the non-empty members of repo/namespace/image/tag.
    pub image_path: Option<ImagePath>,
    pub push_image: bool,
    /// `""` (not pushed / not yet run), `running`, `passed` or `failed`.
    pub status: ItemStatus,
    pub error: String,
}

/// A service of a version.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceView {
    pub service_name: String,
    pub chart_name: String,
    pub original_chart_version: String,
    pub chart_version: String,
    /// Helm: `""`, `passed` or `failed`.
    pub chart_status: ItemStatus,
    pub yaml_content: String,
    pub images: Vec<ImageView>,
    pub error: String,
}

/// A version's detail, under both the seed table's and Zadig's field names.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionDetail {
    pub id: String,
    pub version_name: String,
    pub version: String,
    pub project_key: String,
    pub project_name: String,
    pub env_name: String,
    pub production: bool,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub description: String,
    pub desc: String,
    pub labels: Vec<String>,
    pub image_registry_id: String,
    pub chart_repo_name: String,
    pub services: Vec<ServiceView>,
    pub status: VersionStatus,
    pub error: String,
    pub created_by: String,
    pub created_at: i64,
    pub created_time: i64,
    /// Always 0 (Zadig's field).
    pub deleted_at: i64,
}

fn image_view(i: VersionImage) -> ImageView {
    ImageView {
        container_name: i.container_name,
        image_name: i.image_name,
        source_image: i.source_image,
        source_image_tag: i.source_image_tag,
        target_image: i.target_image,
        target_image_tag: i.target_image_tag,
        image_path: i.image_path,
        push_image: i.push_image,
        status: i.status,
        error: i.error,
    }
}

fn service_view(s: VersionService) -> ServiceView {
    ServiceView {
        service_name: s.service_name,
        chart_name: s.chart_name,
        original_chart_version: s.original_chart_version,
        chart_version: s.chart_version,
        chart_status: s.chart_status,
        yaml_content: s.yaml_content,
        images: s.images.into_iter().map(image_view).collect(),
        error: s.error,
    }
}

impl From<DeliveryVersion> for VersionDetail {
    fn from(v: DeliveryVersion) -> Self {
        Self {
            id: v.id,
            version_name: v.version.clone(),
            version: v.version,
            project_key: v.project_name.clone(),
            project_name: v.project_name,
            env_name: v.env_name,
            production: v.production,
            kind: v.kind,
            source: v.source,
            description: v.desc.clone(),
            desc: v.desc,
            labels: v.labels,
            image_registry_id: v.image_registry_id,
            chart_repo_name: v.chart_repo_name,
            services: v.services.into_iter().map(service_view).collect(),
            status: v.status,
            error: v.error,
            created_by: v.created_by,
            created_at: v.created_at,
            created_time: v.created_at,
            deleted_at: 0,
        }
    }
}

impl From<DeliveryVersion> for VersionListItem {
    fn from(v: DeliveryVersion) -> Self {
        Self {
            id: v.id,
            version_name: v.version,
            kind: v.kind,
            source: v.source,
            status: v.status,
            labels: v.labels,
            description: v.desc,
            created_by: v.created_by,
            create_time: v.created_at,
            created_time: v.created_at,
        }
    }
}

/// List a project's versions, newest first (seed 003 "列出版本"; spec §4).
#[utoipa::path(get, path = "/openapi/delivery/releases", tag = "delivery", params(ListQuery, PageQuery),
    responses((status = 200, body = VersionList), (status = 400, body = ErrorBody)))]
async fn list_versions(
    State(state): State<AppState>,
    _caller: Identity,
    Query(q): Query<ListQuery>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<VersionList>> {
    let p = page.check(&limits::DELIVERY_VERSIONS_PAGE)?;
    let (list, total) = service::list(&state, &q.project_key, p).await?;
    Ok(Json(VersionList {
        list: list.into_iter().map(Into::into).collect(),
        total,
    }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default, rename_all = "camelCase")]
pub struct DetailQuery {
    pub project_key: String,
    pub version_name: String,
}

/// A version by project and name (Zadig's detail route; spec §5).
#[utoipa::path(get, path = "/openapi/delivery/releases/detail", tag = "delivery", params(DetailQuery),
    responses((status = 200, body = VersionDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn version_detail(
    State(state): State<AppState>,
    _caller: Identity,
    Query(q): Query<DetailQuery>,
) -> ApiResult<Json<VersionDetail>> {
    let v = service::by_name(&state, &q.project_key, &q.version_name).await?;
    Ok(Json(v.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectQuery {
    /// The project (required for delete; optional for detail).
    #[serde(rename = "projectKey", default)]
    pub project_key: String,
}

/// A version by id (seed 003 "获取版本详情").
#[utoipa::path(get, path = "/openapi/delivery/releases/{id}", tag = "delivery",
    params(("id" = String, Path), ProjectQuery),
    responses((status = 200, body = VersionDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_version(
    State(state): State<AppState>,
    _caller: Identity,
    Path(id): Path<String>,
    Query(q): Query<ProjectQuery>,
) -> ApiResult<Json<VersionDetail>> {
    let v = service::by_id(&state, &id, Some(&q.project_key)).await?;
    Ok(Json(v.into()))
}

/// Delete a version in any status (its creator or an admin); a running pipeline for it stops (seed 003 "删除版本"; spec §9).
#[utoipa::path(delete, path = "/openapi/delivery/releases/{id}", tag = "delivery",
    params(("id" = String, Path), ProjectQuery),
    responses((status = 200, body = Success), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not the version's creator or an admin"), (status = 404, body = ErrorBody)))]
async fn delete_version(
    State(state): State<AppState>,
    caller: Identity,
    Path(id): Path<String>,
    Query(q): Query<ProjectQuery>,
) -> ApiResult<Json<Success>> {
    service::delete(&state, &caller, &q.project_key, &id).await?;
    Ok(Success::new())
}

/// `{"message": "success", "id": "<version id>"}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = VersionCreated)]
pub struct Created {
    pub message: &'static str,
    pub id: String,
}

impl Created {
    /// The answer for the new resource `id`.
    pub fn new(id: String) -> Json<Self> {
        Json(Self {
            message: "success",
            id,
        })
    }
}

/// Create a K8s YAML version; the images are copied in the background (seed 003
/// "K8s YAML 项目创建版本"; spec §6.3).
#[utoipa::path(post, path = "/openapi/delivery/releases/k8s", tag = "delivery", request_body = NewVersion,
    responses((status = 200, body = Created), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_k8s(
    State(state): State<AppState>,
    caller: Identity,
    Json(req): Json<NewVersion>,
) -> ApiResult<Json<Created>> {
    let v = service::create(&state, &caller, TYPE_K8S, req).await?;
    Ok(Created::new(v.id))
}

/// Create a Helm chart version; images are copied and charts packaged and pushed in the
/// background (seed 003 "Helm Chart 项目创建版本"; spec §6.4).
#[utoipa::path(post, path = "/openapi/delivery/releases/helm", tag = "delivery", request_body = NewVersion,
    responses((status = 200, body = Created), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_helm(
    State(state): State<AppState>,
    caller: Identity,
    Json(req): Json<NewVersion>,
) -> ApiResult<Json<Created>> {
    let v = service::create(&state, &caller, TYPE_HELM, req).await?;
    Ok(Created::new(v.id))
}

/// The retry parameters, from the query or the JSON body.
#[derive(Debug, Default, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct RetryParams {
    pub id: Option<String>,
    pub project_key: Option<String>,
}

/// Retry a failed version: only what failed is re-run (seed 003 "重试创建版本"; spec §8).
#[utoipa::path(post, path = "/openapi/delivery/releases/retry", tag = "delivery",
    params(RetryParams), request_body(content = RetryParams, description = "`id` and `projectKey`, when not in the query"),
    responses((status = 200, body = Success), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn retry_version(
    State(state): State<AppState>,
    caller: Identity,
    uri: axum::http::Uri,
    body: Bytes,
) -> ApiResult<Json<Success>> {
    let q: RetryParams = decode_query(uri.query().unwrap_or_default())?;
    let b: RetryParams = if body.iter().all(u8::is_ascii_whitespace) {
        RetryParams::default()
    } else {
        decode_json::<Option<RetryParams>>(&body)?.unwrap_or_default()
    };
    let pick = |a: Option<String>, b: Option<String>| {
        a.filter(|s| !s.is_empty())
            .or(b.filter(|s| !s.is_empty()))
            .unwrap_or_default()
    };
    let id = pick(q.id, b.id);
    let project = pick(q.project_key, b.project_key);
    service::retry(&state, &caller, &project, &id).await?;
    Ok(Success::new())
}

/// Download the chart package built for a service of a Helm version (our extension).
#[utoipa::path(get, path = "/openapi/delivery/releases/{id}/charts/{service_name}", tag = "delivery",
    params(("id" = String, Path), ("service_name" = String, Path), ProjectQuery),
    responses((status = 200, content_type = "application/gzip", body = Vec<u8>), (status = 404, body = ErrorBody)))]
async fn chart_package(
    State(state): State<AppState>,
    _caller: Identity,
    Path((id, service_name)): Path<(String, String)>,
    Query(q): Query<ProjectQuery>,
) -> ApiResult<impl IntoResponse> {
    let (file, bytes) = service::chart_package(&state, &q.project_key, &id, &service_name).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        bytes,
    ))
}
