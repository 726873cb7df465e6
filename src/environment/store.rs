//! `environments` (unique on `project_key` + `env_key`). Writes after the insert are
//! conditional on `version`.

use std::sync::Arc;

use serde_json::Value;

use super::model::{Environment, repair_legacy_globals};
use crate::store::{
    Backend, Collection, Dir, Doc, Filter, FindOptions, StoreError, StoreResult, Typed, Update,
};

/// Documents read at a time by [`EnvStore::repair_legacy`].
const REPAIR_PAGE: usize = 100;
/// The collection of one-off data migrations done, by id.
const MIGRATIONS: &str = "migrations";
/// The id of [`EnvStore::repair_legacy`]'s record there.
const LEGACY_GLOBALS_DONE: &str = "environments.legacy_global_variables";

#[derive(Clone)]
pub struct EnvStore {
    envs: Typed<Environment>,
    migrations: Arc<dyn Collection>,
}

impl EnvStore {
    pub fn new(backend: &dyn Backend) -> Self {
        Self {
            envs: Typed::new(backend, "environments"),
            migrations: backend.collection(MIGRATIONS),
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
            .placed(id, None)
            .await?
            .into_iter()
            .map(|e| format!("{}/{}", e.project_key, e.env_key))
            .collect())
    }

    /// Environments using namespace `ns` of cluster `cluster`.
    pub async fn in_namespace(&self, cluster: &str, ns: &str) -> StoreResult<Vec<Environment>> {
        self.placed(cluster, Some(ns)).await
    }

    /// Environments of cluster `cluster` (index `cluster`), in namespace `ns` if given (index
    /// `cluster_namespace`).
    pub async fn placed(&self, cluster: &str, ns: Option<&str>) -> StoreResult<Vec<Environment>> {
        let mut filter = Filter::eq("cluster_id", cluster);
        if let Some(ns) = ns {
            filter = filter.and(Filter::eq("namespace", ns));
        }
        self.envs.find(&filter, &FindOptions::default()).await
    }

    /// Replace `e` if it is still at `expected_version` (`e.version` already the next one).
    pub async fn replace(&self, e: &Environment, expected_version: i64) -> StoreResult<bool> {
        self.envs.replace_version(&e.id, expected_version, e).await
    }

    pub async fn delete(&self, id: &str) -> StoreResult<bool> {
        Ok(self.envs.delete(&Filter::id(id)).await? > 0)
    }

    /// Start-up repair of environments an earlier version stored with `global_variables`
    /// entries that do not decode ([`repair_legacy_globals`]); how many it rewrote. A document
    /// that still does not decode is logged as an error. Reads the collection a page at a
    /// time by id, once: a complete pass is recorded in [`MIGRATIONS`] and later starts skip
    /// it (this version never stores such entries). Each rewrite is conditional on the
    /// document's `version`; one that loses to a change made meanwhile (or to another replica
    /// repairing too) leaves the pass incomplete, so the next start looks again.
    pub async fn repair_legacy(&self) -> StoreResult<usize> {
        let done = Filter::id(LEGACY_GLOBALS_DONE);
        if self.migrations.find_one(&done).await?.is_some() {
            return Ok(0);
        }
        let mut repaired = 0;
        let mut complete = true;
        let mut after: Option<String> = None;
        loop {
            let filter = after
                .as_deref()
                .map_or(Filter::All, |a| Filter::gt("id", a));
            let page = self
                .envs
                .coll
                .find(
                    &filter,
                    &FindOptions::sort("id", Dir::Asc).limit(REPAIR_PAGE as u64),
                )
                .await?;
            for mut doc in page.iter().cloned() {
                let (Some(id), Some(version)) = (
                    doc.get("id").and_then(Value::as_str).map(str::to_string),
                    doc.get("version").and_then(Value::as_i64),
                ) else {
                    continue;
                };
                let moved = repair_legacy_globals(&mut doc);
                if let Err(e) = serde_json::from_value::<Environment>(Value::Object(doc.clone())) {
                    // Something this repair does not cover: say so now rather than at the
                    // first request (which answers 500 for this environment).
                    tracing::error!(environment.id = %id, "stored environment {id} does not decode: {e}");
                }
                if moved == 0 {
                    continue;
                }
                let update = Update::new()
                    .set("global_variables", doc["global_variables"].clone())
                    .set(
                        "legacy_global_variables",
                        doc["legacy_global_variables"].clone(),
                    );
                let filter = Filter::id(&id).and(Filter::eq("version", version));
                if self.envs.coll.update_one(&filter, &update).await? {
                    tracing::warn!(
                        environment.id = %id,
                        "environment {id}: moved {moved} global variable value(s) that an earlier version stored unchecked and that do not decode (e.g. no `key`) to legacy_global_variables"
                    );
                    repaired += 1;
                } else {
                    complete = false;
                }
            }
            let last = page
                .last()
                .and_then(|d| d.get("id"))
                .and_then(Value::as_str);
            match last {
                Some(id) if page.len() == REPAIR_PAGE => after = Some(id.to_string()),
                _ => break,
            }
        }
        if complete {
            let record = Doc::from_iter([
                ("id".to_string(), Value::from(LEGACY_GLOBALS_DONE)),
                ("repaired".to_string(), Value::from(repaired)),
            ]);
            match self.migrations.insert(record).await {
                // Another replica finished the same pass first.
                Ok(()) | Err(StoreError::Duplicate(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(repaired)
    }
}
