//! What environments need from projects and service templates (the `project` and
//! `service_template` modules), in one place.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// A service rendered for an environment.
pub struct Rendered {
    /// The template revision rendered.
    pub revision: i64,
    pub objects: Vec<Value>,
    /// The `[RenderVariableKV]` it was rendered with (the caller's values over the
    /// template's).
    pub variable_kvs: Vec<Value>,
}

/// The project's deploy type (`k8s`, `helm`, …), `None` when there is no such project.
pub async fn project_deploy_type(_state: &AppState, _project: &str) -> ApiResult<Option<String>> {
    Ok(Some("k8s".to_string()))
}

/// The project's global variable definitions (`[ServiceVariableKV]`).
pub async fn project_globals(
    _state: &AppState,
    _project: &str,
    _production: bool,
) -> ApiResult<Vec<Value>> {
    Ok(Vec::new())
}

/// Render the latest template of `service` with `vars` (`[RenderVariableKV]`, the caller's
/// overrides) and `globals` (the environment's global variable values).
pub async fn render(
    _state: &AppState,
    project: &str,
    service: &str,
    _production: bool,
    _vars: &[Value],
    _globals: &[Value],
) -> ApiResult<Rendered> {
    Err(ApiError::bad_request(format!(
        "`service_name`: no service {service:?} in project {project:?}"
    )))
}
