//! `k8s_clusters` (unique on `name`); `kube_config` is sealed at rest.

use std::sync::Arc;

use super::model::Cluster;
use crate::secrets::SecretBox;
use crate::store::{Backend, Dir, Filter, FindOptions, StoreResult, Typed};

#[derive(Clone)]
pub struct ClusterStore {
    clusters: Typed<Cluster>,
}

impl ClusterStore {
    pub fn new(backend: &dyn Backend, secrets: &Arc<SecretBox>) -> Self {
        Self {
            clusters: Typed::new(backend, "k8s_clusters").sealed(secrets, &["kube_config"]),
        }
    }

    /// Insert; a taken name is `StoreError::Duplicate`.
    pub async fn insert(&self, c: &Cluster) -> StoreResult<()> {
        self.clusters.insert(c).await
    }

    pub async fn get(&self, id: &str) -> StoreResult<Option<Cluster>> {
        self.clusters.get(id).await
    }

    pub async fn by_name(&self, name: &str) -> StoreResult<Option<Cluster>> {
        self.clusters.find_one(&Filter::eq("name", name)).await
    }

    /// Every cluster, oldest first.
    pub async fn list(&self) -> StoreResult<Vec<Cluster>> {
        self.clusters
            .find(
                &Filter::All,
                &FindOptions::sort("created_at", Dir::Asc).then("id", Dir::Asc),
            )
            .await
    }

    /// Replace `c` if it is still at `expected_version`.
    pub async fn replace(&self, c: &Cluster, expected_version: i64) -> StoreResult<bool> {
        self.clusters
            .replace_version(&c.id, expected_version, c)
            .await
    }

    pub async fn delete(&self, id: &str) -> StoreResult<bool> {
        Ok(self.clusters.delete(&Filter::id(id)).await? > 0)
    }
}
