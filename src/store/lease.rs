//! Leases: exactly one holder of a named piece of work until a deadline.
//!
//! A lease is a document `{id: name, owner, until_ms}` in `leases`. Claiming updates it only
//! when it has expired or is already ours; when it does not exist yet a plain insert creates
//! it, and a racing claimer loses on the duplicate key. Deadlines are wall-clock milliseconds
//! (lease expiry is about process liveness, not business time, so the injected clock is not
//! used here).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{Backend, Collection, Filter, StoreError, StoreResult, Update, to_doc};

/// Named leases shared by every replica on one store.
#[derive(Clone)]
pub struct Leases {
    coll: Arc<dyn Collection>,
}

/// Milliseconds since the Unix epoch, wall clock.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Leases {
    pub fn new(backend: &dyn Backend) -> Self {
        Self {
            coll: backend.collection("leases"),
        }
    }

    /// Claim (or renew) `name` for `owner` for `ttl`. True when `owner` holds it now.
    pub async fn claim(&self, name: &str, owner: &str, ttl: Duration) -> StoreResult<bool> {
        let now = now_ms();
        let until = now + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let filter = Filter::id(name).and(Filter::Or(vec![
            Filter::lt("until_ms", now),
            Filter::eq("owner", owner),
        ]));
        let set = Update::new().set("owner", owner).set("until_ms", until);
        if self.coll.update_one(&filter, &set).await? {
            return Ok(true);
        }
        let doc = to_doc(&json!({"id": name, "owner": owner, "until_ms": until}))?;
        match self.coll.insert(doc).await {
            Ok(()) => Ok(true),
            Err(StoreError::Duplicate(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Give `name` up if `owner` holds it.
    pub async fn release(&self, name: &str, owner: &str) -> StoreResult<()> {
        self.coll
            .delete_many(&Filter::id(name).and(Filter::eq("owner", owner)))
            .await?;
        Ok(())
    }
}
