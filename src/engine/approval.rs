//! Native approvals (spec/workflow.md §5.4): deciding from the recorded votes.
//!
//! Votes are recorded by the approve API; for a stage approval on the stage's
//! `approval.approve_users[]`, for an `approval` job on its job-task spec
//! `native_approval.approve_users[]` (same `ApproveUser` shape: `reject_or_approve`
//! `approve`/`reject`, `comment`, `operation_time`). The engine only decides: any reject →
//! rejected; approvals ≥ max(`needed_approvers`, 1) → approved (Zadig approves at once when
//! `needed_approvers` is 0; we require one approval, see docs/compatibility.md); the timeout
//! (minutes, 0 → 60) counted on the business clock from when the wait started → timed out.

use serde_json::Value;

use crate::workflow::approval::ApprovalSettings;
use crate::workflow::jobs::typed;
use crate::workflow::task::{ApproveOrReject, ApproveUser};

/// Default approval timeout in minutes (Zadig's).
pub const DEFAULT_TIMEOUT_MINUTES: i64 = 60;

/// The outcome of an approval at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Waiting,
    Approved,
    /// Rejected by the named user.
    Rejected(String),
    TimedOut,
    /// The settings no longer read (a stored spec that does not decode; the text names the
    /// field): the wait fails rather than deciding from part of them.
    Invalid(String),
}

/// The approval's deadline (ms) from its start and timeout in minutes (≤ 0 → 60).
pub fn deadline_ms(wait_start_ms: i64, timeout_minutes: i64) -> i64 {
    let minutes = if timeout_minutes > 0 {
        timeout_minutes
    } else {
        DEFAULT_TIMEOUT_MINUTES
    };
    wait_start_ms.saturating_add(minutes.saturating_mul(60_000))
}

/// Decide from the votes: a reject wins, then the quorum, then the clock.
pub fn decide(
    users: &[ApproveUser],
    needed_approvers: i64,
    deadline_ms: i64,
    now_ms: i64,
) -> Decision {
    if let Some(u) = users
        .iter()
        .find(|u| u.reject_or_approve == ApproveOrReject::Reject)
    {
        let who = if u.user_name.is_empty() {
            &u.user_id
        } else {
            &u.user_name
        };
        return Decision::Rejected(who.clone());
    }
    let approvals = users
        .iter()
        .filter(|u| u.reject_or_approve == ApproveOrReject::Approve)
        .count();
    let needed = usize::try_from(needed_approvers.max(1)).unwrap_or(1);
    if approvals >= needed {
        return Decision::Approved;
    }
    if now_ms >= deadline_ms {
        return Decision::TimedOut;
    }
    Decision::Waiting
}

/// The settings of an `approval` job from its job-task spec.
#[derive(Debug, Clone, PartialEq)]
pub struct JobApproval {
    /// `native`, `lark`, `dingtalk`, `workwx`, …
    pub kind: String,
    pub users: Vec<ApproveUser>,
    pub needed_approvers: i64,
    pub timeout_minutes: i64,
}

impl JobApproval {
    /// Read an approval job's task spec (`type`, `timeout`, `native_approval{timeout,
    /// approve_users, needed_approvers}`) through the definition's typed reading. A spec that
    /// does not decode is an error naming the field (the job fails with it), never a shorter
    /// approver list.
    pub fn from_spec(spec: &Value) -> Result<Self, String> {
        let a: ApprovalSettings = typed(spec)?;
        let native = a.native_approval.unwrap_or_default();
        let timeout_minutes = if a.timeout > 0 {
            a.timeout
        } else {
            native.timeout
        };
        Ok(Self {
            kind: if a.kind.is_empty() {
                "native".to_string()
            } else {
                a.kind
            },
            users: native.users(),
            needed_approvers: native.needed_approvers,
            timeout_minutes,
        })
    }
}

/// Clear the votes of an approval job's spec (a fresh wait, e.g. after a retry).
pub fn clear_job_votes(spec: &mut Value) {
    if let Some(users) = spec
        .get_mut("native_approval")
        .and_then(|n| n.get_mut("approve_users"))
        .and_then(Value::as_array_mut)
    {
        for u in users {
            if let Some(o) = u.as_object_mut() {
                o.insert(
                    "reject_or_approve".into(),
                    Value::String(ApproveOrReject::None.as_str().into()),
                );
                o.insert("comment".into(), Value::String(String::new()));
                o.insert("operation_time".into(), Value::from(0));
            }
        }
    }
}

/// Clear the votes of a stage approval.
pub fn clear_votes(users: &mut [ApproveUser]) {
    for u in users {
        u.reject_or_approve = ApproveOrReject::None;
        u.comment.clear();
        u.operation_time = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(name: &str, v: ApproveOrReject) -> ApproveUser {
        ApproveUser {
            user_name: name.into(),
            reject_or_approve: v,
            ..ApproveUser::default()
        }
    }

    #[test]
    fn quorum_reject_and_timeout() {
        use ApproveOrReject::{Approve, None as NoVote, Reject};
        let d = deadline_ms(1_000, 0);
        assert_eq!(d, 1_000 + 3_600_000);
        let votes = |vs: &[(&str, ApproveOrReject)]| -> Vec<ApproveUser> {
            vs.iter().map(|&(name, v)| vote(name, v)).collect()
        };
        // (votes, needed_approvers, now, decision). needed_approvers 0 means one approval, not
        // an automatic pass.
        let cases = [
            (votes(&[("a", NoVote)]), 0, 2_000, Decision::Waiting),
            (votes(&[("a", Approve)]), 0, 2_000, Decision::Approved),
            (
                votes(&[("a", Approve), ("b", NoVote)]),
                2,
                2_000,
                Decision::Waiting,
            ),
            (
                votes(&[("a", Approve), ("b", Reject)]),
                1,
                2_000,
                Decision::Rejected("b".into()),
            ),
            (votes(&[("a", NoVote)]), 1, d, Decision::TimedOut),
        ];
        for (users, needed, now, want) in cases {
            assert_eq!(
                decide(&users, needed, d, now),
                want,
                "needing {needed} at {now}"
            );
        }
    }

    #[test]
    fn job_spec_is_read() {
        let spec = serde_json::json!({"timeout": 5, "type": "native", "native_approval": {
            "approve_users": [{"user_name": "a", "user_id": "1", "reject_or_approve": "approve"}],
            "needed_approvers": 2}});
        let a = JobApproval::from_spec(&spec).unwrap();
        assert_eq!(a.timeout_minutes, 5);
        assert_eq!(a.needed_approvers, 2);
        assert_eq!(a.users.len(), 1);
        assert_eq!(a.users[0].reject_or_approve, "approve");
        let mut spec = spec;
        clear_job_votes(&mut spec);
        assert_eq!(
            JobApproval::from_spec(&spec).unwrap().users[0].reject_or_approve,
            ""
        );
    }

    #[test]
    fn malformed_approver_is_an_error_not_a_dropped_user() {
        // Two approvers, both needed: dropping the malformed one would leave the decision to
        // the other alone.
        let spec = serde_json::json!({"type": "native", "native_approval": {
            "approve_users": [{"user_name": "a", "user_id": "1"}, {"user_name": "b", "user_id": 2}],
            "needed_approvers": 1}});
        let e = JobApproval::from_spec(&spec).unwrap_err();
        assert!(
            e.starts_with("spec.native_approval.approve_users[1].user_id:"),
            "{e}"
        );
        let spec =
            serde_json::json!({"native_approval": {"approve_users": [], "needed_approvers": "2"}});
        let e = JobApproval::from_spec(&spec).unwrap_err();
        assert!(
            e.starts_with("spec.native_approval.needed_approvers:"),
            "{e}"
        );
        // Nulls read as absent; an empty type is native.
        let spec = serde_json::json!({"type": null, "timeout": null, "native_approval": {
            "approve_users": [{"user_name": "a", "user_id": null, "comment": null}], "timeout": 7}});
        let a = JobApproval::from_spec(&spec).unwrap();
        assert_eq!(
            (a.kind.as_str(), a.timeout_minutes, a.users.len()),
            ("native", 7, 1)
        );
    }
}
