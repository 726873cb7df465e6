//! The stored cluster and its input checks.

use crate::wire::wire_enum;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::validate;

/// Zadig's id of the cluster it runs in; an empty cluster id means the same.
pub const LOCAL_CLUSTER_ID: &str = "0123456789abcdef12345678";

/// Cluster types: `kubeconfig` is stored; `local` is the implicit in-cluster one; Zadig's
/// `agent` (reached through its hub server) is not supported.
pub const TYPE_KUBECONFIG: &str = "kubeconfig";
pub const TYPE_LOCAL: &str = "local";

/// Zadig's provider names by number (spec §1.2).
pub const PROVIDERS: &[&str] = &[
    "标准 Kubernetes 集群",
    "阿里云 ACK",
    "腾讯云 TKE",
    "华为云 CCE",
    "Amazon EKS",
    "腾讯云 TKE Serverless",
    "谷歌云 GCP",
    "微软云 AKS",
];

/// A registered cluster. `kube_config` is encrypted at rest and never leaves the server (nor
/// its `Debug` output).
#[derive(Clone, Serialize, Deserialize)]
pub struct Cluster {
    pub id: String,
    pub name: String,
    pub description: String,
    pub provider: i64,
    pub production: bool,
    /// `kubeconfig` or `local`.
    #[serde(rename = "type")]
    pub kind: String,
    pub kube_config: String,
    pub status: ClusterStatus,
    pub local: bool,
    /// The projects the cluster is offered to (`<all_projects>`: every project).
    pub project_names: Vec<String>,
    pub created_at: i64,
    pub created_by: String,
    pub updated_at: i64,
    /// Bumped on every change: the client cache rebuilds a client whose version is stale.
    pub version: i64,
}

wire_enum! {
    /// A cluster's `status`: kubeconfig clusters are always `normal` in Zadig (no agent reports
    /// on them); reachability is checked by the routes that call the cluster.
    #[derive(Default)]
    pub enum ClusterStatus as "ClusterStatus" {
        #[default]
        Normal = "normal",
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("type", &self.kind)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// The implicit in-cluster cluster.
    pub fn local() -> Self {
        Self {
            id: LOCAL_CLUSTER_ID.to_string(),
            name: "local".to_string(),
            description: "the cluster zadig-server runs in (in-cluster service account)"
                .to_string(),
            provider: 0,
            production: false,
            kind: TYPE_LOCAL.to_string(),
            kube_config: String::new(),
            status: ClusterStatus::Normal,
            local: true,
            project_names: vec!["<all_projects>".to_string()],
            created_at: 0,
            created_by: "system".to_string(),
            updated_at: 0,
            version: 0,
        }
    }

    /// `<name> (<id>)`, how errors name a cluster.
    pub fn label(&self) -> String {
        format!("cluster {:?} ({})", self.name, self.id)
    }
}

/// Whether `id` addresses the local cluster.
pub fn is_local(id: &str) -> bool {
    id.is_empty() || id == LOCAL_CLUSTER_ID
}

/// The body of `POST /openapi/system/cluster` and `PUT /openapi/system/cluster/{id}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct ClusterInput {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// 0–7 (Zadig's provider numbers); kept for display.
    #[serde(default)]
    pub provider: i64,
    #[serde(default)]
    pub production: bool,
    /// `kubeconfig` (the only type that can be registered).
    #[serde(default, rename = "type")]
    pub kind: String,
    /// The kubeconfig (YAML). On update, absent keeps the stored one.
    pub kube_config: Option<String>,
    #[serde(default)]
    pub project_names: Vec<String>,
}

impl ClusterInput {
    /// Name rule `^[0-9a-zA-Z-]{1,100}$` (after trimming), provider range, project names.
    pub fn validate_common(&self) -> ApiResult<()> {
        let name = self.name.trim();
        if name.is_empty()
            || name.chars().count() > 100
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(ApiError::bad_request(format!(
                "`name`: The cluster name does not meet the rules (1 to 100 letters, digits or `-`), got {:?}",
                self.name
            )));
        }
        validate::max_len("description", &self.description)?;
        if !(0..PROVIDERS.len() as i64).contains(&self.provider) {
            return Err(ApiError::bad_request(format!(
                "`provider` must be 0 to {}, got {}",
                PROVIDERS.len() - 1,
                self.provider
            )));
        }
        for p in &self.project_names {
            validate::name("project_names", p)?;
        }
        Ok(())
    }

    /// Create: the common rules, a `kubeconfig` type and a usable kubeconfig.
    pub fn validate_create(&self) -> ApiResult<()> {
        self.validate_common()?;
        match self.kind.as_str() {
            "" | TYPE_KUBECONFIG => {}
            "agent" => {
                return Err(ApiError::bad_request(
                    "`type`: agent clusters (reached through Zadig's hub server) are not supported; register the cluster with `type: kubeconfig`",
                ));
            }
            TYPE_LOCAL => {
                return Err(ApiError::bad_request(format!(
                    "`type`: the local cluster is not registered: it is always there as cluster id {LOCAL_CLUSTER_ID} (or an empty cluster id) when the server runs in a cluster"
                )));
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "`type` must be kubeconfig, got {other:?}"
                )));
            }
        }
        match &self.kube_config {
            Some(k) if !k.trim().is_empty() => super::client::check_kubeconfig(k).map(|_| ()),
            _ => Err(ApiError::bad_request(
                "`kube_config` is required for a kubeconfig cluster",
            )),
        }
    }
}
