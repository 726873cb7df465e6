//! Approval settings — a stage's `approval` and an `approval` job's spec (spec/workflow.md
//! §1.4, §5.4) — read in one place.
//!
//! The definition is stored as sent (after [`normalize`]'s spelling fixes); the structs here
//! only read it. Lint decodes them, so a wrong-typed field is a 400 naming its JSON path
//! (`stages[0].approval.native_approval.approve_users[0].user_id`); expansion turns them into
//! the task's stage approval and Zadig's approver checks; the engine and the approve API read an
//! approval job's task spec through them, and a spec that does not decode fails the job naming
//! the field — an approver is never silently dropped (with `needed_approvers` that would change
//! who decides).
//!
//! The other gates are read here too: a stage's `manual_exec` ([`ManualExec`]) and the users
//! of a job's `manual_check` error policy ([`GateUser`]) — a gate whose `enabled` is `"true"`
//! must not read as "no gate".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::auth::Identity;
use crate::error::ApiResult;
use crate::validate::{self, nullable};
use crate::wire::wire_enum;
use crate::workflow::bad;
use crate::workflow::expand::refused;
use crate::workflow::inputs::decode;
use crate::workflow::model::APPROVAL_TYPES;
use crate::workflow::task::{ApproveOrReject, ApproveUser, StageApproval};

/// A stage `approval` or an `approval` job's spec (Zadig's `Approval` / `ApprovalJobSpec`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApprovalSettings {
    /// Whether a stage approval applies (an approval job always does).
    #[serde(default, deserialize_with = "nullable")]
    pub enabled: bool,
    /// `native` (or empty: native), or an IM approval (`lark`, `dingtalk`, `workwx`, …).
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    pub kind: String,
    #[serde(default, deserialize_with = "nullable")]
    pub description: String,
    /// An approval job's own timeout in minutes (≤ 0: the native approval's).
    #[serde(default, deserialize_with = "nullable")]
    pub timeout: i64,
    /// Zadig's own approval; `null` reads as absent.
    #[serde(default)]
    pub native_approval: Option<NativeApproval>,
    /// Every other field (the IM approvals' settings, …), as stored.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// Zadig's own approval: who approves, how many must, and for how long.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NativeApproval {
    #[serde(default, deserialize_with = "nullable")]
    pub approve_users: Vec<Approver>,
    /// Minutes; 0 means the default (60).
    #[serde(default, deserialize_with = "nullable")]
    pub timeout: i64,
    /// Approvals needed; 0 means one (see docs/compatibility.md).
    #[serde(default, deserialize_with = "nullable")]
    pub needed_approvers: i64,
    /// Every other field, as stored.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// One approver (Zadig's `User`), with their vote once the approve API recorded one on an
/// approval job's task spec.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Approver {
    #[serde(default, deserialize_with = "nullable")]
    pub user_id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub user_name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub reject_or_approve: ApproveOrReject,
    #[serde(default, deserialize_with = "nullable")]
    pub comment: String,
    #[serde(default, deserialize_with = "nullable")]
    pub operation_time: i64,
    /// Every other field (`type`, `group_id`, …), as stored.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl From<&Approver> for ApproveUser {
    fn from(a: &Approver) -> Self {
        ApproveUser {
            user_id: a.user_id.clone(),
            user_name: a.user_name.clone(),
            reject_or_approve: a.reject_or_approve,
            comment: a.comment.clone(),
            operation_time: a.operation_time,
        }
    }
}

impl NativeApproval {
    /// The approvers as the task records them (with any recorded vote).
    pub fn users(&self) -> Vec<ApproveUser> {
        self.approve_users.iter().map(ApproveUser::from).collect()
    }

    /// Zadig's checks when a task is created (`what` names the stage or job in the 400).
    pub(crate) fn check(&self, what: &str) -> ApiResult<()> {
        let users = self.approve_users.len();
        if users == 0 {
            return Err(refused(format!("{what}: num of approve-users is 0")));
        }
        if usize::try_from(self.needed_approvers).is_ok_and(|n| n > users) {
            return Err(refused(format!(
                "{what}: all approve users should not less than needed approvers"
            )));
        }
        Ok(())
    }
}

impl ApprovalSettings {
    /// Read the settings stored at `field` (a 400 naming the failing field below it).
    pub fn read(v: &Value, field: &str) -> ApiResult<Self> {
        decode(v, field)
    }

    /// Zadig's approver checks of the native approval, when it has one.
    pub(crate) fn check_native(&self, what: &str) -> ApiResult<()> {
        self.native_approval
            .as_ref()
            .map_or(Ok(()), |na| na.check(what))
    }

    /// A stage's approval as the task records it, `None` unless enabled; `stored` is the
    /// stored object these settings were read from (its type-specific keys are kept verbatim).
    pub fn stage_task(&self, stored: &Value) -> Option<StageApproval> {
        if !self.enabled {
            return None;
        }
        let extra: BTreeMap<String, Value> = stored
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| !["enabled", "type", "description"].contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let native = self.native_approval.as_ref();
        Some(StageApproval {
            enabled: true,
            kind: self.kind.clone(),
            // A definition's approvers have not voted yet.
            approve_users: native
                .map(|n| n.approve_users.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|a| ApproveUser {
                    user_id: a.user_id.clone(),
                    user_name: a.user_name.clone(),
                    ..ApproveUser::default()
                })
                .collect(),
            timeout: native.map_or(0, |n| n.timeout),
            needed_approvers: native.map_or(0, |n| n.needed_approvers),
            description: self.description.clone(),
            extra,
            ..StageApproval::default()
        })
    }
}

/// A user who may pass a gate (Zadig's `User`): a stage's `manual_exec_users`, a
/// `manual_check` error policy's `approval_users`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GateUser {
    /// `user` (or empty) or `task_creator` (who started the task).
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    pub kind: String,
    #[serde(default, deserialize_with = "nullable")]
    pub user_id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub user_name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub group_id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub group_name: String,
    /// Every other field, as stored.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// Where the decision on a job that failed under the `manual_check` error policy is recorded,
/// on its job task's spec (an [`ErrorHandling`]).
pub const ERROR_HANDLING: &str = "error_handling";

wire_enum! {
    /// A decision on a job that failed under the `manual_check` error policy (our extension,
    /// spec/workflow.md §5.3); a request's `decision` is read with [`Self::read`].
    pub enum ErrorDecision {
        /// The job becomes `unstable` and the task goes on.
        Ignore = "ignore",
        /// The job keeps its failure.
        Reject = "reject",
    }
}

/// A decision as recorded at [`ERROR_HANDLING`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorHandling {
    pub decision: ErrorDecision,
    /// The name of who decided.
    pub user: String,
    /// When, in seconds.
    pub time: i64,
}

/// A stage's `manual_exec` (Zadig's `ManualExec`): the stage pauses until a listed user (or
/// an admin) starts it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ManualExec {
    #[serde(default, deserialize_with = "nullable")]
    pub enabled: bool,
    /// Set on a task's stage once someone started it.
    #[serde(default, deserialize_with = "nullable")]
    pub executed: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub manual_exec_users: Vec<GateUser>,
    /// Every other field, as stored.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl GateUser {
    /// Whether `users` names `caller`: by id, account or name, or — when `task_creator` is
    /// listed — as the task's creator (`creator`). Groups are not resolved (there is no group
    /// registry).
    pub fn names(users: &[Self], caller: &Identity, creator: bool) -> bool {
        let is_caller = |id: &str, name: &str| {
            (!id.is_empty() && id == caller.uid)
                || (!name.is_empty() && (name == caller.account || name == caller.name))
        };
        users.iter().any(|u| match u.kind.as_str() {
            "task_creator" => creator,
            "" | "user" => is_caller(&u.user_id, &u.user_name),
            _ => false,
        })
    }
}

impl ManualExec {
    /// Read the stored setting at `field` (`null`: none); a 400 naming the failing field.
    pub fn read(v: &Value, field: &str) -> ApiResult<Self> {
        if v.is_null() {
            return Ok(Self::default());
        }
        decode(v, field)
    }

    /// Whether the stage waits for someone to start it.
    pub fn waits(&self) -> bool {
        self.enabled && !self.executed
    }
}

/// Bring a stage `approval` (or an approval job's spec) into one spelling, then check it by
/// reading it as [`ApprovalSettings`]: the detail view's capitalised `Timeout`/
/// `NeededApprovers` are accepted for `timeout`/`needed_approvers`; a stage approval also gets
/// the seed's detail keys (`enabled`, `type` — `native` by default — and `description`).
/// Nothing else in the stored object changes.
pub(crate) fn normalize(v: &mut Value, field: &str, stage: bool) -> ApiResult<()> {
    let Some(m) = v.as_object_mut() else {
        return Err(bad(field, "must be an object"));
    };
    if let Some(na) = m.get_mut("native_approval").and_then(Value::as_object_mut) {
        for (alias, key) in [
            ("Timeout", "timeout"),
            ("NeededApprovers", "needed_approvers"),
        ] {
            if let Some(v) = na.remove(alias) {
                na.entry(key).or_insert(v);
            }
        }
    }
    let typed = ApprovalSettings::read(v, field)?;
    let nfield = format!("{field}.native_approval");
    if let Some(na) = &typed.native_approval {
        for (key, n) in [
            ("timeout", na.timeout),
            ("needed_approvers", na.needed_approvers),
        ] {
            if n < 0 {
                return Err(bad(
                    &format!("{nfield}.{key}"),
                    "must be a non-negative integer",
                ));
            }
        }
    }
    // A job's empty type stays as sent (it means native); a stage's is written out.
    let kind = match typed.kind.as_str() {
        "" if stage => "native",
        "" => return Ok(()),
        k => k,
    };
    validate::one_of(&format!("{field}.type"), kind, APPROVAL_TYPES)?;
    if stage && let Some(m) = v.as_object_mut() {
        m.insert("type".into(), Value::String(kind.to_string()));
        m.entry("enabled").or_insert(Value::Bool(false));
        m.entry("description")
            .or_insert(Value::String(String::new()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn refused_with(v: Value, field: &str, stage: bool) -> String {
        let mut v = v;
        let e = normalize(&mut v, field, stage).unwrap_err();
        e.to_string()
    }

    #[test]
    fn wrong_typed_fields_name_their_path() {
        let e = refused_with(
            json!({"enabled": true, "native_approval": {"approve_users": [{"user_id": 7}]}}),
            "stages[0].approval",
            true,
        );
        assert!(
            e.contains("stages[0].approval.native_approval.approve_users[0].user_id"),
            "{e}"
        );
        let e = refused_with(
            json!({"native_approval": {"approve_users": [{"user_name": "a"}], "needed_approvers": "2"}}),
            "stages[0].jobs[1].spec",
            false,
        );
        assert!(
            e.contains("stages[0].jobs[1].spec.native_approval.needed_approvers"),
            "{e}"
        );
        let e = refused_with(
            json!({"native_approval": {"NeededApprovers": -1}}),
            "s",
            false,
        );
        assert!(e.contains("s.native_approval.needed_approvers"), "{e}");
        let e = refused_with(json!({"enabled": "yes"}), "s", true);
        assert!(e.contains("`s.enabled`"), "{e}");
        let e = refused_with(json!({"type": "fax"}), "s", true);
        assert!(e.contains("`s.type`"), "{e}");
    }

    #[test]
    fn only_the_spelling_changes() {
        let mut v = json!({"native_approval": {"Timeout": 5, "approve_users": [
            {"type": "user", "user_id": "u", "user_name": null, "group_id": "g"}], "x": [1]},
            "lark_approval": {"k": 1}});
        normalize(&mut v, "s", true).unwrap();
        assert_eq!(
            v,
            json!({"type": "native", "enabled": false, "description": "",
                "native_approval": {"timeout": 5, "approve_users": [
                    {"type": "user", "user_id": "u", "user_name": null, "group_id": "g"}], "x": [1]},
                "lark_approval": {"k": 1}})
        );
        // A job's spec keeps an absent or empty type.
        let before = json!({"type": "", "timeout": 3, "native_approval": null});
        let mut v = before.clone();
        normalize(&mut v, "s", false).unwrap();
        assert_eq!(v, before);
    }

    #[test]
    fn stage_task_reads_the_settings() {
        let stored = json!({"enabled": true, "type": "native", "description": "go?",
            "native_approval": {"timeout": 9, "needed_approvers": 2, "approve_users": [
                {"user_id": "1", "user_name": "a", "reject_or_approve": "approve"}, {"user_name": "b"}]}});
        let a = ApprovalSettings::read(&stored, "s").unwrap();
        let t = a.stage_task(&stored).unwrap();
        assert_eq!(
            (t.timeout, t.needed_approvers, t.kind.as_str()),
            (9, 2, "native")
        );
        assert_eq!(t.approve_users.len(), 2);
        assert_eq!(
            t.approve_users[0].reject_or_approve, "",
            "no vote carried over"
        );
        assert_eq!(t.extra.keys().collect::<Vec<_>>(), ["native_approval"]);
        let off = json!({"enabled": false});
        assert!(
            ApprovalSettings::read(&off, "s")
                .unwrap()
                .stage_task(&off)
                .is_none()
        );
    }

    #[test]
    fn votes_and_error_decisions_read_zadigs_strings_only() {
        for (text, v) in [
            ("", ApproveOrReject::None),
            ("approve", ApproveOrReject::Approve),
            ("reject", ApproveOrReject::Reject),
        ] {
            assert_eq!(
                serde_json::from_value::<ApproveOrReject>(json!(text)).unwrap(),
                v
            );
            assert_eq!(json!(v), json!(text));
        }
        assert!(serde_json::from_value::<ApproveOrReject>(json!("approved")).is_err());
        let a: Approver = serde_json::from_value(json!({"reject_or_approve": null})).unwrap();
        assert!(a.reject_or_approve.is_none());

        assert_eq!(ErrorDecision::parse("ignore"), Some(ErrorDecision::Ignore));
        let e = ErrorDecision::read("decision", "Ignore").unwrap_err();
        assert!(e.description.contains("`decision`"), "{}", e.description);
        let h = ErrorHandling {
            decision: ErrorDecision::Reject,
            user: "alice".into(),
            time: 7,
        };
        let stored = json!(h);
        assert_eq!(
            stored,
            json!({"decision": "reject", "user": "alice", "time": 7})
        );
        assert_eq!(serde_json::from_value::<ErrorHandling>(stored).unwrap(), h);
    }
}
