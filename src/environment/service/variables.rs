//! An environment's variables: its global variable values (E16, E17) and its services'
//! values (E18). Setting them renders the services concerned again, at their templates' latest
//! revisions, and applies them.

use serde::Deserialize;
use utoipa::ToSchema;

use super::super::catalog;
use super::super::kube::Kinds;
use super::super::model::{EnvService, Environment};
use super::apply::{Undo, apply_service, check_services, env_service, rollback};
use super::lifecycle::ensure_namespace;
use super::{ContainerImage, Namespace, UPDATE_ENV, for_change, load, save, service_of};
use crate::auth::Identity;
use crate::cluster::client::ClusterClient;
use crate::cluster::service::client_for;
use crate::error::{ApiError, ApiResult};
use crate::service_template::{GlobalVariableKV, RenderVariableKV, ServiceVariableKV};
use crate::state::AppState;
use crate::validate;

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

/// Which template revision a service is rendered again at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Revision {
    /// The template's latest (E17, E18; a deploy job's `config` with `update_config`).
    Latest,
    /// The one the environment runs (a deploy job's `vars`).
    Deployed,
}

/// Service `name` of `env` rendered again — at `at` — with the values `vars` makes of its
/// current ones, keeping its images (as the record holds them), objects and overrides; `None`
/// when the environment has no such service. Nothing is applied.
pub(super) async fn rerendered(
    state: &AppState,
    env: &Environment,
    name: &str,
    at: Revision,
    vars: impl FnOnce(&[RenderVariableKV]) -> Vec<RenderVariableKV>,
) -> ApiResult<Option<EnvService>> {
    let Some(old) = env.service(name) else {
        return Ok(None);
    };
    let revision = (at == Revision::Deployed).then_some(old.revision);
    let r = catalog::render(
        state,
        (&env.project_key, name, env.production),
        revision,
        &vars(&old.variable_kvs),
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
    Ok(Some(s))
}

/// Apply `s` (a [`rerendered`] service of `env`) for `actor` and keep it in the record;
/// objects the new rendering lacks are deleted.
async fn put(
    state: &AppState,
    held: &Namespace,
    (cc, kinds): (&ClusterClient, &mut Kinds),
    actor: &Identity,
    env: &mut Environment,
    mut s: EnvService,
) -> ApiResult<()> {
    // A service half applied is put back as it was: the record keeps the old one.
    let mut undo = Undo::default();
    if let Err(e) = apply_service(state, held, (cc, kinds), actor, env, &mut s, &mut undo).await {
        rollback(cc, &env.namespace, undo, false).await;
        return Err(e);
    }
    let name = s.service_name.clone();
    if let Some(slot) = env.service_mut(&name) {
        *slot = s;
    }
    Ok(())
}

/// Render service `name` of `env` again ([`rerendered`]) and apply it for `actor`; `held`:
/// `env`'s namespace, held to its record's save.
pub(super) async fn reapply(
    (state, held): (&AppState, &Namespace),
    cx: (&ClusterClient, &mut Kinds),
    actor: &Identity,
    env: &mut Environment,
    name: &str,
    at: Revision,
    vars: impl FnOnce(&[RenderVariableKV]) -> Vec<RenderVariableKV>,
) -> ApiResult<()> {
    match rerendered(state, env, name, at, vars).await? {
        Some(s) => put(state, held, cx, actor, env, s).await,
        None => Ok(()),
    }
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
    let (held, mut env) = for_change(state, caller, project, env_key, production).await?;
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
        // Everything is rendered and checked before the first service is applied.
        let mut again = Vec::new();
        for name in &targets {
            let latest = rerendered(state, &env, name, Revision::Latest, <[_]>::to_vec);
            again.extend(latest.await?);
        }
        let (cc, ns) = (client_for(state, &env.cluster_id).await?, held.namespace());
        let mut kinds = Kinds::default();
        check_services(state, ns, (&cc, &mut kinds), caller, &env, &again).await?;
        let made = ensure_namespace(&cc, &mut env).await?;
        for s in again {
            if let Err(e) = put(state, ns, (&cc, &mut kinds), caller, &mut env, s).await {
                rollback(&cc, &env.namespace, Undo::default(), made).await;
                return Err(e);
            }
        }
    }
    save(state, &mut env, caller).await
}

/// E18's body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct UpdateServicesInput {
    #[serde(default, deserialize_with = "crate::validate::nullable")]
    pub service_list: Vec<ServiceVariablesInput>,
}

/// A service of E18's body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct ServiceVariablesInput {
    #[serde(default)]
    pub service_name: String,
    /// `[RenderVariableKV]`: these values replace the environment's of the same keys; the
    /// service's other variables keep the environment's values.
    #[serde(default, deserialize_with = "crate::validate::nullable")]
    pub variable_kvs: Vec<RenderVariableKV>,
}

/// `given` over `current`: the given values, then the current ones of keys not given.
pub(super) fn over(
    current: &[RenderVariableKV],
    given: &[RenderVariableKV],
) -> Vec<RenderVariableKV> {
    let mut out = given.to_vec();
    out.extend(
        current
            .iter()
            .filter(|c| !given.iter().any(|g| g.kv.key == c.kv.key))
            .cloned(),
    );
    out
}

/// E18: render services of the environment again at their templates' latest revisions with
/// new variable values, keeping their images and overrides, and apply them one after another.
/// Services must be in the environment (E6 adds them). Should one fail, the record keeps
/// the ones updated before it (they are in the cluster) and the error names it. A namespace
/// gone from the cluster is made again first (`ensure_namespace`).
pub async fn update_services(
    state: &AppState,
    caller: &Identity,
    project: &str,
    env_key: &str,
    production: bool,
    input: UpdateServicesInput,
) -> ApiResult<()> {
    if input.service_list.is_empty() {
        return Err(ApiError::bad_request("`service_list` is required"));
    }
    for (i, s) in input.service_list.iter().enumerate() {
        validate::name(&format!("service_list[{i}].service_name"), &s.service_name)?;
        if input.service_list[..i]
            .iter()
            .any(|x| x.service_name == s.service_name)
        {
            return Err(ApiError::bad_request(format!(
                "`service_list[{i}].service_name`: service {:?} is listed twice",
                s.service_name
            )));
        }
    }
    let (held, mut env) = for_change(state, caller, project, env_key, production).await?;
    for s in &input.service_list {
        service_of(&env, &s.service_name, UPDATE_ENV).map_err(|e| {
            e.map_description(|d| {
                format!("{d}; add it with POST /openapi/environments/service/yaml")
            })
        })?;
    }
    // Every service is rendered first, and those before the first that does not render are
    // checked before any is applied: a refused object changes nothing; a service that does not
    // render fails at its turn, as a cluster that refuses one.
    let mut again = Vec::new();
    for s in &input.service_list {
        let given = |current: &[RenderVariableKV]| over(current, &s.variable_kvs);
        let r = rerendered(state, &env, &s.service_name, Revision::Latest, given).await;
        again.push(r.and_then(|r| r.ok_or_else(|| ApiError::internal("service gone"))));
    }
    let (cc, ns) = (client_for(state, &env.cluster_id).await?, held.namespace());
    let mut kinds = Kinds::default();
    let named = |name: &str, e: ApiError| e.map_description(|d| format!("service {name:?}: {d}"));
    for s in again.iter().map_while(|r| r.as_ref().ok()) {
        let one = std::slice::from_ref(s);
        check_services(state, ns, (&cc, &mut kinds), caller, &env, one)
            .await
            .map_err(|e| named(&s.service_name, e))?;
    }
    let made = ensure_namespace(&cc, &mut env).await?;
    for (i, (r, s)) in again.into_iter().zip(&input.service_list).enumerate() {
        let done = match r {
            Ok(r) => put(state, ns, (&cc, &mut kinds), caller, &mut env, r).await,
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            let e = named(&s.service_name, e);
            if i == 0 {
                rollback(&cc, &env.namespace, Undo::default(), made).await;
                return Err(e);
            }
            save(state, &mut env, caller).await?;
            let done: Vec<&str> = input.service_list[..i]
                .iter()
                .map(|x| x.service_name.as_str())
                .collect();
            return Err(e.map_description(|d| format!("{d} (updated before it: {done:?})")));
        }
    }
    save(state, &mut env, caller).await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::over;
    use crate::service_template::RenderVariableKV;

    fn kvs(v: serde_json::Value) -> Vec<RenderVariableKV> {
        serde_json::from_value(v).unwrap_or_default()
    }

    #[test]
    fn given_values_replace_the_current_ones_of_their_keys_and_the_rest_stay() {
        let current = kvs(json!([{"key": "image", "value": "a:1"},
            {"key": "replicas", "value": "1", "use_global_variable": true}]));
        let given = kvs(json!([{"key": "image", "value": "a:2"}, {"key": "new", "value": "x"}]));
        let out = over(&current, &given);
        let keys: Vec<&str> = out.iter().map(|v| v.kv.key.as_str()).collect();
        assert_eq!(keys, ["image", "new", "replicas"]);
        assert_eq!(out[0].kv.value, json!("a:2"));
        assert!(out[2].use_global_variable);
        assert_eq!(over(&current, &[]), current);
    }
}
