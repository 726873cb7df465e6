//! The job agent: `zadig-server job-agent`, the main process of a Kubernetes job's pod.
//!
//! It reads the job ([`AgentJob`]) from the env var [`AGENT_ENV`] (filled from the run's
//! Secret), runs its steps with the local executor's step runner
//! ([`crate::engine::local::run_in_pod`]: tools check, git clones, the script, the same
//! environment, masking and outputs; the pod is the isolation boundary, so there is no job
//! sandbox), writes the log to stdout in the format of stored job logs, and ends with one
//! report line `zadig-agent-report:<nonce> {json}` that the executor reads back and strips
//! from the stored log. The nonce is per run and only in the Secret, so a script printing a
//! report line for another run changes nothing. Exit code 0 when the job passed, 1 when it
//! failed, 2 when the agent could not start.
//!
//! `zadig-server job-agent --install PATH` copies this executable to `PATH`: what the init
//! container of the agent image does to bring the agent into the job's image.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use super::spec::AGENT_ENV;
use crate::clock::SystemClock;
use crate::engine::executor::{PreparedJob, Step};
use crate::engine::logs::{JobLog, LogKey};

/// The start of a report line.
pub const REPORT_PREFIX: &str = "zadig-agent-report:";

/// A job as the agent gets it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentJob {
    pub workflow: String,
    pub task_id: i64,
    pub job: String,
    pub job_type: String,
    pub env: Vec<(String, String)>,
    pub steps: Vec<Step>,
    pub outputs: Vec<String>,
    /// Values masked in the log.
    pub secrets: Vec<String>,
    /// Marks this run's report line.
    pub nonce: String,
}

impl AgentJob {
    pub fn new(job: &PreparedJob, nonce: &str) -> Self {
        Self {
            workflow: job.key.workflow.clone(),
            task_id: job.key.task_id,
            job: job.key.job.clone(),
            job_type: job.job_type.clone(),
            env: job.env.clone(),
            steps: job.steps.clone(),
            outputs: job.outputs.clone(),
            secrets: job.secrets.clone(),
            nonce: nonce.to_string(),
        }
    }

    fn prepared(self) -> (PreparedJob, String) {
        let job = PreparedJob {
            key: LogKey {
                workflow: self.workflow,
                task_id: self.task_id,
                job: self.job,
            },
            job_type: self.job_type,
            env: self.env,
            steps: self.steps,
            outputs: self.outputs,
            // The server enforces the timeout (and Kubernetes the active deadline).
            timeout: Duration::MAX,
            secrets: self.secrets,
            placement: super::Placement::Local,
        };
        (job, self.nonce)
    }
}

/// How the job ended, as the agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub passed: bool,
    /// Why it failed (empty when it passed).
    pub error: String,
    pub outputs: BTreeMap<String, String>,
}

/// The report line of run `nonce`.
pub fn report_line(nonce: &str, report: &Report) -> String {
    let json = serde_json::to_string(report).unwrap_or_else(|_| "{}".to_string());
    format!("{REPORT_PREFIX}{nonce} {json}")
}

/// `Some` when `line` is run `nonce`'s report line (a malformed one reports a failure).
pub fn parse_report(nonce: &str, line: &str) -> Option<Report> {
    let rest = line.strip_prefix(REPORT_PREFIX)?.strip_prefix(nonce)?;
    let json = rest.strip_prefix(' ')?;
    Some(serde_json::from_str(json).unwrap_or_else(|e| Report {
        passed: false,
        error: format!("the job agent's report is malformed: {e}"),
        outputs: BTreeMap::new(),
    }))
}

/// `zadig-server job-agent [--install PATH]`; returns the exit code.
pub fn main(args: &[OsString]) -> i32 {
    if args.first().is_some_and(|a| a == "--install") {
        let Some(target) = args.get(1) else {
            eprintln!("zadig-server job-agent --install: missing PATH");
            return 2;
        };
        return match install(&PathBuf::from(target)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("zadig-server job-agent --install: {e}");
                2
            }
        };
    }
    let job: AgentJob = match std::env::var(AGENT_ENV)
        .map_err(|e| format!("{AGENT_ENV}: {e}"))
        .and_then(|t| serde_json::from_str(&t).map_err(|e| format!("{AGENT_ENV}: {e}")))
    {
        Ok(j) => j,
        Err(e) => {
            eprintln!("zadig-server job-agent: no job to run: {e}");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zadig-server job-agent: cannot start the async runtime: {e}");
            return 2;
        }
    };
    runtime.block_on(run(job))
}

fn install(target: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let me = std::env::current_exe()?;
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(&me, target)?;
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o755))
}

async fn run(job: AgentJob) -> i32 {
    let (job, nonce) = job.prepared();
    let log = JobLog::printing(job.key.clone(), &job.secrets, Arc::new(SystemClock));
    let dir = std::env::current_dir()
        .unwrap_or_else(|_| PathBuf::from(super::spec::WORK_DIR))
        .join("job");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let stopped = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    // On SIGTERM (the Job deleted) the run is dropped, which kills every command's group.
    let result = tokio::select! {
        r = crate::engine::local::run_in_pod(&job, &dir, &log) => r,
        () = stopped => Err("the job's pod was stopped".to_string()),
    };
    let report = match result {
        Ok(outputs) => Report {
            passed: true,
            error: String::new(),
            outputs,
        },
        Err(error) => Report {
            passed: false,
            error: log.mask(&error),
            outputs: BTreeMap::new(),
        },
    };
    let line = report_line(&nonce, &report);
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    i32::from(!report.passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trip() {
        let r = Report {
            passed: true,
            error: String::new(),
            outputs: BTreeMap::from([("IMAGE".to_string(), "a:b".to_string())]),
        };
        let line = report_line("n1", &r);
        assert_eq!(parse_report("n1", &line), Some(r));
        assert_eq!(parse_report("n2", &line), None);
        assert_eq!(parse_report("n1", "plain output"), None);
        let bad = parse_report("n1", "zadig-agent-report:n1 {").unwrap();
        assert!(!bad.passed && bad.error.contains("malformed"));
    }
}
