//! An environment's global variable values (E16, E17): setting them renders and applies
//! again the services that use a changed one.

use serde_json::Value;

use super::super::catalog;
use super::super::kube::Kinds;
use super::super::model::{EnvService, Environment};
use super::apply::{apply_service, env_service};
use super::{ContainerImage, for_change, load, save};
use crate::auth::Identity;
use crate::cluster::client::ClusterClient;
use crate::cluster::service::client_for;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// E16.
pub async fn variables(
    state: &AppState,
    project: &str,
    env_key: &str,
    production: bool,
) -> ApiResult<Vec<Value>> {
    Ok(load(state, project, env_key, production)
        .await?
        .global_variables)
}

fn kv_key(v: &Value) -> &str {
    v.get("key").and_then(Value::as_str).unwrap_or_default()
}

/// Every value's key must be given and be one of the project's global variables.
fn check_keys(defined: &[Value], globals: &[Value]) -> ApiResult<()> {
    for (i, g) in globals.iter().enumerate() {
        let key = kv_key(g);
        if key.is_empty() {
            return Err(ApiError::bad_request(format!(
                "`global_variables[{i}].key` is required"
            )));
        }
        if !defined.iter().any(|d| kv_key(d) == key) {
            return Err(ApiError::bad_request(format!(
                "`global_variables[{i}]`: added global variable {key} is not in project's global variable list"
            )));
        }
    }
    Ok(())
}

/// Render service `name` of `env` again with the environment's current globals, keeping
/// its images, objects and overrides, and apply it.
async fn reapply(
    state: &AppState,
    cc: &ClusterClient,
    kinds: &mut Kinds,
    env: &mut Environment,
    name: &str,
) -> ApiResult<()> {
    let Some(old) = env.service(name).cloned() else {
        return Ok(());
    };
    let r = catalog::render(
        state,
        &env.project_key,
        name,
        env.production,
        &old.variable_kvs,
        &env.global_variables,
    )
    .await?;
    let kept: Vec<ContainerImage> = old
        .containers
        .iter()
        .map(|c| ContainerImage {
            name: c.name.clone(),
            image: c.image.clone(),
            ..ContainerImage::default()
        })
        .collect();
    let mut s = env_service(state, r, name, &kept);
    s.resources = old.resources.clone();
    s.overrides = old.overrides.clone();
    let mut applied = Vec::new();
    apply_service(cc, kinds, env, &mut s, &mut applied).await?;
    if let Some(slot) = env.service_mut(name) {
        *slot = s;
    }
    Ok(())
}

/// E17: replace the environment's global variable values; the keys must be the project's,
/// and the services using a changed value are rendered again and applied.
pub async fn set_variables(
    state: &AppState,
    caller: &Identity,
    project: &str,
    env_key: &str,
    production: bool,
    globals: Vec<Value>,
) -> ApiResult<()> {
    let (_held, mut env) = for_change(state, caller, project, env_key, production).await?;
    let defined = catalog::project_globals(state, project, production).await?;
    check_keys(&defined, &globals)?;
    let changed: Vec<String> = globals
        .iter()
        .filter(|g| {
            env.global_variables
                .iter()
                .find(|o| kv_key(o) == kv_key(g))
                .map(|o| o.get("value"))
                != Some(g.get("value"))
        })
        .map(|g| kv_key(g).to_string())
        .collect();
    env.global_variables = globals;
    let uses = |s: &EnvService| {
        s.variable_kvs.iter().any(|v| {
            v.get("use_global_variable")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                && changed.iter().any(|c| c == kv_key(v))
        })
    };
    let targets: Vec<String> = env
        .services
        .iter()
        .filter(|s| uses(s))
        .map(|s| s.service_name.clone())
        .collect();
    if !targets.is_empty() {
        let cc = client_for(state, &env.cluster_id).await?;
        let mut kinds = Kinds::default();
        for name in targets {
            reapply(state, &cc, &mut kinds, &mut env, &name).await?;
        }
    }
    save(state, &mut env, caller).await
}
