//! Where a job runs: a local process group (the default) or a Kubernetes Job on a cluster.
//!
//! A job runs on a cluster when its definition names one — freestyle
//! `advanced_setting.cluster_id` (legacy `properties.cluster_id`), zadig-build the same fields
//! on the job task or the build's cluster ([`build_cluster`]) — or when `engine_kube_cluster`
//! names a default.
//! Zadig's id of its own cluster ([`LOCAL_CLUSTER_ID`]) counts as naming none. The image is
//! the job's custom image (`image_from = custom` with an image reference in `image_id`) or the
//! one `engine_kube_images` maps its `build_os` to; an unmapped `build_os` fails the job naming
//! it and the key — never a guessed image.

use serde::Deserialize;

use crate::cluster::LOCAL_CLUSTER_ID;
use crate::config::Config;
use crate::validate::nullable;

/// Where a prepared job runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Placement {
    /// A local process group in the job sandbox.
    #[default]
    Local,
    /// A Kubernetes Job.
    Kube(KubeTarget),
}

/// A cluster, namespace and image to run a job in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeTarget {
    pub cluster_id: String,
    pub namespace: String,
    pub image: String,
}

/// The fields of a job definition that place it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Runtime<'a> {
    pub cluster_id: &'a str,
    pub build_os: &'a str,
    pub image_from: &'a str,
    pub image_id: &'a str,
}

/// Place a job by its runtime fields and the server's configuration.
pub fn resolve(config: &Config, rt: &Runtime<'_>) -> Result<Placement, String> {
    let named = !rt.cluster_id.is_empty() && rt.cluster_id != LOCAL_CLUSTER_ID;
    let cluster = if named {
        rt.cluster_id
    } else {
        config.engine_kube_cluster.as_str()
    };
    if cluster.is_empty() {
        return Ok(Placement::Local);
    }
    Ok(Placement::Kube(KubeTarget {
        cluster_id: cluster.to_string(),
        namespace: config.engine_kube_namespace.clone(),
        image: image_of(config, rt)?,
    }))
}

fn image_of(config: &Config, rt: &Runtime<'_>) -> Result<String, String> {
    if rt.image_from == "custom" && looks_like_image(rt.image_id) {
        return Ok(rt.image_id.to_string());
    }
    match config.engine_kube_images.get(rt.build_os) {
        Some(image) if !image.trim().is_empty() => Ok(image.clone()),
        _ => Err(format!(
            "build_os {:?} has no image for Kubernetes jobs on this server: map it to an image in the config key engine_kube_images",
            rt.build_os
        )),
    }
}

/// An image reference (`repo/name:tag`, `name@sha256:…`) rather than the hex id of one of
/// Zadig's basic-image records.
fn looks_like_image(s: &str) -> bool {
    !s.is_empty() && (s.contains('/') || s.contains(':') || s.contains('@'))
}

/// The sections of a job task's spec that place it: `advanced_setting.cluster_id` and the
/// `runtime` image fields of the current format, and the same keys in the legacy
/// `properties`. Decoded on its own (the job modules' spec structs model other fields of the
/// same sections); a value of the wrong type fails the job naming it.
#[derive(Debug, Default, Deserialize)]
pub struct PlacedSpec {
    #[serde(default, deserialize_with = "nullable")]
    advanced_setting: Placing,
    #[serde(default, deserialize_with = "nullable")]
    runtime: Placing,
    #[serde(default, deserialize_with = "nullable")]
    properties: Placing,
}

/// The placing keys one section may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Placing {
    #[serde(deserialize_with = "nullable")]
    cluster_id: String,
    #[serde(deserialize_with = "nullable")]
    build_os: String,
    #[serde(deserialize_with = "nullable")]
    image_from: String,
    #[serde(deserialize_with = "nullable")]
    image_id: String,
}

impl PlacedSpec {
    /// The cluster the job task names itself (current format, then legacy `properties`).
    pub fn cluster_id(&self) -> &str {
        first(
            &self.advanced_setting.cluster_id,
            &self.properties.cluster_id,
        )
    }

    /// The runtime fields of a freestyle job task (current format, then legacy `properties`).
    pub fn runtime(&self) -> Runtime<'_> {
        let (rt, legacy) = (&self.runtime, &self.properties);
        Runtime {
            cluster_id: self.cluster_id(),
            build_os: first(&rt.build_os, &legacy.build_os),
            image_from: first(&rt.image_from, &legacy.image_from),
            image_id: first(&rt.image_id, &legacy.image_id),
        }
    }
}

/// `current` unless it is empty, else `legacy`.
fn first<'a>(current: &'a str, legacy: &'a str) -> &'a str {
    if current.is_empty() { legacy } else { current }
}

/// The cluster a zadig-build job task runs on: the one the job task names, else the build's
/// `cluster_id`, else the registered cluster named by the build's `cluster_name` (a name no
/// cluster has — such as Zadig's `local-…` — names none, as the build ran before clusters
/// could be registered).
pub async fn build_cluster(
    state: &crate::state::AppState,
    own: &str,
    recipe: &crate::build::BuildRecipe,
) -> Result<String, String> {
    if !own.is_empty() {
        return Ok(own.to_string());
    }
    if !recipe.cluster_id.is_empty() || recipe.cluster_name.is_empty() {
        return Ok(recipe.cluster_id.clone());
    }
    let found = state
        .clusters
        .store
        .by_name(&recipe.cluster_name)
        .await
        .map_err(|e| format!("cannot read cluster {}: {e}", recipe.cluster_name))?;
    Ok(found.map(|c| c.id).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Place a freestyle job task's spec.
    fn place(c: &Config, spec: &Value) -> Result<Placement, String> {
        let placed: PlacedSpec = serde_json::from_value(spec.clone()).unwrap();
        resolve(c, &placed.runtime())
    }

    fn config() -> Config {
        let mut c = Config::defaults();
        c.engine_kube_images
            .insert("ubuntu 22.04".into(), "ubuntu:22.04".into());
        c
    }

    #[test]
    fn places_by_cluster_and_build_os() {
        let c = config();
        let local = json!({"advanced_setting": {"cluster_id": ""}, "runtime": {"build_os": "ubuntu 22.04"}});
        assert_eq!(place(&c, &local), Ok(Placement::Local));
        let own = json!({"advanced_setting": {"cluster_id": LOCAL_CLUSTER_ID}});
        assert_eq!(place(&c, &own), Ok(Placement::Local));
        let on = json!({"advanced_setting": {"cluster_id": "c1"}, "runtime": {"build_os": "ubuntu 22.04"}});
        let Ok(Placement::Kube(t)) = place(&c, &on) else {
            panic!("not placed on the cluster")
        };
        assert_eq!(
            (
                t.cluster_id.as_str(),
                t.namespace.as_str(),
                t.image.as_str()
            ),
            ("c1", "koderover-agent", "ubuntu:22.04")
        );
        let legacy = json!({"properties": {"cluster_id": "c2", "build_os": "centos 7"}});
        let err = place(&c, &legacy).unwrap_err();
        assert!(
            err.contains("\"centos 7\"") && err.contains("engine_kube_images"),
            "{err}"
        );
        let custom = json!({"properties": {"cluster_id": "c2", "image_from": "custom", "image_id": "reg.io/b:1"}});
        let Ok(Placement::Kube(t)) = place(&c, &custom) else {
            panic!("custom image")
        };
        assert_eq!(t.image, "reg.io/b:1");
    }

    #[test]
    fn default_cluster() {
        let mut c = config();
        c.engine_kube_cluster = "dflt".into();
        let none = json!({"runtime": {"build_os": "ubuntu 22.04"}});
        let Ok(Placement::Kube(t)) = place(&c, &none) else {
            panic!("default cluster not used")
        };
        assert_eq!(t.cluster_id, "dflt");
    }
}
