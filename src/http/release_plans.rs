//! Release-plan routes: Zadig's four OpenAPI routes (seed 001), the callback (seed 000), and
//! our extensions for the actions Zadig only has on its internal API (DESIGN.md §1.4).
//! Rules live in [`crate::release_plan`]; handlers parse, call the service and answer.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Identity;
use crate::error::{ApiResult, ErrorBody};
use crate::http::query::PageQuery;
use crate::http::{Json, Path, Query, Success};
use crate::limits;
use crate::release_plan::input::{
    ApproveInput, CallbackInput, HookSettingInput, JobActionInput, PlanInput,
};
use crate::release_plan::model::ReleasePlan;
use crate::release_plan::service::{self, HookSettingView, JobAction, ListItem};
use crate::release_plan::store::LogEntry;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_plans, create_plan))
        .routes(routes!(get_plan, update_plan, delete_plan))
        .routes(routes!(set_status))
        .routes(routes!(approve))
        .routes(routes!(execute_job))
        .routes(routes!(skip_job))
        .routes(routes!(retry_job))
        .routes(routes!(plan_logs))
        .routes(routes!(get_hook_setting, put_hook_setting))
        .routes(routes!(callback))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanList {
    pub list: Vec<ListItem>,
    pub total: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedId {
    pub id: String,
    /// What was ignored (see [`Updated::warnings`]); absent when nothing was.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The answer of a PATCH: Zadig's `{"message": "success"}`, plus what was ignored.
#[derive(Debug, Serialize, ToSchema)]
pub struct Updated {
    /// `success`
    pub message: &'static str,
    /// One line per workflow-job input naming a job the workflow does not have, which was
    /// ignored as Zadig ignores it (`jobs[1].spec.inputs[0]: workflow W has no job build;
    /// ignored`); absent when nothing was ignored.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackResponse {
    /// `success`
    pub message: &'static str,
    /// The plan id (the seed's documented answer).
    pub id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogList {
    /// Translations of the Chinese verbs and targets, as Zadig sends them.
    #[schema(value_type = Object)]
    pub i18n: Value,
    pub list: Vec<LogEntry>,
}

/// List release plans, newest first (seed 001 "Get Release Plan List").
#[utoipa::path(get, path = "/openapi/release_plan/v1", tag = "release plans", params(PageQuery),
    responses((status = 200, body = PlanList), (status = 400, body = ErrorBody)))]
async fn list_plans(
    State(state): State<AppState>,
    _caller: Identity,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<PlanList>> {
    let p = q.check(&limits::RELEASE_PLANS_PAGE)?;
    let (list, total) = service::list(&state, p).await?;
    Ok(Json(PlanList { list, total }))
}

/// Create a release plan (seed 001 "Create Release Plan", spec §2.3).
#[utoipa::path(post, path = "/openapi/release_plan/v1", tag = "release plans",
    request_body = PlanInput,
    responses((status = 200, body = CreatedId), (status = 400, body = ErrorBody)))]
async fn create_plan(
    State(state): State<AppState>,
    caller: Identity,
    Json(input): Json<PlanInput>,
) -> ApiResult<Json<CreatedId>> {
    let (id, warnings) = service::create(&state, &caller, input).await?;
    Ok(Json(CreatedId { id, warnings }))
}

/// A release plan with its jobs and approval (seed 001 "Get Release Plan Details", spec §2.2);
/// the workflow jobs' credential values show as `********`.
#[utoipa::path(get, path = "/openapi/release_plan/v1/{id}", tag = "release plans",
    params(("id" = String, Path)),
    responses((status = 200, body = ReleasePlan), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn get_plan(
    State(state): State<AppState>,
    _caller: Identity,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let json = service::detail(&state, &id).await?;
    Ok(([(CONTENT_TYPE, "application/json")], json).into_response())
}

/// Replace a plan's metadata and jobs; the plan returns to `planning` (seed 001 "Update
/// Release Plan and Jobs", spec §2.4): the release manager, the plan's creator or an admin;
/// only the manager or an admin changes the manager. A job's execute input sent back as
/// `********` keeps the stored value.
#[utoipa::path(patch, path = "/openapi/release_plan/v1/{id}", tag = "release plans",
    params(("id" = String, Path)), request_body = PlanInput,
    responses((status = 200, body = Updated), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not the manager, the creator or an admin; or a creator changing the manager"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn update_plan(
    State(state): State<AppState>,
    caller: Identity,
    Path(id): Path<String>,
    Json(input): Json<PlanInput>,
) -> ApiResult<Json<Updated>> {
    let warnings = service::update(&state, &caller, &id, input).await?;
    Ok(Json(Updated {
        message: "success",
        warnings,
    }))
}

/// Delete a plan (extension, DESIGN.md §1.4): the release manager, the plan's creator or an admin.
#[utoipa::path(delete, path = "/openapi/release_plan/v1/{id}", tag = "release plans",
    params(("id" = String, Path)),
    responses((status = 200, body = Success), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn delete_plan(
    State(state): State<AppState>,
    caller: Identity,
    Path(id): Path<String>,
) -> ApiResult<Json<Success>> {
    service::delete(&state, &caller, &id).await?;
    Ok(Success::new())
}

/// Change a plan's status (extension; spec §4.2): the release manager, the plan's creator or an admin.
#[utoipa::path(post, path = "/openapi/release_plan/v1/{id}/status/{status}", tag = "release plans",
    params(("id" = String, Path), ("status" = String, Path)),
    responses((status = 200, body = Success), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn set_status(
    State(state): State<AppState>,
    caller: Identity,
    Path((id, status)): Path<(String, String)>,
) -> ApiResult<Json<Success>> {
    service::set_status(&state, &caller, &id, &status).await?;
    Ok(Success::new())
}

/// Vote on a plan's native approval (extension; spec §7.2): one of its approvers.
#[utoipa::path(post, path = "/openapi/release_plan/v1/{id}/approve", tag = "release plans",
    params(("id" = String, Path)), request_body = ApproveInput,
    responses((status = 200, body = Success), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn approve(
    State(state): State<AppState>,
    caller: Identity,
    Path(id): Path<String>,
    Json(input): Json<ApproveInput>,
) -> ApiResult<Json<Success>> {
    service::approve(&state, &caller, &id, input).await?;
    Ok(Success::new())
}

async fn job_action(
    state: AppState,
    caller: Identity,
    id: String,
    action: JobAction,
    input: JobActionInput,
) -> ApiResult<Json<Success>> {
    service::job_action(&state, &caller, &id, action, input).await?;
    Ok(Success::new())
}

/// A job-action route: `POST /openapi/release_plan/v1/{id}/<path>`, one per [`JobAction`],
/// all with the same body and answers.
macro_rules! job_route {
    ($(#[doc = $doc:tt])* $name:ident, $path:tt, $action:ident) => {
        $(#[doc = $doc])*
        #[utoipa::path(post, path = $path, tag = "release plans",
            params(("id" = String, Path)), request_body = JobActionInput,
            responses((status = 200, body = Success), (status = 400, body = ErrorBody),
                (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
                (status = 409, body = ErrorBody)))]
        async fn $name(
            State(state): State<AppState>,
            caller: Identity,
            Path(id): Path<String>,
            Json(input): Json<JobActionInput>,
        ) -> ApiResult<Json<Success>> {
            job_action(state, caller, id, JobAction::$action, input).await
        }
    };
}

job_route!(
    /// Complete a text job (with `spec.remark`) or start a workflow job (extension; spec §5.3).
    execute_job, "/openapi/release_plan/v1/{id}/execute", Execute
);
job_route!(
    /// Skip a `todo` or `failed` job (extension; spec §5.4).
    skip_job, "/openapi/release_plan/v1/{id}/skip", Skip
);
job_route!(
    /// Retry a failed workflow job with a new workflow task (extension; spec §5.5).
    retry_job, "/openapi/release_plan/v1/{id}/retry", Retry
);

/// A plan's operation records, newest first (extension; spec §9).
#[utoipa::path(get, path = "/openapi/release_plan/v1/{id}/logs", tag = "release plans",
    params(("id" = String, Path)),
    responses((status = 200, body = LogList), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn plan_logs(
    State(state): State<AppState>,
    _caller: Identity,
    Path(id): Path<String>,
) -> ApiResult<Json<LogList>> {
    let list = service::logs(&state, &id).await?;
    Ok(Json(LogList { i18n: i18n(), list }))
}

fn i18n() -> Value {
    json!({
        "verb_i18_map": {"新建": "Create", "更新": "Update", "删除": "Delete", "执行": "Execute",
                         "重试": "Retry", "跳过": "Skip"},
        "target_type_i18_map": {"release_plan": "发布计划", "release_plan_status": "发布计划状态",
                                "metadata": "元数据", "release_job": "发布内容", "approval": "审批",
                                "description": "需求关联"},
        "detail_i18_map": {"审批被拒绝": "Approval Rejected", "审批通过": "Approval Passed"},
        "user_name_i18_map": {"系统": "System"},
    })
}

/// The release-plan hook setting, without its secret (extension; spec §8.1).
#[utoipa::path(get, path = "/openapi/release_plan/v1/hook/setting", tag = "release plans",
    responses((status = 200, body = HookSettingView)))]
async fn get_hook_setting(
    State(state): State<AppState>,
    _caller: Identity,
) -> ApiResult<Json<HookSettingView>> {
    Ok(Json(service::hook_setting(&state).await?))
}

/// Replace the release-plan hook setting (extension; spec §8.1): admins only.
#[utoipa::path(put, path = "/openapi/release_plan/v1/hook/setting", tag = "release plans",
    request_body = HookSettingInput,
    responses((status = 200, body = Success), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
async fn put_hook_setting(
    State(state): State<AppState>,
    caller: Identity,
    Json(input): Json<HookSettingInput>,
) -> ApiResult<Json<Success>> {
    service::put_hook_setting(&state, &caller, input).await?;
    Ok(Success::new())
}

/// An external system answers a hook (seed 000 "Release Plan CallBack", spec §2.5/§8.4),
/// with a system admin's token.
#[utoipa::path(post, path = "/api/callback/release_plan", tag = "release plans",
    request_body = CallbackInput,
    responses((status = 200, body = CallbackResponse), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not a system admin"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn callback(
    State(state): State<AppState>,
    caller: Identity,
    Json(input): Json<CallbackInput>,
) -> ApiResult<Json<CallbackResponse>> {
    let id = service::callback(&state, &caller, input).await?;
    Ok(Json(CallbackResponse {
        message: "success",
        id,
    }))
}
