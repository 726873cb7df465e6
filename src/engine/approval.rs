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

use crate::workflow::task::ApproveUser;

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
    if let Some(u) = users.iter().find(|u| u.reject_or_approve == "reject") {
        let who = if u.user_name.is_empty() {
            &u.user_id
        } else {
            &u.user_name
        };
        return Decision::Rejected(who.clone());
    }
    let approvals = users
        .iter()
        .filter(|u| u.reject_or_approve == "approve")
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
    /// Read an approval job's spec (`type`, `timeout`, `native_approval{timeout,
    /// approve_users, needed_approvers}`).
    pub fn from_spec(spec: &Value) -> Self {
        let native = spec.get("native_approval").unwrap_or(&Value::Null);
        let users = native
            .get("approve_users")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|u| serde_json::from_value::<ApproveUser>(u.clone()).ok())
                    .collect()
            })
            .unwrap_or_default();
        let timeout = spec
            .get("timeout")
            .and_then(Value::as_i64)
            .filter(|t| *t > 0)
            .or_else(|| native.get("timeout").and_then(Value::as_i64))
            .unwrap_or(0);
        let kind = spec
            .get("type")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("native")
            .to_string();
        Self {
            kind,
            users,
            needed_approvers: native
                .get("needed_approvers")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            timeout_minutes: timeout,
        }
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
                o.insert("reject_or_approve".into(), Value::String(String::new()));
                o.insert("comment".into(), Value::String(String::new()));
                o.insert("operation_time".into(), Value::from(0));
            }
        }
    }
}

/// Clear the votes of a stage approval.
pub fn clear_votes(users: &mut [ApproveUser]) {
    for u in users {
        u.reject_or_approve.clear();
        u.comment.clear();
        u.operation_time = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(name: &str, v: &str) -> ApproveUser {
        ApproveUser {
            user_name: name.into(),
            reject_or_approve: v.into(),
            ..ApproveUser::default()
        }
    }

    #[test]
    fn quorum_reject_and_timeout() {
        let d = deadline_ms(1_000, 0);
        assert_eq!(d, 1_000 + 3_600_000);
        // needed_approvers 0 means one approval, not an automatic pass.
        assert_eq!(decide(&[vote("a", "")], 0, d, 2_000), Decision::Waiting);
        assert_eq!(
            decide(&[vote("a", "approve")], 0, d, 2_000),
            Decision::Approved
        );
        assert_eq!(
            decide(&[vote("a", "approve"), vote("b", "")], 2, d, 2_000),
            Decision::Waiting
        );
        assert_eq!(
            decide(&[vote("a", "approve"), vote("b", "reject")], 1, d, 2_000),
            Decision::Rejected("b".into())
        );
        assert_eq!(decide(&[vote("a", "")], 1, d, d), Decision::TimedOut);
    }

    #[test]
    fn job_spec_is_read() {
        let spec = serde_json::json!({"timeout": 5, "type": "native", "native_approval": {
            "approve_users": [{"user_name": "a", "user_id": "1", "reject_or_approve": "approve"}],
            "needed_approvers": 2}});
        let a = JobApproval::from_spec(&spec);
        assert_eq!(a.timeout_minutes, 5);
        assert_eq!(a.needed_approvers, 2);
        assert_eq!(a.users.len(), 1);
        let mut spec = spec;
        clear_job_votes(&mut spec);
        assert_eq!(JobApproval::from_spec(&spec).users[0].reject_or_approve, "");
    }
}
