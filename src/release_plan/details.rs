//! The rendered release-plan details the detail route answers with, cached in memory.
//!
//! On the embedded store (one process owns the database) `GET …/:id` answers from memory; on
//! MongoDB (several replicas, any of which may write) the cache is off. The cache is owned by
//! the state (`state.plan_details`); [`super::store::PlanStore`] holds a handle only to
//! invalidate an entry on every write of that plan.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use serde_json::Value;

use super::model::INTERNAL_KEY;
use super::store::PlanStore;
use crate::masking;
use crate::store::{StoreError, StoreResult};

/// Beyond this many cached details the cache starts over (bounded memory).
const DETAIL_CACHE_MAX: usize = 10_000;

/// Rendered plan details, by id. An entry is only filled when no plan was written while it was
/// being read (the epoch did not move), so a racing write can never leave a stale entry.
pub struct DetailCache {
    enabled: bool,
    epoch: AtomicU64,
    map: RwLock<HashMap<String, Bytes>>,
}

impl DetailCache {
    /// A cache, on only when this process is the store's one writer (the embedded backend).
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            epoch: AtomicU64::new(0),
            map: RwLock::new(HashMap::new()),
        }
    }

    /// The plan as the detail route shows it (without [`INTERNAL_KEY`]), rendered.
    pub async fn detail(&self, plans: &PlanStore, id: &str) -> StoreResult<Option<Bytes>> {
        if let Some(b) = self.get(id) {
            return Ok(Some(b));
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let Some(mut doc) = plans.raw(id).await? else {
            return Ok(None);
        };
        doc.remove(INTERNAL_KEY);
        let mut doc = Value::Object(doc);
        mask_secrets(&mut doc);
        let bytes =
            Bytes::from(serde_json::to_vec(&doc).map_err(|e| StoreError::Backend(e.to_string()))?);
        self.put(id, epoch, bytes.clone());
        Ok(Some(bytes))
    }

    fn get(&self, id: &str) -> Option<Bytes> {
        if !self.enabled {
            return None;
        }
        self.map.read().ok()?.get(id).cloned()
    }

    /// Forget plan `id` (it is being written).
    pub fn invalidate(&self, id: &str) {
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

/// A plan document with its workflow jobs' credential values masked: in the workflow copy (by
/// their `is_credential` mark) and wherever the job's execute input repeats one.
fn mask_secrets(doc: &mut Value) {
    for job in doc
        .get_mut("jobs")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let Some(spec) = job.get_mut("spec") else {
            continue;
        };
        let secrets = masking::secret_values(&spec["workflow"]);
        for input in ["parameters", "inputs"] {
            if let Some(v) = spec.get_mut(input) {
                masking::mask_values(v, &secrets);
            }
        }
    }
    masking::mask(doc);
}
