//! Queries over `projects` (unique on `product_name` and on `project_name`).

use super::model::Project;
use crate::limits::Paging;
use crate::store::{Backend, Dir, Filter, FindOptions, StoreResult, Typed};

#[derive(Clone)]
pub struct ProjectStore {
    projects: Typed<Project>,
}

impl ProjectStore {
    pub fn new(backend: &dyn Backend) -> Self {
        Self {
            projects: Typed::new(backend, "projects"),
        }
    }

    /// Insert; a taken key or display name is `StoreError::Duplicate` naming the index.
    pub async fn insert(&self, p: &Project) -> StoreResult<()> {
        self.projects.insert(p).await
    }

    pub async fn get(&self, key: &str) -> StoreResult<Option<Project>> {
        self.projects
            .find_one(&Filter::eq("product_name", key))
            .await
    }

    pub async fn by_display_name(&self, name: &str) -> StoreResult<Option<Project>> {
        self.projects
            .find_one(&Filter::eq("project_name", name))
            .await
    }

    /// One page of all projects, most recently updated first, and their total.
    pub async fn page(&self, p: Paging) -> StoreResult<(Vec<Project>, u64)> {
        let opts = FindOptions::sort("update_time", Dir::Desc)
            .then("product_name", Dir::Asc)
            .page(p.num, p.size);
        self.projects.page(&Filter::All, &opts).await
    }

    /// Replace `p` if it is still at `expected_version` (`p.version` already the next one).
    pub async fn replace(&self, p: &Project, expected_version: i64) -> StoreResult<bool> {
        self.projects
            .replace_version(&p.id, expected_version, p)
            .await
    }

    pub async fn delete(&self, key: &str) -> StoreResult<bool> {
        Ok(self
            .projects
            .delete(&Filter::eq("product_name", key))
            .await?
            > 0)
    }
}
