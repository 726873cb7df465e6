//! What a blue-green job task works on, worked out from its service's objects as the
//! environment applies them: the green Deployment and Service, and the blue copies to create.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{BLUE, BLUE_SUFFIX, BlueGreenService, ModuleImage, Placed, VERSION_LABEL};
use crate::environment::rules::set_strings;
use crate::workflow::model::str_of;

/// The module of `modules` an input's image is for: the only one, or the one named as the
/// image's repository (`reg/ns/web:1.2` is module `web`); its index.
pub(super) fn module_for(modules: &[ModuleImage], image: &str) -> Option<usize> {
    if modules.len() == 1 {
        return Some(0);
    }
    let repo = image.rsplit('/').next().unwrap_or(image);
    let name = repo.split([':', '@']).next().unwrap_or(repo);
    modules.iter().position(|m| m.service_module == name)
}

/// `metadata.name` of an object.
pub(super) fn name_of(o: &Value) -> &str {
    o.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The string map at `ptr` of `o` (labels, a selector).
fn labels_at(o: &Value, ptr: &str) -> BTreeMap<String, String> {
    o.pointer(ptr)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether every label of `selector` is in `labels`.
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A job's blue Service from its YAML: a Service with a name and a selector.
pub(super) fn blue_service(yaml: &str) -> Result<Value, String> {
    if yaml.trim().is_empty() {
        return Err("the blue service YAML is empty".into());
    }
    let o: Value = serde_yaml_ng::from_str(yaml)
        .map_err(|e| format!("the blue service YAML does not parse: {e}"))?;
    if str_of(&o, "kind") != "Service" || name_of(&o).is_empty() {
        return Err("the blue service YAML is not a Service with a name".into());
    }
    if labels_at(&o, "/spec/selector").is_empty() {
        return Err(format!("blue service {} has no selector", name_of(&o)));
    }
    Ok(o)
}

/// What a job task works on: the objects it creates and the names of all it touches.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) placed: Placed,
    pub(super) blue_deployment: Value,
    pub(super) blue_service: Value,
}

/// The blue copies of the green objects among `objects` (a service's, as applied in
/// namespace `ns` of cluster `cluster_id`) for `svc`; the error is the job's.
pub(super) fn plan(
    objects: &[Value],
    (cluster_id, ns): (&str, &str),
    svc: &BlueGreenService,
) -> Result<Plan, String> {
    let name = &svc.service_name;
    let of_kind = |kind: &'static str| objects.iter().filter(move |o| str_of(o, "kind") == kind);
    let green = match of_kind("Deployment").collect::<Vec<_>>()[..] {
        [one] => one,
        [] => return Err(format!("service {name} has no deployment")),
        _ => return Err(format!("service {name} has more than one deployment")),
    };
    let green_name = name_of(green);
    let selector = labels_at(green, "/spec/selector/matchLabels");
    if selector.is_empty() {
        return Err(format!("service {name} deployment selector is empty"));
    }
    let routed: Vec<&Value> = of_kind("Service")
        .filter(|s| {
            let sel = labels_at(s, "/spec/selector");
            !sel.is_empty() && selects(&sel, &selector)
        })
        .collect();
    let green_service = match routed[..] {
        [one] => name_of(one),
        [] => {
            return Err(format!(
                "service {name} has no k8s service selecting the pods of deployment {green_name}"
            ));
        }
        _ => {
            return Err(format!(
                "service {name} has more than one k8s service selecting the pods of deployment {green_name}: {}",
                routed
                    .iter()
                    .map(|s| name_of(s))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    };
    let mut blue_service = blue_service(&svc.blue_service_yaml)?;
    let blue_service_name = name_of(&blue_service).to_string();
    if blue_service_name == green_service {
        return Err(format!(
            "blue service {blue_service_name} has the name of the green one"
        ));
    }
    blue_service["metadata"]["namespace"] = json!(ns);
    let blue_name = format!("{green_name}{BLUE_SUFFIX}");
    let blue_deployment = blue_copy(green, &blue_name, svc)?;
    let blue_pods = labels_at(&blue_deployment, "/spec/template/metadata/labels");
    if !selects(&labels_at(&blue_service, "/spec/selector"), &blue_pods) {
        return Err(format!(
            "service {name}: blue service {blue_service_name} does not select the pods of {blue_name}"
        ));
    }
    Ok(Plan {
        placed: Placed {
            cluster_id: cluster_id.into(),
            namespace: ns.into(),
            green_deployment_name: green_name.into(),
            green_service_name: green_service.into(),
            green_selector: selector,
            blue_deployment_name: blue_name,
            blue_service_name,
            ..Placed::default()
        },
        blue_deployment,
        blue_service,
    })
}

/// Zadig's labels of a blue Deployment made for `service`.
fn release_labels(service: &str) -> [(&str, &str); 2] {
    [
        ("zadigx-release-type", "blue-green"),
        ("zadigx-release-service-name", service),
    ]
}

/// Whether object `o` is a blue copy made for `service` (it has [`release_labels`]).
pub(super) fn made_for(o: &Value, service: &str) -> bool {
    let labels = labels_at(o, "/metadata/labels");
    release_labels(service)
        .iter()
        .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
}

/// Deployment `green` as `name`: Zadig's release labels, `zadig-blue-green-version: blue` on
/// its pods and in its selector, the job's images on their containers (one the Deployment
/// lacks is the job's error).
fn blue_copy(green: &Value, name: &str, svc: &BlueGreenService) -> Result<Value, String> {
    let mut blue = green.clone();
    blue["metadata"]["name"] = json!(name);
    set_strings(
        &mut blue,
        "/metadata/labels",
        &release_labels(&svc.service_name),
    );
    set_strings(
        &mut blue,
        "/spec/selector/matchLabels",
        &[(VERSION_LABEL, BLUE)],
    );
    set_strings(
        &mut blue,
        "/spec/template/metadata/labels",
        &[(VERSION_LABEL, BLUE)],
    );
    let containers = blue
        .pointer_mut("/spec/template/spec/containers")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| format!("deployment {} has no containers", name_of(green)))?;
    for (module, image) in svc.images() {
        let c = containers
            .iter_mut()
            .find(|c| str_of(c, "name") == module)
            .ok_or_else(|| {
                format!(
                    "container {module} not found in deployment {}",
                    name_of(green)
                )
            })?;
        c["image"] = json!(image);
    }
    Ok(blue)
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;

    fn shop() -> Vec<Value> {
        vec![
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "ns"},
                "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "cache"},
                "spec": {"selector": {"app": "cache"}}}),
        ]
    }

    fn service(yaml: &str, image: &str) -> BlueGreenService {
        BlueGreenService {
            service_name: "shop".into(),
            blue_service_yaml: yaml.into(),
            service_and_image: vec![ModuleImage {
                service_module: "web".into(),
                image: image.into(),
                _extra: Map::new(),
            }],
            _extra: Map::new(),
        }
    }

    const BLUE_YAML: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web-blue\nspec:\n  selector:\n    app: web\n    zadig-blue-green-version: blue\n";

    #[test]
    fn plans_the_blue_copies_of_the_green_objects() {
        let p = plan(&shop(), ("c1", "ns"), &service(BLUE_YAML, "nginx:1.27")).unwrap();
        assert_eq!(p.placed.green_deployment_name, "web");
        assert_eq!(p.placed.green_service_name, "web");
        assert_eq!(p.placed.blue_deployment_name, "web-blue");
        assert_eq!(p.placed.blue_service_name, "web-blue");
        assert_eq!(p.blue_service["metadata"]["namespace"], "ns");
        let d = &p.blue_deployment;
        assert_eq!(d["metadata"]["name"], "web-blue");
        assert_eq!(d["metadata"]["labels"]["zadigx-release-type"], "blue-green");
        assert!(made_for(d, "shop") && !made_for(d, "other") && !made_for(&shop()[0], "shop"));
        assert_eq!(d["spec"]["selector"]["matchLabels"][VERSION_LABEL], "blue");
        assert_eq!(
            d["spec"]["template"]["metadata"]["labels"][VERSION_LABEL],
            "blue"
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1.27"
        );
        assert_eq!(p.placed.record()["green_selector"], json!({"app": "web"}));
    }

    #[test]
    fn refuses_what_it_cannot_copy() {
        let e =
            |objects: &[Value], svc: BlueGreenService| plan(objects, ("", "ns"), &svc).unwrap_err();
        assert!(e(&shop()[1..], service(BLUE_YAML, "x")).contains("has no deployment"));
        let mut two = shop();
        two.push(json!({"kind": "Service", "metadata": {"name": "web2"}, "spec": {"selector": {"app": "web"}}}));
        assert!(e(&two, service(BLUE_YAML, "x")).contains("more than one k8s service"));
        assert!(e(&shop(), service("", "x")).contains("YAML is empty"));
        let same = BLUE_YAML.replace("web-blue", "web");
        assert!(e(&shop(), service(&same, "x")).contains("has the name of the green one"));
        let other = BLUE_YAML.replace("app: web", "app: other");
        assert!(e(&shop(), service(&other, "x")).contains("does not select the pods of web-blue"));
        let mut svc = service(BLUE_YAML, "x");
        svc.service_and_image[0].service_module = "ghost".into();
        assert!(e(&shop(), svc).contains("container ghost not found in deployment web"));
    }

    #[test]
    fn an_input_image_names_its_module() {
        let m = |name: &str| ModuleImage {
            service_module: name.into(),
            image: String::new(),
            _extra: Map::new(),
        };
        assert_eq!(module_for(&[m("web")], "reg/any:1"), Some(0));
        let two = [m("web"), m("api")];
        assert_eq!(module_for(&two, "reg.io/team/api:1.2"), Some(1));
        assert_eq!(module_for(&two, "api@sha256:ab"), Some(1));
        assert_eq!(module_for(&two, "reg/other:1"), None);
    }
}
