//! The JSON shapes of the environment routes (spec §5.3, §5.5, §5.11, §5.12), built from the
//! record and live cluster objects.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, Pod};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::model::{Container, EnvStatus, Environment};
use crate::service_template::{GlobalVariableKV, RenderVariableKV};
use crate::wire::wire_enum;

/// E1's item.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnvBrief {
    /// The alias (display name); absent when none.
    #[serde(rename = "envName", skip_serializing_if = "String::is_empty")]
    pub env_name: String,
    pub env_key: String,
    pub cluster_id: String,
    pub namespace: String,
    pub production: bool,
    pub registry_id: String,
    pub status: EnvStatus,
    pub update_by: String,
    pub update_time: i64,
}

impl From<&Environment> for EnvBrief {
    fn from(e: &Environment) -> Self {
        Self {
            env_name: e.alias.clone(),
            env_key: e.env_key.clone(),
            cluster_id: e.cluster_id.clone(),
            namespace: e.namespace.clone(),
            production: e.production,
            registry_id: e.registry_id.clone(),
            status: e.status,
            update_by: e.update_by.clone(),
            update_time: e.update_time,
        }
    }
}

/// A service of E3.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnvServiceView {
    pub service_name: String,
    pub deploy_strategy: String,
    pub containers: Vec<Container>,
    pub variable_kvs: Vec<RenderVariableKV>,
    /// Live: `running`, `unstable`, `error` (a workload is missing) or `succeeded` (no
    /// workload).
    pub status: ServiceHealth,
    #[serde(rename = "type")]
    pub kind: String,
}

wire_enum! {
    /// The live status of an environment's service (Zadig's strings).
    pub enum ServiceHealth as "ServiceHealth" {
        /// Every workload has all its replicas updated and ready.
        Running = "running",
        /// Some replica is not updated or not ready yet.
        Unstable = "unstable",
        /// A workload the service applied is missing.
        Error = "error",
        /// The service has no workload.
        Succeeded = "succeeded",
    }
}

/// E3.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnvDetail {
    pub project_key: String,
    pub env_key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub env_name: String,
    pub production: bool,
    pub update_by: String,
    pub update_time: i64,
    pub cluster_id: String,
    pub namespace: String,
    pub registry_id: String,
    pub global_variables: Vec<GlobalVariableKV>,
    pub services: Vec<EnvServiceView>,
    pub status: EnvStatus,
}

/// An image of a workload (E9).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WorkloadImage)]
pub struct ImageView {
    pub name: String,
    pub image: String,
    pub image_name: String,
}

/// A container of a pod (E9).
#[derive(Debug, Serialize, ToSchema)]
pub struct ContainerStatusView {
    pub name: String,
    pub image: String,
    pub restart_count: i32,
    pub status: ContainerPhase,
    pub ready: bool,
    #[schema(value_type = Vec<Object>)]
    pub ports: Vec<Value>,
    pub message: String,
    pub reason: String,
    pub started_at: i64,
}

/// A pod (E9).
#[derive(Debug, Serialize, ToSchema)]
pub struct PodView {
    /// The first owner's kind.
    pub kind: String,
    pub name: String,
    /// The pod phase.
    pub status: String,
    pub age: String,
    pub createtime: i64,
    pub ip: String,
    pub labels: BTreeMap<String, String>,
    pub node_name: String,
    pub host_ip: String,
    pub enable_debug_container: bool,
    pub pod_ready: bool,
    pub containers_ready: bool,
    pub containers_message: String,
    pub containers: Vec<ContainerStatusView>,
}

/// A workload of a service (E9).
#[derive(Debug, Serialize, ToSchema)]
pub struct ScaleView {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub replicas: i64,
    pub zadigx_release_type: String,
    pub zadigx_release_tag: String,
    pub images: Vec<ImageView>,
    pub pods: Vec<PodView>,
}

/// E9.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EnvServiceDetail)]
pub struct ServiceDetail {
    pub service_name: String,
    pub namespace: String,
    pub env_name: String,
    pub product_name: String,
    pub group_name: String,
    pub scales: Vec<ScaleView>,
    #[schema(value_type = Vec<Object>)]
    pub ingress: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub service_endpoints: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub cron_jobs: Vec<Value>,
}

/// A pod of E10.
#[derive(Debug, Serialize, ToSchema)]
pub struct PodBrief {
    pub pod_name: String,
    pub status: String,
    pub pod_ready: bool,
    pub containers_ready: bool,
    pub create_time: i64,
    pub ip: String,
    pub images: Vec<String>,
    pub workload_name: String,
    pub workload_type: String,
}

/// E10.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServicePods {
    pub service_name: String,
    pub pods: Vec<PodBrief>,
}

fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..120 => format!("{s}s"),
        120..10800 => format!("{}m", s / 60),
        10800..172800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// A container's status with the ports its spec declares.
fn container_view(
    c: &ContainerStatus,
    spec_ports: &BTreeMap<String, Vec<Value>>,
) -> ContainerStatusView {
    let (state, reason, message, started) = container_state(c.state.clone().unwrap_or_default());
    ContainerStatusView {
        name: c.name.clone(),
        image: c.image.clone(),
        restart_count: c.restart_count,
        status: state,
        ready: c.ready,
        ports: spec_ports.get(&c.name).cloned().unwrap_or_default(),
        message: message.trim().to_string(),
        reason,
        started_at: started,
    }
}

wire_enum! {
    /// A container's state, as Kubernetes names it in a pod's status.
    pub enum ContainerPhase as "ContainerPhase" {
        Running = "running",
        Waiting = "waiting",
        Terminated = "terminated",
    }
}

/// A container state as (state, reason, message, started at): a terminated container's
/// message names a non-zero exit code.
fn container_state(st: ContainerState) -> (ContainerPhase, String, String, i64) {
    if let Some(r) = st.running {
        (
            ContainerPhase::Running,
            String::new(),
            String::new(),
            r.started_at.map(|t| t.0.as_second()).unwrap_or(0),
        )
    } else if let Some(w) = st.waiting {
        (
            ContainerPhase::Waiting,
            w.reason.unwrap_or_default(),
            w.message.unwrap_or_default(),
            0,
        )
    } else if let Some(t) = st.terminated {
        let mut m = t.message.unwrap_or_default();
        if t.exit_code != 0 {
            m = format!("{m} exit code ({})", t.exit_code)
                .trim()
                .to_string();
        }
        (
            ContainerPhase::Terminated,
            t.reason.unwrap_or_default(),
            m,
            t.started_at.map(|t| t.0.as_second()).unwrap_or(0),
        )
    } else {
        (ContainerPhase::Waiting, String::new(), String::new(), 0)
    }
}

/// E9's view of a live pod at `now` (seconds).
pub fn pod_view(p: &Pod, now: i64) -> PodView {
    let meta = &p.metadata;
    let status = p.status.clone().unwrap_or_default();
    let created = meta
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    let cond = |t: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == t && c.status == "True")
    };
    let spec_ports: BTreeMap<String, Vec<Value>> = p
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| {
            (
                c.name.clone(),
                c.ports
                    .iter()
                    .flatten()
                    .filter_map(|p| serde_json::to_value(p).ok())
                    .collect(),
            )
        })
        .collect();
    let containers: Vec<ContainerStatusView> = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| container_view(c, &spec_ports))
        .collect();
    let containers_message = containers
        .iter()
        .filter(|c| !c.ready && !c.reason.is_empty())
        .map(|c| format!("{}: {}", c.name, c.reason))
        .collect::<Vec<_>>()
        .join("; ");
    PodView {
        kind: meta
            .owner_references
            .iter()
            .flatten()
            .next()
            .map(|o| o.kind.clone())
            .unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        status: status.phase.clone().unwrap_or_default(),
        age: age(now - created),
        createtime: created,
        ip: status.pod_ip.clone().unwrap_or_default(),
        labels: meta.labels.clone().unwrap_or_default(),
        node_name: p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        host_ip: status.host_ip.clone().unwrap_or_default(),
        enable_debug_container: false,
        pod_ready: cond("Ready"),
        containers_ready: cond("ContainersReady"),
        containers_message,
        containers,
    }
}
