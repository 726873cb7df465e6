//! Delivery-version pages: the list and a version's detail with each image's copy status and
//! error, and retry through [`crate::delivery::service`] as the API does.

use axum::extract::{Path, State};
use serde_json::json;

use super::render::page;
use super::session::Viewer;
use super::{Posted, UiQuery, UiResult, done};
use crate::delivery::model::{DeliveryVersion, ItemStatus, VersionStatus};
use crate::delivery::service;
use crate::state::AppState;
use crate::store::{Dir, FindOptions, Typed};

/// `GET /ui/delivery[?project=]`: newest first, across projects unless one is asked for.
pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    UiQuery(q): UiQuery<super::ListQuery>,
) -> UiResult {
    let p = q.paging();
    let docs: Typed<DeliveryVersion> = Typed::new(state.backend.as_ref(), "delivery_versions");
    let filter = q.project_filter("project_name");
    let opts = FindOptions::sort("created_at", Dir::Desc)
        .then("id", Dir::Desc)
        .page(p.num, p.size);
    let (versions, total) = docs.page(&filter, &opts).await?;
    let rows: Vec<_> = versions
        .iter()
        .map(|v| {
            let images = v.services.iter().flat_map(|s| s.images.iter());
            json!({
                "id": v.id, "version": v.version, "project": v.project_name, "type": v.kind,
                "status": v.status, "created_by": v.created_by, "created_at": v.created_at,
                "services": v.services.len(),
                "images": images.clone().count(),
                "failed_images": images.filter(|i| i.status == ItemStatus::Failed).count(),
            })
        })
        .collect();
    Ok(page(
        "versions.html",
        Some(&viewer),
        json!({
            "title": "Delivery versions", "nav": "delivery", "versions": rows, "total": total,
            "project": q.project, "page": p.num, "has_next": super::has_next(p, total),
        }),
    ))
}

/// `GET /ui/delivery/{id}`
pub async fn detail(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> UiResult {
    let v = service::by_id(&state, &id, None).await?;
    Ok(page(
        "version.html",
        Some(&viewer),
        json!({
            "title": format!("Version {}", v.version), "nav": "delivery",
            "v": {
                "id": v.id, "version": v.version, "project": v.project_name, "type": v.kind,
                "status": v.status, "error": v.error, "desc": v.desc, "labels": v.labels,
                "env_name": v.env_name, "created_by": v.created_by, "created_at": v.created_at,
                "updated_at": v.updated_at, "attempt": v.attempt,
                "chart_repo_name": v.chart_repo_name, "services": v.services,
            },
            // The service allows a retry of any failed version, to anyone signed in.
            "can_retry": v.status == VersionStatus::Failed,
        }),
    ))
}

/// `POST /ui/delivery/{id}/retry`
pub async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { viewer, .. }: Posted,
) -> UiResult {
    let v = service::by_id(&state, &id, None).await?;
    service::retry(&state, &viewer.identity, &v.project_name, &id).await?;
    Ok(done(&format!("/ui/delivery/{id}")))
}
