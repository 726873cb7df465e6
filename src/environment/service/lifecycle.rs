//! An environment's life: creating it (also `init/yaml`'s environments), changing its
//! basic settings, deleting it (E2, E4, E5).

use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::super::catalog;
use super::super::kube::{self as k, Kinds, NsState};
use super::super::model::{EnvService, EnvStatus, Environment};
use super::super::rules;
use super::apply::{apply_all, check_scope, check_services, env_service, rollback};
use super::ownership::as_creation;
use super::placement::{check_placement, check_system_namespace, envs_in};
use super::variables::check_keys;
use super::{
    CREATE_ENV, UPDATE_ENV, check_registry, env_not_found, for_change, hold_namespace, save,
};
use crate::auth::Identity;
use crate::cluster::client::ClusterClient;
use crate::cluster::service::{client_for, resolve};
use crate::error::{ApiError, ApiResult, ErrorKind};
use crate::service_template::{GlobalVariableKV, RenderVariableKV};
use crate::state::AppState;
use crate::store::StoreError;
use crate::validate;

/// A service of E2's body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct ServiceInput {
    #[serde(default)]
    pub service_name: String,
    /// Images to deploy instead of the template's, by container name.
    #[serde(default)]
    pub containers: Vec<ContainerImage>,
    /// `[RenderVariableKV]` values over the template's.
    #[serde(default, deserialize_with = "crate::validate::nullable")]
    pub variable_kvs: Vec<RenderVariableKV>,
}

/// An image asked for a container (Zadig's `Container`; only `name` and `image` are used).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct ContainerImage {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub image_name: String,
}

/// E2's body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct CreateEnvInput {
    #[serde(default)]
    pub env_key: String,
    /// Alias (display name); stored for production environments only, as in Zadig.
    #[serde(default)]
    pub env_name: String,
    /// A registered cluster's id; `0123456789abcdef12345678` is the local cluster.
    #[serde(default)]
    pub cluster_id: String,
    #[serde(default)]
    pub namespace: String,
    /// An image registry's id (optional here; Zadig requires it).
    #[serde(default)]
    pub registry_id: String,
    /// Our extension: use a namespace that already exists (without it, an existing
    /// namespace is a 409). An adopted namespace is left in place when the environment goes.
    #[serde(default)]
    pub adopt_namespace: bool,
    /// Values of the project's global variables (keys must be the project's).
    #[serde(default, deserialize_with = "crate::validate::nullable")]
    pub global_variables: Vec<GlobalVariableKV>,
    #[serde(default)]
    pub services: Vec<ServiceInput>,
    /// Not supported: `enable: true` is a 400.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub sub_env: Option<Value>,
    /// Not supported: a non-empty list is a 400.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub env_configs: Vec<Value>,
}

fn check_unsupported(input: &CreateEnvInput) -> ApiResult<()> {
    if input
        .sub_env
        .as_ref()
        .and_then(|s| s.get("enable"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return Err(ApiError::bad_request(
            "`sub_env`: self-service sub-environments (environment sharing, istio) are not supported",
        ));
    }
    if !input.env_configs.is_empty() {
        return Err(ApiError::bad_request(
            "`env_configs`: environment configuration objects are not supported; put ConfigMaps, Secrets and Ingresses in a service's YAML",
        ));
    }
    Ok(())
}

/// The checks of E2 made before anything is read from the cluster: the caller (production:
/// admins), the fields, and a K8s-YAML project.
async fn check_create(
    state: &AppState,
    caller: &Identity,
    project: &str,
    production: bool,
    input: &CreateEnvInput,
) -> ApiResult<()> {
    if production {
        caller.require_admin()?;
    }
    validate::name("projectKey", project)?;
    rules::dns_label("env_key", &input.env_key)?;
    rules::dns_label("namespace", &input.namespace)?;
    validate::name("cluster_id", &input.cluster_id)?;
    validate::max_len("env_name", &input.env_name)?;
    check_system_namespace("namespace", &input.namespace, production)?;
    check_unsupported(input)?;
    check_registry(state, &input.registry_id).await?;
    match catalog::project_deploy_type(state, project).await? {
        None => {
            return Err(ApiError::code(
                ErrorKind::NotFound,
                CREATE_ENV,
                format!("project {project:?} does not exist"),
            ));
        }
        Some(t) if t != "k8s" => {
            return Err(ApiError::code(
                ErrorKind::BadRequest,
                CREATE_ENV,
                format!(
                    "project {project:?} deploys with {t:?}: only K8s-YAML (k8s) projects have environments here"
                ),
            ));
        }
        Some(_) => {}
    }
    // Production environments start without values (spec §5.2).
    if !production {
        let defined = catalog::project_globals(state, project, false).await?;
        check_keys(&defined, &input.global_variables)?;
    }
    Ok(())
}

fn duplicate(project: &str, env_key: &str) -> ApiError {
    ApiError::code(
        ErrorKind::Conflict,
        CREATE_ENV,
        format!("environment {env_key:?} of project {project:?} already exists (环境已存在)"),
    )
}

/// Render a test environment's listed services (each listed once), so a missing template
/// fails before the cluster is touched.
async fn render_services(
    state: &AppState,
    project: &str,
    input: &CreateEnvInput,
    globals: &[GlobalVariableKV],
) -> ApiResult<Vec<EnvService>> {
    let mut services = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for s in &input.services {
        validate::name("services.service_name", &s.service_name)?;
        if seen.contains(&s.service_name.as_str()) {
            return Err(ApiError::bad_request(format!(
                "`services`: service {:?} is listed twice",
                s.service_name
            )));
        }
        seen.push(&s.service_name);
        let at = (project, s.service_name.as_str(), false);
        let r = catalog::render(state, at, None, &s.variable_kvs, globals).await?;
        services.push(env_service(state, r, &s.service_name, &s.containers));
    }
    Ok(services)
}

/// Make the namespace, or adopt an existing one when told; whether this call made it.
async fn claim_namespace(
    cc: &ClusterClient,
    (caller, adoptable): (&Identity, bool),
    input: &CreateEnvInput,
    project: &str,
) -> ApiResult<bool> {
    match k::namespace_state(cc, &input.namespace).await? {
        NsState::Terminating => Err(ApiError::code(
            ErrorKind::Conflict,
            CREATE_ENV,
            format!(
                "namespace `{}` is in terminating state, please wait for a while and try again",
                input.namespace
            ),
        )),
        NsState::Active if !input.adopt_namespace => Err(ApiError::code(
            ErrorKind::Conflict,
            CREATE_ENV,
            format!(
                "namespace {:?} already exists in {}; set `adopt_namespace: true` to use it",
                input.namespace, cc.label
            ),
        )),
        NsState::Active if !adoptable => Err(ApiError::forbidden(format!(
            "`namespace`: namespace {:?} already exists in {} and no environment of project {project} uses it: only system admins may adopt (`adopt_namespace`) such a namespace; user {} is not one",
            input.namespace, cc.label, caller.account
        ))),
        NsState::Active => Ok(false),
        NsState::Absent => {
            k::create_namespace(cc, &input.namespace, project).await?;
            Ok(true)
        }
    }
}

/// Make `env`'s namespace again when it is gone (deleted by hand, the cluster rebuilt) before a
/// change applies into it, as Zadig re-ensures it (spec §5.7, §5.8 step 4): created as
/// [`claim_namespace`] creates one, with Zadig's labels, and from then on the environment's own
/// (`namespace_created`: deleting the environment deletes it). A namespace that exists is used
/// as it is: the environment already claimed it at creation ([`claim_namespace`]'s rule for an
/// existing namespace — adopted only by whoever may use it — holds, as its caller may change
/// the environment), and it is never labelled nor taken over; should another make it between
/// the look and the create, the create fails (409). A terminating one: 409 code 6076. Whether
/// this call made it: a change that then fails deletes it again (`rollback`), leaving the
/// cluster as it found it.
pub(super) async fn ensure_namespace(cc: &ClusterClient, env: &mut Environment) -> ApiResult<bool> {
    match k::namespace_state(cc, &env.namespace).await? {
        NsState::Active => Ok(false),
        NsState::Terminating => Err(ApiError::code(
            ErrorKind::Conflict,
            UPDATE_ENV,
            format!(
                "namespace `{}` is in terminating state, please wait for a while and try again",
                env.namespace
            ),
        )),
        NsState::Absent => {
            k::create_namespace(cc, &env.namespace, &env.project_key).await?;
            env.namespace_created = true;
            Ok(true)
        }
    }
}

/// The new environment's record, without services yet.
fn record(
    state: &AppState,
    caller: &Identity,
    project: &str,
    production: bool,
    input: &CreateEnvInput,
    cluster_id: &str,
) -> Environment {
    let now = state.clock.now();
    Environment {
        id: validate::new_object_id(now),
        project_key: project.to_string(),
        env_key: input.env_key.clone(),
        alias: if production {
            input.env_name.clone()
        } else {
            String::new()
        },
        production,
        cluster_id: cluster_id.to_string(),
        namespace: input.namespace.clone(),
        namespace_created: false,
        registry_id: input.registry_id.clone(),
        source: "spock".to_string(),
        status: EnvStatus::Success,
        error: String::new(),
        services: Vec::new(),
        // Production envs start empty (spec §5.2).
        global_variables: if production {
            Vec::new()
        } else {
            input.global_variables.clone()
        },
        legacy_global_variables: Vec::new(),
        owner_uid: caller.uid.clone(),
        create_time: now,
        update_time: now,
        update_by: caller.name.clone(),
        version: 1,
    }
}

/// E2 (and the production create): create the namespace (or adopt it when told), apply the
/// services, then store the environment — or store nothing and undo what was applied.
pub async fn create(
    state: &AppState,
    caller: &Identity,
    project: &str,
    production: bool,
    input: CreateEnvInput,
) -> ApiResult<()> {
    check_create(state, caller, project, production, &input).await?;
    let envs = &state.environments.store;
    if envs.get(project, &input.env_key).await?.is_some() {
        return Err(duplicate(project, &input.env_key));
    }
    let cluster = resolve(state, &input.cluster_id).await?.ok_or_else(|| {
        ApiError::bad_request(format!("`cluster_id`: no cluster {:?}", input.cluster_id))
    })?;
    // Held until the record is stored: another creation or change in the namespace waits
    // for it, and then sees this environment (placement) and its objects (ownership).
    let held = hold_namespace(state, &cluster.id, &input.namespace).await?;
    let fields = ("cluster_id", "namespace");
    let at = (project, production);
    let adoptable = check_placement(state, caller, at, &cluster, &input.namespace, fields).await?;
    // Production envs start empty (spec §5.2).
    let services = if production {
        Vec::new()
    } else {
        render_services(state, project, &input, &input.global_variables).await?
    };
    let cc = state.clusters.clients.get(&cluster).await?;
    let mut env = record(state, caller, project, production, &input, &cluster.id);
    // The caller must be allowed every object before the namespace is made.
    check_services(
        state,
        &held,
        (&cc, &mut Kinds::default()),
        caller,
        &env,
        &services,
    )
    .await
    .map_err(as_creation)?;
    let namespace_created = claim_namespace(&cc, (caller, adoptable), &input, project).await?;
    env.namespace_created = namespace_created;
    let undo = apply_all(
        (state, &cc),
        &held,
        caller,
        &mut env,
        services,
        namespace_created,
    )
    .await
    .map_err(as_creation)?;
    match envs.insert(&env).await {
        Ok(()) => Ok(()),
        Err(e) => {
            rollback(&cc, &env.namespace, undo, namespace_created).await;
            Err(match e {
                StoreError::Duplicate(_) => duplicate(project, &input.env_key),
                other => other.into(),
            })
        }
    }
}

/// E5: with `delete_resources`, delete every object of the services and the namespace when
/// we created it (and no other environment uses it); without, or for production
/// environments, only take Zadig's labels off a namespace we created. Then the record goes.
pub async fn delete(
    state: &AppState,
    caller: &Identity,
    project: &str,
    env_key: &str,
    production: bool,
    delete_resources: bool,
) -> ApiResult<()> {
    let (_held, env) = for_change(state, caller, project, env_key, production).await?;
    if delete_resources && !production {
        for s in &env.services {
            check_scope(caller, &s.service_name, &s.resources).map_err(|e| {
                e.map_description(|d| format!("{d} (`isDelete=false` keeps the objects)"))
            })?;
        }
    }
    let cc = client_for(state, &env.cluster_id).await?;
    if delete_resources && !production {
        for s in &env.services {
            for r in &s.resources {
                k::delete(&cc, &env.namespace, r).await?;
            }
        }
        let others = envs_in(state, &env.cluster_id, &env.namespace)
            .await?
            .into_iter()
            .filter(|e| e.id != env.id)
            .count();
        if env.namespace_created && others == 0 {
            k::delete_namespace(&cc, &env.namespace).await?;
        }
    } else if env.namespace_created {
        k::unlabel_namespace(&cc, &env.namespace).await?;
    }
    if !state.environments.store.delete(&env.id).await? {
        return Err(env_not_found(project, env_key, production));
    }
    Ok(())
}

/// E4's body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct BasicInput {
    #[serde(default)]
    pub registry_id: String,
    /// The alias (production environments only).
    #[serde(default)]
    pub env_name: String,
}

/// E4: change the registry (and a production environment's alias).
pub async fn update_basic(
    state: &AppState,
    caller: &Identity,
    project: &str,
    env_key: &str,
    production: bool,
    input: BasicInput,
) -> ApiResult<()> {
    let (_held, mut env) = for_change(state, caller, project, env_key, production).await?;
    validate::max_len("env_name", &input.env_name)?;
    check_registry(state, &input.registry_id).await?;
    if !input.registry_id.is_empty() {
        env.registry_id = input.registry_id;
    }
    if production && !input.env_name.is_empty() {
        env.alias = input.env_name;
    }
    save(state, &mut env, caller).await
}

/// `init/yaml`'s `env_list` (spec §2.2), checked before anything is stored: keys and
/// namespaces well-formed and distinct, clusters registered (by name), the environments'
/// places allowed as for E2 ([`check_placement`]), clusters reachable, and the namespaces not
/// taken. The cluster ids, in list order.
pub async fn check_initial(
    state: &AppState,
    caller: &Identity,
    project: &str,
    envs: &[crate::project::InitEnv],
) -> ApiResult<Vec<String>> {
    let mut ids = Vec::new();
    for (i, e) in envs.iter().enumerate() {
        rules::dns_label(&format!("env_list[{i}].env_key"), &e.env_key)?;
        rules::dns_label(&format!("env_list[{i}].namespace"), &e.namespace)?;
        if envs[..i]
            .iter()
            .any(|x| x.env_key == e.env_key || x.namespace == e.namespace)
        {
            return Err(ApiError::bad_request(format!(
                "`env_list[{i}]`: env key {:?} or namespace {:?} is listed twice",
                e.env_key, e.namespace
            )));
        }
        let name = e.cluster_name.trim();
        let cluster = match state.clusters.store.by_name(name).await? {
            Some(c) => c,
            // Zadig's local cluster is named `local`; it exists when we run in a cluster.
            None if name == "local" && crate::cluster::service::in_cluster() => {
                crate::cluster::Cluster::local()
            }
            None => {
                return Err(ApiError::bad_request(format!(
                    "`env_list[{i}].cluster_name`: no cluster named {:?}",
                    e.cluster_name
                )));
            }
        };
        let fields = (
            format!("env_list[{i}].cluster_name"),
            format!("env_list[{i}].namespace"),
        );
        let fields = (fields.0.as_str(), fields.1.as_str());
        let at = (project, false);
        check_placement(state, caller, at, &cluster, &e.namespace, fields).await?;
        let cc = state.clusters.clients.get(&cluster).await?;
        if k::namespace_state(&cc, &e.namespace).await? != NsState::Absent {
            return Err(ApiError::code(
                ErrorKind::Conflict,
                CREATE_ENV,
                format!(
                    "`env_list[{i}].namespace`: namespace {:?} already exists in {}",
                    e.namespace, cc.label
                ),
            ));
        }
        ids.push(cluster.id);
    }
    Ok(ids)
}

/// Create `init/yaml`'s environments with every test service of the project; on a failure
/// the environments this call made are deleted again (with their namespaces).
pub async fn create_initial(
    state: &AppState,
    caller: &Identity,
    project: &str,
    envs: &[crate::project::InitEnv],
) -> ApiResult<()> {
    let ids = check_initial(state, caller, project, envs).await?;
    let services: Vec<ServiceInput> = crate::service_template::list(state, project, false)
        .await?
        .into_iter()
        .map(|t| ServiceInput {
            service_name: t.service_name,
            ..ServiceInput::default()
        })
        .collect();
    let mut made: Vec<&str> = Vec::new();
    for (e, cluster_id) in envs.iter().zip(ids) {
        let input = CreateEnvInput {
            env_key: e.env_key.clone(),
            cluster_id,
            namespace: e.namespace.clone(),
            services: services.clone(),
            ..CreateEnvInput::default()
        };
        if let Err(err) = create(state, caller, project, false, input).await {
            for key in made {
                if let Err(e) = delete(state, caller, project, key, false, true).await {
                    tracing::warn!(env = key, error = %e, "init/yaml rollback: environment not deleted");
                }
            }
            // Its failures are E2's, an unreachable cluster included (code 6074).
            return Err(err.during(CREATE_ENV));
        }
        made.push(&e.env_key);
    }
    Ok(())
}
