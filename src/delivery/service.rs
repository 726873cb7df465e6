//! The rules behind `/openapi/delivery/releases` (seed 003; spec/delivery.md §4–§9).
//!
//! Creation checks everything synchronously (fields, source, registries, image references,
//! YAML) and answers with the version stored as `creating`; the [`super::pipeline`] does the
//! copying and pushing. Errors are honest 4xx naming the field (DESIGN.md §1.2, §5).

use base64::Engine;

use super::copier::{explicit_tag, fold_host, parse_image, registry_host};
use super::model::{
    ChartPackage, DeliveryVersion, ImagePath, ItemStatus, NewImage, NewService, NewVersion,
    SOURCES, TYPE_HELM, TYPE_K8S, VersionImage, VersionService, VersionStatus,
};
use super::registry::Registry;
use super::yaml;
use crate::auth::Identity;
use crate::error::{ApiError, ApiResult, ErrorKind, codes};
use crate::state::AppState;
use crate::store::StoreError;
use crate::validate;

/// What a create turns a request's service into before storing.
struct Prepared {
    services: Vec<VersionService>,
    /// Base charts copied from the original version (service name, package).
    base_charts: Vec<(String, ChartPackage)>,
}

fn bad(field: impl std::fmt::Display, msg: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("`{field}`: {msg}"))
}

/// A chart name usable as a Helm chart and an OCI repository component.
fn valid_chart_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && name.len() <= 128
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .last()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && bytes.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.')
        })
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
    let original = original_version(state, kind, &req).await?;
    let target = target_registry(state, kind, &req, &services).await?;
    let prepared = prepare(state, kind, &services, original.as_ref(), target.as_ref()).await?;
    let now = state.clock.now();
    let v = DeliveryVersion {
        id: validate::new_object_id(now),
        version: req.version_name.clone(),
        project_name: req.project_key.clone(),
        env_name: req.env_name.clone(),
        production: req.production,
        kind: kind.to_string(),
        source: req.source.clone(),
        original_version_name: if original.is_some() {
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

/// The version a `from_version` request copies (of the same kind); `from_env` is refused
/// (this server has no environments to read a version from).
async fn original_version(
    state: &AppState,
    kind: &str,
    req: &NewVersion,
) -> ApiResult<Option<DeliveryVersion>> {
    if req.source == "from_env" {
        return Err(bad(
            "source",
            format!(
                "from_env needs environment {:?} of project {:?}, but this server has no environments; \
                 create the version with source manual (or from_version) and the images and YAML you deploy",
                req.env_name, req.project_key
            ),
        ));
    }
    if req.source != "from_version" {
        return Ok(None);
    }
    validate::name("original_version_name", &req.original_version_name)?;
    let o = state
        .delivery
        .versions
        .by_name(&req.project_key, &req.original_version_name)
        .await?
        .ok_or_else(|| {
            bad(
                "original_version_name",
                format!(
                    "version {:?} not found in project {:?}",
                    req.original_version_name, req.project_key
                ),
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
    Ok(Some(o))
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

/// Required fields and their formats, by position (`services[0].images[1].target_image`).
fn check_shape(kind: &str, req: &NewVersion, services: &[NewService]) -> ApiResult<()> {
    let from_version = req.source == "from_version";
    let mut seen = std::collections::HashSet::new();
    for (i, s) in services.iter().enumerate() {
        let at = format!("services[{i}]");
        validate::name(&format!("{at}.service_name"), &s.service_name)?;
        if !seen.insert(s.service_name.as_str()) {
            return Err(bad(
                format!("{at}.service_name"),
                format!("service {:?} is listed twice", s.service_name),
            ));
        }
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
            validate::name(&format!("{at}.container_name"), &im.container_name)?;
            if !containers.insert(im.container_name.as_str()) {
                return Err(bad(
                    format!("{at}.container_name"),
                    format!("container {:?} is listed twice", im.container_name),
                ));
            }
            if !from_version {
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

/// The full reference string for `image` (adding `tag` when it has none) and its tag; 400
/// naming `field` when it does not parse or the tags disagree.
fn full_reference(field: &str, image: &str, tag: &str) -> ApiResult<(String, String)> {
    let tag_field = format!("{field}_tag");
    let image = image.trim();
    let tag = tag.trim();
    let parsed = parse_image(image, tag).map_err(|e| bad(field, e))?;
    if let Some(own) = explicit_tag(image) {
        if !tag.is_empty() && own != tag {
            return Err(bad(
                &tag_field,
                format!("{tag:?} differs from the tag {own:?} in {field}"),
            ));
        }
        return Ok((image.to_string(), own.to_string()));
    }
    if parsed.digest().is_some() {
        return Ok((image.to_string(), tag.to_string()));
    }
    if tag.is_empty() {
        return Err(bad(
            &tag_field,
            format!("is required: {field} {image:?} has no tag"),
        ));
    }
    Ok((format!("{image}:{tag}"), tag.to_string()))
}

/// Turn the request's services into stored services: images resolved (from the request or
/// the original version), references checked, YAML/values rewritten.
async fn prepare(
    state: &AppState,
    kind: &str,
    services: &[NewService],
    original: Option<&DeliveryVersion>,
    target: Option<&Registry>,
) -> ApiResult<Prepared> {
    let mut out = Vec::with_capacity(services.len());
    let mut base_charts = Vec::new();
    for (i, s) in services.iter().enumerate() {
        let at = format!("services[{i}]");
        let orig_service = original.and_then(|o| {
            o.services
                .iter()
                .find(|os| os.service_name == s.service_name)
        });
        let mut images = Vec::new();
        for (j, im) in s.images.iter().flatten().enumerate() {
            let at = format!("{at}.images[{j}]");
            images.push(prepare_image(
                &at,
                &s.service_name,
                im,
                original,
                orig_service,
                target,
            )?);
        }
        let mut yaml_content = s.yaml_content.clone();
        if let Some(os) = orig_service.filter(|_| yaml_content.trim().is_empty()) {
            yaml_content = os.yaml_content.clone();
        }
        let mut service = VersionService {
            service_name: s.service_name.clone(),
            yaml_content,
            images,
            ..VersionService::default()
        };
        if kind == TYPE_K8S {
            let subs: Vec<yaml::Substitution<'_>> = service
                .images
                .iter()
                .map(|im| yaml::Substitution {
                    container_name: &im.container_name,
                    source_image: &im.source_image,
                    target_image: &im.target_image,
                })
                .collect();
            service.yaml_content = yaml::rewrite_k8s_images(&service.yaml_content, &subs)
                .map_err(|e| bad(format!("{at}.yaml_content"), e))?;
        } else {
            prepare_helm(&at, s, orig_service, &mut service)?;
            if let (Some(o), Some(_)) = (original, orig_service)
                && let Some(pkg) = state
                    .delivery
                    .versions
                    .chart(&o.id, &s.service_name)
                    .await?
            {
                let base = ChartPackage {
                    packaged: false,
                    updated_at: state.clock.now(),
                    ..pkg
                };
                base_charts.push((s.service_name.clone(), base));
            }
        }
        out.push(service);
    }
    Ok(Prepared {
        services: out,
        base_charts,
    })
}

fn prepare_image(
    at: &str,
    service_name: &str,
    im: &NewImage,
    original: Option<&DeliveryVersion>,
    orig_service: Option<&VersionService>,
    target: Option<&Registry>,
) -> ApiResult<VersionImage> {
    let (image_name, source, source_tag, orig_path) = match original {
        Some(o) => {
            let oi = orig_service
                .and_then(|os| {
                    os.images
                        .iter()
                        .find(|x| x.container_name == im.container_name)
                })
                .ok_or_else(|| {
                    bad(
                        format!("{at}.container_name"),
                        format!(
                            "no image of container {:?} of service {:?} in version {:?}",
                            im.container_name, service_name, o.version
                        ),
                    )
                })?;
            // Copy what the original delivered: its target once copied, else its source.
            let (src, tag) = if oi.push_image && oi.status == ItemStatus::Passed {
                (oi.target_image.clone(), oi.target_image_tag.clone())
            } else {
                (oi.source_image.clone(), oi.source_image_tag.clone())
            };
            (oi.image_name.clone(), src, tag, oi.image_path.clone())
        }
        None => (
            im.image_name.clone(),
            im.source_image.clone(),
            im.source_image_tag.clone(),
            None,
        ),
    };
    let (source_image, source_image_tag) =
        full_reference(&format!("{at}.source_image"), &source, &source_tag)?;
    let (target_image, target_image_tag) = full_reference(
        &format!("{at}.target_image"),
        &im.target_image,
        &im.target_image_tag,
    )?;
    if im.push_image {
        check_push_target(at, &target_image, target)?;
    }
    let image_path = im
        .image_path
        .clone()
        .filter(|p| !p.is_empty())
        .or(orig_path);
    Ok(VersionImage {
        container_name: im.container_name.clone(),
        image_name,
        source_image,
        source_image_tag,
        target_image,
        target_image_tag,
        image_path,
        push_image: im.push_image,
        status: ItemStatus::NotRun,
        error: String::new(),
        digest: String::new(),
    })
}

/// A pushed image's target: tagged, and on the registry of `image_registry_id`.
fn check_push_target(at: &str, target_image: &str, target: Option<&Registry>) -> ApiResult<()> {
    let dst = parse_image(target_image, "").map_err(|e| bad(format!("{at}.target_image"), e))?;
    if dst.tag().is_none() {
        return Err(bad(
            format!("{at}.target_image_tag"),
            "is required when push_image is true (a copy is pushed to a tag)",
        ));
    }
    if let Some(reg) = target {
        let want = fold_host(&reg.host());
        let got = registry_host(&dst);
        if want != got {
            return Err(bad(
                format!("{at}.target_image"),
                format!(
                    "must be an image on the registry of image_registry_id ({want}), got one on {got}"
                ),
            ));
        }
    }
    Ok(())
}

/// Helm: chart name and versions, and the values with the target images written in.
fn prepare_helm(
    at: &str,
    s: &NewService,
    orig_service: Option<&VersionService>,
    service: &mut VersionService,
) -> ApiResult<()> {
    let (chart_name, name_field) = if !s.chart_name.is_empty() {
        (s.chart_name.clone(), format!("{at}.chart_name"))
    } else if let Some(os) = orig_service.filter(|os| !os.chart_name.is_empty()) {
        (os.chart_name.clone(), format!("{at}.chart_name"))
    } else {
        (s.service_name.clone(), format!("{at}.service_name"))
    };
    if !valid_chart_name(&chart_name) {
        return Err(bad(
            name_field,
            format!(
                "{chart_name:?} is not a valid chart name (lower-case letters, digits, '-', '_', '.'); set chart_name"
            ),
        ));
    }
    service.chart_name = chart_name;
    service.chart_version = s.chart_version.clone();
    service.original_chart_version = orig_service
        .map(|os| os.chart_version.clone())
        .unwrap_or_else(|| s.original_chart_version.clone());
    yaml::check_yaml(&service.yaml_content).map_err(|e| bad(format!("{at}.yaml_content"), e))?;
    let mut pairs: Vec<(&ImagePath, &str)> = Vec::new();
    for (j, im) in service.images.iter().enumerate() {
        let path = im.image_path.as_ref().ok_or_else(|| {
            bad(
                format!("{at}.images[{j}].image_path"),
                "is required for a HelmChart version (where the image goes in the values)",
            )
        })?;
        yaml::image_values(path, &im.target_image)
            .map_err(|e| bad(format!("{at}.images[{j}].image_path"), e))?;
        pairs.push((path, &im.target_image));
    }
    service.yaml_content = yaml::apply_image_values(&service.yaml_content, &pairs)
        .map_err(|e| bad(format!("{at}.yaml_content"), e))?;
    Ok(())
}

/// One page of a project's versions (newest first) and the project's total.
pub async fn list(
    state: &AppState,
    project: &str,
    page: u64,
    size: u64,
) -> ApiResult<(Vec<DeliveryVersion>, u64)> {
    validate::name("projectKey", project)?;
    Ok(state.delivery.versions.page(project, page, size).await?)
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
