//! The API's plan changes: create, edit, delete, status moves, votes, job actions and the
//! check callback.

use serde_json::{Value, json};

use super::background::start_tasks;
use super::{apply, apply_recorded, check_id, load, new_instance_code, record, rejection};
use crate::auth::Identity;
use crate::error::{ApiError, ApiResult, ErrorKind};
use crate::release_plan::input::{self, ApproveInput, CallbackInput, JobActionInput, PlanInput};
use crate::release_plan::machine::{self, Actor, CallbackResult, Ctx, Effect, Event};
use crate::release_plan::model::{HookEvent, JobKind, ReleasePlan, Status};
use crate::state::AppState;
use crate::validate;

/// `POST /openapi/release_plan/v1` (spec §2.3).
/// Returns the new plan's id and the warnings about ignored inputs.
pub async fn create(
    state: &AppState,
    caller: &Identity,
    input: PlanInput,
) -> ApiResult<(String, Vec<String>)> {
    let (content, warnings) = input::content(state, input).await?;
    let now_ms = state.clock.now_ms();
    let id = validate::new_object_id(now_ms.div_euclid(1000));
    let index = state.sequences.next("release_plan").await.map_err(|e| {
        tracing::error!(error = %e, "release plan index counter failed: {e}");
        ApiError::code(
            ErrorKind::Internal,
            crate::error::codes::GET_COUNTER,
            "cannot allocate the release plan index",
        )
    })?;
    let snapshot = state.release_plans.hook_setting().await?.snapshot();
    let code = new_instance_code();
    let ctx = Ctx {
        now_ms,
        fresh_code: &code,
        hook_setting: &snapshot,
    };
    let out = machine::create(&id, index, &content, &Actor::from(caller), &ctx);
    state.release_plans.insert(&out.plan).await?;
    record(state, &out.plan, &out.effects).await;
    tracing::info!(release_plan.id = %id, "release plan {id} (#{index}) created by {}", caller.account);
    Ok((id, warnings))
}

/// `PATCH /openapi/release_plan/v1/:id` (spec §2.4): replace metadata and jobs; a re-plan.
/// Returns the warnings about ignored inputs.
pub async fn update(
    state: &AppState,
    caller: &Identity,
    id: &str,
    input: PlanInput,
) -> ApiResult<Vec<String>> {
    check_id(id)?;
    let plan = load(state, id).await?;
    // Refuse a caller who may not edit before validating what they sent; the machine checks
    // again on the copy it applies to (and the manager hand-over rule).
    machine::require_editor(&plan, &caller.into(), "edit").map_err(rejection)?;
    let mut input = input;
    keep_stored_inputs(&mut input, &plan);
    let (content, warnings) = input::content(state, input).await?;
    let event = Event::Edit {
        actor: caller.into(),
        content,
    };
    apply_recorded(state, id, &event).await?;
    Ok(warnings)
}

/// A workflow job's execute input sent back masked (as the detail shows credentials) keeps the
/// stored value of the job of that name.
fn keep_stored_inputs(input: &mut PlanInput, plan: &ReleasePlan) {
    for j in &mut input.jobs {
        if let Some(stored) = plan.jobs.iter().find(|s| s.name == j.name) {
            let old = json!({"parameters": stored.spec.parameters, "inputs": stored.spec.inputs});
            crate::masking::restore_any(&mut j.spec, &old);
        }
    }
}

/// `DELETE /openapi/release_plan/v1/:id` (our extension): the manager, the creator or an
/// admin; the operation records stay.
pub async fn delete(state: &AppState, caller: &Identity, id: &str) -> ApiResult<()> {
    check_id(id)?;
    let plan = load(state, id).await?;
    machine::require_editor(&plan, &caller.into(), "delete").map_err(rejection)?;
    if !state.release_plans.delete(id).await? {
        return Err(ApiError::not_found(format!("release plan {id} not found")));
    }
    let effects = [Effect::Log(machine::LogEntry {
        username: caller.name.clone(),
        account: caller.account.clone(),
        verb: "删除",
        target_type: "release_plan",
        target_name: plan.name.clone(),
        before: Value::Null,
        after: Value::Null,
        detail: String::new(),
    })];
    // The record outlives the plan; it comes after the plan's last change.
    let gone = ReleasePlan {
        version: plan.version + 1,
        ..plan
    };
    record(state, &gone, &effects).await;
    tracing::info!(release_plan.id = %id, "release plan {id} deleted by {}", caller.account);
    Ok(())
}

/// `POST …/:id/status/:status` (spec §4.2).
pub async fn set_status(
    state: &AppState,
    caller: &Identity,
    id: &str,
    target: &str,
) -> ApiResult<()> {
    let target = Status::read("status", target)?;
    check_id(id)?;
    let applied = apply_recorded(
        state,
        id,
        &Event::SetStatus {
            actor: caller.into(),
            target,
        },
    )
    .await?;
    tracing::info!(release_plan.id = %id, "release plan {id} moved {} -> {}", applied.before.status, applied.plan.status);
    Ok(())
}

/// `POST …/:id/approve` (spec §7.2).
pub async fn approve(
    state: &AppState,
    caller: &Identity,
    id: &str,
    input: ApproveInput,
) -> ApiResult<()> {
    check_id(id)?;
    let event = Event::Vote {
        actor: caller.into(),
        approve: input.approve,
        comment: input.comment,
    };
    apply_recorded(state, id, &event).await?;
    Ok(())
}

/// The job actions of spec §5.3–5.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    Execute,
    Skip,
    Retry,
}

/// `POST …/:id/execute|skip|retry`. A workflow job's task is started after the job is saved
/// as `running`; if the start fails the job is put back and the call fails.
pub async fn job_action(
    state: &AppState,
    caller: &Identity,
    id: &str,
    action: JobAction,
    input: JobActionInput,
) -> ApiResult<()> {
    let kind = JobKind::read("type", &input.kind)?;
    if input.id.trim().is_empty() {
        return Err(ApiError::bad_request(
            "`id` (the release job id) is required",
        ));
    }
    check_id(id)?;
    let remark = match input.spec.get("remark") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(ApiError::bad_request("`spec.remark` must be a string")),
    };
    let actor = Actor::from(caller);
    let job_id = input.id;
    let event = match action {
        JobAction::Execute => Event::Execute {
            actor,
            job_id,
            kind,
            remark,
        },
        JobAction::Skip => Event::Skip {
            actor,
            job_id,
            kind,
            remark,
        },
        JobAction::Retry => Event::Retry {
            actor,
            job_id,
            kind,
        },
    };
    let applied = apply(state, id, &event, false).await?;
    if let Some(err) = applied.error.clone() {
        record(state, &applied.plan, &applied.effects).await;
        return Err(rejection(err));
    }
    start_tasks(state, &applied, caller, true).await?;
    record(state, &applied.plan, &applied.effects).await;
    Ok(())
}

/// `POST /api/callback/release_plan` (seed 000, spec §2.5/§8.4). Returns the plan id.
pub async fn callback(
    state: &AppState,
    caller: &Identity,
    input: CallbackInput,
) -> ApiResult<String> {
    // The instance code is no secret (every user reads it in the plan detail), so the token
    // is what authorizes a check result: the checking system calls with an admin's token.
    caller.require_admin()?;
    let hook_event = HookEvent::read("hook_event", &input.hook_event)?;
    let result = CallbackResult::read("result", &input.result)?;
    validate::object_id("release_plan_id", &input.release_plan_id)?;
    if input.instance_code.is_empty() {
        return Err(ApiError::bad_request("`instance_code` is required"));
    }
    let id = input.release_plan_id;
    let event = Event::Callback {
        actor: caller.into(),
        hook_event,
        instance_code: input.instance_code,
        result,
        reason: input.failed_reason,
    };
    let applied = apply_recorded(state, &id, &event).await?;
    tracing::info!(release_plan.id = %id, "release plan {id} callback {} {}: now {}", hook_event.as_str(), result.as_str(), applied.plan.status);
    Ok(id)
}
