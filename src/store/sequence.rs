//! Atomic counters (release-plan `index`, per-workflow `task_id`).
//!
//! A counter is a document `{id: name, seq}` in the `counters` collection, incremented with one
//! find-one-and-update. A missing counter is created with a plain insert (a concurrent creator
//! gets a duplicate-key error and simply retries the increment); we never rely on an upsert to
//! create it, because racing upserts are answered differently by MongoDB and its stand-ins.

use std::sync::Arc;

use serde_json::json;

use super::{Backend, Collection, Filter, StoreError, StoreResult, Update, to_doc};

/// Named atomic counters.
#[derive(Clone)]
pub struct Sequences {
    coll: Arc<dyn Collection>,
}

impl Sequences {
    pub fn new(backend: &dyn Backend) -> Self {
        Self {
            coll: backend.collection("counters"),
        }
    }

    /// The next value of the counter `name`: 1, 2, 3 … with no value handed out twice.
    pub async fn next(&self, name: &str) -> StoreResult<i64> {
        let mut attempts = super::retry::Attempts::new();
        while attempts.next().await {
            let updated = self
                .coll
                .find_one_and_update(&Filter::id(name), &[], &Update::new().inc("seq", 1))
                .await?;
            if let Some(doc) = updated {
                return doc
                    .get("seq")
                    .and_then(serde_json::Value::as_i64)
                    .ok_or_else(|| StoreError::Backend(format!("counter {name} has no seq")));
            }
            match self
                .coll
                .insert(to_doc(&json!({"id": name, "seq": 0}))?)
                .await
            {
                Ok(()) | Err(StoreError::Duplicate(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Backend(format!(
            "counter {name}: too much contention"
        )))
    }
}
