//! The work of the environment routes. Each answers only once the cluster holds the change
//! (no background completion): create/apply/delete are synchronous, every cluster call is
//! bounded, and a failure leaves neither a record nor (as far as the cluster lets us) objects
//! behind.

use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::catalog;
use super::kube::{self as k, Kinds, NsState};
use super::model::{Container, EnvService, Environment, ResourceRef, WorkloadOverride};
use super::rules::{self, WORKLOAD_KINDS};
use super::view::{
    EnvBrief, EnvDetail, EnvServiceView, ImageView, PodBrief, ScaleView, ServiceDetail,
    ServicePods, pod_view,
};
use crate::auth::Identity;
use crate::cluster::client::ClusterClient;
use crate::cluster::service::{client_for, resolve};
use crate::error::{ApiError, ApiResult, ErrorKind};
use crate::state::AppState;
use crate::store::StoreError;
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

/// A service of E2's body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct ServiceInput {
    #[serde(default)]
    pub service_name: String,
    /// Images to deploy instead of the template's, by container name.
    #[serde(default)]
    pub containers: Vec<ContainerImage>,
    /// `[RenderVariableKV]` values over the template's.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub variable_kvs: Vec<Value>,
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
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub global_variables: Vec<Value>,
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
/// production ones: system admins.
async fn may_change(state: &AppState, caller: &Identity, env: &Environment) -> ApiResult<()> {
    if env.production {
        return caller.require_admin();
    }
    if !caller.is_admin && catalog::is_project_admin(state, &env.project_key, &caller.uid).await? {
        return Ok(());
    }
    caller.require_owner_or_admin(&env.owner_uid, &env.label())
}

/// The environment for a change: the caller checked, this process' lock on it held, read
/// again under the lock.
async fn for_change(
    state: &AppState,
    caller: &Identity,
    project: &str,
    env_key: &str,
    production: bool,
) -> ApiResult<(tokio::sync::OwnedMutexGuard<()>, Environment)> {
    let env = load(state, project, env_key, production).await?;
    may_change(state, caller, &env).await?;
    let held = state.environments.lock(project, env_key).lock_owned().await;
    Ok((held, load(state, project, env_key, production).await?))
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

/// Build the deployed form of a rendered service.
fn env_service(
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

/// Apply every object of `svc` (server-side apply) and delete the objects it no longer
/// renders; `applied` collects what this call created or changed, for a rollback.
async fn apply_service(
    cc: &ClusterClient,
    kinds: &mut Kinds,
    env: &Environment,
    svc: &mut EnvService,
    applied: &mut Vec<ResourceRef>,
) -> ApiResult<()> {
    let objects = prepared(cc, kinds, env, svc).await?;
    let refs: Vec<ResourceRef> = objects.iter().map(|(r, _)| r.clone()).collect();
    for (r, o) in &objects {
        k::apply(cc, &env.namespace, r, o).await?;
        applied.push(r.clone());
    }
    for old in svc.resources.iter().filter(|o| !refs.contains(o)) {
        k::delete(cc, &env.namespace, old).await?;
    }
    svc.resources = refs;
    Ok(())
}

/// Apply only the objects of `svc` matching `pick` (kind, name).
async fn apply_some(
    cc: &ClusterClient,
    env: &Environment,
    svc: &EnvService,
    pick: impl Fn(&ResourceRef) -> bool,
) -> ApiResult<()> {
    let mut kinds = Kinds::default();
    for (r, o) in prepared(cc, &mut kinds, env, svc).await? {
        if pick(&r) {
            k::apply(cc, &env.namespace, &r, &o).await?;
        }
    }
    Ok(())
}

/// Best effort: remove what a failed call applied (the namespace when this call made it).
async fn rollback(cc: &ClusterClient, ns: &str, applied: &[ResourceRef], namespace_created: bool) {
    if namespace_created {
        if let Err(e) = k::delete_namespace(cc, ns).await {
            tracing::warn!(namespace = ns, error = %e, "rollback: namespace not deleted");
        }
        return;
    }
    for r in applied {
        if let Err(e) = k::delete(cc, ns, r).await {
            tracing::warn!(kind = %r.kind, name = %r.name, error = %e, "rollback: object not deleted");
        }
    }
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

/// E2 (and the production create): create the namespace (or adopt it when told), apply the
/// services, then store the environment — or store nothing and undo what was applied.
pub async fn create(
    state: &AppState,
    caller: &Identity,
    project: &str,
    production: bool,
    input: CreateEnvInput,
) -> ApiResult<()> {
    if production {
        caller.require_admin()?;
    }
    validate::name("projectKey", project)?;
    rules::dns_label("env_key", &input.env_key)?;
    rules::dns_label("namespace", &input.namespace)?;
    validate::name("cluster_id", &input.cluster_id)?;
    validate::max_len("env_name", &input.env_name)?;
    if production && rules::SYSTEM_NAMESPACES.contains(&input.namespace.as_str()) {
        return Err(ApiError::bad_request(format!(
            "`namespace`: namespace {} is invalid, production environment namespace cannot be set to these three namespaces: kube-node-lease, kube-public, kube-system",
            input.namespace
        )));
    }
    check_unsupported(&input)?;
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
    let duplicate = || {
        ApiError::code(
            ErrorKind::Conflict,
            CREATE_ENV,
            format!(
                "environment {:?} of project {project:?} already exists (环境已存在)",
                input.env_key
            ),
        )
    };
    if state
        .environments
        .store
        .get(project, &input.env_key)
        .await?
        .is_some()
    {
        return Err(duplicate());
    }
    let cluster = resolve(state, &input.cluster_id).await?.ok_or_else(|| {
        ApiError::bad_request(format!("`cluster_id`: no cluster {:?}", input.cluster_id))
    })?;
    // Production envs start empty (spec §5.2); test envs render their services first, so a
    // missing template fails before the cluster is touched.
    let globals = if production {
        Vec::new()
    } else {
        input.global_variables.clone()
    };
    let mut services = Vec::new();
    if !production {
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
            let r = catalog::render(
                state,
                project,
                &s.service_name,
                production,
                &s.variable_kvs,
                &globals,
            )
            .await?;
            services.push(env_service(state, r, &s.service_name, &s.containers));
        }
    }
    let cc = state.clusters.clients.get(&cluster).await?;
    let namespace_created = match k::namespace_state(&cc, &input.namespace).await? {
        NsState::Terminating => {
            return Err(ApiError::code(
                ErrorKind::Conflict,
                CREATE_ENV,
                format!(
                    "namespace `{}` is in terminating state, please wait for a while and try again",
                    input.namespace
                ),
            ));
        }
        NsState::Active if !input.adopt_namespace => {
            return Err(ApiError::code(
                ErrorKind::Conflict,
                CREATE_ENV,
                format!(
                    "namespace {:?} already exists in {}; set `adopt_namespace: true` to use it",
                    input.namespace, cc.label
                ),
            ));
        }
        NsState::Active => false,
        NsState::Absent => {
            k::create_namespace(&cc, &input.namespace, project).await?;
            true
        }
    };
    let now = state.clock.now();
    let mut env = Environment {
        id: validate::new_object_id(now),
        project_key: project.to_string(),
        env_key: input.env_key.clone(),
        alias: if production {
            input.env_name.clone()
        } else {
            String::new()
        },
        production,
        cluster_id: cluster.id.clone(),
        namespace: input.namespace.clone(),
        namespace_created,
        registry_id: input.registry_id.clone(),
        source: "spock".to_string(),
        status: "success".to_string(),
        error: String::new(),
        services: Vec::new(),
        global_variables: globals,
        owner_uid: caller.uid.clone(),
        create_time: now,
        update_time: now,
        update_by: caller.name.clone(),
        version: 1,
    };
    let mut kinds = Kinds::default();
    let mut applied = Vec::new();
    for mut s in services {
        if let Err(e) = apply_service(&cc, &mut kinds, &env, &mut s, &mut applied).await {
            rollback(&cc, &env.namespace, &applied, namespace_created).await;
            return Err(e);
        }
        env.services.push(s);
    }
    match state.environments.store.insert(&env).await {
        Ok(()) => Ok(()),
        Err(e) => {
            rollback(&cc, &env.namespace, &applied, namespace_created).await;
            Err(match e {
                StoreError::Duplicate(_) => duplicate(),
                other => other.into(),
            })
        }
    }
}

/// The live status of a service: `succeeded` without workloads, `error` when one is
/// missing, `running` when every workload has all its replicas updated and ready, else
/// `unstable`.
async fn service_status(
    cc: &ClusterClient,
    env: &Environment,
    svc: &EnvService,
) -> ApiResult<String> {
    let mut any = false;
    let mut all_ready = true;
    for r in svc
        .resources
        .iter()
        .filter(|r| matches!(r.kind.as_str(), "Deployment" | "StatefulSet" | "DaemonSet"))
    {
        any = true;
        let Some(live) = k::get(cc, &env.namespace, r).await? else {
            return Ok("error".to_string());
        };
        let n = |p: &str| live.pointer(p).and_then(Value::as_i64);
        let (want, ready, updated) = if r.kind == "DaemonSet" {
            (
                n("/status/desiredNumberScheduled").unwrap_or(0),
                n("/status/numberReady").unwrap_or(0),
                n("/status/updatedNumberScheduled").unwrap_or(0),
            )
        } else {
            (
                n("/spec/replicas").unwrap_or(1),
                n("/status/readyReplicas").unwrap_or(0),
                n("/status/updatedReplicas").unwrap_or(0),
            )
        };
        if ready < want || updated < want {
            all_ready = false;
        }
    }
    Ok(match (any, all_ready) {
        (false, _) => "succeeded",
        (true, true) => "running",
        (true, false) => "unstable",
    }
    .to_string())
}

/// E3: the record with each service's live status.
pub async fn detail(
    state: &AppState,
    project: &str,
    env_key: &str,
    production: bool,
) -> ApiResult<EnvDetail> {
    let env = load(state, project, env_key, production).await?;
    let cc = client_for(state, &env.cluster_id).await?;
    let mut services = Vec::new();
    for s in &env.services {
        services.push(EnvServiceView {
            service_name: s.service_name.clone(),
            deploy_strategy: "deploy".to_string(),
            containers: s.containers.clone(),
            variable_kvs: s.variable_kvs.clone(),
            status: service_status(&cc, &env, s).await?,
            kind: "k8s".to_string(),
        });
    }
    Ok(EnvDetail {
        project_key: env.project_key.clone(),
        env_key: env.env_key.clone(),
        env_name: env.alias.clone(),
        production: env.production,
        update_by: env.update_by.clone(),
        update_time: env.update_time,
        cluster_id: env.cluster_id.clone(),
        namespace: env.namespace.clone(),
        registry_id: env.registry_id.clone(),
        global_variables: env.global_variables.clone(),
        services,
        status: env.status.to_lowercase(),
    })
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
    let cc = client_for(state, &env.cluster_id).await?;
    if delete_resources && !production {
        for s in &env.services {
            for r in &s.resources {
                k::delete(&cc, &env.namespace, r).await?;
            }
        }
        let others = state
            .environments
            .store
            .in_namespace(&env.cluster_id, &env.namespace)
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
    let mut env = load(state, project, env_key, production).await?;
    may_change(state, caller, &env).await?;
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
            let Some(old) = env.service(&name).cloned() else {
                continue;
            };
            let r = catalog::render(
                state,
                project,
                &name,
                production,
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
            let mut s = env_service(state, r, &name, &kept);
            s.resources = old.resources.clone();
            s.overrides = old.overrides.clone();
            let mut applied = Vec::new();
            apply_service(&cc, &mut kinds, &env, &mut s, &mut applied).await?;
            if let Some(slot) = env.service_mut(&name) {
                *slot = s;
            }
        }
    }
    save(state, &mut env, caller).await
}

/// E6's body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct AddServicesInput {
    #[serde(default)]
    pub env_key: String,
    #[serde(default)]
    pub service_list: Vec<ServiceInput>,
}

/// E6: render each service's latest template and apply it into the environment.
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
    let (_held, mut env) = for_change(state, caller, project, &input.env_key, production).await?;
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
        let r = catalog::render(
            state,
            project,
            &s.service_name,
            production,
            &s.variable_kvs,
            &env.global_variables,
        )
        .await?;
        new.push(env_service(state, r, &s.service_name, &s.containers));
    }
    let cc = client_for(state, &env.cluster_id).await?;
    let mut kinds = Kinds::default();
    let mut applied = Vec::new();
    for mut s in new {
        if let Err(e) = apply_service(&cc, &mut kinds, &env, &mut s, &mut applied).await {
            rollback(&cc, &env.namespace, &applied, false).await;
            return Err(e);
        }
        env.services.push(s);
    }
    if let Err(e) = save(state, &mut env, caller).await {
        rollback(&cc, &env.namespace, &applied, false).await;
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

/// E7: the YAML applied for a service (documents separated by `---`).
pub async fn service_yaml(
    state: &AppState,
    project: &str,
    env_key: &str,
    service: &str,
    production: bool,
) -> ApiResult<String> {
    validate::name("serviceName", service)?;
    let env = load(state, project, env_key, production).await?;
    let svc = service_of(&env, service, GET_SERVICE)?;
    let mut docs = Vec::new();
    for mut o in svc.objects() {
        let namespaced = svc
            .resources
            .iter()
            .find(|r| {
                Some(r.name.as_str()) == o.pointer("/metadata/name").and_then(Value::as_str)
                    && Some(r.kind.as_str()) == o.get("kind").and_then(Value::as_str)
            })
            .is_none_or(|r| r.namespaced);
        rules::decorate(
            &mut o,
            &env,
            service,
            namespaced,
            &svc.containers,
            &svc.overrides,
        );
        docs.push(serde_yaml_ng::to_string(&o).map_err(ApiError::internal)?);
    }
    Ok(docs.join("---\n"))
}

/// E9: the service's workloads and their pods, read live.
pub async fn service_detail(
    state: &AppState,
    project: &str,
    env_key: &str,
    service: &str,
    production: bool,
    workload_type: Option<&str>,
) -> ApiResult<ServiceDetail> {
    validate::name("serviceName", service)?;
    let env = load(state, project, env_key, production).await?;
    let svc = service_of(&env, service, GET_SERVICE)?;
    let cc = client_for(state, &env.cluster_id).await?;
    let now = state.clock.now();
    let mut scales = Vec::new();
    for r in svc
        .resources
        .iter()
        .filter(|r| WORKLOAD_KINDS.contains(&r.kind.as_str()) && r.kind != "CronJob")
    {
        if workload_type.is_some_and(|t| !t.is_empty() && !t.eq_ignore_ascii_case(&r.kind)) {
            continue;
        }
        let Some(live) = k::get(&cc, &env.namespace, r).await? else {
            continue;
        };
        let images = live
            .pointer("/spec/template/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| {
                let image = c
                    .get("image")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                ImageView {
                    name: c
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    image_name: rules::image_name(&image),
                    image,
                }
            })
            .collect();
        let selector: std::collections::BTreeMap<String, String> = live
            .pointer("/spec/selector/matchLabels")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        let pods = if selector.is_empty() {
            Vec::new()
        } else {
            k::pods(&cc, &env.namespace, &selector)
                .await?
                .iter()
                .map(|p| pod_view(p, now))
                .collect()
        };
        scales.push(ScaleView {
            name: r.name.clone(),
            kind: r.kind.clone(),
            replicas: live
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1),
            zadigx_release_type: String::new(),
            zadigx_release_tag: String::new(),
            images,
            pods,
        });
    }
    Ok(ServiceDetail {
        service_name: service.to_string(),
        namespace: env.namespace.clone(),
        env_name: env.env_key.clone(),
        product_name: env.project_key.clone(),
        group_name: String::new(),
        scales,
        ingress: Vec::new(),
        service_endpoints: Vec::new(),
        cron_jobs: Vec::new(),
    })
}

/// E10: the pods of E9, one entry per pod.
pub async fn service_pods(
    state: &AppState,
    project: &str,
    env_key: &str,
    service: &str,
    production: bool,
) -> ApiResult<ServicePods> {
    let d = service_detail(state, project, env_key, service, production, None).await?;
    let mut pods: Vec<PodBrief> = Vec::new();
    for s in &d.scales {
        for p in &s.pods {
            if pods.iter().any(|x| x.pod_name == p.name) {
                continue;
            }
            pods.push(PodBrief {
                pod_name: p.name.clone(),
                status: p.status.clone(),
                pod_ready: p.pod_ready,
                containers_ready: p.containers_ready,
                create_time: p.createtime,
                ip: p.ip.clone(),
                images: p.containers.iter().map(|c| c.image.clone()).collect(),
                workload_name: s.name.clone(),
                workload_type: s.kind.clone(),
            });
        }
    }
    Ok(ServicePods {
        service_name: service.to_string(),
        pods,
    })
}

/// Record an override on a workload of `svc`.
fn set_override(
    svc: &mut EnvService,
    kind: &str,
    name: &str,
    f: impl FnOnce(&mut WorkloadOverride),
) {
    if let Some(o) = svc
        .overrides
        .iter_mut()
        .find(|o| o.kind == kind && o.name == name)
    {
        f(o);
        return;
    }
    let mut o = WorkloadOverride {
        kind: kind.to_string(),
        name: name.to_string(),
        ..WorkloadOverride::default()
    };
    f(&mut o);
    svc.overrides.push(o);
}

/// E11: restart every Deployment, StatefulSet and DaemonSet of the service (a new
/// `restartedAt` on the pod template, as `kubectl rollout restart`).
pub async fn restart_service(
    state: &AppState,
    caller: &Identity,
    project: &str,
    env_key: &str,
    service: &str,
    production: bool,
) -> ApiResult<()> {
    validate::name("serviceName", service)?;
    let (_held, mut env) = for_change(state, caller, project, env_key, production).await?;
    let at = chrono::DateTime::from_timestamp_millis(state.clock.now_ms())
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let svc = service_of(&env, service, RESTART_SERVICE)?.clone();
    let mut svc = svc;
    let targets: Vec<ResourceRef> = svc
        .resources
        .iter()
        .filter(|r| matches!(r.kind.as_str(), "Deployment" | "StatefulSet" | "DaemonSet"))
        .cloned()
        .collect();
    for r in &targets {
        set_override(&mut svc, &r.kind, &r.name, |o| {
            o.restarted_at = Some(at.clone())
        });
    }
    let cc = client_for(state, &env.cluster_id).await?;
    apply_some(&cc, &env, &svc, |r| targets.contains(r)).await?;
    if let Some(slot) = env.service_mut(service) {
        *slot = svc;
    }
    save(state, &mut env, caller).await
}

/// E12: delete a pod of the environment's namespace so its controller makes a new one.
pub async fn restart_pod(
    state: &AppState,
    caller: &Identity,
    project: &str,
    env_key: &str,
    pod: &str,
    production: bool,
) -> ApiResult<()> {
    validate::name("podName", pod)?;
    let env = load(state, project, env_key, production).await?;
    may_change(state, caller, &env).await?;
    let cc = client_for(state, &env.cluster_id).await?;
    if k::pod(&cc, &env.namespace, pod).await?.is_none() {
        return Err(ApiError::code(
            ErrorKind::NotFound,
            GET_POD,
            format!("[{}] can't find pod {pod}", env.namespace),
        ));
    }
    k::delete_pod(&cc, &env.namespace, pod).await
}

/// E13's body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct ScaleInput {
    #[serde(default)]
    pub project_key: String,
    #[serde(default)]
    pub env_key: String,
    #[serde(default)]
    pub service_name: String,
    #[serde(default)]
    pub workload_name: String,
    /// `Deployment` or `StatefulSet`.
    #[serde(default)]
    pub workload_type: String,
    pub target_replicas: Option<i64>,
}

/// E13: set a workload's replica count (kept for later applies of the service).
pub async fn scale(state: &AppState, caller: &Identity, input: ScaleInput) -> ApiResult<()> {
    validate::name("project_key", &input.project_key)?;
    validate::name("env_key", &input.env_key)?;
    validate::name("service_name", &input.service_name)?;
    validate::name("workload_name", &input.workload_name)?;
    validate::one_of(
        "workload_type",
        &input.workload_type,
        &["Deployment", "StatefulSet"],
    )?;
    let replicas = match input.target_replicas {
        None => return Err(ApiError::bad_request("`target_replicas` is required")),
        Some(n) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            return Err(ApiError::bad_request(format!(
                "`target_replicas` must be greater than or equal to 0, got {n}"
            )));
        }
        Some(n) => n,
    };
    let (project, env_key) = (input.project_key.as_str(), input.env_key.as_str());
    let (_held, mut env) = for_change(state, caller, project, env_key, false).await?;
    let mut svc = service_of(&env, &input.service_name, SCALE_SERVICE)?.clone();
    let owns = |r: &ResourceRef| r.kind == input.workload_type && r.name == input.workload_name;
    if !svc.resources.iter().any(owns) {
        return Err(ApiError::code(
            ErrorKind::NotFound,
            SCALE_SERVICE,
            format!(
                "workload {}/{} does not belong to service {}",
                input.workload_type, input.workload_name, input.service_name
            ),
        ));
    }
    set_override(&mut svc, &input.workload_type, &input.workload_name, |o| {
        o.replicas = Some(replicas)
    });
    let cc = client_for(state, &env.cluster_id).await?;
    apply_some(&cc, &env, &svc, owns).await?;
    if let Some(slot) = env.service_mut(&input.service_name) {
        *slot = svc;
    }
    save(state, &mut env, caller).await
}

/// E14/E15's body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct ImageInput {
    #[serde(default)]
    pub product_name: String,
    /// Must agree with the path's environment when given.
    #[serde(default)]
    pub env_name: String,
    #[serde(default)]
    pub service_name: String,
    /// The workload.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub container_name: String,
    #[serde(default)]
    pub image: String,
}

/// E14/E15: set the image of a container of a Deployment/StatefulSet of a service.
pub async fn set_image(
    state: &AppState,
    caller: &Identity,
    kind: &str,
    path_env: &str,
    input: ImageInput,
) -> ApiResult<()> {
    validate::name("product_name", &input.product_name)?;
    validate::name("service_name", &input.service_name)?;
    validate::name("name", &input.name)?;
    validate::name("container_name", &input.container_name)?;
    validate::name("image", &input.image)?;
    if input.image.chars().any(char::is_whitespace) {
        return Err(ApiError::bad_request(format!(
            "`image` must not contain spaces, got {:?}",
            input.image
        )));
    }
    if !input.env_name.is_empty() && input.env_name != path_env {
        return Err(ApiError::bad_request(format!(
            "`env_name` {:?} disagrees with the path's environment {path_env:?}",
            input.env_name
        )));
    }
    let project = input.product_name.as_str();
    let (_held, mut env) = for_change(state, caller, project, path_env, false).await?;
    let mut svc = service_of(&env, &input.service_name, UPDATE_IMAGE)?.clone();
    let workload = svc.objects().into_iter().find(|o| {
        o.get("kind").and_then(Value::as_str) == Some(kind)
            && o.pointer("/metadata/name").and_then(Value::as_str) == Some(input.name.as_str())
    });
    let Some(workload) = workload else {
        return Err(ApiError::code(
            ErrorKind::NotFound,
            UPDATE_IMAGE,
            format!(
                "{kind} {:?} is not part of service {:?}",
                input.name, input.service_name
            ),
        ));
    };
    let has_container = ["initContainers", "containers"].iter().any(|key| {
        workload
            .pointer(&format!("/spec/template/spec/{key}"))
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.get("name").and_then(Value::as_str) == Some(input.container_name.as_str())
                })
            })
    });
    if !has_container {
        return Err(ApiError::code(
            ErrorKind::NotFound,
            UPDATE_IMAGE,
            format!(
                "{kind} {:?} has no container {:?}",
                input.name, input.container_name
            ),
        ));
    }
    match svc
        .containers
        .iter_mut()
        .find(|c| c.name == input.container_name)
    {
        Some(c) => {
            c.image = input.image.clone();
            c.image_name = rules::image_name(&input.image);
        }
        None => svc.containers.push(Container {
            name: input.container_name.clone(),
            kind: String::new(),
            image: input.image.clone(),
            image_name: rules::image_name(&input.image),
        }),
    }
    // Every workload of the service with that container runs the module's image.
    let objects = svc.objects();
    let with_container = |r: &ResourceRef| {
        objects.iter().any(|o| {
            o.get("kind").and_then(Value::as_str) == Some(r.kind.as_str())
                && o.pointer("/metadata/name").and_then(Value::as_str) == Some(r.name.as_str())
                && rules::containers_of(std::slice::from_ref(o))
                    .iter()
                    .any(|c| c.name == input.container_name)
        })
    };
    let cc = client_for(state, &env.cluster_id).await?;
    apply_some(&cc, &env, &svc, with_container).await?;
    svc.update_time = state.clock.now();
    if let Some(slot) = env.service_mut(&input.service_name) {
        *slot = svc;
    }
    save(state, &mut env, caller).await
}

/// `init/yaml`'s `env_list` (spec §2.2), checked before anything is stored: keys and
/// namespaces well-formed and distinct, clusters registered (by name), reachable, and the
/// namespaces not taken. The cluster ids, in list order.
pub async fn check_initial(
    state: &AppState,
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
    let ids = check_initial(state, envs).await?;
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
            return Err(err);
        }
        made.push(&e.env_key);
    }
    Ok(())
}
