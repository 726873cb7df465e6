//! Cluster rules: create, list, update, delete (spec §3), and the lookup every
//! environment route uses ([`resolve`], [`client_for`]).

use serde::Serialize;
use utoipa::ToSchema;

use super::client::ClusterClient;
use super::model::{
    Cluster, ClusterInput, ClusterStatus, LOCAL_CLUSTER_ID, PROVIDERS, TYPE_KUBECONFIG, is_local,
};
use crate::auth::Identity;
use crate::error::{ApiError, ApiResult, ErrorKind};
use crate::state::AppState;
use crate::store::StoreError;
use crate::validate;

pub const CREATE_CLUSTER: (i64, &str) = (6641, "Create cluster failed");
pub const UPDATE_CLUSTER: (i64, &str) = (6642, "Update cluster failed");
pub const CLUSTER_NOT_FOUND: (i64, &str) = (6643, "Cluster not found");
pub const DELETE_CLUSTER: (i64, &str) = (6644, "Delete cluster failed");

/// Zadig's `OpenAPICluster`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterView {
    pub cluster_id: String,
    pub name: String,
    pub production: bool,
    pub description: String,
    pub provider: i64,
    pub provider_name: String,
    pub created_by: String,
    pub created_time: i64,
    pub local: bool,
    pub status: ClusterStatus,
    #[serde(rename = "type")]
    pub kind: String,
    pub project_names: Vec<String>,
}

impl From<&Cluster> for ClusterView {
    fn from(c: &Cluster) -> Self {
        Self {
            cluster_id: c.id.clone(),
            name: c.name.clone(),
            production: c.production,
            description: c.description.clone(),
            provider: c.provider,
            provider_name: usize::try_from(c.provider)
                .ok()
                .and_then(|i| PROVIDERS.get(i))
                .map(|s| (*s).to_string())
                .unwrap_or_default(),
            created_by: c.created_by.clone(),
            created_time: c.created_at,
            local: c.local,
            status: c.status,
            kind: c.kind.clone(),
            project_names: c.project_names.clone(),
        }
    }
}

/// The answer of C1: the cluster and Zadig's `agent_cmd` (empty: there is no agent).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ClusterCreated)]
pub struct Created {
    pub cluster: ClusterView,
    pub agent_cmd: String,
}

/// Whether the server itself runs in a Kubernetes cluster (the local cluster exists).
pub fn in_cluster() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

fn dedup(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let n = n.trim().to_string();
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// C1: register a kubeconfig cluster (admins). The kubeconfig is checked, not dialled: a
/// cluster may be registered before it is reachable; the routes that use it say when not.
pub async fn create(
    state: &AppState,
    caller: &Identity,
    input: ClusterInput,
) -> ApiResult<Created> {
    caller.require_admin()?;
    input.validate_create()?;
    let text = input.kube_config.clone().unwrap_or_default();
    super::client::kube_config(&text, state.clusters.clients_timeout()).await?;
    let now = state.clock.now();
    let c = Cluster {
        id: validate::new_object_id(now),
        name: input.name.trim().to_string(),
        description: input.description.trim().to_string(),
        provider: input.provider,
        production: input.production,
        kind: TYPE_KUBECONFIG.to_string(),
        kube_config: text,
        status: ClusterStatus::Normal,
        local: false,
        project_names: dedup(&input.project_names),
        created_at: now,
        created_by: format!("{}(openAPI)", caller.name),
        updated_at: now,
        version: 1,
    };
    state
        .clusters
        .store
        .insert(&c)
        .await
        .map_err(|e| write_error(e, CREATE_CLUSTER, &c.name))?;
    Ok(Created {
        cluster: (&c).into(),
        agent_cmd: String::new(),
    })
}

/// C2: the clusters offered to `project` (all without it), plus the local cluster when the
/// server runs in one.
pub async fn list(state: &AppState, project: Option<&str>) -> ApiResult<Vec<ClusterView>> {
    let mut all = Vec::new();
    if in_cluster() {
        all.push(Cluster::local());
    }
    all.extend(state.clusters.store.list().await?);
    Ok(all
        .iter()
        .filter(|c| match project {
            None | Some("") => true,
            Some(p) => c
                .project_names
                .iter()
                .any(|n| n == p || n == "<all_projects>"),
        })
        .map(Into::into)
        .collect())
}

/// The error of a failed cluster write: a taken name → 409 with the route's `code`.
fn write_error(e: StoreError, code: (i64, &str), name: &str) -> ApiError {
    match e {
        StoreError::Duplicate(_) => ApiError::code(
            ErrorKind::Conflict,
            code,
            format!("a cluster named {name:?} already exists"),
        ),
        e => e.into(),
    }
}

async fn stored(state: &AppState, id: &str, code: (i64, &str)) -> ApiResult<Cluster> {
    if is_local(id) {
        return Err(ApiError::code(
            ErrorKind::BadRequest,
            code,
            format!("the local cluster ({LOCAL_CLUSTER_ID}) is implicit and cannot be changed"),
        ));
    }
    state.clusters.store.get(id).await?.ok_or_else(|| {
        ApiError::code(
            ErrorKind::NotFound,
            CLUSTER_NOT_FOUND,
            format!("cluster {id} does not exist"),
        )
    })
}

/// C3: rename, describe, re-offer and (our extension) replace the kubeconfig (admins). The
/// cached client is dropped.
pub async fn update(
    state: &AppState,
    caller: &Identity,
    id: &str,
    input: ClusterInput,
) -> ApiResult<()> {
    caller.require_admin()?;
    input.validate_common()?;
    let mut c = stored(state, id, UPDATE_CLUSTER).await?;
    if let Some(k) = input
        .kube_config
        .as_deref()
        .filter(|k| !k.trim().is_empty())
    {
        super::client::kube_config(k, state.clusters.clients_timeout()).await?;
        c.kube_config = k.to_string();
    }
    let expected = c.version;
    c.name = input.name.trim().to_string();
    c.description = input.description.trim().to_string();
    c.provider = input.provider;
    c.production = input.production;
    c.project_names = dedup(&input.project_names);
    c.updated_at = state.clock.now();
    c.version += 1;
    let done = state
        .clusters
        .store
        .replace(&c, expected)
        .await
        .map_err(|e| write_error(e, UPDATE_CLUSTER, &c.name))?;
    state.clusters.clients.invalidate(id);
    if !done {
        return Err(ApiError::code(
            ErrorKind::Conflict,
            UPDATE_CLUSTER,
            format!("cluster {id} changed or was deleted meanwhile; read it again"),
        ));
    }
    Ok(())
}

/// C4: unregister a cluster no environment uses (admins). Nothing in the cluster changes.
pub async fn delete(state: &AppState, caller: &Identity, id: &str) -> ApiResult<()> {
    caller.require_admin()?;
    let c = stored(state, id, DELETE_CLUSTER).await?;
    let users = state.environments.store.in_cluster(&c.id).await?;
    if !users.is_empty() {
        return Err(ApiError::code(
            ErrorKind::Conflict,
            DELETE_CLUSTER,
            format!(
                "{} is used by environments {}: delete them first (请删除在该集群创建的环境后，再尝试删除该集群)",
                c.label(),
                users.join(", ")
            ),
        ));
    }
    state.clusters.store.delete(&c.id).await?;
    state.clusters.clients.invalidate(&c.id);
    Ok(())
}

/// The cluster an environment names (`""` and [`LOCAL_CLUSTER_ID`]: the local one); `None`
/// when no such cluster is registered.
pub async fn resolve(state: &AppState, id: &str) -> ApiResult<Option<Cluster>> {
    if is_local(id) {
        return Ok(Some(Cluster::local()));
    }
    Ok(state.clusters.store.get(id).await?)
}

/// The client of cluster `id`; a cluster deleted meanwhile is a 409 naming it.
pub async fn client_for(state: &AppState, id: &str) -> ApiResult<ClusterClient> {
    let c = resolve(state, id)
        .await?
        .ok_or_else(|| ApiError::conflict(format!("cluster {id} is no longer registered")))?;
    state.clusters.clients.get(&c).await
}
