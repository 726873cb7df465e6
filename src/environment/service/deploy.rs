//! A deploy job's change of an environment (`zadig-deploy`, spec/environments.md §6.4): set
//! the images of some modules (containers) of a service, through the same path as the image
//! routes (E14/E15) — the service's objects decorated and server-side applied with our field
//! manager and Zadig's labels, the environment's record updated under its lock — and say
//! which workloads changed, with the image each container had before.

use serde_json::Value;

use super::super::kube as k;
use super::super::model::{Container, Environment, ResourceRef};
use super::super::rules;
use super::apply::apply_some;
use super::save_as;
use crate::cluster::client::ClusterClient;
use crate::cluster::service::client_for;
use crate::state::AppState;

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

/// The cluster client of `env`: Zadig's job error text when it cannot be had.
async fn client(state: &AppState, env: &Environment) -> Result<ClusterClient, String> {
    client_for(state, &env.cluster_id)
        .await
        .map_err(|e| format!("can't init k8s client: {}", e.description))
}

/// Set the images of `images` (module → image) of `service` in the environment and apply
/// the workloads that run those modules; the record keeps the new images. `by` is who
/// changed it (the task's creator).
pub async fn deploy_images(
    state: &AppState,
    project: &str,
    env_key: &str,
    service: &str,
    images: &[(String, String)],
    by: &str,
) -> Result<Deployed, String> {
    env_for_job(state, project, env_key).await?;
    let _held = state.environments.lock(project, env_key).lock_owned().await;
    let mut env = env_for_job(state, project, env_key).await?;
    let Some(mut svc) = env.service(service).cloned() else {
        return Err(format!(
            "service {service} not found in env {project}/{env_key}"
        ));
    };
    for (module, image) in images {
        let Some(c) = svc.containers.iter_mut().find(|c| &c.name == module) else {
            return Err(format!(
                "service {service} has no module (container) {module} in env {project}/{env_key}"
            ));
        };
        c.image.clone_from(image);
        c.image_name = rules::image_name(image);
    }
    let objects = svc.objects();
    let modules = |o: &Value| -> Vec<Container> { rules::containers_of(std::slice::from_ref(o)) };
    let workload = |r: &ResourceRef| {
        objects.iter().find(|o| {
            o.get("kind").and_then(Value::as_str) == Some(r.kind.as_str())
                && o.pointer("/metadata/name").and_then(Value::as_str) == Some(r.name.as_str())
        })
    };
    let workloads: Vec<ResourceRef> = svc
        .resources
        .iter()
        .filter(|r| {
            workload(r).is_some_and(|o| {
                modules(o)
                    .iter()
                    .any(|c| images.iter().any(|(m, _)| *m == c.name))
            })
        })
        .cloned()
        .collect();
    let cc = client(state, &env).await?;
    let mut changes = Vec::new();
    for r in &workloads {
        let live = k::get(&cc, &env.namespace, r)
            .await
            .map_err(|e| format!("can't read {} {}: {}", r.kind, r.name, e.description))?;
        let live_modules = live.as_ref().map(modules).unwrap_or_default();
        let recorded = env
            .service(service)
            .map(|s| s.containers.clone())
            .unwrap_or_default();
        for (module, image) in images {
            if !workload(r).is_some_and(|o| modules(o).iter().any(|c| &c.name == module)) {
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
    apply_some(&cc, &env, &svc, |r| workloads.contains(r))
        .await
        .map_err(|e| format!("create or patch resource error: {}", e.description))?;
    svc.update_time = state.clock.now();
    if let Some(slot) = env.service_mut(service) {
        *slot = svc;
    }
    save_as(state, &mut env, by)
        .await
        .map_err(|e| format!("update service render set info error: {}", e.description))?;
    Ok(Deployed {
        cc,
        namespace: env.namespace.clone(),
        workloads,
        changes,
    })
}
