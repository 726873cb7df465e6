//! Status roll-up (spec/workflow.md §5.2): a stage's status from its job tasks, a task's from
//! its stages. Pure functions.

use crate::workflow::task::Status::{
    self, Cancelled, Failed, Passed, Pause, Reject, Running, Skipped, Timeout, Unstable,
};

/// Job-status priorities when rolling up a stage: the highest present wins.
const STAGE_PRIORITY: &[Status] = &[
    Cancelled, Timeout, Failed, Pause, Reject, Passed, Unstable, Skipped,
];

/// Stage-status priorities when rolling up a task.
const TASK_PRIORITY: &[Status] = &[
    Pause, Reject, Cancelled, Timeout, Failed, Passed, Unstable, Skipped,
];

fn highest(priority: &[Status], statuses: impl Iterator<Item = Status>) -> Option<Status> {
    statuses
        .filter_map(|s| priority.iter().position(|p| *p == s))
        .min()
        .map(|i| priority[i])
}

/// A stage's status from its job tasks' statuses. A cancelled task makes the stage
/// `cancelled`; statuses outside the list (not run, running, …) are ignored; none → `running`.
pub fn stage_status(task_cancelled: bool, jobs: impl Iterator<Item = Status>) -> Status {
    if task_cancelled {
        return Cancelled;
    }
    highest(STAGE_PRIORITY, jobs).unwrap_or(Running)
}

/// A task's final status from its stages' statuses; a final `unstable` becomes `passed`.
pub fn task_status(stages: impl Iterator<Item = Status>) -> Status {
    match highest(TASK_PRIORITY, stages).unwrap_or(Running) {
        Unstable => Passed,
        s => s,
    }
}

/// Whether a job (or stage) status ends a sequential stage (or the task): the remaining jobs
/// (stages) do not start.
pub fn stops_sequence(status: Status) -> bool {
    [Failed, Timeout, Cancelled, Reject, Pause].contains(&status)
}

/// Work already done that a retry keeps.
pub fn is_done(status: Status) -> bool {
    [Passed, Skipped, Unstable].contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_rollup_follows_priorities() {
        assert_eq!(stage_status(false, [Passed, Failed].into_iter()), Failed);
        assert_eq!(stage_status(false, [Timeout, Failed].into_iter()), Timeout);
        assert_eq!(stage_status(false, [Passed, Skipped].into_iter()), Passed);
        assert_eq!(stage_status(false, [Skipped, Skipped].into_iter()), Skipped);
        assert_eq!(stage_status(false, [Unstable, Passed].into_iter()), Passed);
        assert_eq!(
            stage_status(false, [Status::NotRun, Running].into_iter()),
            Running
        );
        assert_eq!(
            stage_status(false, [Passed, Status::NotRun].into_iter()),
            Passed
        );
        assert_eq!(stage_status(true, [Passed].into_iter()), Cancelled);
        assert_eq!(stage_status(false, [Reject, Passed].into_iter()), Reject);
    }

    #[test]
    fn task_rollup_follows_priorities() {
        assert_eq!(task_status([Passed, Failed].into_iter()), Failed);
        assert_eq!(task_status([Failed, Cancelled].into_iter()), Cancelled);
        assert_eq!(task_status([Reject, Cancelled].into_iter()), Reject);
        assert_eq!(task_status([Unstable, Skipped].into_iter()), Passed);
        assert_eq!(task_status([Skipped].into_iter()), Skipped);
        assert_eq!(task_status([Status::NotRun, Running].into_iter()), Running);
    }
}
