//! The repository a client names, with the revision to use: one shape for the `repo_info[]`
//! of build definitions (`build::rules::repos_of` turns it into the stored Repository) and
//! of workflow execute inputs (`workflow::inputs` merges it into a job's repositories).

use serde::Deserialize;
use utoipa::ToSchema;

use crate::validate::nullable;

/// A repository as the client names it (seed RepoInfo, plus Zadig's optional extras).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct RepoInput {
    #[serde(default)]
    pub codehost_name: String,
    #[serde(default)]
    pub repo_namespace: String,
    #[serde(default)]
    pub repo_name: String,
    #[serde(default)]
    pub branch: String,
    #[serde(default)]
    pub tag: String,
    #[serde(default)]
    pub pr: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub prs: Vec<i64>,
    #[serde(default)]
    pub enable_commit: bool,
    #[serde(default)]
    pub commit_id: String,
    #[serde(default)]
    pub remote_name: String,
    #[serde(default)]
    pub checkout_path: String,
    // Absent (or null, Go's zero value): a build stores false; a workflow input keeps the
    // job's setting.
    #[serde(default)]
    #[schema(value_type = bool)]
    pub submodules: Option<bool>,
    /// Code host type (`gitlab`, `github`, …); our extension, Zadig reads it from the code host.
    #[serde(default)]
    pub source: String,
    /// Clone URL or code host base URL; our extension (there is no code host registry).
    #[serde(default)]
    pub address: String,
}
