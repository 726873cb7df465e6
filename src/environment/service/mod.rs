//! The work of the environment routes. Each answers only once the cluster holds the change
//! (no background completion): create/apply/delete are synchronous, every cluster call is
//! bounded, and a failure leaves neither a record nor (as far as the cluster lets us) objects
//! behind.
//!
//! - [`lifecycle`]: create (also `init/yaml`'s), delete, basic settings;
//! - [`placement`]: where an environment may be, for whom;
//! - [`ownership`]: no object of another environment is applied over;
//! - [`apply`]: rendering and applying services, adding and removing them;
//! - [`live`]: live reads — environment detail, service YAML, workloads, pods, status;
//! - [`workload`]: workload actions — restart, scale, image;
//! - [`blue_green`]: no rollout of a service whose Service a blue-green deploy holds;
//! - [`deploy`]: a deploy job's image change (`zadig-deploy`);
//! - [`variables`]: the environment's global variables and its services' values.
//!
//! This file holds what they share: error codes, loading, the change check and lock, saving.

mod apply;
mod blue_green;
mod deploy;
mod lifecycle;
mod live;
mod ownership;
mod placement;
mod variables;
mod workload;

pub use apply::{AddServicesInput, RemoveServicesInput, add_services, remove_services};
pub use blue_green::{BLUE_GREEN_OWNER, Window};
pub use deploy::{
    Deployed, ImageChange, Rerender, client, deploy_images, deployer, env_for_job, env_to_change,
    may_deploy_to_namespace, restart_for_job,
};
pub use lifecycle::{
    BasicInput, ContainerImage, CreateEnvInput, ServiceInput, check_initial, create,
    create_initial, delete, update_basic,
};
pub use live::{applied_objects, detail, service_detail, service_pods, service_yaml};
pub use variables::{
    ServiceVariablesInput, UpdateServicesInput, set_variables, update_services, variables,
};
pub use workload::{ImageInput, ScaleInput, restart_pod, restart_service, scale, set_image};

use super::catalog;
use super::model::{EnvService, Environment};
use super::view::EnvBrief;
use crate::auth::Identity;
use crate::cluster::model::{LOCAL_CLUSTER_ID, is_local};
use crate::error::{ApiError, ApiResult, ErrorKind};
use crate::state::AppState;
use crate::validate;

pub const CREATE_ENV: (i64, &str) = (6074, "Create environment failed");
pub const UPDATE_ENV: (i64, &str) = (6076, "Update environment failed");
pub const DELETE_ENV: (i64, &str) = (6077, "Delete environment failed");
pub const GET_ENV: (i64, &str) = (6078, "Get environment failed");
pub const RESTART_SERVICE: (i64, &str) = (6080, "Restart service failed");
pub const SCALE_SERVICE: (i64, &str) = (6081, "Scale service failed");
pub const UPDATE_IMAGE: (i64, &str) = (6082, "Update service image failed");
pub const GET_SERVICE: (i64, &str) = (6083, "Get service failed");
pub const GET_POD: (i64, &str) = (6153, "Get pod failed");

fn env_not_found(project: &str, env: &str, production: bool) -> ApiError {
    ApiError::code(
        ErrorKind::NotFound,
        GET_ENV,
        format!(
            "{}environment {env:?} of project {project:?} does not exist",
            if production { "production " } else { "" }
        ),
    )
}

/// The environment `env` of `project` in the route's group (test or production).
pub async fn load(
    state: &AppState,
    project: &str,
    env: &str,
    production: bool,
) -> ApiResult<Environment> {
    validate::name("projectKey", project)?;
    validate::name("envKey", env)?;
    match state.environments.store.get(project, env).await? {
        Some(e) if e.production == production => Ok(e),
        _ => Err(env_not_found(project, env, production)),
    }
}

/// Who may change an environment: its creator, the project's admins and system admins;
/// production ones: system admins. A non-admin acts through a test environment only while it
/// is where they could put it ([`placement::still_placed`]): an environment recorded before
/// those rules, or joined since by another project's or a production environment, or on a
/// cluster since marked production, is an admin's.
async fn may_change(state: &AppState, caller: &Identity, env: &Environment) -> ApiResult<()> {
    if env.production {
        return caller.require_admin();
    }
    if caller.is_admin {
        return Ok(());
    }
    if !catalog::is_project_admin(state, &env.project_key, &caller.uid).await? {
        caller.require_owner_or_admin(&env.owner_uid, &env.label())?;
    }
    placement::still_placed(state, caller, env).await
}

/// A change of one environment in progress, from reading its record to saving it: this
/// process' lock, then the store lease `environment:<project>/<env>` that serialises the
/// change across replicas on one store (the record's `version` alone would catch a racing
/// replica only at the save, after the cluster had been changed), then the lease of its
/// namespace ([`Namespace`]), which every environment sharing the namespace takes for its
/// changes (ownership, [`ownership`]), and last, when the change applies a cluster-scoped
/// object, the lease of the cluster's cluster-scoped objects. Always in that order, and one
/// environment at a time, so two changes never wait on each other crosswise.
pub struct Held {
    namespace: Namespace,
    _lease: crate::store::lease::Held,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

impl Held {
    /// The namespace lease this change holds.
    pub(super) fn namespace(&self) -> &Namespace {
        &self.namespace
    }
}

/// The store lease `namespace:<cluster>/<namespace>`, held from the first check of a change
/// or creation to its record's save: who else is in the namespace ([`placement`]) and which
/// objects they recorded ([`ownership`]) cannot change meanwhile, on any replica.
pub(super) struct Namespace {
    cluster: String,
    _lease: crate::store::lease::Held,
    /// `cluster-scoped:<cluster>` once taken ([`Namespace::hold_cluster_scoped`]); given back
    /// with the namespace's lease.
    cluster_scoped: tokio::sync::OnceCell<crate::store::lease::Held>,
}

impl Namespace {
    /// Also hold the store lease `cluster-scoped:<cluster>` (once per change): no other
    /// environment of the cluster, in any namespace, checks and records a cluster-scoped
    /// object meanwhile ([`ownership`]). Taken after this namespace's lease and never before
    /// another, and only changes that apply a cluster-scoped object (system admins') take it,
    /// so changes of other namespaces are not serialised.
    pub(super) async fn hold_cluster_scoped(&self, state: &AppState) -> ApiResult<()> {
        let cluster = self.cluster.as_str();
        let busy = || {
            format!(
                "the cluster-scoped objects of cluster {cluster:?} are being changed by another \
                 request; try again"
            )
        };
        let name = format!("cluster-scoped:{cluster}");
        self.cluster_scoped
            .get_or_try_init(|| lease(state, &name, busy))
            .await?;
        Ok(())
    }
}

/// How long a held change lease lasts without renewal (a replica that dies frees it then).
const CHANGE_TTL: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a change waits for one in progress on another replica before giving up (409).
const CHANGE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Hold the store lease `name` for a change (a 409 saying `busy` after [`CHANGE_WAIT`]).
async fn lease(
    state: &AppState,
    name: &str,
    busy: impl FnOnce() -> String,
) -> ApiResult<crate::store::lease::Held> {
    match state
        .leases
        .hold(name, &state.instance_id, CHANGE_TTL, CHANGE_WAIT)
        .await?
    {
        Some(held) => Ok(held),
        None => Err(ApiError::code(ErrorKind::Conflict, UPDATE_ENV, busy())),
    }
}

/// Hold namespace `ns` of cluster `cluster_id` (see [`Namespace`]); the local cluster's two
/// ids (empty and [`LOCAL_CLUSTER_ID`]) are one namespace (and one cluster).
async fn hold_namespace(state: &AppState, cluster_id: &str, ns: &str) -> ApiResult<Namespace> {
    let cluster = if is_local(cluster_id) {
        LOCAL_CLUSTER_ID
    } else {
        cluster_id
    };
    let name = format!("namespace:{cluster}/{ns}");
    let busy = || {
        format!(
            "namespace {ns} of cluster {cluster:?} is being changed by another request; try again"
        )
    };
    Ok(Namespace {
        _lease: lease(state, &name, busy).await?,
        cluster: cluster.to_string(),
        cluster_scoped: tokio::sync::OnceCell::new(),
    })
}

/// Hold environment `env` for a change (see [`Held`]).
pub async fn hold(state: &AppState, env: &Environment) -> ApiResult<Held> {
    let (project, env_key) = (env.project_key.as_str(), env.env_key.as_str());
    let local = state.environments.lock(project, env_key).lock_owned().await;
    let name = format!("environment:{project}/{env_key}");
    let busy = || {
        format!(
            "environment {env_key:?} of project {project:?} is being changed by another \
             replica; try again"
        )
    };
    let lease = lease(state, &name, busy).await?;
    Ok(Held {
        namespace: hold_namespace(state, &env.cluster_id, &env.namespace).await?,
        _lease: lease,
        _local: local,
    })
}

/// The environment for a change: the caller checked, the change held ([`hold`]), read
/// again under it.
async fn for_change(
    state: &AppState,
    caller: &Identity,
    project: &str,
    env_key: &str,
    production: bool,
) -> ApiResult<(Held, Environment)> {
    let env = load(state, project, env_key, production).await?;
    may_change(state, caller, &env).await?;
    let held = hold(state, &env).await?;
    Ok((held, load(state, project, env_key, production).await?))
}

/// [`for_change`] for a route whose every failure is its Zadig operation's (E13: 6081, E14/E15:
/// 6082, spec §5.14, §5.15): an unknown environment is answered with `op`'s code, not 6078.
async fn for_change_during(
    state: &AppState,
    caller: &Identity,
    (project, env_key): (&str, &str),
    op: (i64, &str),
) -> ApiResult<(Held, Environment)> {
    for_change(state, caller, project, env_key, false)
        .await
        .map_err(|e| {
            if e.code == GET_ENV.0 {
                ApiError::code(e.kind, op, e.description)
            } else {
                e
            }
        })
}

/// Store `env` (its version bumped) if nobody changed it since it was read.
async fn save(state: &AppState, env: &mut Environment, caller: &Identity) -> ApiResult<()> {
    let expected = env.version;
    env.version += 1;
    env.update_time = state.clock.now();
    env.update_by = caller.name.clone();
    if state.environments.store.replace(env, expected).await? {
        Ok(())
    } else {
        Err(ApiError::code(
            ErrorKind::Conflict,
            UPDATE_ENV,
            format!(
                "{} changed or was deleted meanwhile; read it again",
                env.label()
            ),
        ))
    }
}

/// E1.
pub async fn list(state: &AppState, project: &str, production: bool) -> ApiResult<Vec<EnvBrief>> {
    validate::name("projectKey", project)?;
    Ok(state
        .environments
        .store
        .list(project, production)
        .await?
        .iter()
        .map(Into::into)
        .collect())
}

/// A named image registry must exist (400 naming `registry_id`); empty names none.
async fn check_registry(state: &AppState, id: &str) -> ApiResult<()> {
    if !id.is_empty() && state.delivery.registries.registry(id).await?.is_none() {
        return Err(ApiError::bad_request(format!(
            "`registry_id`: no image registry {id:?}"
        )));
    }
    Ok(())
}

fn service_of<'a>(
    env: &'a Environment,
    name: &str,
    code: (i64, &str),
) -> ApiResult<&'a EnvService> {
    env.service(name).ok_or_else(|| {
        ApiError::code(
            ErrorKind::NotFound,
            code,
            format!("service {name:?} is not in {}", env.label()),
        )
    })
}
