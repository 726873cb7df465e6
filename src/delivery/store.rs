//! Queries over `delivery_versions` and `delivery_charts`.
//!
//! Every write the pipeline makes is fenced: it matches the version's id, its `attempt` and
//! the pipeline's lease owner, so a deleted version, a retried one or a run taken over by
//! another replica after a lost lease is never overwritten by a stale run.

use std::time::Duration;

use serde_json::Value;

use super::model::{ChartPackage, DeliveryVersion, VersionService, VersionStatus};
use crate::limits::Paging;
use crate::store::lease::Encoding;
use crate::store::{
    Backend, Dir, Filter, FindOptions, StoreError, StoreResult, Typed, Update, to_doc,
};

/// The pipeline's lease on a version.
const LEASE: Encoding = Encoding::at("lease_owner", "lease_until_ms");

#[derive(Clone)]
pub struct VersionStore {
    versions: Typed<DeliveryVersion>,
    charts: Typed<ChartPackage>,
}

fn services_value(services: &[VersionService]) -> StoreResult<Value> {
    serde_json::to_value(services)
        .map_err(|e| StoreError::Backend(format!("serialize services: {e}")))
}

impl VersionStore {
    pub fn new(backend: &dyn Backend) -> Self {
        Self {
            versions: Typed::new(backend, "delivery_versions"),
            charts: Typed::new(backend, "delivery_charts"),
        }
    }

    /// Insert; a taken `(project_name, version)` is [`StoreError::Duplicate`].
    pub async fn insert(&self, v: &DeliveryVersion) -> StoreResult<()> {
        self.versions.insert(v).await
    }

    pub async fn get(&self, id: &str) -> StoreResult<Option<DeliveryVersion>> {
        self.versions.get(id).await
    }

    pub async fn by_name(
        &self,
        project: &str,
        version: &str,
    ) -> StoreResult<Option<DeliveryVersion>> {
        self.versions
            .find_one(&Filter::eq("project_name", project).and(Filter::eq("version", version)))
            .await
    }

    /// One page of a project's versions, newest first, and the project's total.
    pub async fn page(&self, project: &str, p: Paging) -> StoreResult<(Vec<DeliveryVersion>, u64)> {
        let filter = Filter::eq("project_name", project);
        let opts = FindOptions::sort("created_at", Dir::Desc)
            .then("id", Dir::Desc)
            .page(p.num, p.size);
        self.versions.page(&filter, &opts).await
    }

    /// Delete a project's version and its chart packages; false when there was none.
    pub async fn delete(&self, project: &str, id: &str) -> StoreResult<bool> {
        let n = self
            .versions
            .delete(&Filter::id(id).and(Filter::eq("project_name", project)))
            .await?;
        if n > 0 {
            self.charts.delete(&Filter::eq("version_id", id)).await?;
        }
        Ok(n > 0)
    }

    /// Claim the oldest version with pipeline work whose lease is free or expired.
    pub async fn claim(&self, owner: &str, ttl: Duration) -> StoreResult<Option<DeliveryVersion>> {
        let filter = Filter::is_in("status", VersionStatus::PENDING.map(VersionStatus::as_str))
            .and(LEASE.free());
        let sort = [("created_at".to_string(), Dir::Asc)];
        let update = LEASE.take(Update::new(), owner, ttl);
        self.versions
            .find_one_and_update(&filter, &sort, &update)
            .await
    }

    fn fence(v: &DeliveryVersion, owner: &str) -> Filter {
        Filter::id(&v.id)
            .and(Filter::eq("attempt", v.attempt))
            .and(LEASE.taken_by(owner))
            .and(Filter::is_in(
                "status",
                VersionStatus::PENDING.map(VersionStatus::as_str),
            ))
    }

    /// Extend our lease; false when the run is no longer ours (deleted, retried, taken over).
    pub async fn renew(
        &self,
        v: &DeliveryVersion,
        owner: &str,
        ttl: Duration,
    ) -> StoreResult<bool> {
        self.versions
            .update_one(&Self::fence(v, owner), &LEASE.renew(Update::new(), ttl))
            .await
    }

    /// Record progress on the services; false when the run is no longer ours.
    pub async fn save_services(
        &self,
        v: &DeliveryVersion,
        owner: &str,
        now: i64,
    ) -> StoreResult<bool> {
        self.versions
            .update_one(
                &Self::fence(v, owner),
                &Update::new()
                    .set("services", services_value(&v.services)?)
                    .set("updated_at", now),
            )
            .await
    }

    /// Write the run's outcome and free the lease; false when the run is no longer ours.
    pub async fn finish(&self, v: &DeliveryVersion, owner: &str, now: i64) -> StoreResult<bool> {
        self.versions
            .update_one(
                &Self::fence(v, owner),
                &LEASE.clear(
                    Update::new()
                        .set("services", services_value(&v.services)?)
                        .set("status", v.status.as_str())
                        .set("error", v.error.clone())
                        .set("updated_at", now),
                ),
            )
            .await
    }

    /// Give the run up without an outcome (shutdown), so another replica or the next start
    /// takes it over at once.
    pub async fn release(&self, v: &DeliveryVersion, owner: &str) -> StoreResult<bool> {
        self.versions
            .update_one(&Self::fence(v, owner), &LEASE.hand_over(Update::new()))
            .await
    }

    /// Move a `failed` version of `project` to `retrying` for a new attempt; `None` when it is
    /// not (or no longer) failed.
    pub async fn start_retry(
        &self,
        project: &str,
        id: &str,
        now: i64,
    ) -> StoreResult<Option<DeliveryVersion>> {
        let filter = Filter::id(id)
            .and(Filter::eq("project_name", project))
            .and(Filter::eq("status", VersionStatus::Failed.as_str()));
        let update = LEASE.clear(
            Update::new()
                .set("status", VersionStatus::Retrying.as_str())
                .set("error", "")
                .set("updated_at", now)
                .inc("attempt", 1),
        );
        self.versions
            .find_one_and_update(&filter, &[], &update)
            .await
    }

    /// Store (or replace) a service's chart package.
    pub async fn put_chart(&self, c: &ChartPackage) -> StoreResult<()> {
        if self.charts.replace(&Filter::id(&c.id), c).await? {
            return Ok(());
        }
        match self.charts.coll.insert(to_doc(c)?).await {
            Ok(()) => Ok(()),
            // Raced with another writer of the same key: ours is as good; overwrite.
            Err(StoreError::Duplicate(_)) => {
                self.charts.replace(&Filter::id(&c.id), c).await.map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    pub async fn chart(
        &self,
        version_id: &str,
        service: &str,
    ) -> StoreResult<Option<ChartPackage>> {
        self.charts
            .get(&ChartPackage::key(version_id, service))
            .await
    }
}
