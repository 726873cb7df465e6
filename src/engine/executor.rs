//! Running one job task: the boundary between the task runner and the executors.
//!
//! The runner calls [`run_job`] with a [`JobContext`] when a job task's turn comes; this module
//! renders the job's variables, turns the job type's spec into a [`PreparedJob`] (steps for
//! freestyle and zadig-build jobs; a clear failure naming the missing integration for job
//! types that need one, see [`super::work`]), hands it to the [`Executor`] its placement
//! picks ([`super::local::LocalExecutor`], or [`super::kube::KubeExecutor`] for a job placed on
//! a cluster),
//! writes the job log with the executor banner of spec/workflow.md §5.10, and reports a
//! [`JobEnd`]. A job type that runs inside the server (`Runs::InServer`: deploys against the
//! Kubernetes API) gets its rendered spec, its log and the cancel token instead
//! ([`ServerJob`], `JobKind::run`) and writes its own banners.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::logs::{JobLog, LogKey};
use crate::clock::Clock;
use crate::state::AppState;
use crate::workflow::jobs::{JobType, Runs};
use crate::workflow::task::Status;

/// Everything the engine knows about one job task when it is its turn to run.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub project: String,
    pub workflow: String,
    pub task_id: i64,
    /// The job task's name: the key of its log (`/openapi/logs/.../:jobName`).
    pub job_name: String,
    /// The workflow job type (`freestyle`, `zadig-build`, …).
    pub job_type: String,
    /// The job task's spec as stored on the task (execute inputs already merged).
    pub spec: serde_json::Value,
    /// Workflow parameters exported as environment variables (not `repo`/`file` params).
    pub params: Vec<(String, String)>,
    /// Values of credential parameters: passed in clear, masked as `********` in logs.
    pub secrets: Vec<String>,
    /// The task context for `{{.…}}` references, keyed without the leading dot, e.g.
    /// `workflow.params.version`, `job.build.svc.mod.output.IMAGE`, `job.build.status`.
    pub context: BTreeMap<String, String>,
    /// Who started the task (account).
    pub creator: String,
}

/// How a job task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Passed,
    Failed,
    Timeout,
    Cancelled,
}

impl JobStatus {
    /// Zadig's status string.
    pub fn as_str(self) -> &'static str {
        Status::from(self).as_str()
    }
}

impl From<JobStatus> for Status {
    fn from(s: JobStatus) -> Status {
        match s {
            JobStatus::Passed => Status::Passed,
            JobStatus::Failed => Status::Failed,
            JobStatus::Timeout => Status::Timeout,
            JobStatus::Cancelled => Status::Cancelled,
        }
    }
}

/// The result of [`run_job`].
#[derive(Debug, Clone)]
pub struct JobEnd {
    pub status: JobStatus,
    /// Why it did not pass (empty when passed).
    pub error: String,
    /// Outputs by bare name (`IMAGE`, `IMAGETAG`, `PKG_FILE`, declared outputs).
    pub outputs: BTreeMap<String, String>,
    /// Keys set on the job task's spec when it ends, whatever its status (a deploy's
    /// `replace_resources`).
    pub record: serde_json::Map<String, serde_json::Value>,
}

impl JobEnd {
    pub fn failed(error: impl Into<String>) -> Self {
        Self {
            status: JobStatus::Failed,
            error: error.into(),
            outputs: BTreeMap::new(),
            record: serde_json::Map::new(),
        }
    }
    pub fn cancelled() -> Self {
        Self {
            status: JobStatus::Cancelled,
            error: "workflow was canceled".into(),
            outputs: BTreeMap::new(),
            record: serde_json::Map::new(),
        }
    }
}

/// What a job that runs inside the server (`Runs::InServer`) is given.
pub struct ServerJob<'a> {
    pub ctx: &'a JobContext,
    /// The job task's spec rendered against the task context.
    pub spec: &'a serde_json::Value,
    pub log: &'a JobLog,
    /// Cancelled when the task is: the job ends `Cancelled` within 2 s.
    pub cancel: &'a CancellationToken,
}

impl Run<'_> {
    /// Resolves when the job is cancelled or its deadline passes, with that end, logged with
    /// what became of its work (`consequence`: "its processes were killed").
    pub async fn stopped(self, job: &PreparedJob, consequence: &str) -> ExecEnd {
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => {
                self.log.info(&format!("Job cancelled: {consequence}."));
                ExecEnd::ended(JobStatus::Cancelled, "workflow was canceled")
            }
            () = self.clock.sleep_until(self.deadline_ms) => {
                let minutes = job.timeout.as_secs() / 60;
                self.log.info(&format!("Job timed out after {minutes} minutes: {consequence}."));
                ExecEnd::ended(JobStatus::Timeout, format!("job timed out after {minutes} minutes (timeout)"))
            }
        }
    }
}

/// A tool the job needs on the PATH (`runtime.installs` / a tools step).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

/// A repository to check out before the script runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GitRepo {
    /// The repository's name (for messages and `REPONAME_<i>`).
    pub name: String,
    /// What `git clone` gets: a URL or a local path.
    pub url: String,
    pub branch: String,
    pub tag: String,
    pub commit_id: String,
    /// A pull/merge request number to check out (0: none).
    pub pr: i64,
    /// Relative directory in the workspace.
    pub checkout_path: String,
    pub submodules: bool,
}

/// The interpreter of a script step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ScriptKind {
    Bash,
    PowerShell,
}

/// One step of a prepared job, run in order; a failing step ends the job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Step {
    /// Check that each tool is on the PATH and log its version.
    Tools(Vec<Tool>),
    /// Clone the repositories into the workspace.
    Git(Vec<GitRepo>),
    /// Run the script; afterwards the job's outputs are read from the variables it left.
    Script { kind: ScriptKind, script: String },
}

/// A job translated into executor-neutral work.
#[derive(Debug, Clone)]
pub struct PreparedJob {
    pub key: LogKey,
    pub job_type: String,
    /// Environment of every step (the executor adds `WORKSPACE` and `PATH`/`HOME` of its
    /// own environment).
    pub env: Vec<(String, String)>,
    pub steps: Vec<Step>,
    /// Variables whose values the script leaves are the job's outputs.
    pub outputs: Vec<String>,
    /// The job's timeout.
    pub timeout: Duration,
    /// Credential values to mask (job variables, tokens in clone URLs).
    pub secrets: Vec<String>,
    /// Where it runs: a local process group (the default) or a Kubernetes Job.
    pub placement: super::kube::Placement,
}

/// How an executor's run of a prepared job ended.
#[derive(Debug, Clone)]
pub struct ExecEnd {
    pub status: JobStatus,
    pub error: String,
    pub outputs: BTreeMap<String, String>,
}

impl ExecEnd {
    /// An end without outputs.
    pub fn ended(status: JobStatus, error: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            outputs: BTreeMap::new(),
        }
    }
}

/// Runs prepared jobs somewhere: local process groups today, Kubernetes Jobs later.
#[async_trait]
pub trait Executor: Send + Sync {
    /// A short name for logs (`local`).
    fn name(&self) -> &'static str;
    /// Run `job` to its end within the bounds of `run`, leaving no process behind.
    async fn execute(&self, job: &PreparedJob, run: Run<'_>) -> ExecEnd;
}

/// What one run of a job is bound by: where its output goes, its clock, its deadline and its
/// cancellation. An executor must end by `deadline_ms` (business clock; → `Timeout`) and
/// within 2 s of `cancel` (→ `Cancelled`).
#[derive(Clone, Copy)]
pub struct Run<'a> {
    pub log: &'a JobLog,
    pub clock: &'a dyn Clock,
    pub deadline_ms: i64,
    pub cancel: &'a CancellationToken,
}

const BANNER_START: &str = "====================== job-executor Start ======================";

/// Run one job task to its end. Never panics and never hangs past the job's timeout; a
/// cancelled token ends it as `Cancelled` (its processes killed) within 2 s.
pub async fn run_job(state: &AppState, ctx: JobContext, cancel: CancellationToken) -> JobEnd {
    if cancel.is_cancelled() {
        return JobEnd::cancelled();
    }
    let key = LogKey {
        workflow: ctx.workflow.clone(),
        task_id: ctx.task_id,
        job: ctx.job_name.clone(),
    };
    let log = match state
        .engine
        .logs
        .open(key, &ctx.secrets, state.clock.clone())
        .await
    {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(workflow = %ctx.workflow, task_id = ctx.task_id, job = %ctx.job_name,
                "cannot open the job log: {e}");
            return JobEnd::failed(format!("cannot open the job log: {e}"));
        }
    };
    if let Some(ty) = JobType::parse(&ctx.job_type).filter(|t| t.kind().runs() == Runs::InServer) {
        let spec = super::render::render_value(&ctx.spec, &ctx.context);
        let job = ServerJob {
            ctx: &ctx,
            spec: &spec,
            log: &log,
            cancel: &cancel,
        };
        let mut end = ty.kind().run(ty, state, job).await;
        end.error = log.mask(&end.error);
        log.close(&state.engine.logs).await;
        return end;
    }
    let started = Instant::now();
    log.raw(BANNER_START);
    let end = match super::work::prepare(state, &ctx).await {
        Err(error) => ExecEnd::ended(JobStatus::Failed, error),
        Ok(job) => {
            log.add_secrets(&job.secrets);
            let timeout_ms = i64::try_from(job.timeout.as_millis()).unwrap_or(i64::MAX / 4);
            let deadline = state.clock.now_ms().saturating_add(timeout_ms);
            let executor = super::kube::executor_for(state, &job.placement);
            let run = Run {
                log: &log,
                clock: state.clock.as_ref(),
                deadline_ms: deadline,
                cancel: &cancel,
            };
            executor.execute(&job, run).await
        }
    };
    if end.status != JobStatus::Passed && !end.error.is_empty() {
        log.raw(&format!("Failed to run: {}.", end.error));
    }
    let verdict = if end.status == JobStatus::Passed {
        "success"
    } else {
        "fail"
    };
    log.output(&[&format!("Job Status: {verdict}")]);
    log.raw(&format!(
        "====================== job-executor End. Duration: {:.2} seconds ======================",
        started.elapsed().as_secs_f64()
    ));
    let error = log.mask(&end.error);
    log.close(&state.engine.logs).await;
    JobEnd {
        status: end.status,
        error,
        outputs: end.outputs,
        record: serde_json::Map::new(),
    }
}
