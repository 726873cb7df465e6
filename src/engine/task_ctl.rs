//! The runner's handle on its task ([`TaskCtl`]): the latest stored version and the
//! conditional writer. A change is a closure applied to the latest stored task and saved
//! conditionally on `version`; when the workflow API wrote in between (cancel, a vote) the
//! task is re-read and the closure applied again, so neither side loses the other's write. A
//! status the API set to `cancelled` is never overwritten.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;
use crate::store::StoreError;
use crate::workflow::task::{Status, Task};

/// Why a runner stops writing.
#[derive(Debug)]
pub(super) enum Stop {
    /// The task was deleted, or another process took it over (it was declared dead).
    Lost,
    /// The store kept failing.
    Store(StoreError),
}

/// The runner's handle on its task: the latest stored version and the conditional writer.
pub(super) struct TaskCtl {
    state: AppState,
    /// The latest stored task with the deferred changes applied.
    pub task: Task,
    /// Changes made but not stored yet: they ride along with the next write.
    pending: Vec<Change>,
    /// Fired when a re-read shows the API cancelled the task.
    cancel: CancellationToken,
}

/// A change to a task, re-applicable to a fresher copy.
type Change = Box<dyn Fn(&mut Task) + Send + Sync>;

impl TaskCtl {
    pub fn new(state: AppState, task: Task, cancel: CancellationToken) -> Self {
        Self {
            state,
            task,
            pending: Vec::new(),
            cancel,
        }
    }

    /// Apply `f` now but store it with the next [`Self::update`]: for bookkeeping nobody waits
    /// for (a stage's start and end), which saves a write per stage boundary.
    pub fn defer(&mut self, f: impl Fn(&mut Task) + Send + Sync + 'static) {
        f(&mut self.task);
        self.pending.push(Box::new(f));
    }

    /// Apply `f` to the task and store it with the deferred changes (see the module doc).
    pub async fn update(&mut self, f: impl Fn(&mut Task)) -> Result<(), Stop> {
        let mut failures = 0u32;
        loop {
            let mut next = self.task.clone();
            f(&mut next);
            let res = match self.state.tasks.save(&mut next).await {
                Ok(true) => {
                    self.task = next;
                    self.pending.clear();
                    return Ok(());
                }
                Ok(false) => self.refresh().await,
                Err(e) => Err(Stop::Store(e)),
            };
            match res {
                Ok(()) => {}
                Err(Stop::Store(e)) => {
                    failures += 1;
                    if failures >= 30 {
                        return Err(Stop::Store(e));
                    }
                    tracing::warn!(workflow = %self.task.workflow_name, task_id = self.task.task_id,
                        "writing the task failed (attempt {failures}): {e}");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(failures.min(20))))
                        .await;
                }
                Err(lost) => return Err(lost),
            }
        }
    }

    /// Re-read the task (keeping the deferred changes); [`Stop::Lost`] when it is gone or no
    /// longer ours.
    pub async fn refresh(&mut self) -> Result<(), Stop> {
        match self.state.tasks.tasks.get(&self.task.id).await {
            Ok(Some(mut t)) if t.lease_owner == self.state.instance_id => {
                if t.status == Status::Cancelled {
                    self.cancel.cancel();
                }
                for p in &self.pending {
                    p(&mut t);
                }
                self.task = t;
                Ok(())
            }
            Ok(_) => Err(Stop::Lost),
            Err(e) => Err(Stop::Store(e)),
        }
    }
}

pub(super) type Ctl = Arc<Mutex<TaskCtl>>;
