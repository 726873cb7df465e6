//! A code repository's shape, declared once: [`repository_struct!`] writes the fields every
//! repository carries (the code host, the repository, the revision, where it is checked out),
//! and each shape adds its own. Two shapes use it:
//! - [`RepoInput`], the repository a client names (`repo_info[]` of build definitions, which
//!   `build::rules::repos_of` turns into the stored one, and of workflow execute inputs, which
//!   `workflow::inputs` merges into a job's repositories);
//! - `build::model::Repository`, the stored one (Zadig's Repository shape).
//!
//! A macro rather than a `#[serde(flatten)]`ed struct: flattening would turn both OpenAPI
//! schemas into `allOf`s and lose the field path in decoding errors (`repo_info[0].pr`).

use serde::Deserialize;
use utoipa::ToSchema;

/// Declares `pub struct $name` with the shared repository fields first, then `$own` fields.
/// Every shared field defaults when absent; `prs` also reads `null` as empty.
macro_rules! repository_struct {
    ($(#[$attr:meta])* pub struct $name:ident { $($own:tt)* }) => {
        $(#[$attr])*
        pub struct $name {
            /// Code host type (`gitlab`, `github`, …); our extension, Zadig reads it from the code host.
            #[serde(default)]
            pub source: String,
            /// The code host alias the client named.
            #[serde(default)]
            pub codehost_name: String,
            /// Clone URL or code host base URL; our extension (there is no code host registry).
            #[serde(default)]
            pub address: String,
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
            #[serde(default, deserialize_with = "crate::validate::nullable")]
            pub prs: Vec<i64>,
            #[serde(default)]
            pub enable_commit: bool,
            #[serde(default)]
            pub commit_id: String,
            #[serde(default)]
            pub remote_name: String,
            #[serde(default)]
            pub checkout_path: String,
            $($own)*
        }
    };
}
pub(crate) use repository_struct;

repository_struct! {
    /// A repository as the client names it (seed RepoInfo, plus Zadig's optional extras).
    #[derive(Debug, Clone, Default, Deserialize, ToSchema)]
    pub struct RepoInput {
        // Absent (or null, Go's zero value): a build stores false; a workflow input keeps the
        // job's setting.
        #[serde(default)]
        #[schema(value_type = bool)]
        pub submodules: Option<bool>,
    }
}
