//! The rules behind `/openapi/delivery/releases` (seed 003; spec/delivery.md §4–§9).
//!
//! Creation checks everything synchronously (fields, source, registries, image references,
//! YAML) and answers with the version stored as `creating`; the [`super::pipeline`] does the
//! copying and pushing. Errors are honest 4xx naming the field (DESIGN.md §1.2, §5).
//!
//! This file checks a create; [`prepare`] builds what is stored for each service,
//! [`versions`] reads, deletes and retries stored versions.

mod prepare;
mod versions;

pub use versions::{by_id, by_name, chart_package, delete, list, retry};

use super::model::{
    ChartPackage, DeliveryVersion, NewService, NewVersion, SOURCES, TYPE_HELM, VersionStatus,
};
use super::registry::Registry;
use crate::auth::Identity;
use crate::environment::model::Environment;
use crate::error::{ApiError, ApiResult, ErrorKind, codes};
use crate::state::AppState;
use crate::store::StoreError;
use crate::validate;

fn bad(field: impl std::fmt::Display, msg: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("`{field}`: {msg}"))
}

/// A chart version usable as an OCI tag once `+` becomes `_`.
fn valid_chart_version(v: &str) -> bool {
    let t = super::chart::oci_tag(v);
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Create a K8s YAML (`kind` = [`TYPE_K8S`]) or Helm (`TYPE_HELM`) version. Returns the
/// stored version (status `creating`).
pub async fn create(
    state: &AppState,
    caller: &Identity,
    kind: &str,
    req: NewVersion,
) -> ApiResult<DeliveryVersion> {
    let (labels, services) = check_fields(kind, &req)?;
    let origin = origin(state, kind, &req).await?;
    let target = target_registry(state, kind, &req, &services).await?;
    let prepared = prepare::prepare(state, kind, &services, &origin, target.as_ref()).await?;
    let now = state.clock.now();
    let v = DeliveryVersion {
        id: validate::new_object_id(now),
        version: req.version_name.clone(),
        project_name: req.project_key.clone(),
        env_name: req.env_name.clone(),
        production: req.production,
        kind: kind.to_string(),
        source: req.source.clone(),
        original_version_name: if matches!(origin, Origin::Version(_)) {
            req.original_version_name.clone()
        } else {
            String::new()
        },
        desc: req.desc.clone(),
        labels,
        image_registry_id: req.image_registry_id.clone(),
        chart_repo_name: if kind == TYPE_HELM {
            req.chart_repo_name.clone()
        } else {
            String::new()
        },
        services: prepared.services,
        status: VersionStatus::Creating,
        error: String::new(),
        created_by: caller.name.clone(),
        created_by_id: caller.uid.clone(),
        created_at: now,
        updated_at: now,
        attempt: 1,
        lease_owner: String::new(),
        lease_until_ms: 0,
    };
    store_new(state, &v, prepared.base_charts).await?;
    tracing::info!(delivery.id = %v.id, project = %v.project_name,
        "delivery version {} ({kind}) created by {}", v.version, caller.account);
    state.delivery.wake();
    Ok(v)
}

/// The request's own fields: names, lengths, the source, the services' shape. Returns the
/// labels and the services.
fn check_fields(kind: &str, req: &NewVersion) -> ApiResult<(Vec<String>, Vec<NewService>)> {
    validate::name("project_key", &req.project_key)?;
    validate::name("version_name", &req.version_name)?;
    if req.source.is_empty() {
        return Err(ApiError::bad_request("`source` is required"));
    }
    validate::one_of("source", &req.source, SOURCES)?;
    validate::max_len("env_name", &req.env_name)?;
    validate::max_len("image_registry_id", &req.image_registry_id)?;
    validate::max_len("chart_repo_name", &req.chart_repo_name)?;
    validate::max_len("original_version_name", &req.original_version_name)?;
    let labels = req.labels.clone().unwrap_or_default();
    for (i, l) in labels.iter().enumerate() {
        validate::max_len(&format!("labels[{i}]"), l)?;
    }
    let services = req.services.clone().unwrap_or_default();
    if services.is_empty() {
        return Err(ApiError::bad_request(
            "`services` is required and must list at least one service",
        ));
    }
    check_shape(kind, req, &services)?;
    Ok((labels, services))
}

/// Where a version's images (and a K8s YAML version's YAML) come from, besides the request.
pub(super) enum Origin {
    /// `manual`: the request says everything.
    Request,
    /// `from_version`: the original version, of the same kind.
    Version(DeliveryVersion),
    /// `from_env` (K8s YAML only): the environment's deployed services.
    Env(Environment),
}

/// The origin the request's `source` names, looked up.
async fn origin(state: &AppState, kind: &str, req: &NewVersion) -> ApiResult<Origin> {
    match req.source.as_str() {
        "from_version" => original_version(state, kind, req)
            .await
            .map(Origin::Version),
        "from_env" => source_env(state, kind, req).await.map(Origin::Env),
        _ => Ok(Origin::Request),
    }
}

/// `from_env`: the environment `env_name` of the project, in the group `production` names.
/// Helm versions cannot come from an environment here (no Helm-chart environments).
async fn source_env(state: &AppState, kind: &str, req: &NewVersion) -> ApiResult<Environment> {
    if kind == TYPE_HELM {
        return Err(bad(
            "source",
            "from_env is not supported for HelmChart versions: this server has no Helm-chart \
             environments; use manual or from_version",
        ));
    }
    if req.env_name.trim().is_empty() {
        return Err(bad(
            "env_name",
            "is required when source is from_env (the environment the images and YAML come from)",
        ));
    }
    validate::name("env_name", &req.env_name)?;
    let env = state
        .environments
        .store
        .get(&req.project_key, &req.env_name)
        .await?
        .ok_or_else(|| not_in_project("env_name", "environment", &req.env_name, req))?;
    if env.production != req.production {
        return Err(bad(
            "production",
            format!(
                "is {}, but {} is {}a production environment",
                req.production,
                env.label(),
                if env.production { "" } else { "not " }
            ),
        ));
    }
    Ok(env)
}

/// 400 naming `field`: the `what` called `name` is not in the request's project.
fn not_in_project(field: &str, what: &str, name: &str, req: &NewVersion) -> ApiError {
    bad(
        field,
        format!("{what} {name:?} not found in project {:?}", req.project_key),
    )
}

/// The version a `from_version` request copies (of the same kind).
async fn original_version(
    state: &AppState,
    kind: &str,
    req: &NewVersion,
) -> ApiResult<DeliveryVersion> {
    validate::name("original_version_name", &req.original_version_name)?;
    let o = state
        .delivery
        .versions
        .by_name(&req.project_key, &req.original_version_name)
        .await?
        .ok_or_else(|| {
            not_in_project(
                "original_version_name",
                "version",
                &req.original_version_name,
                req,
            )
        })?;
    if o.kind != kind {
        return Err(bad(
            "original_version_name",
            format!(
                "version {:?} is a {} version; this one is {kind}",
                o.version, o.kind
            ),
        ));
    }
    Ok(o)
}

/// The registry images are pushed to (required when an image has `push_image`); then a Helm
/// version's chart repository must exist.
async fn target_registry(
    state: &AppState,
    kind: &str,
    req: &NewVersion,
    services: &[NewService],
) -> ApiResult<Option<Registry>> {
    let registries = &state.delivery.registries;
    let target = if req.image_registry_id.is_empty() {
        let pushes = services
            .iter()
            .flat_map(|s| s.images.iter().flatten())
            .any(|i| i.push_image);
        if pushes {
            return Err(bad(
                "image_registry_id",
                "is required when an image has push_image: true",
            ));
        }
        None
    } else {
        let found = registries.registry(&req.image_registry_id).await?;
        Some(found.ok_or_else(|| {
            bad(
                "image_registry_id",
                format!("image registry {:?} not found", req.image_registry_id),
            )
        })?)
    };
    if kind == TYPE_HELM && !req.chart_repo_name.is_empty() {
        registries
            .repo_by_name(&req.chart_repo_name)
            .await?
            .ok_or_else(|| {
                bad(
                    "chart_repo_name",
                    format!("chart repository {:?} not found", req.chart_repo_name),
                )
            })?;
    }
    Ok(target)
}

/// Store a new version with its base charts (first, so the pipeline finds them once it sees
/// the version); a taken name is a 409.
async fn store_new(
    state: &AppState,
    v: &DeliveryVersion,
    base_charts: Vec<(String, ChartPackage)>,
) -> ApiResult<()> {
    for (service, mut pkg) in base_charts {
        pkg.id = ChartPackage::key(&v.id, &service);
        pkg.version_id = v.id.clone();
        state.delivery.versions.put_chart(&pkg).await?;
    }
    match state.delivery.versions.insert(v).await {
        Ok(()) => Ok(()),
        Err(StoreError::Duplicate(_)) => Err(ApiError::code(
            ErrorKind::Conflict,
            codes::CREATE_DELIVERY,
            format!(
                "version {:?} already exists in project {:?}",
                v.version, v.project_name
            ),
        )),
        Err(e) => Err(e.into()),
    }
}

/// `value`, a required name at `field`, not already in `seen` (`what` it is names it in the
/// error); it is added.
fn listed_once<'a>(
    seen: &mut std::collections::HashSet<&'a str>,
    field: &str,
    what: &str,
    value: &'a str,
) -> ApiResult<()> {
    validate::name(field, value)?;
    if seen.insert(value) {
        Ok(())
    } else {
        Err(bad(field, format!("{what} {value:?} is listed twice")))
    }
}

/// Required fields and their formats, by position (`services[0].images[1].target_image`).
fn check_shape(kind: &str, req: &NewVersion, services: &[NewService]) -> ApiResult<()> {
    // `from_version` and `from_env` take the source image from the original or the environment.
    let manual = req.source == "manual";
    let mut seen = std::collections::HashSet::new();
    for (i, s) in services.iter().enumerate() {
        let at = format!("services[{i}]");
        listed_once(
            &mut seen,
            &format!("{at}.service_name"),
            "service",
            &s.service_name,
        )?;
        validate::max_len(&format!("{at}.chart_name"), &s.chart_name)?;
        if kind == TYPE_HELM {
            validate::name(&format!("{at}.chart_version"), &s.chart_version)?;
            if !valid_chart_version(&s.chart_version) {
                return Err(bad(
                    format!("{at}.chart_version"),
                    format!(
                        "{:?} is not a valid chart version (letters, digits, '.', '-', '+', '_')",
                        s.chart_version
                    ),
                ));
            }
        }
        let mut containers = std::collections::HashSet::new();
        for (j, im) in s.images.iter().flatten().enumerate() {
            let at = format!("{at}.images[{j}]");
            listed_once(
                &mut containers,
                &format!("{at}.container_name"),
                "container",
                &im.container_name,
            )?;
            if manual {
                validate::name(&format!("{at}.image_name"), &im.image_name)?;
                validate::name(&format!("{at}.source_image"), &im.source_image)?;
            }
            validate::name(&format!("{at}.target_image"), &im.target_image)?;
            validate::max_len(&format!("{at}.target_image_tag"), &im.target_image_tag)?;
            validate::max_len(&format!("{at}.source_image_tag"), &im.source_image_tag)?;
        }
    }
    Ok(())
}
