//! The stored service template (spec/environments.md §1.3, Zadig's `template_service` and
//! `production_template_service`): one document per revision, test and production services in
//! one collection told apart by `production`.

use crate::wire::wire_enum;
use serde::{Deserialize, Serialize};

use super::manifest::Container;
use super::variables::ServiceVariableKV;
use crate::validate::nullable;

/// `type` of a K8s YAML service.
pub const TYPE_K8S: &str = "k8s";
/// `source` of a service created from raw YAML.
pub const SOURCE_SPOCK: &str = "spock";
wire_enum! {
    /// A revision's `status`: soft deletion marks every revision of a service `deleting`.
    /// [`Self::as_str`] is the stored string (store filters and updates compare it).
    #[derive(Default)]
    pub enum ServiceStatus {
        #[default]
        Active = "",
        Deleting = "deleting",
    }
}

/// One revision of a service. The service is its latest revision whose `status` is not
/// `deleting`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceTemplate {
    pub id: String,
    /// The project key.
    pub product_name: String,
    pub service_name: String,
    /// A production service (`production_template_service` in Zadig).
    #[serde(default)]
    pub production: bool,
    /// `k8s`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `spock`: created from raw YAML.
    pub source: String,
    /// 1, 2, … per (project, service, production); every YAML change is a new revision.
    pub revision: i64,
    pub create_time: i64,
    /// The creator's display name (Zadig's `create_by`).
    #[serde(default)]
    pub create_by: String,
    /// The uid of whoever created the service's first revision: its owner.
    #[serde(default)]
    pub created_by_id: String,
    /// The raw YAML (a Go template), line ends normalised to LF.
    pub yaml: String,
    /// sha256 hex of `yaml + "\n"`.
    pub hash256: String,
    /// The variables as one YAML mapping.
    #[serde(default)]
    pub variable_yaml: String,
    #[serde(default, deserialize_with = "nullable")]
    pub service_variable_kvs: Vec<ServiceVariableKV>,
    #[serde(default)]
    pub status: ServiceStatus,
    /// The containers (service modules) of the workloads the YAML defines.
    #[serde(default, deserialize_with = "nullable")]
    pub containers: Vec<Container>,
    /// Whether this is the newest revision of its service (lists read only these; older
    /// revisions are cleared after a newer one is stored).
    #[serde(default)]
    pub is_latest: bool,
    /// Bumped by every in-place write (variable updates), for conditional replaces.
    #[serde(default)]
    pub version: i64,
}
