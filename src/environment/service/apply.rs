//! Rendering a service's template into its deployed form and applying it (server-side
//! apply, with a best-effort rollback of what a failed call changed: created objects deleted,
//! changed or deleted ones applied again as they were); adding services to an
//! environment and removing them (E6, E8).

use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::super::catalog;
use super::super::kube::{self as k, Kinds};
use super::super::model::{EnvService, Environment, ResourceRef};
use super::super::rules;
use super::lifecycle::ensure_namespace;
use super::ownership::check_owners;
use super::{ContainerImage, Namespace, ServiceInput, UPDATE_ENV, for_change, save};
use crate::auth::Identity;
use crate::cluster::client::ClusterClient;
use crate::cluster::service::client_for;
use crate::error::{ApiError, ApiResult, ErrorKind};
use crate::state::AppState;
use crate::validate;

/// Build the deployed form of a rendered service.
pub(super) fn env_service(
    state: &AppState,
    r: catalog::Rendered,
    name: &str,
    images: &[ContainerImage],
) -> EnvService {
    let mut containers = rules::containers_of(&r.objects);
    for c in &mut containers {
        if let Some(want) = images
            .iter()
            .find(|x| x.name == c.name && !x.image.is_empty())
        {
            c.image = want.image.clone();
            c.image_name = rules::image_name(&want.image);
        }
    }
    EnvService {
        service_name: name.to_string(),
        revision: r.revision,
        variable_kvs: r.variable_kvs,
        containers,
        manifests: Value::Array(r.objects).to_string(),
        resources: Vec::new(),
        overrides: Vec::new(),
        update_time: state.clock.now(),
    }
}

/// The objects of `svc` as applied to `env`, with their references (kinds resolved).
async fn prepared(
    cc: &ClusterClient,
    kinds: &mut Kinds,
    env: &Environment,
    svc: &EnvService,
) -> ApiResult<Vec<(ResourceRef, Value)>> {
    let mut out: Vec<(ResourceRef, Value)> = Vec::new();
    for mut o in svc.objects() {
        let r = k::reference(cc, kinds, &o).await?;
        if out
            .iter()
            .any(|(x, _)| x.kind == r.kind && x.name == r.name)
        {
            return Err(ApiError::new(
                ErrorKind::Unprocessable,
                format!(
                    "service {:?} defines {} {:?} twice",
                    svc.service_name, r.kind, r.name
                ),
            ));
        }
        rules::decorate(
            &mut o,
            env,
            &svc.service_name,
            r.namespaced,
            &svc.containers,
            &svc.overrides,
        );
        out.push((r, o));
    }
    Ok(out)
}

/// Refuse, naming `service` and the object, when `actor` may not have one of `refs` applied
/// or deleted: cluster-scoped objects are a system admin's ([`rules::may_apply_cluster_scoped`]).
pub(super) fn check_scope<'a>(
    actor: &Identity,
    service: &str,
    refs: impl IntoIterator<Item = &'a ResourceRef>,
) -> ApiResult<()> {
    for r in refs.into_iter().filter(|r| !r.namespaced) {
        rules::may_apply_cluster_scoped(actor, service, &r.kind, &r.name)?;
    }
    Ok(())
}

/// What applying `svc` does: the objects to apply and the recorded ones it no longer renders
/// (to delete) — once `actor` is found allowed to apply and delete them all, and no other
/// environment is found to own one of those to apply ([`check_owners`]).
async fn planned(
    state: &AppState,
    held: &Namespace,
    (cc, kinds): (&ClusterClient, &mut Kinds),
    actor: &Identity,
    env: &Environment,
    svc: &EnvService,
) -> ApiResult<(Vec<(ResourceRef, Value)>, Vec<ResourceRef>)> {
    let objects = prepared(cc, kinds, env, svc).await?;
    let gone: Vec<ResourceRef> = svc
        .resources
        .iter()
        .filter(|o| !objects.iter().any(|(r, _)| r == *o))
        .cloned()
        .collect();
    check_scope(
        actor,
        &svc.service_name,
        objects.iter().map(|(r, _)| r).chain(&gone),
    )?;
    check_owners(state, held, env, objects.iter().map(|(r, _)| r)).await?;
    Ok((objects, gone))
}

/// Check, before anything is applied, that `actor` may apply every one of `services` into
/// `env` and that no other environment owns one of their objects (reads the cluster's
/// discovery and the store only). `held`: `env`'s namespace, held to its record's save.
pub(super) async fn check_services(
    state: &AppState,
    held: &Namespace,
    (cc, kinds): (&ClusterClient, &mut Kinds),
    actor: &Identity,
    env: &Environment,
    services: &[EnvService],
) -> ApiResult<()> {
    for s in services {
        planned(state, held, (cc, &mut *kinds), actor, env, s).await?;
    }
    Ok(())
}

/// What a call changed in the cluster, to put back should it fail: each object it applied or
/// deleted, with the live object it replaced (none: the call created it). Objects that existed
/// before — another service's, an adopted namespace's — are restored, never deleted.
#[derive(Debug, Default)]
pub(super) struct Undo {
    changed: Vec<(ResourceRef, Option<Value>)>,
}

impl Undo {
    /// Note `r` before this call changes it for the first time.
    async fn note(&mut self, cc: &ClusterClient, ns: &str, r: &ResourceRef) -> ApiResult<()> {
        if !self.changed.iter().any(|(x, _)| x == r) {
            let before = k::get(cc, ns, r).await?;
            self.changed.push((r.clone(), before));
        }
        Ok(())
    }
}

/// Apply every object of `svc` (server-side apply) and delete the objects it no longer
/// renders, noting in `undo` what each replaced. `actor` must be allowed to (see
/// [`planned`]), else nothing is done.
pub(super) async fn apply_service(
    state: &AppState,
    held: &Namespace,
    (cc, kinds): (&ClusterClient, &mut Kinds),
    actor: &Identity,
    env: &Environment,
    svc: &mut EnvService,
    undo: &mut Undo,
) -> ApiResult<()> {
    let (objects, gone) = planned(state, held, (cc, kinds), actor, env, svc).await?;
    for (r, o) in &objects {
        undo.note(cc, &env.namespace, r).await?;
        k::apply(cc, &env.namespace, r, o).await?;
    }
    for old in &gone {
        undo.note(cc, &env.namespace, old).await?;
        k::delete(cc, &env.namespace, old).await?;
    }
    svc.resources = objects.into_iter().map(|(r, _)| r).collect();
    Ok(())
}

/// Apply `services` into `env` one after another, adding each to `env.services`, once
/// `actor` is found allowed to apply them all; on a failure undo what was applied (the
/// namespace when `namespace_created`). What was applied, for a rollback should a later step
/// fail.
pub(super) async fn apply_all(
    (state, cc): (&AppState, &ClusterClient),
    held: &Namespace,
    actor: &Identity,
    env: &mut Environment,
    services: Vec<EnvService>,
    namespace_created: bool,
) -> ApiResult<Undo> {
    let mut kinds = Kinds::default();
    if let Err(e) = check_services(state, held, (cc, &mut kinds), actor, env, &services).await {
        rollback(cc, &env.namespace, Undo::default(), namespace_created).await;
        return Err(e);
    }
    let mut undo = Undo::default();
    for mut s in services {
        if let Err(e) =
            apply_service(state, held, (cc, &mut kinds), actor, env, &mut s, &mut undo).await
        {
            rollback(cc, &env.namespace, undo, namespace_created).await;
            return Err(e);
        }
        env.services.push(s);
    }
    Ok(undo)
}

/// Apply only the objects of `svc` matching `pick` (kind, name), once `actor` is found
/// allowed to apply those and no other environment to own one.
pub(super) async fn apply_some(
    (state, cc): (&AppState, &ClusterClient),
    held: &Namespace,
    actor: &Identity,
    env: &Environment,
    svc: &EnvService,
    pick: impl Fn(&ResourceRef) -> bool,
) -> ApiResult<()> {
    let mut kinds = Kinds::default();
    let picked: Vec<(ResourceRef, Value)> = prepared(cc, &mut kinds, env, svc)
        .await?
        .into_iter()
        .filter(|(r, _)| pick(r))
        .collect();
    check_scope(actor, &svc.service_name, picked.iter().map(|(r, _)| r))?;
    check_owners(state, held, env, picked.iter().map(|(r, _)| r)).await?;
    for (r, o) in &picked {
        k::apply(cc, &env.namespace, r, o).await?;
    }
    Ok(())
}

/// Best effort: put back what a failed call changed, newest first — delete what it created,
/// apply again the objects it changed or deleted as they were (the whole namespace when this
/// call made it).
pub(super) async fn rollback(cc: &ClusterClient, ns: &str, undo: Undo, namespace_created: bool) {
    if namespace_created {
        if let Err(e) = k::delete_namespace(cc, ns).await {
            tracing::warn!(namespace = ns, error = %e, "rollback: namespace not deleted");
        }
        return;
    }
    for (r, before) in undo.changed.into_iter().rev() {
        let done = match before {
            None => k::delete(cc, ns, &r).await,
            Some(obj) => k::apply(cc, ns, &r, &as_it_was(obj)).await,
        };
        if let Err(e) = done {
            tracing::warn!(kind = %r.kind, name = %r.name, error = %e, "rollback: object not put back");
        }
    }
}

/// A live object as a configuration to apply again: without its status and the fields the
/// API server keeps for itself.
fn as_it_was(mut obj: Value) -> Value {
    if let Some(o) = obj.as_object_mut() {
        o.remove("status");
    }
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in [
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "managedFields",
            "selfLink",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            m.remove(key);
        }
    }
    obj
}

/// E6's body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct AddServicesInput {
    #[serde(default)]
    pub env_key: String,
    #[serde(default)]
    pub service_list: Vec<ServiceInput>,
}

/// E6: render each service's latest template and apply it into the environment (its namespace
/// made again first when it is gone, see `ensure_namespace`).
pub async fn add_services(
    state: &AppState,
    caller: &Identity,
    project: &str,
    production: bool,
    input: AddServicesInput,
) -> ApiResult<()> {
    validate::name("env_key", &input.env_key)?;
    if input.service_list.is_empty() {
        return Err(ApiError::bad_request("`service_list` is required"));
    }
    for s in &input.service_list {
        validate::name("service_list.service_name", &s.service_name)?;
    }
    let (held, mut env) = for_change(state, caller, project, &input.env_key, production).await?;
    let mut new = Vec::new();
    for s in &input.service_list {
        if env.service(&s.service_name).is_some()
            || new
                .iter()
                .any(|x: &EnvService| x.service_name == s.service_name)
        {
            return Err(ApiError::code(
                ErrorKind::Conflict,
                UPDATE_ENV,
                format!(
                    "service {} already exist in env, cannot repeatedly add the same service to the environment",
                    s.service_name
                ),
            ));
        }
        let at = (project, s.service_name.as_str(), production);
        let r = catalog::render(state, at, None, &s.variable_kvs, &env.global_variables).await?;
        new.push(env_service(state, r, &s.service_name, &s.containers));
    }
    let cc = client_for(state, &env.cluster_id).await?;
    let made = ensure_namespace(&cc, &mut env).await?;
    let undo = apply_all((state, &cc), held.namespace(), caller, &mut env, new, made).await?;
    if let Err(e) = save(state, &mut env, caller).await {
        rollback(&cc, &env.namespace, undo, made).await;
        return Err(e);
    }
    Ok(())
}

/// E8's body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct RemoveServicesInput {
    #[serde(default)]
    pub env_key: String,
    #[serde(default)]
    pub service_names: Vec<String>,
    /// Keep the objects in the cluster; only forget the services.
    #[serde(default)]
    pub not_delete_resource: bool,
}

/// E8: delete the services' objects (unless told not to) and forget them. Names not in the
/// environment are ignored (they are already not there).
pub async fn remove_services(
    state: &AppState,
    caller: &Identity,
    project: &str,
    production: bool,
    input: RemoveServicesInput,
) -> ApiResult<()> {
    validate::name("env_key", &input.env_key)?;
    if input.service_names.is_empty() {
        return Err(ApiError::bad_request("`service_names` is required"));
    }
    let (_held, mut env) = for_change(state, caller, project, &input.env_key, production).await?;
    let gone: Vec<EnvService> = env
        .services
        .iter()
        .filter(|s| input.service_names.contains(&s.service_name))
        .cloned()
        .collect();
    if gone.is_empty() {
        return Ok(());
    }
    if !input.not_delete_resource {
        for s in &gone {
            check_scope(caller, &s.service_name, &s.resources).map_err(|e| {
                e.map_description(|d| {
                    format!("{d} (`not_delete_resource: true` keeps the objects)")
                })
            })?;
        }
        let cc = client_for(state, &env.cluster_id).await?;
        for s in &gone {
            for r in &s.resources {
                k::delete(&cc, &env.namespace, r).await?;
            }
        }
    }
    env.services
        .retain(|s| !input.service_names.contains(&s.service_name));
    save(state, &mut env, caller).await
}
