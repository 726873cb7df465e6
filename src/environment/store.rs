//! `environments` (unique on `project_key` + `env_key`). Writes after the insert are
//! conditional on `version`.

use super::model::Environment;
use crate::store::{Backend, Dir, Filter, FindOptions, StoreResult, Typed};

#[derive(Clone)]
pub struct EnvStore {
    envs: Typed<Environment>,
}

impl EnvStore {
    pub fn new(backend: &dyn Backend) -> Self {
        Self {
            envs: Typed::new(backend, "environments"),
        }
    }

    /// Insert; a taken project + env key is `StoreError::Duplicate`.
    pub async fn insert(&self, e: &Environment) -> StoreResult<()> {
        self.envs.insert(e).await
    }

    pub async fn get(&self, project: &str, env: &str) -> StoreResult<Option<Environment>> {
        self.envs
            .find_one(&Filter::eq("project_key", project).and(Filter::eq("env_key", env)))
            .await
    }

    /// The project's environments of one kind, oldest first.
    pub async fn list(&self, project: &str, production: bool) -> StoreResult<Vec<Environment>> {
        self.envs
            .find(
                &Filter::eq("project_key", project).and(Filter::eq("production", production)),
                &FindOptions::sort("create_time", Dir::Asc).then("env_key", Dir::Asc),
            )
            .await
    }

    /// `project/env` of every environment in cluster `id`.
    pub async fn in_cluster(&self, id: &str) -> StoreResult<Vec<String>> {
        Ok(self
            .envs
            .find(&Filter::eq("cluster_id", id), &FindOptions::default())
            .await?
            .into_iter()
            .map(|e| format!("{}/{}", e.project_key, e.env_key))
            .collect())
    }

    /// Environments using namespace `ns` of cluster `cluster`.
    pub async fn in_namespace(&self, cluster: &str, ns: &str) -> StoreResult<Vec<Environment>> {
        self.envs
            .find(
                &Filter::eq("cluster_id", cluster).and(Filter::eq("namespace", ns)),
                &FindOptions::default(),
            )
            .await
    }

    /// Replace `e` if it is still at `expected_version` (`e.version` already the next one).
    pub async fn replace(&self, e: &Environment, expected_version: i64) -> StoreResult<bool> {
        self.envs.replace_version(&e.id, expected_version, e).await
    }

    pub async fn delete(&self, id: &str) -> StoreResult<bool> {
        Ok(self.envs.delete(&Filter::id(id)).await? > 0)
    }
}
