//! Input checks and what an environment does to every object it applies (spec §1.5):
//! namespace forced, `s-product`/`s-service` labels on test environments, the environment's
//! images, and the replica counts and restarts asked through the API.

use serde_json::{Map, Value};

use super::kube::{LABEL_PRODUCT, LABEL_SERVICE};
use super::model::{Container, EnvService, Environment, WorkloadOverride};
use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};

/// Workload kinds whose containers are service modules.
pub const WORKLOAD_KINDS: &[&str] = &[
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "CloneSet",
];

/// Annotation a restart sets on the pod template (as `kubectl rollout restart`).
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Namespaces a production environment may not use (spec §5.2); test environments may not
/// either (ours: Zadig checks production environments only).
pub const SYSTEM_NAMESPACES: &[&str] = &["kube-node-lease", "kube-public", "kube-system"];

/// The one rule for cluster-scoped objects (Namespace, ClusterRole(Binding), CRDs, webhook
/// configurations, PersistentVolumes, …) in a service: only a system admin may have them
/// applied or deleted, since they act on the whole cluster, beyond any environment's
/// namespace. `actor` is who acts (the caller, or a deploy job's task creator). Whether a kind
/// is cluster-scoped is the cluster's discovery at apply time, and Zadig's well-known kinds
/// ([`crate::service_template::manifest::cluster_scoped_kind`]) when a template is saved.
pub fn may_apply_cluster_scoped(
    actor: &Identity,
    service: &str,
    kind: &str,
    name: &str,
) -> ApiResult<()> {
    if actor.is_admin {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "service {service:?} has the cluster-scoped object {kind}/{name}: only system admins may apply or delete cluster-scoped objects; user {} is not one",
        actor.account
    )))
}

/// A DNS-1123 label (namespaces, env keys): lower-case letters, digits and `-`, at most 63
/// characters, starting and ending with a letter or digit. 400 naming `field` otherwise.
pub fn dns_label(field: &str, v: &str) -> ApiResult<()> {
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !v.starts_with('-')
        && !v.ends_with('-');
    if ok {
        Ok(())
    } else if v.is_empty() {
        Err(ApiError::bad_request(format!("`{field}` is required")))
    } else {
        Err(ApiError::bad_request(format!(
            "`{field}` must be 1 to 63 lower-case letters, digits or `-`, starting and ending with a letter or digit, got {v:?}"
        )))
    }
}

pub use crate::service_template::manifest::{image_name, pod_spec_pointer};

/// The containers (service modules) of rendered objects: init containers then containers of
/// every workload, first of a name wins.
pub fn containers_of(objects: &[Value]) -> Vec<Container> {
    let mut out: Vec<Container> = Vec::new();
    for o in objects {
        let kind = o.get("kind").and_then(Value::as_str).unwrap_or_default();
        let Some(ptr) = pod_spec_pointer(kind) else {
            continue;
        };
        let Some(spec) = o.pointer(ptr) else { continue };
        for (key, typ) in [("initContainers", "init"), ("containers", "")] {
            for c in spec
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
                let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
                if name.is_empty() || out.iter().any(|x| x.name == name) {
                    continue;
                }
                out.push(Container {
                    name: name.to_string(),
                    kind: typ.to_string(),
                    image: image.to_string(),
                    image_name: image_name(image),
                });
            }
        }
    }
    out
}

/// The object at `ptr` (a JSON pointer of object keys), creating empty objects on the way
/// (and replacing non-objects, which a valid manifest does not have there).
fn ensure_path<'a>(obj: &'a mut Value, ptr: &str) -> Option<&'a mut Map<String, Value>> {
    let mut cur = obj;
    for seg in ptr.split('/').filter(|s| !s.is_empty()) {
        let m = cur.as_object_mut()?;
        let next = m
            .entry(seg.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        cur = next;
    }
    cur.as_object_mut()
}

/// Set `labels` in the `labels` map of the metadata at `ptr`.
fn set_labels(obj: &mut Value, ptr: &str, labels: &[(&str, &str)]) {
    set_strings(obj, &format!("{ptr}/labels"), labels);
}

/// Set `pairs` in the string map (labels, a selector) at `ptr`, creating it.
pub fn set_strings(obj: &mut Value, ptr: &str, pairs: &[(&str, &str)]) {
    if let Some(m) = ensure_path(obj, ptr) {
        for (k, v) in pairs {
            m.insert((*k).to_string(), Value::String((*v).to_string()));
        }
    }
}

/// The metadata pointers that get the test-environment labels for a kind.
fn label_targets(kind: &str) -> Vec<&'static str> {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "CloneSet" => {
            vec!["/metadata", "/spec/template/metadata"]
        }
        "CronJob" => vec![
            "/metadata",
            "/spec/jobTemplate/metadata",
            "/spec/jobTemplate/spec/template/metadata",
        ],
        _ => vec!["/metadata"],
    }
}

/// Prepare a rendered object for `env`: drop what the server owns (`status`,
/// `resourceVersion`, …), force the namespace, label it (test environments), set the
/// environment's images and the API's overrides.
pub fn decorate(
    obj: &mut Value,
    env: &Environment,
    service: &str,
    namespaced: bool,
    containers: &[Container],
    overrides: &[WorkloadOverride],
) {
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    strip_server_fields(obj, namespaced.then_some(env.namespace.as_str()));
    if !env.production {
        let labels = [
            (LABEL_PRODUCT, env.project_key.as_str()),
            (LABEL_SERVICE, service),
        ];
        for ptr in label_targets(&kind) {
            set_labels(obj, ptr, &labels);
        }
    }
    set_images(obj, &kind, containers);
    for o in overrides
        .iter()
        .filter(|o| o.kind == kind && o.name == name)
    {
        if let Some(n) = o.replicas
            && let Some(spec) = ensure_path(obj, "/spec")
        {
            spec.insert("replicas".into(), Value::from(n));
        }
        if let Some(at) = &o.restarted_at
            && pod_spec_pointer(&kind).is_some()
        {
            let tmpl = if kind == "CronJob" {
                "/spec/jobTemplate/spec/template/metadata"
            } else {
                "/spec/template/metadata"
            };
            set_annotation(obj, tmpl, RESTARTED_AT, at);
        }
    }
}

/// Drop `status` and the metadata the API server owns; set `namespace` (or remove it from a
/// cluster-scoped object).
fn strip_server_fields(obj: &mut Value, namespace: Option<&str>) {
    if let Some(m) = obj.as_object_mut() {
        m.remove("status");
    }
    if let Some(meta) = ensure_path(obj, "/metadata") {
        for k in [
            "resourceVersion",
            "uid",
            "managedFields",
            "creationTimestamp",
            "generation",
            "selfLink",
        ] {
            meta.remove(k);
        }
        match namespace {
            Some(ns) => {
                meta.insert("namespace".into(), Value::String(ns.to_string()));
            }
            None => {
                meta.remove("namespace");
            }
        }
    }
}

/// The service's rendered objects with the environment's images: what a `from_env` delivery
/// version takes as the service's YAML (Zadig: the template rendered with the environment's
/// values and images). The environment's labels, namespace and replica/restart overrides are
/// left out: they belong to this environment, not to what is delivered elsewhere.
pub fn delivered_objects(svc: &EnvService) -> Vec<Value> {
    let mut objects = svc.objects();
    for o in &mut objects {
        let kind = o
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        set_images(o, &kind, &svc.containers);
    }
    objects
}

/// Give the workload's (init) containers the environment's image of the same name.
fn set_images(obj: &mut Value, kind: &str, containers: &[Container]) {
    let Some(spec) = pod_spec_pointer(kind).and_then(|ptr| obj.pointer_mut(ptr)) else {
        return;
    };
    for key in ["initContainers", "containers"] {
        for c in spec
            .get_mut(key)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let cname = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if let Some(want) = containers.iter().find(|x| x.name == cname)
                && let Some(m) = c.as_object_mut()
            {
                m.insert("image".into(), Value::String(want.image.clone()));
            }
        }
    }
}

fn set_annotation(obj: &mut Value, ptr: &str, key: &str, value: &str) {
    if let Some(a) = ensure_path(obj, &format!("{ptr}/annotations")) {
        a.insert(key.to_string(), Value::String(value.to_string()));
    }
}
