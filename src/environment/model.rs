//! The stored environment (Zadig's `product` document, reduced to what K8s-YAML envs use).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::service_template::{GlobalVariableKV, RenderVariableKV};
use crate::wire::wire_enum;

wire_enum! {
    /// An environment's `status`. Creation applies every object before the record is stored,
    /// so a stored environment is `success`; Zadig's other states (`creating`, `deleting`, …)
    /// belong to its asynchronous creation and deletion, which this server does not have.
    #[derive(Default)]
    pub enum EnvStatus as "EnvStatus" {
        #[default]
        Success = "success",
    }
}

/// One environment. `env_key` is Zadig's storage `env_name`; `alias` is the OpenAPI
/// `env_name` (display name).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Environment {
    pub id: String,
    pub project_key: String,
    pub env_key: String,
    pub alias: String,
    pub production: bool,
    pub cluster_id: String,
    pub namespace: String,
    /// We created the namespace (and delete it with the environment); false when adopted.
    pub namespace_created: bool,
    pub registry_id: String,
    /// `spock`: a K8s-YAML environment.
    pub source: String,
    pub status: EnvStatus,
    pub error: String,
    pub services: Vec<EnvService>,
    /// Values of the project's global variables.
    pub global_variables: Vec<GlobalVariableKV>,
    /// The creator's uid: with admins, the only one who may change the environment.
    pub owner_uid: String,
    pub create_time: i64,
    pub update_time: i64,
    pub update_by: String,
    pub version: i64,
}

impl Environment {
    pub fn service(&self, name: &str) -> Option<&EnvService> {
        self.services.iter().find(|s| s.service_name == name)
    }
    pub fn service_mut(&mut self, name: &str) -> Option<&mut EnvService> {
        self.services.iter_mut().find(|s| s.service_name == name)
    }
    /// `environment "dev" of project "demo"`.
    pub fn label(&self) -> String {
        format!(
            "{}environment {:?} of project {:?}",
            if self.production { "production " } else { "" },
            self.env_key,
            self.project_key
        )
    }
}

/// A service deployed in an environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvService {
    pub service_name: String,
    /// The template revision deployed.
    pub revision: i64,
    /// `[RenderVariableKV]` the service was rendered with.
    pub variable_kvs: Vec<RenderVariableKV>,
    /// The images deployed per container (Zadig's service modules).
    pub containers: Vec<Container>,
    /// The rendered objects (JSON array text; stored as text so label keys with dots and
    /// `$` never reach MongoDB as field names) before the environment's own changes.
    pub manifests: String,
    /// What was applied, for deletes and live reads.
    pub resources: Vec<ResourceRef>,
    /// Replica counts and restarts asked through the API, re-applied with every apply.
    pub overrides: Vec<WorkloadOverride>,
    pub update_time: i64,
}

impl EnvService {
    pub fn objects(&self) -> Vec<Value> {
        serde_json::from_str(&self.manifests).unwrap_or_default()
    }
}

pub use crate::service_template::Container;

/// One object applied to the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRef {
    pub api_version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    pub name: String,
}

/// What the API changed on one workload besides its image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadOverride {
    pub kind: String,
    pub name: String,
    pub replicas: Option<i64>,
    /// `kubectl.kubernetes.io/restartedAt` of the last restart (RFC 3339).
    pub restarted_at: Option<String>,
}
