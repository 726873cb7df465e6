//! What a create stores for each requested service: full image references (from the request
//! or the original version), the push targets checked, a Helm service's chart and values.

use super::{Origin, bad};
use crate::delivery::copier::{explicit_tag, fold_host, parse_image, registry_host};
use crate::delivery::model::{
    ChartPackage, DeliveryVersion, ImagePath, ItemStatus, NewImage, NewService, TYPE_K8S,
    VersionImage, VersionService,
};
use crate::delivery::registry::Registry;
use crate::delivery::yaml;
use crate::environment::model::{Container, EnvService};
use crate::error::ApiResult;
use crate::state::AppState;

/// What a create turns a request's service into before storing.
pub(super) struct Prepared {
    pub(super) services: Vec<VersionService>,
    /// Base charts copied from the original version (service name, package).
    pub(super) base_charts: Vec<(String, ChartPackage)>,
}

/// The full reference string for `image` (adding `tag` when it has none) and its tag; 400
/// naming `field` when it does not parse or the tags disagree.
pub(super) fn full_reference(field: &str, image: &str, tag: &str) -> ApiResult<(String, String)> {
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

/// What a requested service starts from: the original version's service (`from_version`) or
/// the environment's (`from_env`).
#[derive(Clone, Copy)]
enum Base<'a> {
    None,
    Version(&'a DeliveryVersion, Option<&'a VersionService>),
    Env(&'a EnvService),
}

/// Turn the request's services into stored services: images resolved (from the request,
/// the original version or the environment), references checked, YAML/values rewritten.
pub(super) async fn prepare(
    state: &AppState,
    kind: &str,
    services: &[NewService],
    origin: &Origin,
    target: Option<&Registry>,
) -> ApiResult<Prepared> {
    let mut out = Vec::with_capacity(services.len());
    let mut base_charts = Vec::new();
    for (i, s) in services.iter().enumerate() {
        let at = format!("services[{i}]");
        let base = base_of(&at, s, origin)?;
        let orig_service = match base {
            Base::Version(_, os) => os,
            _ => None,
        };
        let mut images = Vec::new();
        for (j, im) in s.images.iter().flatten().enumerate() {
            let at = format!("{at}.images[{j}]");
            images.push(prepare_image(&at, &s.service_name, im, base, target)?);
        }
        let yaml_content = match base {
            // Zadig ignores the request's YAML here: what is delivered is what runs.
            Base::Env(es) => env_yaml(&at, es)?,
            Base::Version(_, Some(os)) if s.yaml_content.trim().is_empty() => {
                os.yaml_content.clone()
            }
            _ => s.yaml_content.clone(),
        };
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
            if let Base::Version(o, Some(_)) = base
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

/// The service `s` starts from; `from_env`: it must be deployed in the environment.
fn base_of<'a>(at: &str, s: &NewService, origin: &'a Origin) -> ApiResult<Base<'a>> {
    Ok(match origin {
        Origin::Request => Base::None,
        Origin::Version(o) => Base::Version(
            o,
            o.services
                .iter()
                .find(|os| os.service_name == s.service_name),
        ),
        Origin::Env(env) => Base::Env(env.service(&s.service_name).ok_or_else(|| {
            bad(
                format!("{at}.service_name"),
                format!(
                    "service {:?} is not deployed in {}",
                    s.service_name,
                    env.label()
                ),
            )
        })?),
    })
}

/// The YAML of an environment's service as it runs there (rendered, with its images).
fn env_yaml(at: &str, es: &EnvService) -> ApiResult<String> {
    let docs = crate::environment::rules::delivered_objects(es)
        .iter()
        .map(serde_yaml_ng::to_string)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            bad(
                format!("{at}.service_name"),
                format!(
                    "the YAML of service {:?} cannot be written: {e}",
                    es.service_name
                ),
            )
        })?;
    Ok(docs.join("---\n"))
}

/// The image name, source reference, source tag and (Helm) image path of a requested image:
/// from the request, the original version's image or the environment's container.
fn image_source(
    at: &str,
    service_name: &str,
    im: &NewImage,
    base: Base<'_>,
) -> ApiResult<(String, String, String, Option<ImagePath>)> {
    let missing = |whose: String| {
        bad(
            format!("{at}.container_name"),
            format!(
                "no image of container {:?} of service {service_name:?} in {whose}",
                im.container_name
            ),
        )
    };
    Ok(match base {
        Base::Version(o, os) => {
            let oi = os
                .and_then(|os| {
                    os.images
                        .iter()
                        .find(|x| x.container_name == im.container_name)
                })
                .ok_or_else(|| missing(format!("version {:?}", o.version)))?;
            // Copy what the original delivered: its target once copied, else its source.
            let (src, tag) = if oi.push_image && oi.status == ItemStatus::Passed {
                (oi.target_image.clone(), oi.target_image_tag.clone())
            } else {
                (oi.source_image.clone(), oi.source_image_tag.clone())
            };
            (oi.image_name.clone(), src, tag, oi.image_path.clone())
        }
        Base::Env(es) => {
            let c: &Container = es
                .containers
                .iter()
                .find(|c| c.name == im.container_name)
                .ok_or_else(|| missing("the environment".to_string()))?;
            // A reference with neither tag nor digest runs `latest`.
            let tag = if explicit_tag(&c.image).is_none() && !c.image.contains('@') {
                "latest"
            } else {
                ""
            };
            (c.image_name.clone(), c.image.clone(), tag.to_string(), None)
        }
        Base::None => (
            im.image_name.clone(),
            im.source_image.clone(),
            im.source_image_tag.clone(),
            None,
        ),
    })
}

fn prepare_image(
    at: &str,
    service_name: &str,
    im: &NewImage,
    base: Base<'_>,
    target: Option<&Registry>,
) -> ApiResult<VersionImage> {
    let (image_name, source, source_tag, orig_path) = image_source(at, service_name, im, base)?;
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
