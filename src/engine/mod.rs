//! The workflow engine: runs workflow tasks for real.
//!
//! - [`dispatch`] finds `waiting` tasks in the store and claims them (honouring each task's
//!   `concurrency_limit` and this process' cap), keeps this process' liveness lease, recovers
//!   tasks left running by a dead process and notices cancels made through another replica;
//! - [`runner`] drives one claimed task through its stages and jobs (roll-up, approvals,
//!   cancel, error policies), writing every change with a conditional update;
//! - [`clean_ups`] keeps the clean-ups that still failed when their task ended and retries
//!   them in the background;
//! - [`executor`] turns one job task into work: [`executor::run_job`] is the single entry
//!   point the runner calls for every job task that is not an approval; [`work`] translates a
//!   job type's spec into steps, [`local`] runs them as local process groups, [`kube`] as
//!   Kubernetes Jobs on a cluster (with the job agent running the same steps in the pod);
//! - [`safe_fs`] is how the server reads and writes files in a job's directory (never
//!   following a link the job planted);
//! - [`logs`] stores every job log line (chunked, both backends) and fans them out live;
//! - [`finished`] is the port through which the engine reports a release job's task ending
//!   (the release-plan side subscribes; the engine does not call it).
//!
//! The workflow API creates, cancels, retries and approves tasks in the store and tells the
//! engine through [`task_queued`], [`task_cancelled`] and [`approval_recorded`].

pub mod approval;
pub mod clean_ups;
pub mod dispatch;
pub mod executor;
pub mod finished;
mod job_context;
pub mod kube;
pub mod local;
pub mod logs;
pub mod render;
pub mod rollup;
pub mod runner;
pub mod safe_fs;
pub mod sandbox;
mod task_ctl;
mod waits;
pub mod work;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;
use crate::store::{Backend, Typed};

/// What identifies a task across the engine: (workflow key, task id).
pub type TaskKey = (String, i64);

/// A task running in this process.
struct Running {
    /// Cancelled when the task is cancelled (or the server stops): stops its jobs and waits.
    cancel: CancellationToken,
    /// Woken when a vote is recorded on the task.
    votes: Arc<Notify>,
    /// The task's storage id (for the cross-replica cancel check).
    id: String,
}

/// The engine's in-process state, one per server (`state.engine`).
pub struct Engine {
    /// Wakes the dispatcher (a task was queued or a slot became free).
    wake: Notify,
    running: Mutex<HashMap<TaskKey, Running>>,
    /// Job logs: storage and live fan-out.
    pub logs: logs::LogHub,
    /// The executor that runs prepared jobs (local processes).
    pub executor: Arc<dyn executor::Executor>,
    /// The job sandbox of the local executor (probed at start).
    pub sandbox: Arc<sandbox::Sandbox>,
    workspace_root: std::path::PathBuf,
    /// Clean-ups still to be retried ([`clean_ups`]); the job tasks they keep are sealed like
    /// the tasks' own.
    pub clean_ups: Typed<clean_ups::PendingCleanUp>,
    /// Wakes the clean-up loop (a clean-up was kept: its due time is new).
    clean_up_wake: Notify,
}

impl Engine {
    pub fn new(
        backend: &dyn Backend,
        config: &crate::config::Config,
        secrets: &Arc<crate::secrets::SecretBox>,
    ) -> Self {
        let sandbox = Arc::new(sandbox::Sandbox::new(config));
        Self {
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            logs: logs::LogHub::new(backend),
            executor: Arc::new(local::LocalExecutor::new(
                config.engine_workspace_root(),
                config.engine_keep_workspaces,
                sandbox.clone(),
            )),
            sandbox,
            workspace_root: config.engine_workspace_root(),
            clean_ups: Typed::new(backend, clean_ups::COLLECTION).sealed_vars(secrets, None),
            clean_up_wake: Notify::new(),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<TaskKey, Running>> {
        // A poisoned lock only means a panic elsewhere while holding it; the map is still
        // consistent (every operation on it is a single insert/remove/lookup).
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many tasks run in this process now.
    pub fn running_count(&self) -> usize {
        self.registry().len()
    }

    /// Whether the task runs in this process.
    pub fn is_running_here(&self, workflow: &str, task_id: i64) -> bool {
        self.registry()
            .contains_key(&(workflow.to_string(), task_id))
    }

    /// Register a task this process is about to run; returns its cancel token and vote signal.
    fn register(&self, key: TaskKey, id: String, parent: &CancellationToken) -> Registered {
        let cancel = parent.child_token();
        let votes = Arc::new(Notify::new());
        metrics::counter!("engine_tasks_started_total").increment(1);
        self.registry().insert(
            key,
            Running {
                cancel: cancel.clone(),
                votes: votes.clone(),
                id,
            },
        );
        metrics::gauge!("engine_tasks_running").set(self.registry().len() as f64);
        Registered { cancel, votes }
    }

    fn unregister(&self, key: &TaskKey) {
        let running = {
            let mut r = self.registry();
            r.remove(key);
            r.len()
        };
        metrics::gauge!("engine_tasks_running").set(running as f64);
        self.wake.notify_one();
    }

    /// Storage ids of the tasks running here, with their keys.
    fn running_ids(&self) -> Vec<(TaskKey, String)> {
        self.registry()
            .iter()
            .map(|(k, r)| (k.clone(), r.id.clone()))
            .collect()
    }

    fn cancel_local(&self, key: &TaskKey) -> bool {
        match self.registry().get(key) {
            Some(r) => {
                r.cancel.cancel();
                true
            }
            None => false,
        }
    }

    fn cancel_all(&self) {
        for r in self.registry().values() {
            r.cancel.cancel();
        }
    }
}

/// What the runner of a task holds from the registry.
struct Registered {
    cancel: CancellationToken,
    votes: Arc<Notify>,
}

/// Start the engine's background loops (all stopped by `state.shutdown`).
pub fn spawn(state: &AppState) -> Vec<JoinHandle<()>> {
    // Say at start which protections of the job sandbox the kernel offers (logged once).
    let st = state.clone();
    let mut loops = vec![tokio::spawn(async move {
        let root = st.engine.workspace_root.clone();
        if let Err(e) = tokio::fs::create_dir_all(&root).await {
            tracing::warn!("cannot create the workspace root {}: {e}", root.display());
        }
        st.engine.sandbox.probe(&root).await;
    })];
    loops.extend(dispatch::spawn(state));
    loops.push(tokio::spawn(clean_ups::run(state.clone())));
    loops
}

/// A task was queued (created or retried): start it as soon as a slot is free.
pub fn task_queued(state: &AppState) {
    state.engine.wake.notify_one();
}

/// A task was marked `cancelled` in the store: stop its running jobs and approvals now.
///
/// A task running here is stopped through its cancel token at once. A task running on another
/// replica is stopped by that replica's cancel check (within `engine_sweep_interval_ms`). A task
/// that was still waiting never ran: the release plan that started it (if any) is told here.
pub fn task_cancelled(state: &AppState, workflow: &str, task_id: i64) {
    let key = (workflow.to_string(), task_id);
    if state.engine.cancel_local(&key) {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        runner::finish_unclaimed_cancel(&state, &key.0, key.1).await;
    });
}

/// A vote was recorded on a task waiting for approval: let the waiting stage/job decide now.
pub fn approval_recorded(state: &AppState, workflow: &str, task_id: i64) {
    let key = (workflow.to_string(), task_id);
    if let Some(r) = state.engine.registry().get(&key) {
        r.votes.notify_one();
    }
}

/// Where a job task stands in the store (for log readers that do not see its live log).
pub async fn job_phase(state: &AppState, key: &logs::LogKey) -> logs::JobPhase {
    use crate::workflow::task::Status;
    use logs::JobPhase;
    let task = match state.tasks.get(&key.workflow, key.task_id).await {
        Ok(Some(t)) => t,
        Ok(None) => return JobPhase::Missing,
        // A store hiccup: keep the reader waiting rather than cutting its stream.
        Err(_) => return JobPhase::Running,
    };
    let Some(job) = task
        .stages
        .iter()
        .flat_map(|s| s.jobs.iter())
        .find(|j| j.name == key.job)
    else {
        return JobPhase::Missing;
    };
    if task.status.is_final() && task.lease_owner.is_empty() {
        return JobPhase::Ended;
    }
    match job.status {
        Status::NotRun => JobPhase::NotStarted,
        Status::Running
        | Status::Prepare
        | Status::WaitForApproval
        | Status::WaitForManualErrorHandling => JobPhase::Running,
        _ => JobPhase::Ended,
    }
}
