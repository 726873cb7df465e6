//! The workflow engine: runs workflow tasks for real.
//!
//! - the dispatcher and task runner (queue, leases, stages, roll-up, approvals, cancel, retry,
//!   recovery) drive a task through its stages;
//! - [`executor`] turns one job task into processes: [`executor::run_job`] is the single entry
//!   point the runner calls for every non-approval job.

pub mod executor;
