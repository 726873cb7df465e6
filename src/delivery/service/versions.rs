//! Reading, deleting and retrying stored versions, and their chart packages.

use base64::Engine;

use crate::auth::Identity;
use crate::delivery::model::DeliveryVersion;
use crate::error::{ApiError, ApiResult};
use crate::limits::Paging;
use crate::state::AppState;
use crate::validate;

/// One page of a project's versions (newest first) and the project's total.
pub async fn list(
    state: &AppState,
    project: &str,
    p: Paging,
) -> ApiResult<(Vec<DeliveryVersion>, u64)> {
    validate::name("projectKey", project)?;
    Ok(state.delivery.versions.page(project, p).await?)
}

fn not_found(what: impl std::fmt::Display) -> ApiError {
    ApiError::not_found(format!("delivery version {what} not found"))
}

/// A version by id, optionally scoped to a project.
pub async fn by_id(
    state: &AppState,
    id: &str,
    project: Option<&str>,
) -> ApiResult<DeliveryVersion> {
    validate::object_id("id", id)?;
    let v = state
        .delivery
        .versions
        .get(id)
        .await?
        .filter(|v| project.is_none_or(|p| p.is_empty() || v.project_name == p))
        .ok_or_else(|| not_found(id))?;
    Ok(v)
}

/// A version by project and name (Zadig's detail route).
pub async fn by_name(state: &AppState, project: &str, name: &str) -> ApiResult<DeliveryVersion> {
    validate::name("versionName", name)?;
    validate::name("projectKey", project)?;
    state
        .delivery
        .versions
        .by_name(project, name)
        .await?
        .ok_or_else(|| not_found(format!("{name:?} of project {project:?}")))
}

/// Delete a version in any status, stopping its pipeline run.
pub async fn delete(state: &AppState, caller: &Identity, project: &str, id: &str) -> ApiResult<()> {
    validate::name("projectKey", project)?;
    validate::object_id("id", id)?;
    let Some(v) = state
        .delivery
        .versions
        .get(id)
        .await?
        .filter(|v| v.project_name == project)
    else {
        return Err(not_found(format!("{id} of project {project:?}")));
    };
    caller.require_owner_or_admin(&v.created_by_id, &format!("delivery version {}", v.version))?;
    if !state.delivery.versions.delete(project, id).await? {
        return Err(not_found(format!("{id} of project {project:?}")));
    }
    state.delivery.stop_run(id);
    tracing::info!(delivery.id = %id, project = %project, "delivery version {id} deleted by {}", caller.account);
    Ok(())
}

/// Retry a `failed` version: it is stored as `retrying` before this returns, and the pipeline
/// re-runs only the images and charts that did not pass.
pub async fn retry(state: &AppState, caller: &Identity, project: &str, id: &str) -> ApiResult<()> {
    validate::name("id", id)?;
    validate::name("projectKey", project)?;
    validate::object_id("id", id)?;
    let now = state.clock.now();
    if state
        .delivery
        .versions
        .start_retry(project, id, now)
        .await?
        .is_some()
    {
        tracing::info!(delivery.id = %id, project = %project, "delivery version {id} retried by {}", caller.account);
        state.delivery.wake();
        return Ok(());
    }
    match state.delivery.versions.get(id).await? {
        Some(v) if v.project_name == project => Err(ApiError::conflict(format!(
            "delivery version {:?} is {}; only a failed version can be retried",
            v.version,
            v.status.as_str()
        ))),
        _ => Err(not_found(format!("{id} of project {project:?}"))),
    }
}

/// A stored chart package of a version's service: `(file name, .tgz bytes)`.
pub async fn chart_package(
    state: &AppState,
    project: &str,
    id: &str,
    service: &str,
) -> ApiResult<(String, Vec<u8>)> {
    let v = by_id(state, id, Some(project)).await?;
    let pkg = state
        .delivery
        .versions
        .chart(&v.id, service)
        .await?
        .filter(|p| p.packaged)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no chart package of service {service:?} in version {:?}",
                v.version
            ))
        })?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(pkg.tgz.as_bytes())
        .map_err(ApiError::internal)?;
    Ok((
        format!("{}-{}.tgz", pkg.chart_name, pkg.chart_version),
        bytes,
    ))
}
