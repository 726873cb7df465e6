//! An environment's global variable values (E16, E17): setting them renders and applies
//! again the services that use a changed one.

use super::super::catalog;
use super::super::kube::Kinds;
use super::super::model::{EnvService, Environment};
use super::apply::{apply_service, env_service};
use super::{ContainerImage, for_change, load, save};
use crate::auth::Identity;
use crate::cluster::client::ClusterClient;
use crate::cluster::service::client_for;
use crate::error::{ApiError, ApiResult};
use crate::service_template::{GlobalVariableKV, ServiceVariableKV};
use crate::state::AppState;

/// E16.
pub async fn variables(
    state: &AppState,
    project: &str,
    env_key: &str,
    production: bool,
) -> ApiResult<Vec<GlobalVariableKV>> {
    Ok(load(state, project, env_key, production)
        .await?
        .global_variables)
}

/// Every value's key must be given and be one of the project's global variables `defined`
/// (E2, E17).
pub(super) fn check_keys(
    defined: &[ServiceVariableKV],
    globals: &[GlobalVariableKV],
) -> ApiResult<()> {
    for (i, g) in globals.iter().enumerate() {
        let key = &g.kv.key;
        if key.is_empty() {
            return Err(ApiError::bad_request(format!(
                "`global_variables[{i}].key` is required"
            )));
        }
        if !defined.iter().any(|d| &d.key == key) {
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
    globals: Vec<GlobalVariableKV>,
) -> ApiResult<()> {
    let (_held, mut env) = for_change(state, caller, project, env_key, production).await?;
    let defined = catalog::project_globals(state, project, production).await?;
    check_keys(&defined, &globals)?;
    let changed: Vec<String> = globals
        .iter()
        .filter(|g| {
            env.global_variables
                .iter()
                .find(|o| o.kv.key == g.kv.key)
                .map(|o| &o.kv.value)
                != Some(&g.kv.value)
        })
        .map(|g| g.kv.key.clone())
        .collect();
    env.global_variables = globals;
    let uses = |s: &EnvService| {
        s.variable_kvs
            .iter()
            .any(|v| v.use_global_variable && changed.contains(&v.kv.key))
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
