//! Builds and build templates (`/openapi/build`, `/openapi/templates/build`).
//!
//! [`model`] is the one build model: a [`model::BuildDef`] (script, OS, tools, variables,
//! resources, image step, outputs) shared by builds and templates. [`input`] holds the request
//! bodies, [`rules`] turns them into the model with every check, [`service`] holds the rules of
//! the build routes, [`templates`] those of the template routes, [`view`] the answers,
//! [`store`] the queries. The engine runs what is stored here: [`resolve_for_job`] gives a
//! zadig-build job the build's repos, script, variables and outputs.

pub mod input;
pub mod model;
pub mod rules;
pub mod service;
pub mod store;
pub mod templates;
pub mod view;

use crate::error::ApiResult;
use crate::state::AppState;

pub use model::DockerBuild;

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
    /// `shell`, `batch_file` or `powershell`.
    pub script_type: String,
    /// `kubernetes` or `vm`.
    pub infrastructure: String,
    /// The build OS label (`ubuntu 20.04`); empty when none was given.
    pub build_os: String,
    /// `koderover` or `custom`, and the custom image (Kubernetes jobs).
    pub image_from: String,
    pub image_id: String,
    /// The cluster the build runs on (empty: the server's default), by id or by the name
    /// given in `advanced_settings.cluster_name`.
    pub cluster_id: String,
    pub cluster_name: String,
    /// The image build step, when the build has one.
    pub docker_build: Option<DockerBuild>,
    /// The template of a template build, else empty.
    pub template_name: String,
}

/// The recipe of build `build_name` in `project` for `service`/`module` (a template build
/// merges the target service's inputs over the template's variables). Unknown build → 404.
/// Values are in clear, credentials included: the caller masks them in logs.
pub async fn resolve_for_job(
    state: &AppState,
    project: &str,
    build_name: &str,
    service: &str,
    module: &str,
) -> ApiResult<BuildRecipe> {
    let r = service::resolve(state, project, build_name, service, module).await?;
    let repos = r
        .repos
        .iter()
        .map(|repo| serde_json::to_value(repo).unwrap_or_default())
        .collect();
    Ok(BuildRecipe {
        build_name: r.build.name.clone(),
        repos,
        installs: r
            .def
            .pre_build
            .installs
            .iter()
            .map(|i| (i.name.clone(), i.version.clone()))
            .collect(),
        script: r.def.scripts.clone(),
        vars: r
            .vars
            .iter()
            .map(|kv| BuildVar {
                key: kv.key.clone(),
                value: kv.effective_value(),
                is_credential: kv.is_credential,
            })
            .collect(),
        outputs: view::declared_outputs(&r.def),
        timeout_minutes: r.def.timeout,
        script_type: r.def.script_type.clone(),
        infrastructure: r.def.infrastructure.clone(),
        build_os: r.def.pre_build.build_os.clone(),
        image_from: r.def.pre_build.image_from.clone(),
        image_id: r.def.pre_build.image_id.clone(),
        cluster_id: r.def.pre_build.cluster_id.clone(),
        cluster_name: r.def.pre_build.cluster_name.clone(),
        docker_build: r.def.post_build.docker_build.clone(),
        template_name: r.template_name,
    })
}
