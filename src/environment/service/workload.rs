//! Actions on an environment's workloads: restart a service's workloads or a pod (E11,
//! E12), scale (E13), set a container's image (E14, E15). Each is kept as an override of
//! the service, so later applies keep it.

use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::super::kube as k;
use super::super::model::{Container, EnvService, Environment, ResourceRef, WorkloadOverride};
use super::super::rules;
use super::apply::apply_some;
use super::blue_green::refuse_held;
use super::{
    GET_POD, Namespace, RESTART_SERVICE, SCALE_SERVICE, UPDATE_IMAGE, for_change,
    for_change_during, load, may_change, save, service_of,
};
use crate::auth::Identity;
use crate::cluster::client::ClusterClient;
use crate::cluster::service::client_for;
use crate::error::{ApiError, ApiResult, ErrorKind};
use crate::state::AppState;
use crate::validate;

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
    let (held, mut env) = for_change(state, caller, project, env_key, production).await?;
    service_of(&env, service, RESTART_SERVICE)?;
    let cc = client_for(state, &env.cluster_id).await?;
    restart_in(state, held.namespace(), &cc, caller, &mut env, service).await?;
    save(state, &mut env, caller).await
}

/// Restart the Deployments, StatefulSets and DaemonSets of `service` of `env` (held under its
/// lock; saved by the caller): the workloads restarted.
pub(super) async fn restart_in(
    state: &AppState,
    held: &Namespace,
    cc: &ClusterClient,
    actor: &Identity,
    env: &mut Environment,
    service: &str,
) -> ApiResult<Vec<ResourceRef>> {
    let at = chrono::DateTime::from_timestamp_millis(state.clock.now_ms())
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let Some(mut svc) = env.service(service).cloned() else {
        return Ok(Vec::new());
    };
    let targets: Vec<ResourceRef> = svc
        .resources
        .iter()
        .filter(|r| matches!(r.kind.as_str(), "Deployment" | "StatefulSet" | "DaemonSet"))
        .cloned()
        .collect();
    refuse_held(cc, env, &svc, &targets, RESTART_SERVICE).await?;
    for r in &targets {
        set_override(&mut svc, &r.kind, &r.name, |o| {
            o.restarted_at = Some(at.clone())
        });
    }
    apply_some((state, cc), held, actor, env, &svc, |r| targets.contains(r)).await?;
    if let Some(slot) = env.service_mut(service) {
        *slot = svc;
    }
    Ok(targets)
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
    let (held, mut env) =
        for_change_during(state, caller, (project, env_key), SCALE_SERVICE).await?;
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
    apply_some((state, &cc), held.namespace(), caller, &env, &svc, owns).await?;
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

/// The image routes' fields checked, the path's environment agreeing with the body's.
fn check_image_input(path_env: &str, input: &ImageInput) -> ApiResult<()> {
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
    Ok(())
}

/// The service must render the `kind` workload named in `input` with the container named.
fn check_workload(svc: &EnvService, kind: &str, input: &ImageInput) -> ApiResult<()> {
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
    let has_container = rules::pod_spec_pointer(kind).is_some_and(|pod| {
        ["initContainers", "containers"].iter().any(|key| {
            workload
                .pointer(&format!("{pod}/{key}"))
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.get("name").and_then(Value::as_str) == Some(input.container_name.as_str())
                    })
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
    Ok(())
}

/// E14/E15 (and the CronJob route): set the image of a container of a workload of a service.
pub async fn set_image(
    state: &AppState,
    caller: &Identity,
    kind: &str,
    path_env: &str,
    input: ImageInput,
) -> ApiResult<()> {
    check_image_input(path_env, &input)?;
    let project = input.product_name.as_str();
    let (held, mut env) =
        for_change_during(state, caller, (project, path_env), UPDATE_IMAGE).await?;
    let mut svc = service_of(&env, &input.service_name, UPDATE_IMAGE)?.clone();
    check_workload(&svc, kind, &input)?;
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
    let rolled: Vec<ResourceRef> = svc
        .resources
        .iter()
        .filter(|r| with_container(r))
        .cloned()
        .collect();
    refuse_held(&cc, &env, &svc, &rolled, UPDATE_IMAGE).await?;
    apply_some(
        (state, &cc),
        held.namespace(),
        caller,
        &env,
        &svc,
        with_container,
    )
    .await?;
    svc.update_time = state.clock.now();
    if let Some(slot) = env.service_mut(&input.service_name) {
        *slot = svc;
    }
    save(state, &mut env, caller).await
}
