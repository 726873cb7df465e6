//! The stored custom-workflow definition (spec/workflow.md §1): workflow, stages, jobs.
//!
//! Only the fields the server reasons about are typed; everything else a client sends — job
//! specs, parameters, notification settings, unknown keys at any level — is kept verbatim
//! (`serde_json::Value` / a flattened `extra` map), so a definition reads back as it was
//! written.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::validate::nullable;

/// Job run policies (spec/workflow.md §1.2).
pub const RUN_POLICIES: &[&str] = &["", "default_not_run", "force_run", "skip"];

/// Stage approval types (spec/workflow.md §1.2).
pub const APPROVAL_TYPES: &[&str] = &["native", "lark", "lark_intl", "dingtalk", "workwx"];

fn is_null(v: &Value) -> bool {
    v.is_null()
}

/// A custom workflow definition as stored in `workflows` (unique on `name`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Workflow {
    /// Storage id (24 hex); assigned by the server.
    pub id: String,
    /// The workflow key: unique across all projects, `^[a-zA-Z0-9-]+$`.
    pub name: String,
    pub display_name: String,
    /// The project key.
    pub project: String,
    pub description: String,
    pub disabled: bool,
    pub category: String,
    /// Global parameters, each a Param object (§1.3) kept verbatim; read them as
    /// [`crate::workflow::params::Param`].
    pub params: Vec<Value>,
    pub stages: Vec<Stage>,
    pub notify_ctls: Vec<Value>,
    pub share_storages: Vec<Value>,
    /// -1 unlimited, 0 never executable, N at most N tasks at once.
    pub concurrency_limit: i64,
    pub remark_required: bool,
    /// Executing requires a pre-approval ticket (§7).
    pub enable_approval_ticket: bool,
    pub approval_ticket_id: String,
    pub created_by: String,
    /// The creator's uid: the owner who, beside admins, may change or delete the workflow.
    pub created_by_id: String,
    pub create_time: i64,
    pub updated_by: String,
    pub update_time: i64,
    /// UI column settings; kept across updates.
    #[serde(skip_serializing_if = "is_null")]
    pub custom_field: Value,
    /// Bumped on every write; updates are conditional on it.
    pub version: i64,
    /// Fields we do not interpret, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One stage: jobs run one after the other, or all at once when `parallel`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stage {
    pub name: String,
    pub parallel: bool,
    /// Stage-level approval (seed 002), kept verbatim after normalisation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<Value>,
    #[serde(skip_serializing_if = "is_null")]
    pub manual_exec: Value,
    pub jobs: Vec<Job>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One job of a stage; `spec` is the type-specific configuration (§1.4), kept verbatim;
/// `type` is one of [`crate::workflow::jobs::JobType`] (checked by lint; see `Job::kind`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Job {
    pub name: String,
    #[serde(rename = "type")]
    pub job_type: String,
    pub skipped: bool,
    pub spec: Value,
    pub run_policy: String,
    #[serde(skip_serializing_if = "is_null")]
    pub error_policy: Value,
    #[serde(skip_serializing_if = "is_null")]
    pub execute_policy: Value,
    pub service_modules: Vec<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A job's `error_policy` (spec/workflow.md §1.2): what a failed job does. Absent (`null`) is
/// Zadig's default, `stop`; a malformed one is refused by lint naming the field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorPolicy {
    pub policy: OnError,
    /// Further attempts under `retry`.
    pub maximum_retry: i64,
    /// Who may decide under `manual_check` (Zadig `User` entries).
    pub approval_users: Vec<crate::workflow::approval::GateUser>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The error policies (Zadig's strings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    #[default]
    Stop,
    IgnoreError,
    Retry,
    ManualCheck,
}

impl ErrorPolicy {
    /// The policy of a stored job (task); `Err` names the malformed field.
    pub fn of(v: &Value) -> Result<Self, String> {
        stored_policy(v, "error_policy")
    }
}

/// A stored policy (`null`: the default); `Err` names the malformed field.
fn stored_policy<T: DeserializeOwned + Default>(v: &Value, field: &str) -> Result<T, String> {
    if v.is_null() {
        return Ok(T::default());
    }
    crate::workflow::inputs::read_at(v, field).map_err(|(path, what)| format!("{path}: {what}"))
}

/// A job's `execute_policy` (spec/workflow.md §1.4): when its rules match (all of them, or
/// any), the job runs (`execute`) or is skipped (`skip`); without rules it runs. Stored as
/// sent; a malformed one is refused by lint naming the field.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ExecutePolicy {
    #[serde(rename = "type", deserialize_with = "nullable")]
    pub kind: PolicyKind,
    #[serde(deserialize_with = "nullable")]
    pub match_rule: MatchRule,
    #[serde(deserialize_with = "nullable")]
    pub rules: Vec<PolicyRule>,
}

/// What a matching `execute_policy` does (`""` is `execute`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum PolicyKind {
    #[default]
    #[serde(rename = "execute", alias = "")]
    Execute,
    #[serde(rename = "skip")]
    Skip,
}

/// How an `execute_policy`'s rules combine (`""` is `all`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum MatchRule {
    #[default]
    #[serde(rename = "all", alias = "")]
    All,
    #[serde(rename = "any")]
    Any,
}

/// A rule: `field` (a template over the task context) compared with `value` by `verb`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PolicyRule {
    /// A string, number or boolean.
    #[serde(default)]
    pub field: Value,
    pub verb: Verb,
    #[serde(default)]
    pub value: Value,
}

/// A rule's comparison; `in`/`not-in` take a comma-separated list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Verb {
    #[serde(rename = "=", alias = "==", alias = "eq", alias = "equal")]
    Equal,
    #[serde(rename = "!=", alias = "neq", alias = "not-equal", alias = "not_equal")]
    NotEqual,
    #[serde(rename = "contains")]
    Contains,
    #[serde(rename = "not-contains", alias = "not_contains", alias = "not-contain")]
    NotContains,
    #[serde(rename = "in")]
    In,
    #[serde(rename = "not-in", alias = "not_in")]
    NotIn,
}

impl Verb {
    /// Whether `field` compares true with `value`.
    pub fn holds(self, field: &str, value: &str) -> bool {
        let listed = || value.split(',').map(str::trim).any(|v| v == field);
        match self {
            Self::Equal => field == value,
            Self::NotEqual => field != value,
            Self::Contains => field.contains(value),
            Self::NotContains => !field.contains(value),
            Self::In => listed(),
            Self::NotIn => !listed(),
        }
    }
}

impl ExecutePolicy {
    /// The policy of a stored job (task); `Err` names the malformed field.
    pub fn of(v: &Value) -> Result<Self, String> {
        stored_policy(v, "execute_policy")
    }

    /// Whether the job runs, its rules' `field` and `value` rendered by `render`.
    pub fn runs(&self, render: impl Fn(&Value) -> String) -> bool {
        if self.rules.is_empty() {
            return true;
        }
        let hit = |r: &PolicyRule| r.verb.holds(&render(&r.field), &render(&r.value));
        let matched = match self.match_rule {
            MatchRule::All => self.rules.iter().all(hit),
            MatchRule::Any => self.rules.iter().any(hit),
        };
        matched == (self.kind == PolicyKind::Execute)
    }
}

impl Workflow {
    /// All jobs in definition order, with their stage index.
    pub fn jobs(&self) -> impl Iterator<Item = (usize, &Job)> {
        self.stages
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.jobs.iter().map(move |j| (i, j)))
    }

    /// The job called `name`.
    pub fn job(&self, name: &str) -> Option<&Job> {
        self.jobs().map(|(_, j)| j).find(|j| j.name == name)
    }
}

/// `v[key]` as a string slice, `""` when absent or not a string.
pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// `v[key]` as an array slice, empty when absent or not an array.
pub fn arr_of<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    const VERBS: &[&str] = &["=", "!=", "contains", "not-contains", "in", "not-in"];

    proptest! {
        /// `skip` and `execute` with the same rules decide oppositely when there are rules,
        /// and both run the job when there are none; `not-x` is the negation of `x`.
        #[test]
        fn skip_is_the_complement_of_execute(
            rules in proptest::collection::vec(("[ab,]{0,3}", 0..VERBS.len(), "[ab,]{0,3}"), 0..4),
            any in proptest::bool::ANY,
        ) {
            let rules: Vec<Value> = rules
                .iter()
                .map(|(f, v, x)| json!({"field": f, "verb": VERBS[*v], "value": x}))
                .collect();
            let policy = |kind: &str| {
                let v = json!({"type": kind, "match_rule": if any { "any" } else { "all" }, "rules": rules});
                ExecutePolicy::of(&v).expect("a valid policy")
            };
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            let (run, skip) = (policy("execute").runs(text), policy("skip").runs(text));
            prop_assert_eq!(run, rules.is_empty() || !skip);
            prop_assert!(!rules.is_empty() || skip);
        }

        #[test]
        fn negated_verbs_negate(field in "[ab,]{0,3}", value in "[ab,]{0,3}") {
            for (verb, not) in [(Verb::Equal, Verb::NotEqual), (Verb::Contains, Verb::NotContains), (Verb::In, Verb::NotIn)] {
                prop_assert_eq!(verb.holds(&field, &value), !not.holds(&field, &value));
            }
        }
    }
}
