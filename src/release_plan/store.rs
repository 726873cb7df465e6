//! Storage of release plans, their operation records and the hook setting, plus the wake-up
//! signals the scheduler loops wait on.
//!
//! Every write to a plan goes through [`PlanStore`], which keeps a cache of rendered plan
//! details coherent: on the embedded store (one process owns the database) `GET …/:id` answers
//! from memory; on MongoDB (several replicas) the cache is off.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;

use super::hooks::{HookSetting, SETTING_ID};
use super::model::{INTERNAL_KEY, ReleasePlan};
use crate::secrets::SecretBox;
use crate::store::lease::Encoding;
use crate::store::{Backend, Dir, Filter, FindOptions, StoreResult, Typed, Update};

/// The scheduler's claim on a plan (see [`crate::scheduler`]).
pub const CLAIM: Encoding = Encoding::at("internal.claim_owner", "internal.claim_until_ms");

/// One operation record (spec §9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    pub id: String,
    pub plan_id: String,
    pub username: String,
    pub account: String,
    pub verb: String,
    pub target_name: String,
    pub target_type: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub before: Value,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub after: Value,
    #[serde(default)]
    pub detail: String,
    /// The plan's version after the change (records are ordered by it, then by `seq`).
    #[serde(default)]
    pub version: i64,
    pub created_at: i64,
    /// Position within one change.
    #[serde(default)]
    pub seq: i64,
}

/// Wake-ups for the scheduler loops, so that work made due by this process starts at once
/// (other replicas find it by polling).
#[derive(Default)]
pub struct Wakers {
    pub schedule: Notify,
    pub timeouts: Notify,
    pub hooks: Notify,
}

/// Rendered plan details, by id. An entry is only filled when no plan was written while it was
/// being read (the epoch did not move), so a racing write can never leave a stale entry.
struct DetailCache {
    enabled: bool,
    epoch: AtomicU64,
    map: RwLock<HashMap<String, Bytes>>,
}

/// Beyond this many cached details the cache starts over (bounded memory).
const DETAIL_CACHE_MAX: usize = 10_000;

impl DetailCache {
    fn get(&self, id: &str) -> Option<Bytes> {
        if !self.enabled {
            return None;
        }
        self.map.read().ok()?.get(id).cloned()
    }

    fn invalidate(&self, id: &str) {
        if !self.enabled {
            return;
        }
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut m) = self.map.write() {
            m.remove(id);
        }
    }

    fn put(&self, id: &str, epoch: u64, bytes: Bytes) {
        if !self.enabled {
            return;
        }
        if let Ok(mut m) = self.map.write() {
            // Checked under the lock: invalidations take it too.
            if self.epoch.load(Ordering::SeqCst) != epoch {
                return;
            }
            if m.len() >= DETAIL_CACHE_MAX {
                m.clear();
            }
            m.insert(id.to_string(), bytes);
        }
    }
}

/// The release-plan collections.
pub struct PlanStore {
    plans: Typed<ReleasePlan>,
    pub logs: Typed<LogRecord>,
    pub settings: Typed<HookSetting>,
    pub wake: Wakers,
    details: DetailCache,
}

impl PlanStore {
    pub fn new(backend: &dyn Backend, secrets: &Arc<SecretBox>) -> Self {
        Self {
            plans: Typed::new(backend, "release_plans"),
            logs: Typed::new(backend, "release_plan_logs"),
            // `hook_secret` is encrypted at rest.
            settings: Typed::new(backend, "settings").sealed(secrets, &["hook_secret"]),
            wake: Wakers::default(),
            details: DetailCache {
                enabled: backend.kind() == "embedded",
                epoch: AtomicU64::new(0),
                map: RwLock::new(HashMap::new()),
            },
        }
    }

    pub async fn get(&self, id: &str) -> StoreResult<Option<ReleasePlan>> {
        self.plans.get(id).await
    }

    pub async fn find(&self, filter: &Filter, opts: &FindOptions) -> StoreResult<Vec<ReleasePlan>> {
        self.plans.find(filter, opts).await
    }

    pub async fn count(&self, filter: &Filter) -> StoreResult<u64> {
        self.plans.count(filter).await
    }

    /// The earliest value of the integer at `path` among plans matching `filter`.
    pub async fn earliest(&self, filter: &Filter, path: &str) -> StoreResult<Option<i64>> {
        let opts = FindOptions::sort(path, Dir::Asc).limit(1);
        let docs = self.plans.coll.find(filter, &opts).await?;
        Ok(docs.into_iter().next().and_then(|d| {
            path.split('.')
                .try_fold(&Value::Object(d), |v, k| v.get(k))
                .and_then(Value::as_i64)
        }))
    }

    /// The plan as the detail route shows it (without [`INTERNAL_KEY`]), rendered.
    pub async fn detail(&self, id: &str) -> StoreResult<Option<Bytes>> {
        if let Some(b) = self.details.get(id) {
            return Ok(Some(b));
        }
        let epoch = self.details.epoch.load(Ordering::SeqCst);
        let Some(mut doc) = self.plans.coll.find_one(&Filter::id(id)).await? else {
            return Ok(None);
        };
        doc.remove(INTERNAL_KEY);
        let bytes = Bytes::from(
            serde_json::to_vec(&doc)
                .map_err(|e| crate::store::StoreError::Backend(e.to_string()))?,
        );
        self.details.put(id, epoch, bytes.clone());
        Ok(Some(bytes))
    }

    pub async fn insert(&self, plan: &ReleasePlan) -> StoreResult<()> {
        self.details.invalidate(&plan.id);
        self.plans.insert(plan).await
    }

    /// Write `plan` if its stored version is still `expected`.
    pub async fn save(&self, plan: &ReleasePlan, expected: i64) -> StoreResult<bool> {
        let ok = self
            .plans
            .replace(
                &Filter::id(&plan.id).and(Filter::eq("version", expected)),
                plan,
            )
            .await;
        self.details.invalidate(&plan.id);
        ok
    }

    /// A partial update of plan `id` (`filter` narrows it further).
    pub async fn update(&self, id: &str, filter: Filter, update: &Update) -> StoreResult<bool> {
        let ok = self
            .plans
            .update_one(&Filter::id(id).and(filter), update)
            .await;
        self.details.invalidate(id);
        ok
    }

    /// Atomically update the first plan matching `filter` in `sort` order; returns it updated.
    pub async fn claim(
        &self,
        filter: &Filter,
        sort: &str,
        update: &Update,
    ) -> StoreResult<Option<ReleasePlan>> {
        let got = self
            .plans
            .find_one_and_update(filter, &[(sort.to_string(), Dir::Asc)], update)
            .await?;
        if let Some(p) = &got {
            self.details.invalidate(&p.id);
        }
        Ok(got)
    }

    /// Delete plan `id`; false when it did not exist.
    pub async fn delete(&self, id: &str) -> StoreResult<bool> {
        let n = self.plans.delete(&Filter::id(id)).await;
        self.details.invalidate(id);
        Ok(n? > 0)
    }

    /// The hook setting (the default, disabled one when never set).
    pub async fn hook_setting(&self) -> StoreResult<HookSetting> {
        Ok(self
            .settings
            .get(SETTING_ID)
            .await?
            .unwrap_or_else(|| HookSetting {
                id: SETTING_ID.to_string(),
                ..HookSetting::default()
            }))
    }

    /// A plan's operation records, newest first.
    pub async fn logs_of(&self, plan_id: &str) -> StoreResult<Vec<LogRecord>> {
        self.logs
            .find(
                &Filter::eq("plan_id", plan_id),
                &FindOptions::sort("version", Dir::Desc).then("seq", Dir::Desc),
            )
            .await
    }
}
