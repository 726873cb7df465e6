//! Live reads of an environment: its detail with each service's status (E3), the YAML
//! applied for a service (E7), a service's workloads and pods read from the cluster (E9,
//! E10).

use serde_json::Value;

use super::super::kube as k;
use super::super::model::{EnvService, Environment, ResourceRef};
use super::super::rules::{self, WORKLOAD_KINDS};
use super::super::view::{
    EnvDetail, EnvServiceView, ImageView, PodBrief, ScaleView, ServiceDetail, ServiceHealth,
    ServicePods, pod_view,
};
use super::{GET_SERVICE, load, service_of};
use crate::cluster::client::ClusterClient;
use crate::cluster::service::client_for;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::validate;

/// The live status of a service: `succeeded` without workloads, `error` when one is
/// missing, `running` when every workload has all its replicas updated and ready, else
/// `unstable`.
async fn service_status(
    cc: &ClusterClient,
    env: &Environment,
    svc: &EnvService,
) -> ApiResult<ServiceHealth> {
    let mut any = false;
    let mut all_ready = true;
    for r in svc
        .resources
        .iter()
        .filter(|r| matches!(r.kind.as_str(), "Deployment" | "StatefulSet" | "DaemonSet"))
    {
        any = true;
        let Some(live) = k::get(cc, &env.namespace, r).await? else {
            return Ok(ServiceHealth::Error);
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
        (false, _) => ServiceHealth::Succeeded,
        (true, true) => ServiceHealth::Running,
        (true, false) => ServiceHealth::Unstable,
    })
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
        status: env.status,
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
    applied_yaml(&env, svc).map_err(ApiError::internal)
}

/// The objects of `svc` as they are applied in `env` (decorated with its labels, images and
/// overrides), as YAML documents separated by `---`.
pub(super) fn applied_yaml(
    env: &Environment,
    svc: &EnvService,
) -> Result<String, serde_yaml_ng::Error> {
    let docs = applied_objects(env, svc)
        .iter()
        .map(serde_yaml_ng::to_string)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(docs.join("---\n"))
}

/// The objects of `svc` as they are applied in `env`: decorated with its labels, images and
/// overrides.
pub fn applied_objects(env: &Environment, svc: &EnvService) -> Vec<Value> {
    let mut objects = svc.objects();
    for o in &mut objects {
        let namespaced = svc
            .resources
            .iter()
            .find(|r| {
                Some(r.name.as_str()) == o.pointer("/metadata/name").and_then(Value::as_str)
                    && Some(r.kind.as_str()) == o.get("kind").and_then(Value::as_str)
            })
            .is_none_or(|r| r.namespaced);
        rules::decorate(
            o,
            env,
            &svc.service_name,
            namespaced,
            &svc.containers,
            &svc.overrides,
        );
    }
    objects
}

/// The images of a live workload's containers.
fn live_images(live: &Value) -> Vec<ImageView> {
    live.pointer("/spec/template/spec/containers")
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
        .collect()
}

/// A live workload of `r` with its pods (found by its selector).
async fn workload_view(
    cc: &ClusterClient,
    ns: &str,
    r: &ResourceRef,
    live: &Value,
    now: i64,
) -> ApiResult<ScaleView> {
    let selector: std::collections::BTreeMap<String, String> = live
        .pointer("/spec/selector/matchLabels")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let pods = if selector.is_empty() {
        Vec::new()
    } else {
        k::pods(cc, ns, &selector)
            .await?
            .iter()
            .map(|p| pod_view(p, now))
            .collect()
    };
    Ok(ScaleView {
        name: r.name.clone(),
        kind: r.kind.clone(),
        replicas: live
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1),
        zadigx_release_type: String::new(),
        zadigx_release_tag: String::new(),
        images: live_images(live),
        pods,
    })
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
        scales.push(workload_view(&cc, &env.namespace, r, &live, now).await?);
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
