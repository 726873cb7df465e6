//! `zadig-restart`: restart services of an environment, one job task per service — each
//! Deployment, StatefulSet and DaemonSet of the service gets a new `restartedAt` on its pod
//! template (as E11 and `kubectl rollout restart`), kept as an override of the service — then
//! the rollout is waited for ([`super::rollout`]) unless `skip_check_run_status`.
//!
//! The job runs inside the server for the task's creator, who must be allowed to change the
//! environment (as through E11). The services are `services` (names), or with `source:
//! fromjob` those job `job_name` builds or deploys; the environment is `env`, or with
//! `env_source: fromjob` the one deploy job `env_job_name` deploys to. There is no documented
//! execute input: the keys given are recorded on the spec (`{"env": "dev", "services":
//! ["shop"]}`).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::deploy_common::{
    creator_uid, deploy_env, env_of, project_timeout_secs, some_to_deploy, whole_services,
};
use super::rollout;
use super::{JobKind, JobType, Quote, Runs, ended, nullable, spec_of, task_spec};
use crate::engine::executor::{JobEnd, ServerJob};
use crate::environment::service::{deployer, restart_for_job};
use crate::error::ApiResult;
use crate::state::AppState;
use crate::workflow::expand::{Expander, refused};
use crate::workflow::inputs::{decode, referenced_services};
use crate::workflow::model::Job;
use crate::workflow::task::JobTask;
use crate::workflow::task_view;

pub struct Restart;

/// A restart job's spec, as defined and as a job task carries it (one service): what is read.
/// The spec itself is stored and carried verbatim.
#[derive(Debug, Default, Deserialize)]
struct RestartSpec {
    #[serde(default, deserialize_with = "nullable")]
    env: String,
    /// `fromjob`: the environment is the one deploy job `env_job_name` deploys to.
    #[serde(default, deserialize_with = "nullable")]
    env_source: String,
    #[serde(default, deserialize_with = "nullable")]
    env_job_name: String,
    /// `fromjob`: the services job `job_name` builds or deploys.
    #[serde(default, deserialize_with = "nullable")]
    source: String,
    #[serde(default, deserialize_with = "nullable")]
    job_name: String,
    #[serde(default, deserialize_with = "nullable")]
    services: Vec<String>,
    /// A job task's service.
    #[serde(default, deserialize_with = "nullable")]
    service_name: String,
    /// Pass once the workloads are restarted, without waiting for the rollout.
    #[serde(default, deserialize_with = "nullable")]
    skip_check_run_status: bool,
    /// Every other field, kept as sent.
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

impl RestartSpec {
    /// The environment to restart in: `env`, or with `env_source: fromjob` the one the quoted
    /// deploy job deploys to (a 400 when it names none).
    fn env(&self, x: &Expander<'_>, job: &Job) -> ApiResult<String> {
        if self.env_source != "fromjob" {
            return Ok(self.env.clone());
        }
        let quoted = self.env_job_name.as_str();
        let env = match x.wf.job(quoted).map(|q| (q, q.kind())) {
            Some((q, Some(t))) => t.kind().deploys_to(q)?,
            _ => None,
        };
        env.ok_or_else(|| {
            refused(format!(
                "`env_job_name`: job {} takes its environment from job {quoted:?}, which deploys to none",
                job.name
            ))
        })
    }

    /// The services to restart, in order, each once.
    fn targets(&self, x: &Expander<'_>) -> ApiResult<Vec<String>> {
        let named: Vec<String> = match (self.source.as_str(), self.job_name.as_str()) {
            ("fromjob", quoted) => referenced_services(x.wf, quoted)?
                .unwrap_or_default()
                .into_iter()
                .map(|(service, _)| service)
                .collect(),
            _ => self.services.clone(),
        };
        let mut out: Vec<String> = Vec::new();
        for s in named {
            if !s.is_empty() && !out.contains(&s) {
                out.push(s);
            }
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl JobKind for Restart {
    /// `source: fromjob` quotes `job_name`; `env_source: fromjob` quotes `env_job_name`.
    fn quotes(&self, spec: &Value) -> Vec<Quote> {
        [
            Quote::when_from_job(spec, "source", "job_name"),
            Quote::when_from_job(spec, "env_source", "env_job_name"),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn lint(&self, spec: &mut Value, field: &str) -> ApiResult<()> {
        decode::<RestartSpec>(spec, field).map(drop)
    }

    fn expand(&self, x: &mut Expander<'_>, job: &Job) -> ApiResult<Vec<JobTask>> {
        let spec: RestartSpec = spec_of(job)?;
        let env = spec.env(x, job)?;
        let env = deploy_env(job, &env)?;
        let mut tasks = Vec::new();
        for service in spec.targets(x)? {
            let mut t = job.spec.clone();
            if let Some(m) = t.as_object_mut() {
                m.insert("env".into(), json!(env));
                m.insert("service_name".into(), json!(service));
                m.insert("services".into(), json!([service]));
            }
            tasks.push(x.task(job, &[&service], t));
        }
        some_to_deploy(env, job, tasks)
    }

    fn deploys_to(&self, job: &Job) -> ApiResult<Option<String>> {
        env_of(job).map(Some)
    }

    fn touched_services(&self, job: &Job) -> ApiResult<Vec<(String, String)>> {
        spec_of::<RestartSpec>(job).map(|s| whole_services(s.services))
    }

    fn view(&self, job: &JobTask) -> Value {
        const VIEW_KEYS: &[&str] = &[
            "env",
            "service_name",
            "skip_check_run_status",
            "replace_resources",
        ];
        Value::Object(task_view::pick(&job.spec, VIEW_KEYS))
    }

    fn runs(&self) -> Runs {
        Runs::InServer
    }

    async fn run(&self, _ty: JobType, state: &AppState, job: ServerJob<'_>) -> JobEnd {
        rollout::with_banners(job.log, async { ended(restart(state, &job).await) }).await
    }
}

/// Run a `zadig-restart` job task.
async fn restart(state: &AppState, job: &ServerJob<'_>) -> Result<JobEnd, String> {
    let spec: RestartSpec = task_spec(job)?;
    let project = job.ctx.project.as_str();
    let (env_key, service) = (spec.env.as_str(), spec.service_name.as_str());
    job.log.info(&format!(
        "Start to restart service {service}, env: {env_key}"
    ));
    let deadline = rollout::deadline(state, project_timeout_secs(state, project).await);
    let caller = deployer(state, creator_uid(job)).await?;
    let restarted = restart_for_job(state, (project, env_key, service), &caller).await?;
    for r in &restarted.workloads {
        job.log.info(&format!("Restarted {} {}", r.kind, r.name));
    }
    let (cc, ns) = (&restarted.cc, &restarted.namespace);
    let mut end = rollout::finish(
        state,
        job,
        spec.skip_check_run_status,
        (cc, ns),
        &restarted.workloads,
        deadline,
    )
    .await;
    let names: Vec<Value> = restarted
        .workloads
        .iter()
        .map(|r| json!({"kind": r.kind, "name": r.name}))
        .collect();
    end.record
        .insert("replace_resources".into(), Value::Array(names));
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::jobs::typed;

    #[test]
    fn malformed_settings_name_the_field() {
        let e = typed::<RestartSpec>(&json!({"services": "shop"})).unwrap_err();
        assert!(e.starts_with("spec.services:"), "{e}");
        let e = typed::<RestartSpec>(&json!({"skip_check_run_status": "yes"})).unwrap_err();
        assert!(e.starts_with("spec.skip_check_run_status:"), "{e}");
        let s = typed::<RestartSpec>(&json!({"services": null, "env": null})).unwrap();
        assert!(s.services.is_empty() && s.env.is_empty());
    }
}
