//! The stored project (spec/environments.md §1.1, Zadig's `template_product`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::service_template::ServiceVariableKV;
use crate::validate::nullable;

/// How a project deploys (`product_feature`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductFeature {
    /// `kubernetes` or `cloud_host`.
    #[serde(default)]
    pub basic_facility: String,
    /// `k8s` or `helm`.
    #[serde(default)]
    pub deploy_type: String,
    /// `system` (environments created by Zadig) or `external` (adopted).
    #[serde(default)]
    pub create_env_type: String,
    #[serde(default)]
    pub app_type: String,
}

/// A project. `product_name` is its key (`projectKey` in the OpenAPI).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub id: String,
    /// The project key, `^[a-z-\d]+$`.
    pub product_name: String,
    /// The display name (unique too).
    pub project_name: String,
    #[serde(default)]
    pub description: String,
    pub product_feature: ProductFeature,
    /// `is_public` on the wire.
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub revision: i64,
    /// Service orchestration groups of test environments.
    #[serde(default, deserialize_with = "nullable")]
    pub services: Vec<Vec<String>>,
    /// Service orchestration groups of production environments.
    #[serde(default, deserialize_with = "nullable")]
    pub production_services: Vec<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub global_variables: Vec<ServiceVariableKV>,
    #[serde(default, deserialize_with = "nullable")]
    pub production_global_variables: Vec<ServiceVariableKV>,
    /// Deploy rollout timeout in minutes (0: the default of 10).
    #[serde(default)]
    pub timeout: i64,
    #[serde(default)]
    pub release_max_history: i64,
    pub create_time: i64,
    pub update_time: i64,
    /// The display name of the last writer (Zadig reports it as `created_by`).
    #[serde(default)]
    pub update_by: String,
    /// The creator's uid.
    #[serde(default)]
    pub created_by_id: String,
    /// Uids of the project's admins (the creator).
    #[serde(default, deserialize_with = "nullable")]
    pub admins: Vec<String>,
    #[serde(default)]
    pub enabled: bool,
    /// Bumped by every write after the insert, for conditional replaces.
    #[serde(default)]
    pub version: i64,
}

impl Project {
    /// The project key.
    pub fn key(&self) -> &str {
        &self.product_name
    }

    /// The `deploy_type` Zadig reports: `external` for adopted environments, `cloud_host` for
    /// VM projects, else the feature's deploy type (`k8s` when unset).
    pub fn deploy_type(&self) -> &str {
        let f = &self.product_feature;
        if f.create_env_type == "external" {
            "external"
        } else if f.basic_facility == "cloud_host" {
            "cloud_host"
        } else if f.deploy_type.is_empty() {
            "k8s"
        } else {
            &f.deploy_type
        }
    }

    /// Whether the project holds K8s YAML services (the only kind this server deploys).
    pub fn is_k8s_yaml(&self) -> bool {
        self.deploy_type() == "k8s"
    }

    /// The orchestration groups of test or production environments.
    pub fn groups(&self, production: bool) -> &Vec<Vec<String>> {
        if production {
            &self.production_services
        } else {
            &self.services
        }
    }

    pub fn groups_mut(&mut self, production: bool) -> &mut Vec<Vec<String>> {
        if production {
            &mut self.production_services
        } else {
            &mut self.services
        }
    }
}
