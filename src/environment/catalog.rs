//! What environments need from projects ([`crate::project`]) and K8s-YAML service templates
//! ([`crate::service_template`]), in one place.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::service_template::{self, GlobalVariableKV, RenderVariableKV, ServiceVariableKV};
use crate::state::AppState;

/// A service rendered for an environment.
pub struct Rendered {
    /// The template revision rendered.
    pub revision: i64,
    pub objects: Vec<Value>,
    /// The variables it was rendered with: the template's, with the caller's values (and
    /// `use_global_variable` flags) over them.
    pub variable_kvs: Vec<RenderVariableKV>,
}

/// The project's deploy type (`k8s`, `helm`, …), `None` when there is no such project.
pub async fn project_deploy_type(state: &AppState, project: &str) -> ApiResult<Option<String>> {
    Ok(crate::project::get(state, project)
        .await?
        .map(|p| p.deploy_type().to_string()))
}

/// Whether `uid` is an admin of `project`.
pub async fn is_project_admin(state: &AppState, project: &str, uid: &str) -> ApiResult<bool> {
    Ok(crate::project::get(state, project)
        .await?
        .is_some_and(|p| p.admins.iter().any(|a| a == uid)))
}

/// The project's global variable definitions.
pub async fn project_globals(
    state: &AppState,
    project: &str,
    production: bool,
) -> ApiResult<Vec<ServiceVariableKV>> {
    let Some(p) = crate::project::get(state, project).await? else {
        return Ok(Vec::new());
    };
    Ok(if production {
        p.production_global_variables
    } else {
        p.global_variables
    })
}

/// Render the template of `service` — revision `at`, else the latest — with `vars` (the
/// caller's values) and `globals` (the environment's global variable values, taken by
/// variables with `use_global_variable`). 400 naming the service when there is none (or not
/// that revision) or it does not render.
pub async fn render(
    state: &AppState,
    (project, service, production): (&str, &str, bool),
    at: Option<i64>,
    vars: &[RenderVariableKV],
    globals: &[GlobalVariableKV],
) -> ApiResult<Rendered> {
    let tpl = match at {
        None => service_template::get(state, project, service, production).await?,
        Some(r) => service_template::get_revision(state, project, service, production, r).await?,
    };
    let tpl = tpl.ok_or_else(|| {
        let revision = at.map(|r| format!("revision {r} of ")).unwrap_or_default();
        ApiError::bad_request(format!(
            "`service_name`: no {revision}{}service {service:?} in project {project:?}",
            if production { "production " } else { "" }
        ))
    })?;
    let mut effective: Vec<RenderVariableKV> = Vec::with_capacity(vars.len());
    for (i, v) in vars.iter().enumerate() {
        if v.kv.key.trim().is_empty() {
            return Err(ApiError::bad_request(format!(
                "`variable_kvs[{i}].key` of service {service:?} is required"
            )));
        }
        let mut v = v.clone();
        if v.use_global_variable {
            match globals.iter().find(|g| g.kv.key == v.kv.key) {
                Some(g) => v.kv.value = g.kv.value.clone(),
                // The flag is kept only for a key the environment has a global variable of
                // (spec §5.8): the variable keeps its own value.
                None => v.use_global_variable = false,
            }
        }
        effective.push(v);
    }
    let overrides: Vec<ServiceVariableKV> = effective.iter().map(|v| v.kv.clone()).collect();
    let objects = service_template::render(&tpl, &overrides)?;
    let variable_kvs = merge(&tpl.service_variable_kvs, effective);
    Ok(Rendered {
        revision: tpl.revision,
        objects,
        variable_kvs,
    })
}

/// The variables a service is rendered with: the template's, with the given values (and
/// flags) over them by key, then the given keys the template lacks.
fn merge(template: &[ServiceVariableKV], given: Vec<RenderVariableKV>) -> Vec<RenderVariableKV> {
    let mut out: Vec<RenderVariableKV> = template
        .iter()
        .map(|kv| match given.iter().find(|g| g.kv.key == kv.key) {
            Some(g) => RenderVariableKV {
                kv: ServiceVariableKV {
                    value: g.kv.value.clone(),
                    ..kv.clone()
                },
                ..g.clone()
            },
            None => RenderVariableKV {
                kv: kv.clone(),
                ..RenderVariableKV::default()
            },
        })
        .collect();
    for g in given {
        if !out.iter().any(|v| v.kv.key == g.kv.key) {
            out.push(g);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn kv(v: Value) -> ServiceVariableKV {
        serde_json::from_value(v).expect("a ServiceVariableKV")
    }

    #[test]
    fn given_values_go_over_the_template_by_key() {
        let template = [
            kv(json!({"key": "image", "value": "nginx", "type": "string", "desc": "the image"})),
            kv(json!({"key": "mode", "value": "a", "type": "enum", "options": ["a", "b"]})),
        ];
        let given: Vec<RenderVariableKV> = serde_json::from_value(json!([
            {"key": "mode", "value": "b", "use_global_variable": true},
            {"key": "extra", "value": 3}]))
        .expect("RenderVariableKVs");
        let merged = merge(&template, given);
        assert_eq!(
            serde_json::to_value(&merged).expect("serialisable"),
            json!([
                {"key": "image", "value": "nginx", "type": "string", "options": [], "desc": "the image",
                    "use_global_variable": false, "is_reference_variable": false},
                {"key": "mode", "value": "b", "type": "enum", "options": ["a", "b"], "desc": "",
                    "use_global_variable": true, "is_reference_variable": false},
                {"key": "extra", "value": 3, "type": "", "options": [], "desc": "",
                    "use_global_variable": false, "is_reference_variable": false}])
        );
    }
}
