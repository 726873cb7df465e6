//! Request bodies of the release-plan routes and their validation into the state machine's
//! [`Content`]: every failure is a 400 naming the field (the JSON key, verbatim), and the
//! checks that need no lookup run first (DESIGN.md §5).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::machine::{Content, NewJob};
use super::model::{Approval, ApproveUser, JobKind, JobSpec};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::users::User;
use crate::validate::{self, nullable};

/// The body of `POST` and `PATCH /openapi/release_plan/v1[/:id]` (seed 001).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct PlanInput {
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    /// The release manager's account.
    #[serde(default, deserialize_with = "nullable")]
    pub manager: String,
    /// `system` when empty.
    #[serde(default, deserialize_with = "nullable")]
    pub manager_identity_type: String,
    #[serde(default, deserialize_with = "nullable")]
    pub description: String,
    #[serde(default, deserialize_with = "nullable")]
    pub start_time: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub end_time: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub schedule_execute_time: i64,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub approval: Option<Approval>,
    /// Release jobs (PATCH; also accepted on create).
    #[serde(default, deserialize_with = "nullable")]
    pub jobs: Vec<JobInput>,
}

/// One release job of a PATCH body.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct JobInput {
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    /// `text` or `workflow`.
    #[serde(default, rename = "type", deserialize_with = "nullable")]
    pub kind: String,
    /// Text: `{content, remark}`; workflow: `{workflow_key, project_key, parameters, inputs,
    /// remark}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub spec: Value,
    /// Optional job owner's account (our extension, spec §5.2).
    #[serde(default, deserialize_with = "nullable")]
    pub manager: String,
    #[serde(default, deserialize_with = "nullable")]
    pub manager_identity_type: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct JobSpecInput {
    #[serde(deserialize_with = "nullable")]
    content: String,
    #[serde(deserialize_with = "nullable")]
    remark: String,
    #[serde(deserialize_with = "nullable")]
    workflow_key: String,
    #[serde(deserialize_with = "nullable")]
    project_key: String,
    parameters: Value,
    inputs: Value,
}

/// The body of execute/skip/retry (spec §5.3–5.5): the job's `id` and `type`; `spec.remark`
/// for text jobs (`name` is accepted and ignored).
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
pub struct JobActionInput {
    #[serde(default, deserialize_with = "nullable")]
    pub id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, rename = "type", deserialize_with = "nullable")]
    pub kind: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub spec: Value,
}

/// The body of the approve route (spec §2.6).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ApproveInput {
    #[serde(default, deserialize_with = "nullable")]
    pub approve: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub comment: String,
}

/// The body of `POST /api/callback/release_plan` (seed 000).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CallbackInput {
    /// `finish_planning`, `start_execute` or `all_job_done`.
    #[serde(default, deserialize_with = "nullable")]
    pub hook_event: String,
    #[serde(default, deserialize_with = "nullable")]
    pub release_plan_id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub instance_code: String,
    /// `success` or `failed`.
    #[serde(default, deserialize_with = "nullable")]
    pub result: String,
    #[serde(default, deserialize_with = "nullable")]
    pub failed_reason: String,
}

/// The hook setting as `PUT` takes it (spec §8.1). An absent `hook_secret` keeps the stored
/// one (GET never shows it); `""` clears it.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct HookSettingInput {
    #[serde(default, deserialize_with = "nullable")]
    pub enable: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub enable_call_back: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub hook_address: String,
    pub hook_secret: Option<String>,
    /// Any of `finish_planning`, `start_execute`, `all_job_done`.
    #[serde(default, deserialize_with = "nullable")]
    pub hook_events: Vec<String>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

const APPROVAL_TYPES: &[&str] = &["native", "lark", "lark_intl", "dingtalk", "workwx"];

/// A job after the syntactic checks, before lookups.
struct CheckedJob {
    name: String,
    kind: JobKind,
    spec: JobSpecInput,
    manager: String,
    manager_identity_type: String,
}

/// Validate a create/PATCH body into [`Content`] (lookups of users and workflows included),
/// with the warnings about what was ignored (`jobs[i].spec.inputs[k]: … ignored`).
pub async fn content(state: &AppState, input: PlanInput) -> ApiResult<(Content, Vec<String>)> {
    // 1. Checks without lookups.
    validate::name("name", &input.name)?;
    validate::name("manager", &input.manager)?;
    validate::max_len("manager_identity_type", &input.manager_identity_type)?;
    for (field, v) in [
        ("start_time", input.start_time),
        ("end_time", input.end_time),
        ("schedule_execute_time", input.schedule_execute_time),
    ] {
        if v < 0 {
            return Err(bad(format!(
                "`{field}` must be a Unix time in seconds (or 0), got {v}"
            )));
        }
    }
    let (start, end, sched) = (
        input.start_time,
        input.end_time,
        input.schedule_execute_time,
    );
    let window = (start, end) != (0, 0);
    if window && start > end {
        return Err(bad(format!(
            "`end_time` ({end}) must not be before `start_time` ({start})"
        )));
    }
    if sched != 0 && window && !(start <= sched && sched <= end) {
        return Err(bad(format!(
            "`schedule_execute_time` ({sched}) must be within the release window [`start_time` {start}, `end_time` {end}]"
        )));
    }
    let mut approval = input.approval;
    if let Some(a) = &approval {
        lint_approval_shape(a)?;
    }
    let mut jobs = Vec::with_capacity(input.jobs.len());
    for (i, j) in input.jobs.into_iter().enumerate() {
        jobs.push(check_job(i, j)?);
    }

    // 2. Lookups.
    let manager = resolve_user(
        state,
        "manager",
        &input.manager,
        &input.manager_identity_type,
    )
    .await?;
    if let Some(a) = &mut approval {
        resolve_approvers(state, a).await?;
    }
    let mut new_jobs = Vec::with_capacity(jobs.len());
    let mut warnings = Vec::new();
    for (i, j) in jobs.into_iter().enumerate() {
        new_jobs.push(resolve_job(state, i, j, &mut warnings).await?);
    }
    let content = Content {
        name: input.name,
        manager: input.manager,
        manager_id: manager.id,
        manager_identity_type: identity_type(&input.manager_identity_type),
        start_time: start,
        end_time: end,
        schedule_execute_time: sched,
        description: input.description,
        approval,
        jobs: new_jobs,
    };
    Ok((content, warnings))
}

fn identity_type(t: &str) -> String {
    if t.is_empty() {
        "system".to_string()
    } else {
        t.to_string()
    }
}

/// A user by account and identity type (default `system`); unknown → 400 naming `field`.
async fn resolve_user(
    state: &AppState,
    field: &str,
    account: &str,
    identity: &str,
) -> ApiResult<User> {
    let identity = identity_type(identity);
    state
        .users
        .by_account(account, &identity)
        .await?
        .ok_or_else(|| {
            bad(format!(
                "`{field}`: user {account:?} (identity type {identity}) not found"
            ))
        })
}

fn check_job(i: usize, j: JobInput) -> ApiResult<CheckedJob> {
    let f = |k: &str| format!("jobs[{i}].{k}");
    validate::name(&f("name"), &j.name)?;
    let kind = JobKind::read(&f("type"), &j.kind)?;
    let spec: JobSpecInput = if j.spec.is_null() {
        JobSpecInput::default()
    } else {
        crate::null_as_zero::deserialize(j.spec).map_err(|e| {
            bad(format!(
                "invalid request body: field `{}.{}`: {}",
                f("spec"),
                e.path(),
                e.inner()
            ))
        })?
    };
    match kind {
        JobKind::Text if spec.content.trim().is_empty() => {
            return Err(bad(format!(
                "`{}` is required for a text job",
                f("spec.content")
            )));
        }
        JobKind::Workflow => {
            validate::name(&f("spec.workflow_key"), &spec.workflow_key)?;
            validate::max_len(&f("spec.project_key"), &spec.project_key)?;
            for (k, v) in [("parameters", &spec.parameters), ("inputs", &spec.inputs)] {
                if !(v.is_null() || v.is_array()) {
                    return Err(bad(format!(
                        "`{}` must be an array",
                        f(&format!("spec.{k}"))
                    )));
                }
            }
        }
        JobKind::Text => {}
    }
    Ok(CheckedJob {
        name: j.name,
        kind,
        spec,
        manager: j.manager,
        manager_identity_type: j.manager_identity_type,
    })
}

async fn resolve_job(
    state: &AppState,
    i: usize,
    j: CheckedJob,
    warnings: &mut Vec<String>,
) -> ApiResult<NewJob> {
    let manager_id = if j.manager.is_empty() {
        String::new()
    } else {
        resolve_user(
            state,
            &format!("jobs[{i}].manager"),
            &j.manager,
            &j.manager_identity_type,
        )
        .await?
        .id
    };
    let s = j.spec;
    let spec = match j.kind {
        JobKind::Text => JobSpec {
            content: s.content,
            remark: s.remark,
            ..JobSpec::default()
        },
        JobKind::Workflow => {
            let params = array_or_empty(s.parameters);
            let inputs = array_or_empty(s.inputs);
            let checked = crate::workflow::check_release_input(
                state,
                &s.project_key,
                &s.workflow_key,
                &params,
                &inputs,
            )
            .await
            .map_err(|e| {
                e.map_description(|d| format!("jobs[{i}] (workflow {}): {d}", s.workflow_key))
            })?;
            warnings.extend(
                checked
                    .warnings
                    .iter()
                    .map(|w| format!("jobs[{i}].spec.{w}")),
            );
            // Only the inputs that apply are kept: starting the task later must not trip
            // over the ignored ones.
            JobSpec {
                remark: s.remark,
                workflow_key: s.workflow_key,
                project_key: s.project_key,
                parameters: params,
                inputs: checked.inputs,
                workflow: checked.workflow,
                ..JobSpec::default()
            }
        }
    };
    Ok(NewJob {
        fresh_id: uuid::Uuid::new_v4().to_string(),
        name: j.name,
        manager: j.manager,
        manager_id,
        kind: j.kind,
        spec,
    })
}

fn array_or_empty(v: Value) -> Value {
    if v.is_null() { Value::Array(vec![]) } else { v }
}

/// Approval checks that need no lookup (spec §7.1), only when enabled (as Zadig).
fn lint_approval_shape(a: &Approval) -> ApiResult<()> {
    if !a.kind.is_empty() || a.enabled {
        validate::one_of("approval.type", &a.kind, APPROVAL_TYPES)?;
    }
    if !a.enabled {
        return Ok(());
    }
    match a.kind.as_str() {
        "native" => {
            let n = a.native_approval.as_ref().ok_or_else(|| {
                bad("`approval.native_approval` is required for a native approval")
            })?;
            if n.approve_users.is_empty() {
                return Err(bad(
                    "`approval.native_approval.approve_users` must name at least one approver",
                ));
            }
            if n.timeout < 0 {
                return Err(bad(
                    "`approval.native_approval.timeout` must be ≥ 0 (minutes, 0 = no limit)",
                ));
            }
            if n.needed_approvers < 0 {
                return Err(bad(
                    "`approval.native_approval.needed_approvers` must be ≥ 0",
                ));
            }
            for (i, u) in n.approve_users.iter().enumerate() {
                if u.user_id.is_empty() && u.user_name.is_empty() {
                    return Err(bad(format!(
                        "`approval.native_approval.approve_users[{i}]` needs a user_id or user_name (user groups are not supported)"
                    )));
                }
            }
        }
        "lark" | "lark_intl" => lint_im_nodes("lark_approval", a.lark_approval.as_ref(), false)?,
        "dingtalk" => lint_im_nodes("dingtalk_approval", a.dingtalk_approval.as_ref(), true)?,
        _ => {}
    }
    Ok(())
}

/// Lark / DingTalk node lists (spec §7.1); the configuration itself is kept verbatim.
fn lint_im_nodes(key: &str, cfg: Option<&Value>, dingtalk: bool) -> ApiResult<()> {
    let cfg = cfg.filter(|c| c.is_object()).ok_or_else(|| {
        bad(format!(
            "`approval.{key}` is required for this approval type"
        ))
    })?;
    let nodes = cfg
        .get("approval_nodes")
        .and_then(Value::as_array)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            bad(format!(
                "`approval.{key}.approval_nodes` must list at least one node"
            ))
        })?;
    if dingtalk && nodes.len() > 20 {
        return Err(bad(format!(
            "`approval.{key}.approval_nodes`: at most 20 nodes"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, node) in nodes.iter().enumerate() {
        let ty = node.get("type").and_then(Value::as_str).unwrap_or_default();
        if !dingtalk && matches!(ty, "START" | "END") {
            continue;
        }
        if !matches!(ty, "AND" | "OR") {
            return Err(bad(format!(
                "`approval.{key}.approval_nodes[{i}].type` must be AND or OR, got {ty:?}"
            )));
        }
        let group_node =
            node.get("approve_node_type").and_then(Value::as_str) == Some("user_group");
        let users = node
            .get("approve_users")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if users.is_empty() && !group_node {
            return Err(bad(format!(
                "`approval.{key}.approval_nodes[{i}].approve_users` must name at least one approver"
            )));
        }
        if dingtalk {
            for u in users {
                let id = u.get("id").map(Value::to_string).unwrap_or_default();
                if !seen.insert(id) {
                    let name = u.get("name").and_then(Value::as_str).unwrap_or_default();
                    return Err(bad(format!(
                        "`approval.{key}.approval_nodes[{i}].approve_users`: approver {name:?} appears in more than one node"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Native approvers must be known users: fill in both uid and name, drop duplicates, and
/// check the quorum can be reached.
async fn resolve_approvers(state: &AppState, a: &mut Approval) -> ApiResult<()> {
    if !a.enabled || a.kind != "native" {
        return Ok(());
    }
    let Some(n) = a.native_approval.as_mut() else {
        return Ok(());
    };
    let mut resolved: Vec<ApproveUser> = Vec::with_capacity(n.approve_users.len());
    for (i, u) in n.approve_users.iter().enumerate() {
        // By uid; a uid we do not know (e.g. copied from another Zadig) falls back to the
        // account in `user_name`.
        let by_id = if u.user_id.is_empty() {
            None
        } else {
            state.users.get(&u.user_id).await?
        };
        let user = match by_id {
            Some(user) => user,
            None if u.user_name.is_empty() => {
                return Err(bad(format!(
                    "`approval.native_approval.approve_users[{i}].user_id`: no user {:?}",
                    u.user_id
                )));
            }
            None => {
                resolve_user(
                    state,
                    &format!("approval.native_approval.approve_users[{i}].user_name"),
                    &u.user_name,
                    "system",
                )
                .await?
            }
        };
        if resolved.iter().any(|r| r.user_id == user.id) {
            continue;
        }
        resolved.push(ApproveUser {
            user_name: if u.user_name.is_empty() {
                user.name.clone()
            } else {
                u.user_name.clone()
            },
            user_id: user.id,
            ..ApproveUser::default()
        });
    }
    let users = i64::try_from(resolved.len()).unwrap_or(i64::MAX);
    if n.needed_approvers > users {
        return Err(bad(format!(
            "`approval.native_approval.needed_approvers` ({}) exceeds the number of approvers ({users})",
            n.needed_approvers
        )));
    }
    n.approve_users = resolved;
    Ok(())
}
