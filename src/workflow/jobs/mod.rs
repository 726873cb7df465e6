//! Job types: the closed list of Zadig's job types ([`JobType`]) and, for each, the one module
//! that owns its behaviour in every phase — lint, execute-input merging, expansion into job
//! tasks, ticket checks, the task-detail view and what the engine runs ([`JobKind`]).
//!
//! The table in [`job_types!`] below is the only place a job-type name is written: it gives
//! the variant, its wire name (serde) and the module implementing [`JobKind`] for it. Every
//! phase asks `JobType::kind()` instead of matching on names, so adding a job type is one new
//! module and one table line (see docs/architecture.md, "Adding a job type"), and a type
//! without behaviour does not compile.
//!
//! A job type this server cannot run yet is still listed, with [`external::Needs`] naming the
//! integration it waits for (its jobs fail with the error that names the integration and the
//! `engine_integrations` config key) or [`external::Missing`] naming what this server does not
//! implement — never a silent pass.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::engine::executor::{JobContext, JobEnd, PreparedJob, ServerJob};
use crate::engine::work::missing_integration;
use crate::error::ApiResult;
use crate::state::AppState;
use crate::wire::wire_enum;
use crate::workflow::model::{Job, Workflow};
use crate::workflow::task::JobTask;

pub mod approval;
pub mod blue_green;
pub mod build;
pub mod canary;
pub mod custom_deploy;
pub mod deploy;
pub mod deploy_common;
pub mod distribute_image;
pub mod external;
pub mod freestyle;
pub mod gray;
pub mod offline_service;
pub mod plugin;
pub mod resource_patch;
pub mod restart;
pub mod rollout;
pub mod sql;
pub mod tapd;
pub mod testing;
pub mod vm_deploy;

/// Declares [`JobType`] from one table: `Variant = "wire-name" => behaviour,`.
macro_rules! job_types {
    ($($(#[$doc:meta])* $variant:ident = $name:literal => $kind:expr,)*) => {
        wire_enum! {
            /// A job type (spec/workflow.md §1.4), serialised as Zadig's name.
            pub enum JobType {
                $($(#[$doc])* $variant = $name,)*
            }
        }

        impl JobType {
            /// What this job type does in each phase.
            pub fn kind(self) -> &'static dyn JobKind {
                match self {
                    $(JobType::$variant => $kind,)*
                }
            }
        }
    };
}

job_types! {
    Build = "zadig-build" => &build::Build,
    Deploy = "zadig-deploy" => &deploy::Deploy { chart: false },
    HelmChartDeploy = "zadig-helm-chart-deploy" => &deploy::Deploy { chart: true },
    VmDeploy = "zadig-vm-deploy" => &vm_deploy::VmDeploy,
    Test = "zadig-test" => &testing::TEST,
    Scanning = "zadig-scanning" => &testing::SCAN,
    DistributeImage = "zadig-distribute-image" => &distribute_image::DistributeImage,
    Restart = "zadig-restart" => &restart::Restart,
    CustomDeploy = "custom-deploy" => &custom_deploy::CustomDeploy,
    Freestyle = "freestyle" => &freestyle::Freestyle,
    Plugin = "plugin" => &plugin::Plugin,
    K8sBlueGreenDeploy = "k8s-blue-green-deploy" => &blue_green::BlueGreen { release: false },
    K8sBlueGreenRelease = "k8s-blue-green-release" => &blue_green::BlueGreen { release: true },
    K8sCanaryDeploy = "k8s-canary-deploy" => &canary::Canary { release: false },
    K8sCanaryRelease = "k8s-canary-release" => &canary::Canary { release: true },
    K8sGrayRelease = "k8s-gray-release" => &gray::Gray { rollback: false },
    K8sGrayRollback = "k8s-gray-rollback" => &gray::Gray { rollback: true },
    K8sResourcePatch = "k8s-resource-patch" => &resource_patch::ResourcePatch,
    IstioRelease = "istio-release" => &external::Missing { what: "Istio releases" },
    IstioRollback = "istio-rollback" => &external::Missing { what: "Istio releases" },
    UpdateEnvIstioConfig = "update-env-istio-config" => &external::Missing { what: "Istio configurations of environments" },
    Jira = "jira" => &external::Needs { integration: "jira" },
    Nacos = "nacos" => &external::Needs { integration: "nacos" },
    Apollo = "apollo" => &external::Needs { integration: "apollo" },
    Dms = "dms" => &external::Needs { integration: "database" },
    Pingcode = "pingcode" => &external::Needs { integration: "pingcode" },
    Tapd = "tapd" => &tapd::Tapd,
    Sql = "sql" => &sql::Sql,
    Jenkins = "jenkins" => &external::Needs { integration: "jenkins" },
    MeegoTransition = "meego-transition" => &external::Needs { integration: "meego" },
    WorkflowTrigger = "workflow-trigger" => &external::Needs { integration: "workflow-trigger" },
    OfflineService = "offline-service" => &offline_service::OfflineService,
    MseGrayRelease = "mse-gray-release" => &external::Missing { what: "MSE gray releases" },
    MseGrayOffline = "mse-gray-offline" => &external::Missing { what: "MSE gray releases" },
    GuanceyunCheck = "guanceyun-check" => &external::Needs { integration: "guanceyun" },
    Grafana = "grafana" => &external::Needs { integration: "grafana" },
    Blueking = "blueking" => &external::Needs { integration: "blueking" },
    Approval = "approval" => &approval::Approval,
    Notification = "notification" => &external::Needs { integration: "im" },
    AiReleaseSpecialist = "ai-release-specialist" => &external::Needs { integration: "ai" },
    AiTask = "ai-task" => &external::Needs { integration: "ai" },
    SaeDeploy = "sae-deploy" => &external::Needs { integration: "sae" },
    Apisix = "apisix" => &external::Needs { integration: "apisix" },
}

impl Job {
    /// The job's type; `None` when the definition names a type Zadig does not know (lint
    /// refuses those, naming the field).
    pub fn kind(&self) -> Option<JobType> {
        JobType::parse(&self.job_type)
    }
}

impl JobTask {
    /// The job task's type; `None` for a name Zadig does not know.
    pub fn kind(&self) -> Option<JobType> {
        JobType::parse(&self.job_type)
    }
}

/// How the engine runs a job task of a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    /// A local process, prepared by [`JobKind::prepare`].
    Process,
    /// The job waits for the votes recorded on its spec (an `approval` job).
    Votes,
    /// Inside the server, talking to an outside API (a deploy into a Kubernetes cluster):
    /// [`JobKind::run`] runs it to its end.
    InServer,
    /// It cannot run here: it needs this integration (one of `engine::work::INTEGRATIONS`),
    /// which this server does not have; the job fails naming it.
    Needs(&'static str),
    /// It cannot run here: this server does not implement what it does (the words name it,
    /// e.g. `canary deployments`); the job fails saying so.
    Missing(&'static str),
}

/// A job's spec as an execute input edits it.
pub type Spec = Map<String, Value>;

/// The context of an execute input being merged into a job (see [`JobKind::apply_input`]).
pub struct InputCx<'a> {
    /// The definition holding the already-merged earlier jobs (for `source: fromjob`).
    pub wf: &'a Workflow,
    /// The job's spec before this input.
    pub before: &'a Value,
    /// The JSON path of the input (`inputs[k].parameters`).
    pub field: &'a str,
    /// The job's name.
    pub job: &'a str,
    /// The image registry id a build input's `registry` address resolved to.
    pub registry: Option<String>,
}

/// A job quoted by another (see [`JobKind::quotes`]).
pub struct Quote {
    /// The spec field that names the quoted job.
    pub field: &'static str,
    /// The field whose value `fromjob` makes the quote (`None`: the quote is unconditional).
    pub flag: Option<&'static str>,
    pub job: String,
}

impl Quote {
    /// The quote of the job field `field` names, always (a release's `from_job`).
    pub fn of(spec: &Value, field: &'static str) -> Self {
        Self {
            field,
            flag: None,
            job: crate::workflow::model::str_of(spec, field).to_string(),
        }
    }

    /// The quote of field `field` when the spec's `flag` is `fromjob`.
    pub fn when_from_job(spec: &Value, flag: &'static str, field: &'static str) -> Option<Self> {
        (crate::workflow::model::str_of(spec, flag) == "fromjob").then(|| Self {
            field,
            flag: Some(flag),
            job: crate::workflow::model::str_of(spec, field).to_string(),
        })
    }
}

/// What a job type does in each phase. Defaults are what a type with no rule of its own gets.
#[async_trait::async_trait]
pub trait JobKind: Sync {
    /// Check and normalise the job's spec (an object) when a definition is linted; `field` is
    /// the spec's JSON path. A malformed spec is a 400 naming the field.
    fn lint(&self, _spec: &mut Value, _field: &str) -> ApiResult<()> {
        Ok(())
    }

    /// Whether the `envs`/`key_vals` of the spec become a local process's environment (so
    /// their keys must be environment-variable names).
    fn exports_env(&self) -> bool {
        false
    }

    /// Whether an execute input's `registry` address names the image registry to push to.
    fn takes_registry(&self) -> bool {
        false
    }

    /// Apply an execute input's `parameters` to the spec (spec/workflow.md §3.3). By default a
    /// type has no documented input: the keys given are recorded on the spec as they are.
    fn apply_input(&self, cx: &InputCx<'_>, spec: &mut Spec, params: &Value) -> ApiResult<()> {
        crate::workflow::inputs::record_as_is(spec, params, cx.field)
    }

    /// The (service, module) pairs the job produces, for a later job's `source: fromjob`; a
    /// malformed spec is a 400 naming the field.
    fn produced(&self, _job: &Job) -> ApiResult<Vec<(String, String)>> {
        Ok(Vec::new())
    }

    /// The job's job tasks (spec/workflow.md §3.5); by default exactly one.
    fn expand(
        &self,
        x: &mut crate::workflow::expand::Expander<'_>,
        job: &Job,
    ) -> ApiResult<Vec<JobTask>> {
        Ok(vec![x.single(job)])
    }

    /// The jobs this one quotes ([`Quote`]), which must end before it starts (lint checks
    /// it). By default `job_name` when `source` is `fromjob`.
    fn quotes(&self, spec: &Value) -> Vec<Quote> {
        Quote::when_from_job(spec, "source", "job_name")
            .into_iter()
            .collect()
    }

    /// Rules across the definition's jobs, checked when it is saved once every job passed
    /// [`Self::lint`] and its quotes were checked; `field` is the job's JSON path
    /// (`stages[i].jobs[j]`).
    fn lint_in(&self, _wf: &Workflow, _job: &Job, _field: &str) -> ApiResult<()> {
        Ok(())
    }

    /// The environment a deploy job deploys to (checked against a ticket's `envs`).
    fn deploys_to(&self, _job: &Job) -> ApiResult<Option<String>> {
        Ok(None)
    }

    /// The (service, module) pairs the job touches (checked against a ticket's `services`).
    fn touched_services(&self, _job: &Job) -> ApiResult<Vec<(String, String)>> {
        Ok(Vec::new())
    }

    /// The summary of a job task's spec shown by task detail (spec/workflow.md §2.4).
    fn view(&self, job: &JobTask) -> Value {
        job.spec.clone()
    }

    /// How the engine runs it: every type says (a type that cannot run yet names the
    /// integration it needs).
    fn runs(&self) -> Runs;

    /// Translate a job task (its spec rendered against the task context) into the process
    /// the engine runs ([`Runs::Process`] types), or say why it cannot run here.
    async fn prepare(
        &self,
        ty: JobType,
        _state: &AppState,
        _ctx: &JobContext,
        _spec: &Value,
    ) -> Result<PreparedJob, String> {
        Err(match self.runs() {
            Runs::Needs(integration) => missing_integration(ty.as_str(), integration),
            Runs::Missing(what) => {
                format!("job type {ty} cannot run: {what} are not implemented by this server")
            }
            Runs::Process | Runs::Votes | Runs::InServer => {
                format!("job type {ty} runs no process here")
            }
        })
    }

    /// Run a job task inside the server ([`Runs::InServer`] types) to its end: its status,
    /// error, outputs and what it records on its spec. Must end within 2 s of `job.cancel`.
    async fn run(&self, ty: JobType, _state: &AppState, _job: ServerJob<'_>) -> JobEnd {
        JobEnd::failed(format!("job type {ty} does not run inside the server"))
    }

    /// Outputs derived from the process's outputs when the job ended.
    fn finish_outputs(&self, _outputs: &mut BTreeMap<String, String>) {}

    /// Undo, once the task has ended (whatever its status), what a job task of this type set
    /// up for the task's duration only (a blue-green deploy's blue copy); `project` is the
    /// task's. It may be called more than once for a task (recovery, a retry), so it is
    /// idempotent; what it cannot undo it answers, and the engine retries — a few times at
    /// once, then in the background from a stored copy of `job` ([`crate::engine::clean_ups`])
    /// — noting it in the job task's error. A late retry may meet objects a newer task made
    /// under the same names: it touches only what is still this job task's (an object's uid,
    /// a mark it set) and answers what it left to others (`Ok(Some(..))`, for the job task's
    /// error).
    async fn clean(
        &self,
        _state: &AppState,
        _project: &str,
        _job: &JobTask,
    ) -> Result<Option<String>, String> {
        Ok(None)
    }

    /// Whether a background retry of [`Self::clean`] must wait until no task of the project
    /// runs, because `job` (a record stored before clean-ups could tell their own objects)
    /// cannot tell what a newer task made under the same names.
    fn clean_waits_for_idle_project(&self, _job: &JobTask) -> bool {
        false
    }
}

/// serde `deserialize_with` for a spec field: `null` reads as absent (Zadig sends `null` for
/// unset lists and strings), anything else must have the field's type.
pub(crate) use crate::validate::nullable;

/// A job's spec decoded as its type's spec struct when a task is made or checked; a malformed
/// spec (one stored before lint refused it) is a 400 naming `job <name>.spec.<field>`.
pub(crate) fn spec_of<T: serde::de::DeserializeOwned + Default>(job: &Job) -> ApiResult<T> {
    crate::workflow::inputs::decode(&job.spec, &format!("job {}.spec", job.name))
}

/// The items of the spec's list `key` as stored, beside their typed reading `typed` (decoded
/// from the same spec, so one item each): the stored item is what is carried into a job task
/// or back into the spec, so fields not modelled here and `null`s survive verbatim.
pub(crate) fn stored<'a, T>(
    spec: &'a Value,
    key: &str,
    typed: &'a [T],
) -> impl Iterator<Item = (&'a T, &'a Value)> {
    let raw = spec
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    typed.iter().zip(raw)
}

/// The items of the first non-empty of two lists of the spec (`(key, typed items)`, e.g. the
/// candidates then the selection), each typed and as stored.
pub(crate) fn first_listed<'a, T>(
    spec: &'a Value,
    (key, items): (&str, &'a [T]),
    (other_key, other): (&str, &'a [T]),
) -> Vec<(&'a T, &'a Value)> {
    if items.is_empty() {
        stored(spec, other_key, other).collect()
    } else {
        stored(spec, key, items).collect()
    }
}

/// A `{service_name, service_module}` item of a job's service list (build, test, scan,
/// freestyle); every other field is kept as sent.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct ServiceItem {
    #[serde(default, deserialize_with = "nullable")]
    pub service_name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub service_module: String,
    /// Its own repositories (Repository objects, carried as stored).
    #[serde(default, deserialize_with = "nullable")]
    pub repos: Vec<Value>,
    /// Every other field, kept as sent.
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

impl ServiceItem {
    /// The (service, module) pair.
    pub fn pair(&self) -> (String, String) {
        (self.service_name.clone(), self.service_module.clone())
    }

    /// The names of a per-service job task made for it.
    pub fn names(&self) -> Vec<String> {
        vec![self.service_name.clone(), self.service_module.clone()]
    }
}

/// The end of a job run inside the server from its body's result: an `Err` is its failure,
/// so bodies can use `?`.
pub(crate) fn ended(result: Result<JobEnd, String>) -> JobEnd {
    result.unwrap_or_else(JobEnd::failed)
}

/// A server job task's (rendered) spec decoded as its type's spec struct; the error names the
/// job task and the failing field (`custom-deploy job task x: spec.target: invalid type …`).
pub(crate) fn task_spec<T: serde::de::DeserializeOwned>(job: &ServerJob<'_>) -> Result<T, String> {
    typed(job.spec).map_err(|e| format!("{} job task {}: {e}", job.ctx.job_type, job.ctx.job_name))
}

/// A job task's spec decoded as its type's spec struct; the error names the failing field
/// (`spec.repos: invalid type …`).
pub(crate) fn typed<T: serde::de::DeserializeOwned>(spec: &Value) -> Result<T, String> {
    crate::workflow::inputs::read_at(spec, "spec").map_err(|(path, what)| format!("{path}: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        crate::workflow::assert_wire_names(
            JobType::ALL,
            |t| t as usize,
            JobType::as_str,
            JobType::parse,
        );
        assert_eq!(JobType::NAMES.len(), 43);
    }
}
