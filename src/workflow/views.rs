//! Workflow views (spec/workflow.md §6): named subsets of a project's workflows, stored in
//! `workflow_views`, unique on (`project_name`, `name`).
//!
//! The OpenAPI names workflow types `custom`/`product`; they are stored as Zadig does
//! (`common_workflow`/`product_workflow`).

use serde::{Deserialize, Serialize};

use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{Backend, Dir, Filter, FindOptions, StoreError, StoreResult, Typed};
use crate::validate;
use crate::workflow::error::{Kind, Op, refuse};

/// The OpenAPI workflow types and their stored names.
const TYPES: &[(&str, &str)] = &[
    ("custom", "common_workflow"),
    ("product", "product_workflow"),
];

/// One workflow of a view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewEntry {
    pub workflow_name: String,
    /// `common_workflow` or `product_workflow`.
    pub workflow_type: String,
    pub enabled: bool,
}

/// A stored view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct View {
    pub id: String,
    pub name: String,
    pub project_name: String,
    #[serde(default)]
    pub workflows: Vec<ViewEntry>,
    #[serde(default)]
    pub update_time: i64,
    #[serde(default)]
    pub update_by: String,
    #[serde(default)]
    pub version: i64,
}

impl View {
    /// The enabled entries as (`workflow_key`, OpenAPI `workflow_type`).
    pub fn listed(&self) -> impl Iterator<Item = (&str, &str)> {
        self.workflows.iter().filter(|e| e.enabled).map(|e| {
            let t = TYPES
                .iter()
                .find(|(_, stored)| *stored == e.workflow_type)
                .map_or(e.workflow_type.as_str(), |(api, _)| api);
            (e.workflow_name.as_str(), t)
        })
    }
}

/// One entry of a create/edit request: (`workflow_key`, `workflow_type`, `enabled`).
#[derive(Debug, Clone)]
pub struct EntryInput {
    pub workflow_key: String,
    pub workflow_type: String,
    pub enabled: bool,
}

/// Queries over `workflow_views`.
#[derive(Clone)]
pub struct ViewStore {
    docs: Typed<View>,
}

impl ViewStore {
    pub fn new(backend: &dyn Backend) -> Self {
        Self {
            docs: Typed::new(backend, "workflow_views"),
        }
    }

    fn key(project: &str, name: &str) -> Filter {
        Filter::eq("project_name", project).and(Filter::eq("name", name))
    }

    pub async fn get(&self, project: &str, name: &str) -> StoreResult<Option<View>> {
        self.docs.find_one(&Self::key(project, name)).await
    }
}

fn stored_type(field: &str, api: &str) -> ApiResult<&'static str> {
    TYPES
        .iter()
        .find(|(a, _)| *a == api)
        .map(|(_, s)| *s)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "`{field}`: workflow type must be custom or product, got {api:?}"
            ))
        })
}

fn check_entries(entries: &[EntryInput]) -> ApiResult<Vec<ViewEntry>> {
    let mut seen = std::collections::HashSet::new();
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            validate::name(&format!("workflow_list[{i}].workflow_key"), &e.workflow_key)?;
            if !seen.insert(e.workflow_key.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "`workflow_list[{i}].workflow_key`: workflow name duplicated: {}",
                    e.workflow_key
                )));
            }
            Ok(ViewEntry {
                workflow_name: e.workflow_key.clone(),
                workflow_type: stored_type(
                    &format!("workflow_list[{i}].workflow_type"),
                    &e.workflow_type,
                )?
                .to_string(),
                enabled: e.enabled,
            })
        })
        .collect()
}

fn not_found(op: Op, project: &str, name: &str) -> ApiError {
    refuse(
        Kind::NotFound,
        op,
        format!("find workflow view error: view {name:?} not found in project {project:?}"),
    )
}

/// The views of a project, by name descending (as Zadig lists them).
pub async fn list(state: &AppState, project: &str) -> ApiResult<Vec<View>> {
    validate::name("projectKey", project)?;
    Ok(state
        .workflow_views
        .docs
        .find(
            &Filter::eq("project_name", project),
            &FindOptions::sort("name", Dir::Desc),
        )
        .await?)
}

/// Create a view listing `entries` (all enabled). Duplicate name in the project → 409/6892.
pub async fn create(
    state: &AppState,
    caller: &Identity,
    project: &str,
    name: &str,
    entries: &[EntryInput],
) -> ApiResult<()> {
    validate::name("project_key", project)?;
    validate::name("name", name)?;
    let mut workflows = check_entries(entries)?;
    for e in &mut workflows {
        e.enabled = true;
    }
    let now = state.clock.now();
    let view = View {
        id: validate::new_object_id(now),
        name: name.to_string(),
        project_name: project.to_string(),
        workflows,
        update_time: now,
        update_by: caller.name.clone(),
        version: 0,
    };
    match state.workflow_views.docs.insert(&view).await {
        Ok(()) => {
            tracing::info!(view.name = %name, project = %project, "workflow view {name} created");
            Ok(())
        }
        Err(StoreError::Duplicate(_)) => Err(refuse(
            Kind::Conflict,
            Op::CreateView,
            format!("a workflow view named {name:?} already exists in project {project:?}"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Edit a view: an entry with `enabled: true` is added (or re-enabled), one with
/// `enabled: false` is removed; entries not mentioned stay.
pub async fn edit(
    state: &AppState,
    caller: &Identity,
    project: &str,
    name: &str,
    entries: &[EntryInput],
) -> ApiResult<()> {
    validate::name("projectKey", project)?;
    validate::name("viewName", name)?;
    let changes = check_entries(entries)?;
    let mut attempts = crate::store::retry::Attempts::new();
    while attempts.next().await {
        let mut view = state
            .workflow_views
            .get(project, name)
            .await?
            .ok_or_else(|| not_found(Op::UpdateView, project, name))?;
        for c in &changes {
            let at = view
                .workflows
                .iter()
                .position(|e| e.workflow_name == c.workflow_name);
            match (at, c.enabled) {
                (Some(k), true) => view.workflows[k] = c.clone(),
                (Some(k), false) => {
                    view.workflows.remove(k);
                }
                (None, true) => view.workflows.push(c.clone()),
                (None, false) => {}
            }
        }
        // Edits add entries, so the list is bounded here rather than per request.
        crate::limits::items(
            "workflow_list",
            view.workflows.len(),
            crate::limits::MAX_ITEMS,
        )?;
        view.update_time = state.clock.now();
        view.update_by = caller.name.clone();
        let filter = Filter::id(&view.id).and(Filter::eq("version", view.version));
        view.version += 1;
        if state.workflow_views.docs.replace(&filter, &view).await? {
            return Ok(());
        }
        // Someone edited the view meanwhile: apply the changes to their version.
    }
    Err(crate::store::retry::exhausted(&format!("view {name}")).into())
}

/// Delete a view; unknown → 404 with code 6894.
pub async fn delete(state: &AppState, project: &str, name: &str) -> ApiResult<()> {
    validate::name("projectKey", project)?;
    validate::name("viewName", name)?;
    if state
        .workflow_views
        .docs
        .delete(&ViewStore::key(project, name))
        .await?
        == 0
    {
        return Err(not_found(Op::DeleteView, project, name));
    }
    Ok(())
}

/// The workflow keys a view lists (for `GET /openapi/workflows?viewName=`); unknown view → 404.
pub async fn members(state: &AppState, project: &str, name: &str) -> ApiResult<Vec<String>> {
    let view = state
        .workflow_views
        .get(project, name)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "`viewName`: workflow view {name:?} not found in project {project:?}"
            ))
        })?;
    Ok(view
        .workflows
        .iter()
        .filter(|e| e.enabled && e.workflow_type == "common_workflow")
        .map(|e| e.workflow_name.clone())
        .collect())
}
