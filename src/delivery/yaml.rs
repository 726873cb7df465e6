//! Image references in K8s YAML and Helm values (spec/delivery.md §6.3 step 1 and §7.2).
//!
//! K8s: in every workload document, each container whose `name` is an image's
//! `container_name` gets the target image; documents we do not change keep their text as
//! written. Then every whole-reference occurrence of a source image is replaced by its target
//! (Zadig replaces substrings, so `repo:1` also hit `repo:10`; we require reference
//! boundaries). `{{…}}` template placeholders are protected while parsing.
//!
//! Helm: the target image is split into repo / namespace / image / tag and written to the
//! values at the dotted paths of the image's `image_path`.

use serde_yaml_ng::{Mapping, Value};

use super::model::ImagePath;

/// A container image substitution.
pub struct Substitution<'a> {
    pub container_name: &'a str,
    pub source_image: &'a str,
    pub target_image: &'a str,
}

const WORKLOAD_KINDS: &[&str] = &[
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
    "Pod",
];

/// Rewrite the images of `yaml` (one or more `---`-separated documents).
pub fn rewrite_k8s_images(yaml: &str, subs: &[Substitution<'_>]) -> Result<String, String> {
    if subs.is_empty() || yaml.trim().is_empty() {
        return Ok(yaml.to_string());
    }
    let mut out = String::with_capacity(yaml.len());
    for (n, (separator, body)) in split_documents(yaml).into_iter().enumerate() {
        out.push_str(separator);
        out.push_str(
            &rewrite_document(body, subs).map_err(|e| format!("document {}: {e}", n + 1))?,
        );
    }
    Ok(replace_references(&out, subs))
}

/// Split into `(separator line, document text)` pairs; the first separator may be empty.
fn split_documents(yaml: &str) -> Vec<(&str, &str)> {
    let mut docs = Vec::new();
    let mut sep: &str = "";
    let mut start = 0;
    let mut pos = 0;
    for line in yaml.split_inclusive('\n') {
        let bare = line.trim_end();
        if bare == "---" || bare.starts_with("--- ") {
            docs.push((sep, &yaml[start..pos]));
            sep = &yaml[pos..pos + line.len()];
            start = pos + line.len();
        }
        pos += line.len();
    }
    docs.push((sep, &yaml[start..]));
    docs
}

/// Replace `{{ … }}` with plain tokens so the text parses; returns the text and the originals.
fn protect_placeholders(text: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut saved = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        let Some(j) = rest[i..].find("}}") else { break };
        out.push_str(&rest[..i]);
        out.push_str(&format!("ZADIGPLACEHOLDER{}X", saved.len()));
        saved.push(rest[i..i + j + 2].to_string());
        rest = &rest[i + j + 2..];
    }
    out.push_str(rest);
    (out, saved)
}

fn restore_placeholders(text: &str, saved: &[String]) -> String {
    let mut out = text.to_string();
    // Highest index first, so token 1 does not match inside token 10.
    for (i, original) in saved.iter().enumerate().rev() {
        out = out.replace(&format!("ZADIGPLACEHOLDER{i}X"), original);
    }
    out
}

fn rewrite_document(text: &str, subs: &[Substitution<'_>]) -> Result<String, String> {
    if text.trim().is_empty() {
        return Ok(text.to_string());
    }
    let (protected, saved) = protect_placeholders(text);
    let mut doc: Value =
        serde_yaml_ng::from_str(&protected).map_err(|e| format!("invalid YAML: {e}"))?;
    let kind = doc
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !WORKLOAD_KINDS.contains(&kind.as_str()) {
        return Ok(text.to_string());
    }
    let pod_spec_path: &[&str] = match kind.as_str() {
        "Pod" => &["spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => &["spec", "template", "spec"],
    };
    let mut changed = false;
    let mut node = Some(&mut doc);
    for key in pod_spec_path {
        node = node.and_then(|n| n.get_mut(*key));
    }
    if let Some(pod) = node {
        for list in ["initContainers", "containers"] {
            let Some(Value::Sequence(containers)) = pod.get_mut(list) else {
                continue;
            };
            for c in containers.iter_mut() {
                let name = c
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let Some(sub) = subs.iter().find(|s| s.container_name == name) else {
                    continue;
                };
                if c.get("image").and_then(Value::as_str) != Some(sub.target_image)
                    && let Value::Mapping(m) = c
                {
                    m.insert(Value::from("image"), Value::from(sub.target_image));
                    changed = true;
                }
            }
        }
    }
    if !changed {
        return Ok(text.to_string());
    }
    let emitted = serde_yaml_ng::to_string(&doc).map_err(|e| format!("cannot write YAML: {e}"))?;
    Ok(restore_placeholders(&emitted, &saved))
}

/// Characters that may continue an image reference.
fn is_ref_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/' | '@')
}

/// Replace every whole occurrence of a source reference by its target.
fn replace_references(text: &str, subs: &[Substitution<'_>]) -> String {
    let mut out = text.to_string();
    for s in subs {
        if s.source_image.is_empty() || s.source_image == s.target_image {
            continue;
        }
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(i) = rest.find(s.source_image) {
            result.push_str(&rest[..i]);
            let before = result.chars().next_back();
            let after = rest[i + s.source_image.len()..].chars().next();
            let whole = !before.is_some_and(is_ref_char) && !after.is_some_and(is_ref_char);
            result.push_str(if whole {
                s.target_image
            } else {
                s.source_image
            });
            rest = &rest[i + s.source_image.len()..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

/// The parts of an image reference, split as Zadig does:
/// `(<repo>.+/)?(<image>[^:]+)(:)?(<tag>.+)?` (the repo keeps its trailing `/`).
struct ImageParts {
    repo: String,
    image: String,
    tag: String,
}

fn split_image(target: &str) -> ImageParts {
    let (repo, rest) = match target.rfind('/') {
        Some(i) => (&target[..=i], &target[i + 1..]),
        None => ("", target),
    };
    let (image, tag) = rest.split_once(':').unwrap_or((rest, ""));
    ImageParts {
        repo: repo.to_string(),
        image: image.to_string(),
        tag: tag.to_string(),
    }
}

/// The `(dotted path, value)` pairs an image writes into Helm values (§7.2).
pub fn image_values(path: &ImagePath, target: &str) -> Result<Vec<(String, String)>, String> {
    let p = split_image(target);
    let repo_bare = p.repo.trim_end_matches('/').to_string();
    let set: Vec<(&str, &String)> = [
        ("repo", &path.repo),
        ("namespace", &path.namespace),
        ("image", &path.image),
        ("tag", &path.tag),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .collect();
    let out = match set.len() {
        1 => vec![(set[0].1.clone(), target.to_string())],
        2 if !path.tag.is_empty() => {
            let other = set
                .iter()
                .find(|(k, _)| *k != "tag")
                .map(|(_, v)| (*v).clone());
            vec![
                (path.tag.clone(), p.tag.clone()),
                (other.unwrap_or_default(), format!("{}{}", p.repo, p.image)),
            ]
        }
        2 => {
            let other = set
                .iter()
                .find(|(k, _)| *k != "image")
                .map(|(_, v)| (*v).clone());
            let image_with_tag = if p.tag.is_empty() {
                p.image.clone()
            } else {
                format!("{}:{}", p.image, p.tag)
            };
            if path.image.is_empty() {
                return Err("image_path with two members needs `image` or `tag`".to_string());
            }
            vec![
                (other.unwrap_or_default(), repo_bare),
                (path.image.clone(), image_with_tag),
            ]
        }
        3 => {
            if path.repo.is_empty() || path.image.is_empty() || path.tag.is_empty() {
                return Err(
                    "image_path with three members must set repo, image and tag".to_string()
                );
            }
            vec![
                (path.repo.clone(), repo_bare),
                (path.image.clone(), p.image.clone()),
                (path.tag.clone(), p.tag.clone()),
            ]
        }
        4 => {
            let (host, ns) = repo_bare
                .split_once('/')
                .unwrap_or((repo_bare.as_str(), ""));
            vec![
                (path.repo.clone(), host.to_string()),
                (path.namespace.clone(), ns.to_string()),
                (path.image.clone(), p.image.clone()),
                (path.tag.clone(), p.tag.clone()),
            ]
        }
        n => return Err(format!("image_path has {n} members; expected 1 to 4")),
    };
    Ok(out)
}

/// Write each image's parts into `values` (YAML text) at its `image_path`.
pub fn apply_image_values(values: &str, images: &[(&ImagePath, &str)]) -> Result<String, String> {
    if images.is_empty() {
        return Ok(values.to_string());
    }
    let mut root: Value = if values.trim().is_empty() {
        Value::Mapping(Mapping::new())
    } else {
        serde_yaml_ng::from_str(values).map_err(|e| format!("invalid YAML: {e}"))?
    };
    if root.is_null() {
        root = Value::Mapping(Mapping::new());
    }
    if !root.is_mapping() {
        return Err("the values must be a YAML mapping".to_string());
    }
    for (path, target) in images {
        for (dotted, value) in image_values(path, target)? {
            set_dotted(&mut root, &dotted, Value::String(value))?;
        }
    }
    serde_yaml_ng::to_string(&root).map_err(|e| format!("cannot write YAML: {e}"))
}

/// Set `a.b.c` in a mapping, creating (or replacing non-mapping) intermediate levels.
fn set_dotted(root: &mut Value, dotted: &str, value: Value) -> Result<(), String> {
    let keys: Vec<&str> = dotted.split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(format!("invalid values path {dotted:?}"));
    }
    let mut node = root;
    for (i, key) in keys.iter().enumerate() {
        if !node.is_mapping() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(m) = node else {
            return Err(format!("invalid values path {dotted:?}"));
        };
        let k = Value::from(*key);
        if i + 1 == keys.len() {
            m.insert(k, value);
            return Ok(());
        }
        if !m.contains_key(&k) {
            m.insert(k.clone(), Value::Mapping(Mapping::new()));
        }
        node = m
            .get_mut(&k)
            .ok_or_else(|| format!("invalid values path {dotted:?}"))?;
    }
    Ok(())
}

/// Check that `text` is YAML (Helm values must parse).
pub fn check_yaml(text: &str) -> Result<(), String> {
    serde_yaml_ng::from_str::<Value>(text)
        .map(|_| ())
        .map_err(|e| format!("invalid YAML: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub<'a>(c: &'a str, s: &'a str, t: &'a str) -> Substitution<'a> {
        Substitution {
            container_name: c,
            source_image: s,
            target_image: t,
        }
    }

    #[test]
    fn k8s_rewrites_matching_containers_and_keeps_other_documents() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata:\n  name: a # keep\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: a\nspec:\n  template:\n    spec:\n      containers:\n      - name: a\n        image: r/a:1\n        env:\n        - name: X\n          value: '{{.port}}'\n      - name: b\n        image: r/b:1\n";
        let out = rewrite_k8s_images(yaml, &[sub("a", "r/a:1", "t/a:v2")]).unwrap();
        assert!(
            out.starts_with("apiVersion: v1\nkind: Service\nmetadata:\n  name: a # keep\n---\n")
        );
        assert!(out.contains("image: t/a:v2"), "{out}");
        assert!(out.contains("image: r/b:1"), "{out}");
        assert!(out.contains("{{.port}}"), "{out}");
    }

    #[test]
    fn literal_replacement_respects_reference_boundaries() {
        let text = "x: r/a:1\ny: r/a:10\nz: \"r/a:1\"\n";
        let out = replace_references(text, &[sub("", "r/a:1", "t/a:2")]);
        assert_eq!(out, "x: t/a:2\ny: r/a:10\nz: \"t/a:2\"\n");
    }

    #[test]
    fn cronjob_and_init_containers() {
        let yaml = "kind: CronJob\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          initContainers:\n          - name: init\n            image: busybox\n";
        let out = rewrite_k8s_images(yaml, &[sub("init", "", "t/busybox:1")]).unwrap();
        assert!(out.contains("image: t/busybox:1"), "{out}");
    }

    #[test]
    fn invalid_yaml_is_an_error() {
        assert!(rewrite_k8s_images("kind: [", &[sub("a", "b", "c")]).is_err());
    }

    #[test]
    fn helm_paths_by_member_count() {
        let target = "koderover.tencentcloudcr.com/test/service3:123";
        let two = ImagePath {
            image: "image.repository".into(),
            tag: "image.tag".into(),
            ..Default::default()
        };
        assert_eq!(
            image_values(&two, target).unwrap(),
            vec![
                ("image.tag".to_string(), "123".to_string()),
                (
                    "image.repository".to_string(),
                    "koderover.tencentcloudcr.com/test/service3".to_string()
                )
            ]
        );
        let one = ImagePath {
            image: "img".into(),
            ..Default::default()
        };
        assert_eq!(
            image_values(&one, target).unwrap(),
            vec![("img".to_string(), target.to_string())]
        );
        let four = ImagePath {
            repo: "r".into(),
            namespace: "n".into(),
            image: "i".into(),
            tag: "t".into(),
        };
        let v = image_values(&four, target).unwrap();
        assert_eq!(v[0].1, "koderover.tencentcloudcr.com");
        assert_eq!(v[1].1, "test");
        assert_eq!(v[2].1, "service3");
        assert_eq!(v[3].1, "123");
        assert!(image_values(&ImagePath::default(), target).is_err());
    }

    #[test]
    fn helm_values_are_merged() {
        let values = "a: b\nimage:\n  repository: old\n  tag: latest\nport: 80\n";
        let path = ImagePath {
            image: "image.repository".into(),
            tag: "image.tag".into(),
            ..Default::default()
        };
        let out = apply_image_values(values, &[(&path, "h/ns/svc:123")]).unwrap();
        let v: Value = serde_yaml_ng::from_str(&out).unwrap();
        assert_eq!(v["image"]["repository"], Value::from("h/ns/svc"));
        assert_eq!(v["image"]["tag"], Value::from("123"));
        assert_eq!(v["port"], Value::from(80));
        assert_eq!(v["a"], Value::from("b"));
    }
}
