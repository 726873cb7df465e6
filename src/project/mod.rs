//! Projects (`/openapi/projects/project`, spec/environments.md §1.1, §2): a key, a display
//! name and how the project deploys; a project owns its K8s YAML services
//! ([`crate::service_template`]) and its environments.
//!
//! Other areas (workflows, builds, release plans, delivery) still accept any `projectKey`
//! without a project record (DESIGN §5); only the service and environment routes require one.
//! [`service`] holds the rules of the routes, [`store`] the queries, [`model`] the document.
//! The functions below are the interface other modules use.

pub mod model;
pub mod service;
pub mod store;

use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::limits::PageRule;
use crate::state::AppState;

pub use model::{ProductFeature, Project};

/// Projects: default page 1 of 20 (spec §2.3); an item is small, at most 100 a page.
pub const PROJECTS_PAGE: PageRule = PageRule {
    default_num: Some(1),
    default_size: Some(20),
    max_size: 100,
};

/// The project `project_key`, or `None` when there is no such project. Storage failures are
/// `Err` (500).
pub async fn get(state: &AppState, project_key: &str) -> ApiResult<Option<Project>> {
    Ok(state.projects.get(project_key).await?)
}

/// The project `project_key`, or 404 naming it.
pub async fn require(state: &AppState, project_key: &str) -> ApiResult<Project> {
    get(state, project_key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("project `{project_key}` not found")))
}

/// The environments that stop project `project_key` from being deleted (their env keys).
/// A project is deleted only when it has none (P5 answers 409 naming them otherwise).
///
/// The project's environments, test and production ([`crate::environment`]).
pub async fn environments_blocking_delete(
    state: &AppState,
    project_key: &str,
) -> ApiResult<Vec<String>> {
    let mut keys = Vec::new();
    for production in [false, true] {
        keys.extend(
            state
                .environments
                .store
                .list(project_key, production)
                .await?
                .into_iter()
                .map(|e| e.env_key),
        );
    }
    Ok(keys)
}

/// One `env_list` entry of `init/yaml` (spec §2.2).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, utoipa::ToSchema)]
pub struct InitEnv {
    /// The new environment's key.
    #[serde(default)]
    pub env_key: String,
    /// The cluster, by name.
    #[serde(default)]
    pub cluster_name: String,
    #[serde(default)]
    pub namespace: String,
}

/// Check the `env_list` of `init/yaml` before anything is stored (cluster names, env keys,
/// reachable clusters, free namespaces; [`crate::environment::service::check_initial`]).
pub async fn check_initial_environments(
    state: &AppState,
    caller: &Identity,
    project_key: &str,
    envs: &[InitEnv],
) -> ApiResult<()> {
    crate::environment::service::check_initial(state, caller, project_key, envs)
        .await
        .map(|_| ())
}

/// Create the environments of `init/yaml` with all the project's services, after the project
/// and its services are stored (spec §2.2); only called when [`check_initial_environments`]
/// accepted the list.
pub async fn create_initial_environments(
    state: &AppState,
    caller: &Identity,
    project: &Project,
    envs: &[InitEnv],
) -> ApiResult<()> {
    crate::environment::service::create_initial(state, caller, project.key(), envs).await
}
