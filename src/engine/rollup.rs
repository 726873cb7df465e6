//! Status roll-up (spec/workflow.md §5.2): a stage's status from its job tasks, a task's from
//! its stages. Pure functions.

use crate::workflow::task::status::{
    CANCELLED, FAILED, PASSED, PAUSE, REJECT, RUNNING, SKIPPED, TIMEOUT, UNSTABLE,
};

/// Job-status priorities when rolling up a stage: the highest present wins.
const STAGE_PRIORITY: &[&str] = &[
    CANCELLED, TIMEOUT, FAILED, PAUSE, REJECT, PASSED, UNSTABLE, SKIPPED,
];

/// Stage-status priorities when rolling up a task.
const TASK_PRIORITY: &[&str] = &[
    PAUSE, REJECT, CANCELLED, TIMEOUT, FAILED, PASSED, UNSTABLE, SKIPPED,
];

fn highest<'a>(
    priority: &[&'static str],
    statuses: impl Iterator<Item = &'a str>,
) -> Option<&'static str> {
    statuses
        .filter_map(|s| priority.iter().position(|p| *p == s))
        .min()
        .map(|i| priority[i])
}

/// A stage's status from its job tasks' statuses. A cancelled task makes the stage
/// `cancelled`; statuses outside the list (`""`, running, …) are ignored; none → `running`.
pub fn stage_status<'a>(task_cancelled: bool, jobs: impl Iterator<Item = &'a str>) -> &'static str {
    if task_cancelled {
        return CANCELLED;
    }
    highest(STAGE_PRIORITY, jobs).unwrap_or(RUNNING)
}

/// A task's final status from its stages' statuses; a final `unstable` becomes `passed`.
pub fn task_status<'a>(stages: impl Iterator<Item = &'a str>) -> &'static str {
    match highest(TASK_PRIORITY, stages).unwrap_or(RUNNING) {
        UNSTABLE => PASSED,
        s => s,
    }
}

/// Whether a job (or stage) status ends a sequential stage (or the task): the remaining jobs
/// (stages) do not start.
pub fn stops_sequence(status: &str) -> bool {
    [FAILED, TIMEOUT, CANCELLED, REJECT, PAUSE].contains(&status)
}

/// Work already done that a retry keeps.
pub fn is_done(status: &str) -> bool {
    [PASSED, SKIPPED, UNSTABLE].contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_rollup_follows_priorities() {
        assert_eq!(
            stage_status(false, ["passed", "failed"].into_iter()),
            FAILED
        );
        assert_eq!(
            stage_status(false, ["timeout", "failed"].into_iter()),
            TIMEOUT
        );
        assert_eq!(
            stage_status(false, ["passed", "skipped"].into_iter()),
            PASSED
        );
        assert_eq!(
            stage_status(false, ["skipped", "skipped"].into_iter()),
            SKIPPED
        );
        assert_eq!(
            stage_status(false, ["unstable", "passed"].into_iter()),
            PASSED
        );
        assert_eq!(stage_status(false, ["", "running"].into_iter()), RUNNING);
        assert_eq!(stage_status(false, ["passed", ""].into_iter()), PASSED);
        assert_eq!(stage_status(true, ["passed"].into_iter()), CANCELLED);
        assert_eq!(
            stage_status(false, ["reject", "passed"].into_iter()),
            REJECT
        );
    }

    #[test]
    fn task_rollup_follows_priorities() {
        assert_eq!(task_status(["passed", "failed"].into_iter()), FAILED);
        assert_eq!(task_status(["failed", "cancelled"].into_iter()), CANCELLED);
        assert_eq!(task_status(["reject", "cancelled"].into_iter()), REJECT);
        assert_eq!(task_status(["unstable", "skipped"].into_iter()), PASSED);
        assert_eq!(task_status(["skipped"].into_iter()), SKIPPED);
        assert_eq!(task_status(["", "running"].into_iter()), RUNNING);
    }
}
