//! Rendered service YAML → Kubernetes objects (spec/environments.md §1.3): split into
//! documents, parse each, check the fields every object needs, and read the containers (Zadig's
//! service modules) of the workloads. Pure functions; every error names the document (1-based,
//! empty documents counted), its first line in the rendered text and the field.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A container of a workload: Zadig's `service_module`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Container {
    /// The container name: the service module builds and deploy jobs refer to.
    pub name: String,
    /// `""` for a container, `init` for an init container.
    #[serde(default, rename = "type")]
    pub kind: String,
    pub image: String,
    /// The image's last path component without tag or digest (`reg/ns/app:1.0` → `app`).
    pub image_name: String,
}

/// A rendered document that is not a usable Kubernetes object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("document {document} (line {line}): {message}")]
pub struct ManifestError {
    /// 1-based document number.
    pub document: usize,
    /// 1-based line where the problem is (the document's first line when unknown).
    pub line: usize,
    pub message: String,
}

/// One parsed document.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub document: usize,
    pub line: usize,
    pub value: Value,
}

/// The well-known cluster-scoped kinds, by API group (`""`: the core group): Kubernetes' own
/// and those of its standard API groups. A cluster's discovery is what decides when a
/// service is applied (a CRD may define more); this list serves where no cluster is at hand,
/// when a service template is saved.
const CLUSTER_SCOPED: &[(&str, &[&str])] = &[
    (
        "",
        &["Namespace", "Node", "PersistentVolume", "ComponentStatus"],
    ),
    (
        "rbac.authorization.k8s.io",
        &["ClusterRole", "ClusterRoleBinding"],
    ),
    ("apiextensions.k8s.io", &["CustomResourceDefinition"]),
    (
        "admissionregistration.k8s.io",
        &[
            "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "MutatingAdmissionPolicy",
            "MutatingAdmissionPolicyBinding",
        ],
    ),
    ("apiregistration.k8s.io", &["APIService"]),
    (
        "storage.k8s.io",
        &[
            "StorageClass",
            "CSIDriver",
            "CSINode",
            "VolumeAttachment",
            "VolumeAttributesClass",
        ],
    ),
    ("scheduling.k8s.io", &["PriorityClass"]),
    ("node.k8s.io", &["RuntimeClass"]),
    (
        "networking.k8s.io",
        &["IngressClass", "IPAddress", "ServiceCIDR"],
    ),
    ("policy", &["PodSecurityPolicy"]),
    (
        "certificates.k8s.io",
        &["CertificateSigningRequest", "ClusterTrustBundle"],
    ),
    (
        "flowcontrol.apiserver.k8s.io",
        &["FlowSchema", "PriorityLevelConfiguration"],
    ),
    ("resource.k8s.io", &["DeviceClass", "ResourceSlice"]),
];

/// Whether `kind` of `api_version` (`group/version`, or `version` for the core group) is a
/// well-known cluster-scoped kind ([`CLUSTER_SCOPED`]).
pub fn cluster_scoped_kind(api_version: &str, kind: &str) -> bool {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    CLUSTER_SCOPED
        .iter()
        .any(|(g, kinds)| *g == group && kinds.contains(&kind))
}

/// The well-known cluster-scoped objects of `objects` ([`cluster_scoped_kind`]), as
/// `(kind, name)`.
pub fn cluster_scoped(objects: &[Object]) -> Vec<(String, String)> {
    let s = |o: &Object, p: &str| {
        o.value
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    objects
        .iter()
        .filter(|o| cluster_scoped_kind(&s(o, "/apiVersion"), &s(o, "/kind")))
        .map(|o| (s(o, "/kind"), s(o, "/metadata/name")))
        .collect()
}

/// The documents of `text` with the 1-based line each starts on. A document separator is a
/// line that is `---` (optionally followed by spaces or a comment).
pub fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    let mut start = 1;
    let body = text.strip_suffix('\n').unwrap_or(text);
    for (i, line) in body.split('\n').enumerate() {
        let t = line.trim_end();
        if t == "---" || t.starts_with("--- #") {
            docs.push((start, std::mem::take(&mut cur)));
            start = i + 2;
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
    }
    docs.push((start, cur));
    docs
}

/// Parse every non-empty document of `text` into JSON and check it is a Kubernetes object
/// (`apiVersion`, `kind`, `metadata.name` strings).
pub fn parse_objects(text: &str) -> Result<Vec<Object>, ManifestError> {
    let mut out = Vec::new();
    for (i, (line, doc)) in split_documents(text).into_iter().enumerate() {
        let document = i + 1;
        let fail = |l: usize, message: String| ManifestError {
            document,
            line: l,
            message,
        };
        let mut y: serde_yaml_ng::Value = serde_yaml_ng::from_str(&doc).map_err(|e| {
            // An error at the end of the input points one line past the document's last line.
            let last = line + doc.matches('\n').count().max(1) - 1;
            let l = e
                .location()
                .map_or(line, |loc| (line + loc.line().max(1) - 1).min(last));
            fail(l, format!("not valid YAML: {e}"))
        })?;
        if y.is_null() {
            continue;
        }
        y.apply_merge()
            .map_err(|e| fail(line, format!("bad YAML merge key: {e}")))?;
        let value = serde_json::to_value(&y)
            .map_err(|e| fail(line, format!("not a JSON-compatible document: {e}")))?;
        if !value.is_object() {
            return Err(fail(
                line,
                "a document must be a mapping (a Kubernetes object)".into(),
            ));
        }
        for field in ["apiVersion", "kind"] {
            if value
                .get(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(fail(
                    line,
                    format!("`{field}` is required (a non-empty string)"),
                ));
            }
        }
        let name = value.pointer("/metadata/name").and_then(Value::as_str);
        if name.is_none_or(str::is_empty) {
            return Err(fail(
                line,
                "`metadata.name` is required (a non-empty string)".into(),
            ));
        }
        out.push(Object {
            document,
            line,
            value,
        });
    }
    Ok(out)
}

/// Kinds whose pod template is at `spec.template.spec`.
pub const POD_TEMPLATE_KINDS: &[&str] =
    &["Deployment", "DaemonSet", "StatefulSet", "Job", "CloneSet"];

/// The JSON pointer of a workload's pod spec, or None for other kinds.
pub fn pod_spec_pointer(kind: &str) -> Option<&'static str> {
    if POD_TEMPLATE_KINDS.contains(&kind) {
        Some("/spec/template/spec")
    } else if kind == "CronJob" {
        Some("/spec/jobTemplate/spec/template/spec")
    } else {
        None
    }
}

/// The containers of the workloads in `objects`: per workload its init containers then its
/// containers, deduplicated by name (the first wins).
pub fn containers(objects: &[Object]) -> Result<Vec<Container>, ManifestError> {
    let mut out: Vec<Container> = Vec::new();
    for o in objects {
        let kind = o.value["kind"].as_str().unwrap_or_default();
        let Some(ptr) = pod_spec_pointer(kind) else {
            continue;
        };
        let base = ptr.trim_start_matches('/').replace('/', ".");
        let spec = o.value.pointer(ptr);
        for (list, ctype) in [("initContainers", "init"), ("containers", "")] {
            let Some(items) = spec.and_then(|s| s.get(list)) else {
                continue;
            };
            let fail = |message: String| ManifestError {
                document: o.document,
                line: o.line,
                message,
            };
            let Some(items) = items.as_array() else {
                return Err(fail(format!("{kind}: `{base}.{list}` must be a list")));
            };
            for (i, c) in items.iter().enumerate() {
                let field = |f: &str| -> Result<String, ManifestError> {
                    match c.get(f).and_then(Value::as_str) {
                        Some(s) if !s.is_empty() => Ok(s.to_string()),
                        _ => Err(fail(format!(
                            "{kind}: `{base}.{list}[{i}].{f}` is required (a non-empty string)"
                        ))),
                    }
                };
                let name = field("name")?;
                let image = field("image")?;
                if out.iter().any(|x| x.name == name) {
                    continue;
                }
                out.push(Container {
                    name,
                    kind: ctype.to_string(),
                    image_name: image_name(&image),
                    image,
                });
            }
        }
    }
    Ok(out)
}

/// `registry:5000/ns/app:1.0` → `app`; `app@sha256:…` → `app`.
pub fn image_name(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let last = last.split('@').next().unwrap_or(last);
    last.split(':').next().unwrap_or(last).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      initContainers:\n      - name: init\n        image: busybox:1\n      containers:\n      - name: web\n        image: reg.io/ns/web:1.0\n---\n# comment only\n---\napiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: job\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n          - name: web\n            image: other\n          - name: tick\n            image: tick@sha256:abc\n";

    #[test]
    fn well_known_cluster_scoped_kinds_by_group() {
        assert!(cluster_scoped_kind("v1", "Namespace"));
        assert!(cluster_scoped_kind(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding"
        ));
        assert!(cluster_scoped_kind(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition"
        ));
        assert!(!cluster_scoped_kind("v1", "Service"));
        assert!(!cluster_scoped_kind(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding"
        ));
        // A kind is known by its group: a CRD's `Namespace` of another group is not Kubernetes'.
        assert!(!cluster_scoped_kind("example.com/v1", "Namespace"));
        let objs = parse_objects("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n").unwrap();
        assert_eq!(
            cluster_scoped(&objs),
            [("Namespace".to_string(), "x".to_string())]
        );
    }

    #[test]
    fn containers_of_workloads() {
        let objs = parse_objects(TWO).unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1].document, 3);
        let cs = containers(&objs).unwrap();
        let got: Vec<(&str, &str, &str, &str)> = cs
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.kind.as_str(),
                    c.image.as_str(),
                    c.image_name.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("init", "init", "busybox:1", "busybox"),
                ("web", "", "reg.io/ns/web:1.0", "web"),
                ("tick", "", "tick@sha256:abc", "tick"),
            ]
        );
    }

    #[test]
    fn errors_name_document_line_and_field() {
        let e =
            parse_objects("kind: A\napiVersion: v1\nmetadata: {name: a}\n---\nkind: B\n  bad: [\n")
                .unwrap_err();
        assert_eq!(e.document, 2);
        assert!(e.line >= 5, "{e}");
        let e = parse_objects("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n").unwrap_err();
        assert!(e.message.contains("metadata.name"), "{e}");
        let e = parse_objects("- a\n").unwrap_err();
        assert!(e.message.contains("mapping"), "{e}");
        let objs = parse_objects("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      containers:\n      - name: c\n").unwrap();
        let e = containers(&objs).unwrap_err();
        assert!(
            e.message.contains("spec.template.spec.containers[0].image"),
            "{e}"
        );
    }

    #[test]
    fn image_names() {
        assert_eq!(image_name("localhost:5000/app"), "app");
        assert_eq!(image_name("nginx"), "nginx");
        assert_eq!(image_name("a/b/c:v1"), "c");
    }

    proptest::proptest! {
        /// Documents joined with `---` come back in order, each numbered and located at its
        /// first line, empty documents counted but skipped.
        #[test]
        fn documents_keep_order_and_position(names in proptest::collection::vec("[a-z][a-z0-9-]{0,12}", 0..6), blank in proptest::bool::ANY) {
            let mut docs: Vec<String> = names
                .iter()
                .map(|n| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{n}\n"))
                .collect();
            if blank {
                docs.insert(0, "# nothing\n".to_string());
            }
            let text = docs.join("---\n");
            let objs = parse_objects(&text).unwrap();
            proptest::prop_assert_eq!(objs.len(), names.len());
            let offset = usize::from(blank);
            for (i, (o, n)) in objs.iter().zip(&names).enumerate() {
                let want = format!("cm-{n}");
                proptest::prop_assert_eq!(o.value["metadata"]["name"].as_str(), Some(want.as_str()));
                proptest::prop_assert_eq!(o.document, i + 1 + offset);
                proptest::prop_assert_eq!(o.line, 1 + offset * 2 + i * 5);
            }
        }
    }
}
