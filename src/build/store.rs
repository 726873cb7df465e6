//! Queries over `builds` (unique on `name`: Zadig's build names are global, spec/build.md
//! §3.6) and `build_templates` (unique on `name`). Every write after the insert is conditional
//! on the document's `version`.

use std::sync::Arc;

use super::model::{Build, BuildTemplate};
use crate::limits::Paging;
use crate::secrets::SecretBox;
use crate::store::{Backend, Dir, Filter, FindOptions, StoreResult, Typed, Update};

#[derive(Clone)]
pub struct BuildStore {
    builds: Typed<Build>,
}

impl BuildStore {
    /// Credential variables are encrypted at rest.
    pub fn new(backend: &dyn Backend, secrets: &Arc<SecretBox>) -> Self {
        Self {
            builds: Typed::new(backend, "builds").sealed_vars(secrets, None),
        }
    }

    /// Insert; a build of that name in any project is `StoreError::Duplicate`.
    pub async fn insert(&self, b: &Build) -> StoreResult<()> {
        self.builds.insert(b).await
    }

    /// The build `name` in `project`.
    pub async fn get(&self, project: &str, name: &str) -> StoreResult<Option<Build>> {
        self.builds
            .find_one(&Filter::eq("name", name).and(Filter::eq("project_key", project)))
            .await
    }

    /// The build `name` in any project (names are unique across projects).
    pub async fn by_name(&self, name: &str) -> StoreResult<Option<Build>> {
        self.builds.find_one(&Filter::eq("name", name)).await
    }

    /// Replace `b` if it is still at `expected_version` (`b.version` must already be the next
    /// one); false when another write came first or it is gone.
    pub async fn replace(&self, b: &Build, expected_version: i64) -> StoreResult<bool> {
        self.builds
            .replace_version(&b.id, expected_version, b)
            .await
    }

    /// One page of a project's builds in creation order, and their total.
    pub async fn page(&self, project: &str, p: Paging) -> StoreResult<(Vec<Build>, u64)> {
        let opts = FindOptions::sort("seq", Dir::Asc).page(p.num, p.size);
        self.builds
            .page(&Filter::eq("project_key", project), &opts)
            .await
    }

    /// Names of the builds that use template `template_id` (at most `limit`).
    pub async fn using_template(&self, template_id: &str, limit: u64) -> StoreResult<Vec<String>> {
        let opts = FindOptions::sort("seq", Dir::Asc).limit(limit);
        Ok(self
            .builds
            .find(&Filter::eq("template_id", template_id), &opts)
            .await?
            .into_iter()
            .map(|b| format!("{}/{}", b.project_key, b.name))
            .collect())
    }

    pub async fn delete_id(&self, id: &str) -> StoreResult<bool> {
        Ok(self.builds.delete(&Filter::id(id)).await? > 0)
    }
}

#[derive(Clone)]
pub struct TemplateStore {
    templates: Typed<BuildTemplate>,
}

impl TemplateStore {
    /// Credential variables are encrypted at rest.
    pub fn new(backend: &dyn Backend, secrets: &Arc<SecretBox>) -> Self {
        Self {
            templates: Typed::new(backend, "build_templates").sealed_vars(secrets, None),
        }
    }

    pub async fn insert(&self, t: &BuildTemplate) -> StoreResult<()> {
        self.templates.insert(t).await
    }

    pub async fn by_name(&self, name: &str) -> StoreResult<Option<BuildTemplate>> {
        self.templates.find_one(&Filter::eq("name", name)).await
    }

    pub async fn get(&self, id: &str) -> StoreResult<Option<BuildTemplate>> {
        self.templates.get(id).await
    }

    /// Replace `t` if it is still at `expected_version`.
    pub async fn replace(&self, t: &BuildTemplate, expected_version: i64) -> StoreResult<bool> {
        self.templates
            .replace_version(&t.id, expected_version, t)
            .await
    }

    pub async fn page(&self, p: Paging) -> StoreResult<(Vec<BuildTemplate>, u64)> {
        let opts = FindOptions::sort("created_at", Dir::Asc)
            .then("name", Dir::Asc)
            .page(p.num, p.size);
        self.templates.page(&Filter::All, &opts).await
    }

    /// Mark template `id` as being deleted until `until_ms`, unless it changed since
    /// `expected_version`. Bumps the version so a racing replace cannot drop the mark.
    pub async fn mark_deleting(
        &self,
        id: &str,
        expected_version: i64,
        until_ms: i64,
    ) -> StoreResult<bool> {
        self.templates
            .update_one(
                &Filter::id(id).and(Filter::eq("version", expected_version)),
                &Update::new()
                    .set("deleting_until_ms", until_ms)
                    .inc("version", 1),
            )
            .await
    }

    pub async fn clear_deleting(&self, id: &str) -> StoreResult<bool> {
        self.templates
            .update_one(
                &Filter::id(id),
                &Update::new().set("deleting_until_ms", 0).inc("version", 1),
            )
            .await
    }

    pub async fn delete_id(&self, id: &str) -> StoreResult<bool> {
        Ok(self.templates.delete(&Filter::id(id)).await? > 0)
    }
}
