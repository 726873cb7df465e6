//! The delivery-version aggregate as stored, and the create request it is built from
//! (seed 003, spec/delivery.md §3 and §6).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::wire::wire_enum;

/// Version `type` values.
pub const TYPE_K8S: &str = "K8SYaml";
pub const TYPE_HELM: &str = "HelmChart";

/// Version `source` values (DESIGN.md §5: anything else is 400).
pub const SOURCES: &[&str] = &["manual", "from_env", "from_version"];

wire_enum! {
    /// A version's status (seed 003), stored and sent as Zadig's lower-case names.
    pub enum VersionStatus as "VersionStatus" {
        /// Created; the pipeline has work to do.
        Creating = "creating",
        /// Retried after a failure; the pipeline has work to do again.
        Retrying = "retrying",
        Success = "success",
        Failed = "failed",
    }
}

impl VersionStatus {
    /// The statuses in which the pipeline still has work on a version.
    pub const PENDING: [Self; 2] = [Self::Creating, Self::Retrying];
}

wire_enum! {
    /// The status of one image copy or one chart push (Zadig's job statuses; `""` = not run).
    #[derive(Default)]
    pub enum ItemStatus as "ItemStatus" {
        #[default]
        NotRun = "",
        Running = "running",
        Passed = "passed",
        Failed = "failed",
    }
}

/// Where each part of an image reference goes in a Helm chart's values (dotted paths).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImagePath {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub repo: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
}

impl ImagePath {
    /// True when no member is set (treated like a missing path).
    pub fn is_empty(&self) -> bool {
        self.repo.is_empty()
            && self.namespace.is_empty()
            && self.image.is_empty()
            && self.tag.is_empty()
    }
}

/// One image of a service: where it is copied from and to, and how that went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionImage {
    pub container_name: String,
    pub image_name: String,
    /// The full source reference (with its tag or digest).
    pub source_image: String,
    pub source_image_tag: String,
    /// The full target reference (with its tag).
    pub target_image: String,
    pub target_image_tag: String,
    pub image_path: Option<ImagePath>,
    pub push_image: bool,
    /// Not copied / not pushed yet, `running`, `passed` or `failed`.
    pub status: ItemStatus,
    pub error: String,
    /// Digest of the copied manifest (same at source and target), once copied.
    #[serde(default)]
    pub digest: String,
}

/// One service of a version: its K8s YAML or Helm values, its chart and its images.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionService {
    pub service_name: String,
    pub chart_name: String,
    pub original_chart_version: String,
    pub chart_version: String,
    /// Helm only: not yet packaged, `passed` or `failed`.
    pub chart_status: ItemStatus,
    /// K8s manifests or Helm values, with image references rewritten to the targets.
    pub yaml_content: String,
    pub images: Vec<VersionImage>,
    pub error: String,
}

/// A delivery version. `status` `creating`/`retrying` means its pipeline has work to do;
/// the pipeline claims it through `lease_owner`/`lease_until_ms` and fences every write with
/// `attempt` (bumped by each retry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryVersion {
    pub id: String,
    /// The version name (`version_name` in requests).
    pub version: String,
    pub project_name: String,
    pub env_name: String,
    pub production: bool,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub original_version_name: String,
    pub desc: String,
    pub labels: Vec<String>,
    pub image_registry_id: String,
    pub chart_repo_name: String,
    pub services: Vec<VersionService>,
    pub status: VersionStatus,
    pub error: String,
    pub created_by: String,
    /// The creator's uid: the owner who, beside admins, may delete the version.
    #[serde(default)]
    pub created_by_id: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Pipeline run number: 1 at creation, +1 per retry.
    pub attempt: i64,
    pub lease_owner: String,
    /// Wall-clock ms until which `lease_owner` holds the pipeline run (0 = free).
    pub lease_until_ms: i64,
}

impl DeliveryVersion {
    /// Whether the pipeline still has work on this version.
    pub fn is_pending(&self) -> bool {
        VersionStatus::PENDING.contains(&self.status)
    }
}

/// A packaged Helm chart of one service of a version (kept with the version, pushed to the
/// chart repo when the version names one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChartPackage {
    /// `<version id>:<service name>`.
    pub id: String,
    pub version_id: String,
    pub service_name: String,
    pub chart_name: String,
    pub chart_version: String,
    /// False while this is only the base chart copied from the original version.
    pub packaged: bool,
    /// The `.tgz`, base64.
    pub tgz: String,
    pub updated_at: i64,
}

impl ChartPackage {
    pub fn key(version_id: &str, service_name: &str) -> String {
        format!("{version_id}:{service_name}")
    }
}

/// The create body of `POST /openapi/delivery/releases/k8s` and `/helm` (seed 003).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct NewVersion {
    #[serde(default)]
    pub project_key: String,
    #[serde(default)]
    pub version_name: String,
    /// `manual`, `from_env` or `from_version`.
    #[serde(default)]
    pub source: String,
    /// `from_env` (K8s YAML): the environment (its key) whose services' images and YAML the
    /// version takes.
    #[serde(default)]
    pub env_name: String,
    /// `from_env`: whether `env_name` is a production environment.
    #[serde(default)]
    pub production: bool,
    #[serde(default)]
    pub desc: String,
    pub labels: Option<Vec<String>>,
    #[serde(default)]
    pub image_registry_id: String,
    /// Helm: the chart repository the charts are pushed to (empty: packaged, not pushed).
    #[serde(default)]
    pub chart_repo_name: String,
    /// Accepted and ignored, as in Zadig.
    #[serde(default)]
    pub original_chart_repo_name: String,
    /// `from_version`: the version to copy from (Zadig's field, missing from the seed).
    #[serde(default)]
    pub original_version_name: String,
    pub services: Option<Vec<NewService>>,
}

/// A service of a create request.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct NewService {
    #[serde(default)]
    pub service_name: String,
    /// Helm: the chart's name (default: the service name; from_version: the original's).
    #[serde(default)]
    pub chart_name: String,
    #[serde(default)]
    pub original_chart_version: String,
    /// Helm: required.
    #[serde(default)]
    pub chart_version: String,
    #[serde(default)]
    pub yaml_content: String,
    pub images: Option<Vec<NewImage>>,
}

/// An image of a create request.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct NewImage {
    #[serde(default)]
    pub container_name: String,
    #[serde(default)]
    pub image_name: String,
    #[serde(default)]
    pub source_image: String,
    #[serde(default)]
    pub source_image_tag: String,
    #[serde(default)]
    pub target_image: String,
    #[serde(default)]
    pub target_image_tag: String,
    pub image_path: Option<ImagePath>,
    #[serde(default)]
    pub push_image: bool,
}
