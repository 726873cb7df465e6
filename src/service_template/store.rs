//! Queries over `service_templates` (unique on project, service, production flag and revision).

use super::model::{ServiceStatus, ServiceTemplate};
use crate::store::{Backend, Dir, Filter, FindOptions, StoreResult, Typed, Update};

#[derive(Clone)]
pub struct ServiceTemplateStore {
    revisions: Typed<ServiceTemplate>,
}

fn service(project: &str, name: &str, production: bool) -> Filter {
    Filter::eq("product_name", project)
        .and(Filter::eq("service_name", name))
        .and(Filter::eq("production", production))
}

impl ServiceTemplateStore {
    pub fn new(backend: &dyn Backend) -> Self {
        Self {
            revisions: Typed::new(backend, "service_templates"),
        }
    }

    /// Insert a revision; an existing (project, service, production, revision) is `Duplicate`.
    pub async fn insert(&self, t: &ServiceTemplate) -> StoreResult<()> {
        self.revisions.insert(t).await
    }

    /// The latest revision that is not deleted.
    pub async fn latest(
        &self,
        project: &str,
        name: &str,
        production: bool,
    ) -> StoreResult<Option<ServiceTemplate>> {
        let filter = service(project, name, production)
            .and(Filter::ne("status", ServiceStatus::Deleting.as_str()));
        let opts = FindOptions::sort("revision", Dir::Desc).limit(1);
        Ok(self
            .revisions
            .find(&filter, &opts)
            .await?
            .into_iter()
            .next())
    }

    /// One revision, deleted or not.
    pub async fn revision(
        &self,
        project: &str,
        name: &str,
        production: bool,
        revision: i64,
    ) -> StoreResult<Option<ServiceTemplate>> {
        self.revisions
            .find_one(&service(project, name, production).and(Filter::eq("revision", revision)))
            .await
    }

    /// The latest revision of every service of `project` that is not deleted, by name. Reads
    /// only revisions flagged `is_latest` (a superseded revision may still carry the flag for a
    /// moment: the newest per name wins).
    pub async fn list_latest(
        &self,
        project: &str,
        production: bool,
    ) -> StoreResult<Vec<ServiceTemplate>> {
        let filter = Filter::eq("product_name", project)
            .and(Filter::eq("production", production))
            .and(Filter::eq("is_latest", true))
            .and(Filter::ne("status", ServiceStatus::Deleting.as_str()));
        let opts = FindOptions::sort("service_name", Dir::Asc).then("revision", Dir::Desc);
        let mut out: Vec<ServiceTemplate> = Vec::new();
        for t in self.revisions.find(&filter, &opts).await? {
            if out.last().is_none_or(|l| l.service_name != t.service_name) {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Clear `is_latest` on the revisions of a service older than `revision` (bumping their
    /// version, so an in-place update of a superseded revision fails).
    pub async fn supersede(
        &self,
        project: &str,
        name: &str,
        production: bool,
        revision: i64,
    ) -> StoreResult<u64> {
        self.revisions
            .coll
            .update_many(
                &service(project, name, production)
                    .and(Filter::lt("revision", revision))
                    .and(Filter::eq("is_latest", true)),
                &Update::new().set("is_latest", false).inc("version", 1),
            )
            .await
    }

    /// Whether the service has a live revision older than `revision`.
    pub async fn live_below(
        &self,
        project: &str,
        name: &str,
        production: bool,
        revision: i64,
    ) -> StoreResult<bool> {
        let filter = service(project, name, production)
            .and(Filter::lt("revision", revision))
            .and(Filter::ne("status", ServiceStatus::Deleting.as_str()));
        Ok(self.revisions.count(&filter).await? > 0)
    }

    pub async fn delete_id(&self, id: &str) -> StoreResult<bool> {
        Ok(self.revisions.delete(&Filter::id(id)).await? > 0)
    }

    /// Replace revision `t` if it is still at `expected_version`.
    pub async fn replace(&self, t: &ServiceTemplate, expected_version: i64) -> StoreResult<bool> {
        self.revisions
            .replace_version(&t.id, expected_version, t)
            .await
    }

    /// Mark every revision of a service deleted; how many were live.
    pub async fn mark_deleting(
        &self,
        project: &str,
        name: &str,
        production: bool,
    ) -> StoreResult<u64> {
        self.revisions
            .coll
            .update_many(
                &service(project, name, production)
                    .and(Filter::ne("status", ServiceStatus::Deleting.as_str())),
                &Update::new()
                    .set("status", ServiceStatus::Deleting.as_str())
                    .inc("version", 1),
            )
            .await
    }

    /// Remove every revision of every service of `project` (test and production).
    pub async fn delete_project(&self, project: &str) -> StoreResult<u64> {
        self.revisions
            .delete(&Filter::eq("product_name", project))
            .await
    }
}
