//! What environments need from projects ([`crate::project`]) and K8s-YAML service templates
//! ([`crate::service_template`]), in one place.

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::service_template::{self, ServiceVariableKV};
use crate::state::AppState;

/// A service rendered for an environment.
pub struct Rendered {
    /// The template revision rendered.
    pub revision: i64,
    pub objects: Vec<Value>,
    /// The `[RenderVariableKV]` it was rendered with: the template's variables with the
    /// caller's values (and `use_global_variable` flags) over them.
    pub variable_kvs: Vec<Value>,
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

/// The project's global variable definitions (`[ServiceVariableKV]`).
pub async fn project_globals(
    state: &AppState,
    project: &str,
    production: bool,
) -> ApiResult<Vec<Value>> {
    let Some(p) = crate::project::get(state, project).await? else {
        return Ok(Vec::new());
    };
    let list = if production {
        p.production_global_variables
    } else {
        p.global_variables
    };
    Ok(list
        .iter()
        .filter_map(|kv| serde_json::to_value(kv).ok())
        .collect())
}

fn key_of(v: &Value) -> &str {
    v.get("key").and_then(Value::as_str).unwrap_or_default()
}

fn uses_global(v: &Value) -> bool {
    v.get("use_global_variable")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Render the latest template of `service` with `vars` (`[RenderVariableKV]`, the caller's
/// values) and `globals` (the environment's global variable values, taken by variables with
/// `use_global_variable`). 400 naming the service when there is none or it does not render.
pub async fn render(
    state: &AppState,
    project: &str,
    service: &str,
    production: bool,
    vars: &[Value],
    globals: &[Value],
) -> ApiResult<Rendered> {
    let tpl = service_template::get(state, project, service, production)
        .await?
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "`service_name`: no {}service {service:?} in project {project:?}",
                if production { "production " } else { "" }
            ))
        })?;
    let mut overrides: Vec<ServiceVariableKV> = Vec::new();
    let mut effective: Vec<Value> = Vec::new();
    for (i, v) in vars.iter().enumerate() {
        let mut v = v.clone();
        if uses_global(&v)
            && let Some(g) = globals.iter().find(|g| key_of(g) == key_of(&v))
            && let Some(m) = v.as_object_mut()
        {
            m.insert(
                "value".into(),
                g.get("value").cloned().unwrap_or(Value::Null),
            );
        }
        let kv: ServiceVariableKV = serde_json::from_value(v.clone()).map_err(|e| {
            ApiError::bad_request(format!("`variable_kvs[{i}]` of service {service:?}: {e}"))
        })?;
        if kv.key.trim().is_empty() {
            return Err(ApiError::bad_request(format!(
                "`variable_kvs[{i}].key` of service {service:?} is required"
            )));
        }
        overrides.push(kv);
        effective.push(v);
    }
    let objects = service_template::render(&tpl, &overrides)?;
    let mut variable_kvs: Vec<Value> = Vec::new();
    for kv in &tpl.service_variable_kvs {
        let mut v = serde_json::to_value(kv).unwrap_or_else(|_| Value::Object(Map::new()));
        if let Some(given) = effective.iter().find(|e| key_of(e) == kv.key)
            && let Some(m) = v.as_object_mut()
        {
            m.insert(
                "value".into(),
                given.get("value").cloned().unwrap_or(Value::Null),
            );
            m.insert(
                "use_global_variable".into(),
                Value::Bool(uses_global(given)),
            );
        }
        variable_kvs.push(v);
    }
    for e in &effective {
        if !variable_kvs.iter().any(|v| key_of(v) == key_of(e)) {
            variable_kvs.push(e.clone());
        }
    }
    Ok(Rendered {
        revision: tpl.revision,
        objects,
        variable_kvs,
    })
}
