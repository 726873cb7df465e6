//! A deploy job's change of an environment (`zadig-deploy`, spec/environments.md §6.4): set
//! the images of some modules (containers) of a service, through the same path as the image
//! routes (E14/E15) — the service's objects decorated and server-side applied with our field
//! manager and Zadig's labels, the environment's record updated under its lock — and say
//! which workloads changed, with the image each container had before. A job that deploys
//! variables or configuration renders the service again (at the revision it runs, or the
//! template's latest) through E18's path and applies all of it.
//!
//! A deploy job acts for the task's creator: it may change only what that user could change
//! through the environment routes ([`deployer`], [`may_deploy_to_namespace`]).

use serde_json::Value;

use super::super::kube as k;
use super::super::kube::Kinds;
use super::super::model::{Container, EnvService, Environment, ResourceRef};
use super::super::rules;
use super::apply::{Undo, apply_some, rollback};
use super::blue_green::{Window, refuse_held};
use super::lifecycle::ensure_namespace;
use super::live::applied_yaml;
use super::placement::envs_in;
use super::variables::{Revision, over, reapply};
use super::workload::restart_in;
use super::{UPDATE_ENV, may_change, save};
use crate::auth::Identity;
use crate::cluster::client::ClusterClient;
use crate::cluster::service::{client_for, resolve};
use crate::error::{ApiError, ErrorKind};
use crate::service_template::RenderVariableKV;
use crate::state::AppState;

/// The user a deploy job acts for: the task's creator (`uid`). A task without a creator uid
/// was started by the server itself (a scheduled release plan, which its manager approved): it
/// acts as the server, with an admin's rights.
pub async fn deployer(state: &AppState, uid: &str) -> Result<Identity, String> {
    if uid.is_empty() {
        return Ok(Identity {
            uid: String::new(),
            account: "system".into(),
            name: "system".into(),
            identity_type: "system".into(),
            is_admin: true,
        });
    }
    match state.users.get(uid).await {
        Ok(Some(u)) => Ok(Identity::from(&u)),
        Ok(None) => Err(format!(
            "the task's creator (uid {uid:?}) is no longer a user, so nothing is deployed for them"
        )),
        Err(e) => Err(format!("can't read the task's creator: {e}")),
    }
}

/// Whether `caller` may deploy into namespace `ns` of cluster `cluster_id` (`custom-deploy`,
/// `k8s-resource-patch`, canary, gray release): admins anywhere; others only into a namespace
/// where an environment could be put for them (the rules of environment creation, see
/// `check_placement`): not a system namespace, not on a production cluster, and every
/// environment there a test environment of `project` that they may change (at least one).
pub async fn may_deploy_to_namespace(
    state: &AppState,
    caller: &Identity,
    project: &str,
    cluster_id: &str,
    ns: &str,
) -> Result<(), String> {
    if caller.is_admin {
        return Ok(());
    }
    let refused = |why: String| {
        format!(
            "user {} may not deploy into namespace {ns} of cluster {cluster_id:?}: {why}; only system admins may, or the creator or a project admin of an environment of project {project} in that namespace",
            caller.account
        )
    };
    if rules::SYSTEM_NAMESPACES.contains(&ns) {
        return Err(refused("it is a system namespace".into()));
    }
    match resolve(state, cluster_id).await {
        Ok(Some(c)) if c.production => {
            return Err(refused(format!("{} is a production cluster", c.label())));
        }
        Ok(_) => {}
        Err(e) => {
            return Err(format!(
                "can't read cluster {cluster_id:?}: {}",
                e.description
            ));
        }
    }
    let envs = envs_in(state, cluster_id, ns).await.map_err(|e| {
        format!(
            "can't read the environments of namespace {ns}: {}",
            e.description
        )
    })?;
    if !envs.iter().any(|e| e.project_key == project) {
        return Err(refused(format!(
            "no environment of project {project} is there"
        )));
    }
    if let Some(env) = envs
        .iter()
        .find(|e| e.production || e.project_key != project)
    {
        return Err(refused(format!("{} is there", env.label())));
    }
    for env in &envs {
        if may_change(state, caller, env).await.is_err() {
            return Err(refused(format!("they may not change {}", env.label())));
        }
    }
    Ok(())
}

/// One container of one workload whose image a deploy set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageChange {
    pub kind: String,
    pub name: String,
    pub container: String,
    /// The image the live workload had (the environment's record when it was not live).
    pub origin: String,
    pub image: String,
}

/// What [`deploy_images`] changed, and where, for the rollout wait.
pub struct Deployed {
    pub cc: ClusterClient,
    pub namespace: String,
    /// The workloads applied (Deployment, StatefulSet, DaemonSet, Job, CronJob, …).
    pub workloads: Vec<ResourceRef>,
    pub changes: Vec<ImageChange>,
    /// The variable values deployed ([`Rerender::vars`] less those bound to a global).
    pub values: Vec<RenderVariableKV>,
    /// The service's YAML as now applied (empty for a restart).
    pub yaml: String,
}

/// The environment `env_key` of `project` (any production flag, as Zadig's deploy job);
/// the error is Zadig's job error text.
pub async fn env_for_job(
    state: &AppState,
    project: &str,
    env_key: &str,
) -> Result<Environment, String> {
    match state.environments.store.get(project, env_key).await {
        Ok(Some(e)) => Ok(e),
        Ok(None) => Err(format!(
            "find project error: environment {env_key:?} of project {project:?} does not exist"
        )),
        Err(e) => Err(format!("find project error: {e}")),
    }
}

/// The environment `env_key` of `project`, once `caller` (the task's creator) is known to be
/// allowed to change it; the error is the job's.
pub async fn env_to_change(
    state: &AppState,
    (project, env_key): (&str, &str),
    caller: &Identity,
) -> Result<Environment, String> {
    let env = env_for_job(state, project, env_key).await?;
    may_change(state, caller, &env).await.map_err(|e| {
        format!(
            "user {} may not deploy to {}: {}",
            caller.account,
            env.label(),
            e.description
        )
    })?;
    Ok(env)
}

/// The cluster client of `env`: Zadig's job error text when it cannot be had.
pub async fn client(state: &AppState, env: &Environment) -> Result<ClusterClient, String> {
    client_for(state, &env.cluster_id)
        .await
        .map_err(|e| format!("can't init k8s client: {}", e.description))
}

/// What a deploy job changes of a service besides its images (`deploy_contents` `vars` and
/// `config`): the service is rendered again and all of it applied.
#[derive(Debug, Clone, Default)]
pub struct Rerender {
    /// Values that replace the environment's of the same keys (`vars`); a key the environment
    /// binds to a global variable keeps the global's value.
    pub vars: Vec<RenderVariableKV>,
    /// Render the template's latest revision (`config` with `update_config`), else the
    /// revision the environment runs.
    pub latest: bool,
}

/// A refused apply, as Zadig's deploy job says it.
fn applied(e: ApiError) -> String {
    format!("create or patch resource error: {}", e.description)
}

/// Set the images of `images` (module → image) of `service` in the environment and apply
/// the workloads that run those modules — or, with `rerender`, render the service again and
/// apply all of it; the record keeps the new images (and values, revision). `caller` (the
/// task's creator) must be allowed to change the environment. While a blue-green deploy holds
/// the service's Service nothing is changed, unless `window` is its release. A namespace gone
/// from the cluster is made again first (`ensure_namespace`), and deleted again should the
/// deploy fail.
pub async fn deploy_images(
    state: &AppState,
    (project, env_key, service): (&str, &str, &str),
    (images, rerender): (&[(String, String)], Option<&Rerender>),
    caller: &Identity,
    window: Window,
) -> Result<Deployed, String> {
    let (held, mut env, mut svc) = for_job(state, (project, env_key, service), caller).await?;
    set_images(&mut svc, images, service, project, env_key)?;
    let cc = client(state, &env).await?;
    {
        // A re-render may roll out any workload of the service.
        let workloads = workloads_running(&svc.objects(), &svc.resources, images);
        let rolled = rerender.map_or(&workloads, |_| &svc.resources);
        not_held(&cc, &env, &svc, rolled, window).await?;
    }
    let made = ensure_namespace(&cc, &mut env).await.map_err(applied)?;
    let namespace = env.namespace.clone();
    let done = deploy_into((state, &held, &cc), env, svc, images, rerender, caller).await;
    if done.is_err() {
        rollback(&cc, &namespace, Undo::default(), made).await;
    }
    done
}

/// [`deploy_images`] once the environment is held, `svc` has the new images and the
/// namespace is there: apply, then store the record.
async fn deploy_into(
    (state, held, cc): (&AppState, &super::Held, &ClusterClient),
    mut env: Environment,
    mut svc: EnvService,
    images: &[(String, String)],
    rerender: Option<&Rerender>,
    caller: &Identity,
) -> Result<Deployed, String> {
    let service = svc.service_name.clone();
    let service = service.as_str();
    let objects = svc.objects();
    let mut workloads = workloads_running(&objects, &svc.resources, images);
    let recorded = env
        .service(service)
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let changes =
        image_changes(cc, &env.namespace, &objects, &workloads, &recorded, images).await?;
    let mut values = Vec::new();
    match rerender {
        None => {
            apply_some((state, cc), held.namespace(), caller, &env, &svc, |r| {
                workloads.contains(r)
            })
            .await
            .map_err(applied)?;
            svc.update_time = state.clock.now();
            if let Some(slot) = env.service_mut(service) {
                *slot = svc;
            }
        }
        Some(r) => {
            let at = if r.latest {
                Revision::Latest
            } else {
                Revision::Deployed
            };
            values = unbound(&svc.variable_kvs, &r.vars);
            let vars = |current: &[RenderVariableKV]| over(current, &values);
            if let Some(slot) = env.service_mut(service) {
                *slot = svc;
            }
            // A template the values do not render is Zadig's "generate" error, a cluster
            // that refuses the objects its "create or patch" one.
            reapply(
                (state, held.namespace()),
                (cc, &mut Kinds::default()),
                caller,
                &mut env,
                service,
                at,
                vars,
            )
            .await
            .map_err(|e| match e.kind {
                ErrorKind::BadRequest => {
                    format!("generate service yaml error: {}", e.description)
                }
                _ => applied(e),
            })?;
            workloads = env
                .service(service)
                .map(|s| s.resources.clone())
                .unwrap_or_default();
        }
    }
    let done = Deployed {
        cc: cc.clone(),
        namespace: env.namespace.clone(),
        workloads,
        changes,
        values,
        yaml: yaml_of(&env, service)?,
    };
    stored(state, env, caller, done).await
}

/// A deploy job's refusal ([`refuse_held`]) to roll out `rolled` of `svc` while a
/// blue-green deploy holds the service — unless the job is that deploy's release.
async fn not_held(
    cc: &ClusterClient,
    env: &Environment,
    svc: &EnvService,
    rolled: &[ResourceRef],
    window: Window,
) -> Result<(), String> {
    if window == Window::Release {
        return Ok(());
    }
    refuse_held(cc, env, svc, rolled, UPDATE_ENV)
        .await
        .map_err(|e| e.description)
}

/// The YAML of `service` as now applied in `env` (empty when the service is not there).
fn yaml_of(env: &Environment, service: &str) -> Result<String, String> {
    env.service(service).map_or(Ok(String::new()), |s| {
        applied_yaml(env, s).map_err(|e| format!("get current service yaml error: {e}"))
    })
}

/// Restart the Deployments, StatefulSets and DaemonSets of `service` in the environment for
/// a `zadig-restart` job (as E11); `caller` (the task's creator) must be allowed to change
/// the environment.
pub async fn restart_for_job(
    state: &AppState,
    at: (&str, &str, &str),
    caller: &Identity,
) -> Result<Deployed, String> {
    let (held, mut env, _) = for_job(state, at, caller).await?;
    let cc = client(state, &env).await?;
    let workloads = restart_in(state, held.namespace(), &cc, caller, &mut env, at.2)
        .await
        .map_err(|e| format!("failed to restart workload resources: {}", e.description))?;
    let namespace = env.namespace.clone();
    let done = Deployed {
        cc,
        namespace,
        workloads,
        changes: Vec::new(),
        values: Vec::new(),
        yaml: String::new(),
    };
    stored(state, env, caller, done).await
}

/// Store the environment a job changed (its version checked); then what changed, `done`.
async fn stored(
    state: &AppState,
    mut env: Environment,
    caller: &Identity,
    done: Deployed,
) -> Result<Deployed, String> {
    save(state, &mut env, caller)
        .await
        .map_err(|e| format!("update service render set info error: {}", e.description))?;
    Ok(done)
}

/// The environment of a deploy job's task, held under its lock, once `caller` is found
/// allowed to change it, with (a copy of) its `service`; the errors are Zadig's job error
/// texts.
async fn for_job(
    state: &AppState,
    (project, env_key, service): (&str, &str, &str),
    caller: &Identity,
) -> Result<(super::Held, Environment, EnvService), String> {
    let env = env_to_change(state, (project, env_key), caller).await?;
    let held = super::hold(state, &env).await.map_err(|e| e.description)?;
    let env = env_for_job(state, project, env_key).await?;
    let Some(svc) = env.service(service).cloned() else {
        return Err(format!(
            "service {service} not found in env {project}/{env_key}"
        ));
    };
    Ok((held, env, svc))
}

/// The values of `given` whose key `current` does not bind to a global variable (Zadig keeps
/// only the variables a deploy really deploys).
fn unbound(current: &[RenderVariableKV], given: &[RenderVariableKV]) -> Vec<RenderVariableKV> {
    given
        .iter()
        .filter(|g| {
            !current
                .iter()
                .any(|c| c.use_global_variable && c.kv.key == g.kv.key)
        })
        .cloned()
        .collect()
}

/// Set the image of each module of `images` in `svc`'s record; a module the service does not
/// have is Zadig's job error.
fn set_images(
    svc: &mut EnvService,
    images: &[(String, String)],
    service: &str,
    project: &str,
    env_key: &str,
) -> Result<(), String> {
    for (module, image) in images {
        let Some(c) = svc.containers.iter_mut().find(|c| &c.name == module) else {
            return Err(format!(
                "service {service} has no module (container) {module} in env {project}/{env_key}"
            ));
        };
        c.image.clone_from(image);
        c.image_name = rules::image_name(image);
    }
    Ok(())
}

/// The containers of one object.
fn modules(o: &Value) -> Vec<Container> {
    rules::containers_of(std::slice::from_ref(o))
}

/// The object of `objects` that `r` names.
fn workload<'a>(objects: &'a [Value], r: &ResourceRef) -> Option<&'a Value> {
    objects.iter().find(|o| {
        o.get("kind").and_then(Value::as_str) == Some(r.kind.as_str())
            && o.pointer("/metadata/name").and_then(Value::as_str) == Some(r.name.as_str())
    })
}

/// The resources of `resources` whose object runs at least one module of `images`.
fn workloads_running(
    objects: &[Value],
    resources: &[ResourceRef],
    images: &[(String, String)],
) -> Vec<ResourceRef> {
    resources
        .iter()
        .filter(|r| {
            workload(objects, r).is_some_and(|o| {
                modules(o)
                    .iter()
                    .any(|c| images.iter().any(|(m, _)| *m == c.name))
            })
        })
        .cloned()
        .collect()
}

/// One [`ImageChange`] per module of `images` run by each of `workloads`, its origin the
/// live container's image (else the `recorded` one).
async fn image_changes(
    cc: &ClusterClient,
    namespace: &str,
    objects: &[Value],
    workloads: &[ResourceRef],
    recorded: &[Container],
    images: &[(String, String)],
) -> Result<Vec<ImageChange>, String> {
    let mut changes = Vec::new();
    for r in workloads {
        let live = k::get(cc, namespace, r)
            .await
            .map_err(|e| format!("can't read {} {}: {}", r.kind, r.name, e.description))?;
        let live_modules = live.as_ref().map(modules).unwrap_or_default();
        for (module, image) in images {
            if !workload(objects, r).is_some_and(|o| modules(o).iter().any(|c| &c.name == module)) {
                continue;
            }
            let origin = live_modules
                .iter()
                .chain(recorded.iter())
                .find(|c| &c.name == module)
                .map(|c| c.image.clone())
                .unwrap_or_default();
            changes.push(ImageChange {
                kind: r.kind.clone(),
                name: r.name.clone(),
                container: module.clone(),
                origin,
                image: image.clone(),
            });
        }
    }
    Ok(changes)
}
