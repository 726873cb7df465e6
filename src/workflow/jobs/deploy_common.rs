//! What the deploy job types share besides the rollout wait ([`super::rollout`]): the
//! environment a job deploys to and the refusal of a job with nothing to deploy (when a task
//! is created), the `env_name` / `service_list` input of `zadig-deploy` and `zadig-vm-deploy`,
//! the user a deploy job acts for and its rollout timeout.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::engine::executor::ServerJob;
use crate::error::ApiResult;
use crate::state::AppState;
use crate::workflow::expand::refused;
use crate::workflow::inputs::decode;
use crate::workflow::jobs::JobType;
use crate::workflow::model::{Job, Workflow};
use crate::workflow::task::JobTask;

/// The environment `env` a deploy job deploys to; none is a 400 when a task is created.
pub(crate) fn deploy_env<'a>(job: &Job, env: &'a str) -> ApiResult<&'a str> {
    if env.is_empty() {
        return Err(refused(format!(
            "`inputs[].parameters.env_name`: job {} has no environment to deploy to",
            job.name
        )));
    }
    Ok(env)
}

/// A deploy job's job tasks; none (nothing to deploy to `env`) is a 400.
pub(crate) fn some_to_deploy(env: &str, job: &Job, tasks: Vec<JobTask>) -> ApiResult<Vec<JobTask>> {
    if tasks.is_empty() {
        return Err(refused(format!(
            "`inputs[].parameters.service_list`: deploy service is empty for env {env}, job {}",
            job.name
        )));
    }
    Ok(tasks)
}

/// A deploy job's input (`zadig-deploy`, `zadig-vm-deploy`): the env and the services.
#[derive(Debug, Deserialize)]
#[serde(bound = "S: DeserializeOwned")]
struct DeployInput<S> {
    #[serde(default)]
    env_name: String,
    service_list: Option<Vec<S>>,
}

impl<S> Default for DeployInput<S> {
    fn default() -> Self {
        Self {
            env_name: String::new(),
            service_list: None,
        }
    }
}

/// Decode a deploy input and apply its `env_name` (an empty one keeps the configured env);
/// the service list when one was given.
pub(crate) fn deploy_input<S: DeserializeOwned>(
    spec: &mut Map<String, Value>,
    params: &Value,
    field: &str,
) -> ApiResult<Option<Vec<S>>> {
    let input: DeployInput<S> = decode(params, field)?;
    if !input.env_name.is_empty() {
        spec.insert("env".into(), Value::String(input.env_name));
    }
    Ok(input.service_list)
}

/// A `service_list` item of a canary or blue-green deploy input: a service and its new image.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ServiceImage {
    pub service_name: String,
    pub image_name: String,
}

/// The `service_list` of a canary or blue-green deploy input, when given.
pub(crate) fn service_images(params: &Value, field: &str) -> ApiResult<Option<Vec<ServiceImage>>> {
    #[derive(Default, Deserialize)]
    struct Input {
        service_list: Option<Vec<ServiceImage>>,
    }
    decode::<Input>(params, field).map(|i| i.service_list)
}

/// A release job's rule when saved: `from_job` names its deploy job (of type `deploy`).
pub(crate) fn lint_release(from_job: &str, field: &str, deploy: JobType) -> ApiResult<()> {
    if from_job.is_empty() {
        return Err(crate::workflow::bad(
            &format!("{field}.from_job"),
            format!("names the {deploy} job to release"),
        ));
    }
    Ok(())
}

/// The job `from` that release job `job` releases: a job of `wf` of type `ty`, else the 400
/// naming it (when the task is created).
pub(crate) fn released_job<'w>(
    wf: &'w Workflow,
    job: &Job,
    from: &str,
    ty: JobType,
) -> ApiResult<&'w Job> {
    wf.job(from)
        .filter(|q| q.kind() == Some(ty))
        .ok_or_else(|| {
            refused(format!(
                "`from_job`: job {} releases {from:?}, which is not a {ty} job of the workflow",
                job.name
            ))
        })
}

/// The uid of the task's creator (the user a deploy job acts for).
pub(crate) fn creator_uid<'a>(job: &'a ServerJob<'_>) -> &'a str {
    job.ctx
        .context
        .get("workflow.task.creator.userId")
        .map_or("", String::as_str)
}

/// The project's deploy timeout in seconds (`timeout` minutes; 0: the default).
pub(crate) async fn project_timeout_secs(state: &AppState, project: &str) -> i64 {
    match state.projects.get(project).await {
        Ok(Some(p)) if p.timeout > 0 => p.timeout.saturating_mul(60),
        _ => super::rollout::DEFAULT_TIMEOUT_SECS,
    }
}

/// The environment a deploy-type job's spec names (`env`), for the ticket check.
pub(crate) fn env_of(job: &Job) -> ApiResult<String> {
    #[derive(Default, Deserialize)]
    struct Env {
        #[serde(default, deserialize_with = "super::nullable")]
        env: String,
    }
    super::spec_of::<Env>(job).map(|e| e.env)
}

/// Whole services (no module) as the (service, module) pairs a job touches, for the ticket
/// check.
pub(crate) fn whole_services(names: Vec<String>) -> Vec<(String, String)> {
    names.into_iter().map(|s| (s, String::new())).collect()
}
