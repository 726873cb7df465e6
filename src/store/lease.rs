//! Leases: exactly one holder of a piece of work until a deadline.
//!
//! One encoding, two places. A lease is an owner (a process' `instance_id`) and a wall-clock
//! deadline in milliseconds, free once the deadline has passed ([`Encoding`]). It lives either
//! in its own document `{id: name, owner, until_ms}` in `leases` ([`Leases`], for named work
//! such as a process' liveness or the dispatcher's counting round), or on the work document
//! itself ([`Encoding`] at that document's paths: a release plan's scheduler claim, a delivery
//! version's pipeline run, a workflow task's runner), so that claiming the work and writing it
//! can be one conditional update fenced by the owner.
//!
//! Claiming a named lease updates it only when it has expired or is already ours; when it does
//! not exist yet a plain insert creates it, and a racing claimer loses on the duplicate key.
//! Deadlines are wall-clock milliseconds (lease expiry is about process liveness, not business
//! time, so the injected clock is not used here).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{Backend, Collection, Filter, StoreError, StoreResult, Update, to_doc};

/// Where a lease is kept in a document: the paths of its owner and of its deadline.
#[derive(Debug, Clone, Copy)]
pub struct Encoding {
    pub owner: &'static str,
    pub until: &'static str,
}

/// The named leases of the `leases` collection.
const NAMED: Encoding = Encoding::at("owner", "until_ms");

/// The deadline of a lease taken now for `ttl`.
pub fn deadline(ttl: Duration) -> i64 {
    now_ms().saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2))
}

impl Encoding {
    /// A lease kept at `owner` and `until` (dotted paths) of a document.
    pub const fn at(owner: &'static str, until: &'static str) -> Self {
        Self { owner, until }
    }
    /// Matches a document whose lease is free: never taken, given back, or expired.
    pub fn free(&self) -> Filter {
        Filter::lt(self.until, now_ms())
    }
    /// Matches a document whose lease `owner` took (whether or not it has expired since).
    pub fn taken_by(&self, owner: &str) -> Filter {
        Filter::eq(self.owner, owner)
    }
    /// Matches a document whose lease is held, by anyone, until after now.
    pub fn held(&self) -> Filter {
        Filter::gte(self.until, now_ms())
    }
    /// `update` plus taking (or renewing) the lease for `owner` for `ttl`.
    pub fn take(&self, update: Update, owner: &str, ttl: Duration) -> Update {
        update.set(self.owner, owner).set(self.until, deadline(ttl))
    }
    /// `update` plus extending the lease by `ttl` from now (fence it with [`Self::taken_by`]).
    pub fn renew(&self, update: Update, ttl: Duration) -> Update {
        update.set(self.until, deadline(ttl))
    }
    /// `update` plus making the lease free at once, the owner kept (a hand-over: the next
    /// claim may come from anyone).
    pub fn hand_over(&self, update: Update) -> Update {
        update.set(self.until, 0)
    }
    /// `update` plus clearing the lease: no owner, free.
    pub fn clear(&self, update: Update) -> Update {
        update.set(self.owner, "").set(self.until, 0)
    }
}

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
        let filter = Filter::id(name).and(Filter::Or(vec![NAMED.free(), NAMED.taken_by(owner)]));
        let set = NAMED.take(Update::new(), owner, ttl);
        if self.coll.update_one(&filter, &set).await? {
            return Ok(true);
        }
        let mut doc = to_doc(&json!({"id": name}))?;
        for (path, value) in set.set {
            doc.insert(path, value);
        }
        match self.coll.insert(doc).await {
            Ok(()) => Ok(true),
            Err(StoreError::Duplicate(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether someone holds `name` now.
    pub async fn is_held(&self, name: &str) -> StoreResult<bool> {
        let held = self
            .coll
            .find_one(&Filter::id(name).and(NAMED.held()))
            .await?;
        Ok(held.is_some())
    }

    /// Give `name` up if `owner` holds it.
    pub async fn release(&self, name: &str, owner: &str) -> StoreResult<()> {
        self.coll
            .delete_many(&Filter::id(name).and(NAMED.taken_by(owner)))
            .await?;
        Ok(())
    }

    /// Hold `name` for one piece of work of process `instance` until the returned guard is
    /// dropped, waiting for another holder at most `wait` (`None` then). The owner is unique
    /// to this hold, so a guard given back late never frees a later hold of the same process.
    /// The guard renews the lease every third of `ttl`; a process that dies lets it expire.
    pub async fn hold(
        &self,
        name: &str,
        instance: &str,
        ttl: Duration,
        wait: Duration,
    ) -> StoreResult<Option<Held>> {
        let owner = format!("{instance}/{}", uuid::Uuid::new_v4().simple());
        let give_up = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(10);
        while !self.claim(name, &owner, ttl).await? {
            let left = give_up.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
        let renewer = tokio::spawn({
            let (leases, name, owner) = (self.clone(), name.to_string(), owner.clone());
            async move {
                loop {
                    tokio::time::sleep(ttl / 3).await;
                    match leases.claim(&name, &owner, ttl).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(lease = %name, "a held lease was lost (it expired and was taken)");
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(lease = %name, "renewing a held lease failed: {e}")
                        }
                    }
                }
            }
        });
        Ok(Some(Held {
            leases: self.clone(),
            name: name.to_string(),
            owner,
            renewer,
        }))
    }
}

/// A named lease held until dropped (see [`Leases::hold`]).
pub struct Held {
    leases: Leases,
    name: String,
    owner: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewer.abort();
        let (leases, name, owner) = (
            self.leases.clone(),
            std::mem::take(&mut self.name),
            std::mem::take(&mut self.owner),
        );
        // Outside a runtime (a process going down) the lease simply expires.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = leases.release(&name, &owner).await {
                    tracing::warn!(lease = %name, "giving a lease back failed (it will expire): {e}");
                }
            });
        }
    }
}
