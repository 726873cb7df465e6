//! `offline-service`: take services out of an environment — their objects deleted from the
//! cluster and the services removed from the environment, as E8 does — one job task per job,
//! run inside the server for the task's creator, who must be allowed to change the
//! environment. Each service's outcome is recorded in `service_events` (Zadig's
//! `{service_name, status, error}`); the job fails when any service could not be taken
//! offline, after trying them all. There is no documented execute input: the keys given are
//! recorded on the spec.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::deploy_common::{creator_uid, whole_services};
use super::{JobKind, JobType, Runs, ended, nullable, spec_of, task_spec};
use crate::engine::executor::{JobEnd, JobStatus, ServerJob};
use crate::environment::service::{RemoveServicesInput, deployer, env_for_job, remove_services};
use crate::error::ApiResult;
use crate::state::AppState;
use crate::workflow::expand::{Expander, nothing_to_run};
use crate::workflow::model::Job;
use crate::workflow::task::JobTask;
use crate::workflow::{bad, task_view};

/// The `offline-service` job type.
pub struct OfflineService;

/// An `offline-service` job's spec, as defined and as its job task carries it: what is read.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OfflineSpec {
    /// `zadig` (an environment of this server; empty reads so) or `sae`.
    #[serde(deserialize_with = "nullable")]
    env_type: String,
    #[serde(deserialize_with = "nullable")]
    env_name: String,
    #[serde(deserialize_with = "nullable")]
    services: Vec<String>,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

#[async_trait::async_trait]
impl JobKind for OfflineService {
    fn lint(&self, spec: &mut Value, field: &str) -> ApiResult<()> {
        let s: OfflineSpec = crate::workflow::inputs::decode(spec, field)?;
        match s.env_type.as_str() {
            "" | "zadig" | "sae" => Ok(()),
            other => Err(bad(
                &format!("{field}.env_type"),
                format!("must be zadig or sae, got {other:?}"),
            )),
        }
    }

    fn expand(&self, x: &mut Expander<'_>, job: &Job) -> ApiResult<Vec<JobTask>> {
        let spec: OfflineSpec = spec_of(job)?;
        if spec.services.is_empty() {
            return Err(nothing_to_run(&job.name, "no service to take offline"));
        }
        let mut task = x.single(job);
        if let Some(m) = task.spec.as_object_mut() {
            let events: Vec<Value> = spec
                .services
                .iter()
                .map(|s| json!({"service_name": s, "status": "", "error": ""}))
                .collect();
            m.insert("service_events".into(), Value::Array(events));
        }
        Ok(vec![task])
    }

    fn deploys_to(&self, job: &Job) -> ApiResult<Option<String>> {
        spec_of::<OfflineSpec>(job).map(|s| Some(s.env_name))
    }

    fn touched_services(&self, job: &Job) -> ApiResult<Vec<(String, String)>> {
        spec_of::<OfflineSpec>(job).map(|s| whole_services(s.services))
    }

    fn view(&self, job: &JobTask) -> Value {
        Value::Object(task_view::pick(
            &job.spec,
            &["env_type", "env_name", "service_events"],
        ))
    }

    fn runs(&self) -> Runs {
        Runs::InServer
    }

    async fn run(&self, _ty: JobType, state: &AppState, job: ServerJob<'_>) -> JobEnd {
        ended(offline(state, &job).await)
    }
}

/// Take the job task's services offline.
async fn offline(state: &AppState, job: &ServerJob<'_>) -> Result<JobEnd, String> {
    let spec: OfflineSpec = task_spec(job)?;
    if spec.env_type == "sae" {
        return Err(crate::engine::work::missing_integration(
            "offline-service (env_type sae)",
            "sae",
        ));
    }
    let project = job.ctx.project.as_str();
    let env = env_for_job(state, project, &spec.env_name).await?;
    let caller = deployer(state, creator_uid(job)).await?;
    let mut events = Vec::new();
    let mut failed = Vec::new();
    for service in &spec.services {
        let outcome = if env.service(service).is_none() {
            Err(format!(
                "service {service} not found in env {project}/{}",
                spec.env_name
            ))
        } else {
            let input = RemoveServicesInput {
                env_key: spec.env_name.clone(),
                service_names: vec![service.clone()],
                not_delete_resource: false,
            };
            remove_services(state, &caller, project, env.production, input)
                .await
                .map_err(|e| e.description)
        };
        let (status, error) = match outcome {
            Ok(()) => {
                job.log.info(&format!(
                    "service {service} taken offline from env {} (namespace {})",
                    spec.env_name, env.namespace
                ));
                (JobStatus::Passed, String::new())
            }
            Err(e) => {
                job.log
                    .info(&format!("service {service} not taken offline: {e}"));
                failed.push(service.as_str());
                (JobStatus::Failed, e)
            }
        };
        events.push(json!({"service_name": service, "status": status.as_str(), "error": error}));
    }
    let mut end = match failed.as_slice() {
        [] => super::rollout::end(JobStatus::Passed, ""),
        names => JobEnd::failed(format!(
            "offline some services failed: {}",
            names.join(", ")
        )),
    };
    end.record
        .insert("service_events".into(), Value::Array(events));
    Ok(end)
}
