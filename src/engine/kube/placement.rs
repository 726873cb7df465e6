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

use serde_json::Value;

use crate::cluster::LOCAL_CLUSTER_ID;
use crate::config::Config;

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

fn str_in<'a>(spec: &'a Value, sections: &[&str], key: &str) -> &'a str {
    sections
        .iter()
        .filter_map(|sec| spec.get(sec))
        .filter_map(|v| v.get(key).and_then(Value::as_str))
        .find(|v| !v.is_empty())
        .unwrap_or("")
}

/// The runtime fields of a freestyle job task (current format, then legacy `properties`).
pub fn freestyle_runtime(spec: &Value) -> Runtime<'_> {
    Runtime {
        cluster_id: str_in(spec, &["advanced_setting", "properties"], "cluster_id"),
        build_os: str_in(spec, &["runtime", "properties"], "build_os"),
        image_from: str_in(spec, &["runtime", "properties"], "image_from"),
        image_id: str_in(spec, &["runtime", "properties"], "image_id"),
    }
}

/// The cluster a zadig-build job task runs on: the one the job task names, else the build's
/// `cluster_id`, else the registered cluster named by the build's `cluster_name` (a name no
/// cluster has — such as Zadig's `local-…` — names none, as the build ran before clusters
/// could be registered).
pub async fn build_cluster(
    state: &crate::state::AppState,
    spec: &Value,
    recipe: &crate::build::BuildRecipe,
) -> Result<String, String> {
    let own = str_in(spec, &["advanced_setting", "properties"], "cluster_id");
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
    use serde_json::json;

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
        assert_eq!(
            resolve(&c, &freestyle_runtime(&local)),
            Ok(Placement::Local)
        );
        let own = json!({"advanced_setting": {"cluster_id": LOCAL_CLUSTER_ID}});
        assert_eq!(resolve(&c, &freestyle_runtime(&own)), Ok(Placement::Local));
        let on = json!({"advanced_setting": {"cluster_id": "c1"}, "runtime": {"build_os": "ubuntu 22.04"}});
        let Ok(Placement::Kube(t)) = resolve(&c, &freestyle_runtime(&on)) else {
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
        let err = resolve(&c, &freestyle_runtime(&legacy)).unwrap_err();
        assert!(
            err.contains("\"centos 7\"") && err.contains("engine_kube_images"),
            "{err}"
        );
        let custom = json!({"properties": {"cluster_id": "c2", "image_from": "custom", "image_id": "reg.io/b:1"}});
        let Ok(Placement::Kube(t)) = resolve(&c, &freestyle_runtime(&custom)) else {
            panic!("custom image")
        };
        assert_eq!(t.image, "reg.io/b:1");
    }

    #[test]
    fn default_cluster() {
        let mut c = config();
        c.engine_kube_cluster = "dflt".into();
        let none = json!({"runtime": {"build_os": "ubuntu 22.04"}});
        let Ok(Placement::Kube(t)) = resolve(&c, &freestyle_runtime(&none)) else {
            panic!("default cluster not used")
        };
        assert_eq!(t.cluster_id, "dflt");
    }
}
