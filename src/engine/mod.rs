//! The workflow engine: runs workflow tasks for real.
//!
//! - the dispatcher and task runner (queue, leases, stages, roll-up, approvals, cancel, retry,
//!   recovery) drive a task through its stages;
//! - [`executor`] turns one job task into processes: [`executor::run_job`] is the single entry
//!   point the runner calls for every non-approval job.

pub mod executor;

use crate::state::AppState;

/// A task was queued (created or retried): start it as soon as a slot is free.
pub fn task_queued(_state: &AppState) {}

/// A task was marked `cancelled` in the store: stop its running jobs and approvals now.
pub fn task_cancelled(_state: &AppState, _workflow: &str, _task_id: i64) {}

/// A vote was recorded on a task waiting for approval: let the waiting stage/job decide now.
pub fn approval_recorded(_state: &AppState, _workflow: &str, _task_id: i64) {}
