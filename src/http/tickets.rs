//! Pre-approval tickets (seed 002 "Workflow Pre-Approval"; spec/workflow.md §7.1).

use axum::extract::State;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Identity;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::Json;
use crate::state::AppState;
use crate::workflow::tickets::{self, Ticket, TicketService, TicketUser};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_ticket))
}

/// `envs` as the seed documents it (one string, comma-separated) or as Zadig reads it (a list).
fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Envs {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Envs>::deserialize(d)? {
        None => Vec::new(),
        Some(Envs::One(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect(),
        Some(Envs::Many(v)) => v,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TicketServiceInput {
    #[serde(default)]
    pub service_name: String,
    #[serde(default)]
    pub service_module: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TicketUserInput {
    #[serde(default)]
    pub name: String,
    /// Matched against the caller's account (or name) at execute time.
    #[serde(default)]
    pub email: String,
}

/// A pre-approval ticket (seed 002 "Create a Pre-Approval Form").
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateTicketRequest {
    #[serde(default)]
    pub project_key: String,
    #[serde(default)]
    pub approval_id: String,
    /// 0 invalid, 1 in effect.
    pub status: Option<i64>,
    /// Allowed environments: a list, or one comma-separated string; empty = any.
    #[serde(default, deserialize_with = "string_or_list")]
    #[schema(value_type = Vec<String>)]
    pub envs: Vec<String>,
    #[serde(default)]
    pub services: Vec<TicketServiceInput>,
    #[serde(default)]
    pub users: Vec<TicketUserInput>,
    /// Unix seconds; 0 = unbounded.
    #[serde(default)]
    pub execution_window_start: i64,
    #[serde(default)]
    pub execution_window_end: i64,
}

/// The seed's success answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct TicketCreated {
    pub code: i64,
    pub message: &'static str,
}

/// Create a pre-approval ticket (system admins; seed 002 "Create a Pre-Approval Form"; spec §7.1).
#[utoipa::path(post, path = "/openapi/ticket/approval", tag = "tickets", request_body = CreateTicketRequest,
    responses((status = 200, body = TicketCreated), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not a system admin"), (status = 409, body = ErrorBody)))]
async fn create_ticket(
    State(state): State<AppState>,
    caller: Identity,
    Json(req): Json<CreateTicketRequest>,
) -> ApiResult<Json<TicketCreated>> {
    let status = req
        .status
        .ok_or_else(|| ApiError::bad_request("`status` is required (0 invalid, 1 in effect)"))?;
    let ticket = Ticket {
        id: String::new(),
        approval_id: req.approval_id,
        status,
        project_key: req.project_key,
        envs: req.envs,
        services: req
            .services
            .into_iter()
            .map(|s| TicketService {
                service_name: s.service_name,
                service_module: s.service_module,
            })
            .collect(),
        users: req
            .users
            .into_iter()
            .map(|u| TicketUser {
                name: u.name,
                email: u.email,
            })
            .collect(),
        execution_window_start: req.execution_window_start,
        execution_window_end: req.execution_window_end,
        create_time: 0,
        created_by: String::new(),
    };
    tickets::create(&state, &caller, ticket).await?;
    Ok(Json(TicketCreated {
        code: 1,
        message: "success",
    }))
}
