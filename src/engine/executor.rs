//! Running one job task: the boundary between the task runner and the executors.
//!
//! The runner calls [`run_job`] with a [`JobContext`] when a job task's turn comes; this module
//! renders the job's variables, turns the job type's spec into work (processes for freestyle
//! and zadig-build jobs; a clear failure naming the missing integration for job types that need
//! one), writes the job log, and reports a [`JobEnd`].

use std::collections::BTreeMap;

use tokio_util::sync::CancellationToken;

use crate::state::AppState;

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
        match self {
            JobStatus::Passed => "passed",
            JobStatus::Failed => "failed",
            JobStatus::Timeout => "timeout",
            JobStatus::Cancelled => "cancelled",
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
}

/// Run one job task to its end. Never panics and never hangs past the job's timeout; a
/// cancelled token ends it as `Cancelled` (its processes killed) within 2 s.
pub async fn run_job(_state: &AppState, ctx: JobContext, cancel: CancellationToken) -> JobEnd {
    if cancel.is_cancelled() {
        return JobEnd {
            status: JobStatus::Cancelled,
            error: "workflow was canceled".into(),
            outputs: BTreeMap::new(),
        };
    }
    JobEnd {
        status: JobStatus::Failed,
        error: format!(
            "job type {} cannot run: the job executor is not implemented yet",
            ctx.job_type
        ),
        outputs: BTreeMap::new(),
    }
}
