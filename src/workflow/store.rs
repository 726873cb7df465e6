//! Storage of workflow definitions (`workflows`, unique on `name`).

use std::sync::Arc;

use crate::secrets::SecretBox;
use crate::store::{Backend, Dir, Filter, FindOptions, StoreResult, Typed};
use crate::workflow::model::Workflow;

/// Queries over `workflows`.
#[derive(Clone)]
pub struct WorkflowStore {
    docs: Typed<Workflow>,
}

impl WorkflowStore {
    /// Credential variables are encrypted at rest.
    pub fn new(backend: &dyn Backend, secrets: &Arc<SecretBox>) -> Self {
        Self {
            docs: Typed::new(backend, "workflows").sealed_vars(secrets, None),
        }
    }

    /// Insert a new definition; another with the same `name` is `StoreError::Duplicate`.
    pub async fn insert(&self, wf: &Workflow) -> StoreResult<()> {
        self.docs.insert(wf).await
    }

    /// The workflow whose key is `name`, in any project.
    pub async fn get(&self, name: &str) -> StoreResult<Option<Workflow>> {
        self.docs.find_one(&Filter::eq("name", name)).await
    }

    /// Replace `wf` if nobody wrote it since it was read (bumps `version`); `Ok(false)` when
    /// someone else won.
    pub async fn save(&self, wf: &mut Workflow) -> StoreResult<bool> {
        let filter = Filter::id(&wf.id).and(Filter::eq("version", wf.version));
        wf.version += 1;
        let ok = self.docs.replace(&filter, wf).await?;
        if !ok {
            wf.version -= 1;
        }
        Ok(ok)
    }

    /// Delete by storage id; whether it existed.
    pub async fn delete(&self, id: &str) -> StoreResult<bool> {
        Ok(self.docs.delete(&Filter::id(id)).await? > 0)
    }

    /// Workflows of a project in creation order, optionally only those named in `only`.
    pub async fn list(&self, project: &str, only: Option<&[String]>) -> StoreResult<Vec<Workflow>> {
        let mut filter = Filter::eq("project", project);
        if let Some(names) = only {
            filter = filter.and(Filter::is_in("name", names.iter().map(String::as_str)));
        }
        let opts = FindOptions::sort("create_time", Dir::Asc).then("name", Dir::Asc);
        self.docs.find(&filter, &opts).await
    }

    /// Another workflow of `project` shown as `display_name`.
    pub async fn by_display_name(
        &self,
        project: &str,
        display_name: &str,
    ) -> StoreResult<Option<Workflow>> {
        self.docs
            .find_one(&Filter::eq("project", project).and(Filter::eq("display_name", display_name)))
            .await
    }
}
