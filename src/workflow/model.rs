//! The stored custom-workflow definition (spec/workflow.md §1): workflow, stages, jobs.
//!
//! Only the fields the server reasons about are typed; everything else a client sends — job
//! specs, parameters, notification settings, unknown keys at any level — is kept verbatim
//! (`serde_json::Value` / a flattened `extra` map), so a definition reads back as it was
//! written.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
        if v.is_null() {
            return Ok(Self::default());
        }
        serde_path_to_error::deserialize(v.clone()).map_err(|e| match e.path().to_string() {
            p if p == "." => format!("error_policy: {}", e.inner()),
            p => format!("error_policy.{p}: {}", e.inner()),
        })
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
