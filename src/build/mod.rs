//! Builds and build templates (`/openapi/build`, `/openapi/templates/build`).
//!
//! The engine runs what is stored here: [`resolve_for_job`] gives a zadig-build job the build's
//! repos, script, variables and outputs.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// A variable of a build (`key_vals` / template `envs`), merged with a job's inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildVar {
    pub key: String,
    pub value: String,
    /// Passed in clear to the script; masked in logs and in build detail.
    pub is_credential: bool,
}

/// What a zadig-build job runs for one (build, service, module).
#[derive(Debug, Clone)]
pub struct BuildRecipe {
    pub build_name: String,
    /// Repositories in Zadig's Repository shape (`address`/`repo_owner`/`repo_name`, `branch`,
    /// `tag`, `commit_id`, `checkout_path`, …), as stored on the build.
    pub repos: Vec<serde_json::Value>,
    /// Tools to check (`name`, `version`).
    pub installs: Vec<(String, String)>,
    pub script: String,
    pub vars: Vec<BuildVar>,
    /// Declared output names (besides IMAGE, IMAGETAG, PKG_FILE).
    pub outputs: Vec<String>,
    /// `timeout` in minutes (≤ 0: the default).
    pub timeout_minutes: i64,
}

/// The recipe of build `build_name` in `project` for `service`/`module` (a template build
/// merges the target service's inputs over the template's variables). Unknown build → 404.
pub async fn resolve_for_job(
    _state: &AppState,
    project: &str,
    build_name: &str,
    _service: &str,
    _module: &str,
) -> ApiResult<BuildRecipe> {
    Err(ApiError::not_found(format!(
        "build {build_name} not found in project {project}"
    )))
}
