//! The one error type of the API and its mapping to Zadig's error JSON.
//!
//! Every failure a client can see leaves through [`ApiError`], rendered as
//! `{"code","description","extra","message","type":"error"}` (DESIGN.md §1.2). Unlike Zadig,
//! the HTTP status is the honest one (400/401/403/404/409/413/500/503); Zadig's numeric codes
//! (6161, 6520, …) are kept in `code` where the spec names one.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// Zadig's error body.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Zadig's numeric code: the HTTP status, or a business code such as 6161.
    pub code: i64,
    /// What went wrong, naming the field or resource concerned.
    pub description: String,
    /// Always an empty object (kept for Zadig compatibility).
    #[schema(value_type = Object)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// The fixed summary of `code`.
    pub message: String,
    /// Always `"error"`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// An error answered to the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code} {message}: {description}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: i64,
    pub message: String,
    pub description: String,
}

/// Result alias for handlers and services.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error whose `code` is the HTTP status and whose message is the status' reason.
    pub fn new(status: StatusCode, description: impl Into<String>) -> Self {
        let message = match status {
            StatusCode::INTERNAL_SERVER_ERROR => "Internal Error",
            s => s.canonical_reason().unwrap_or("Error"),
        };
        Self {
            status,
            code: i64::from(status.as_u16()),
            message: message.to_string(),
            description: description.into(),
        }
    }

    /// A Zadig coded error (e.g. 6161) sent with an honest HTTP status.
    pub fn coded(
        status: StatusCode,
        code: i64,
        message: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            description: description.into(),
        }
    }

    pub fn bad_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, description)
    }

    pub fn unauthorized(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, description)
    }

    pub fn forbidden(description: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, description)
    }

    pub fn not_found(description: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, description)
    }

    pub fn conflict(description: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, description)
    }

    /// A server fault. The detail is logged here, once; the client gets a generic text.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error: {err}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal server error; the server log has the details",
        )
    }

    /// Keep the status and code but replace the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code,
            description: self.description.clone(),
            extra: serde_json::Map::new(),
            message: self.message.clone(),
            kind: "error".to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// Storage failures that reach a handler unhandled: a conflict is the client's business
/// (409), anything else is a server fault. Call sites that know better (a duplicate name
/// with Zadig's code) map the error themselves.
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Duplicate(what) => ApiError::conflict(format!("duplicate: {what}")),
            StoreError::Conflict(what) => ApiError::conflict(what),
            StoreError::NotFound(what) => ApiError::not_found(what),
            other => ApiError::internal(other),
        }
    }
}

/// Zadig's business error codes used across the API, with the English messages of the
/// seeds (or our translation where the seed shows none).
pub mod codes {
    pub const CREATE_TASK: (i64, &str) = (6160, "Create workflow task failed");
    pub const GET_TASK: (i64, &str) = (6161, "Get workflow task failed");
    pub const CANCEL_TASK: (i64, &str) = (6163, "Cancel workflow task failed");
    pub const APPROVE_TASK: (i64, &str) = (6169, "Approve workflow task failed");
    pub const GET_COUNTER: (i64, &str) = (6190, "Get counter failed");
    pub const CREATE_BUILD: (i64, &str) = (6520, "Create build module failed");
    pub const UPDATE_BUILD: (i64, &str) = (6521, "Update build module failed");
    pub const LIST_BUILD: (i64, &str) = (6522, "List build modules failed");
    pub const GET_BUILD: (i64, &str) = (6523, "Get build module failed");
    pub const DELETE_BUILD: (i64, &str) = (6524, "Delete build module failed");
    pub const UPSERT_WORKFLOW: (i64, &str) = (6540, "Create or update workflow failed");
    pub const FIND_WORKFLOW: (i64, &str) = (6542, "Find workflow failed");
    pub const DELETE_WORKFLOW: (i64, &str) = (6543, "Delete workflow failed");
    pub const LINT_WORKFLOW: (i64, &str) = (6545, "Lint workflow failed");
    pub const CREATE_DELIVERY: (i64, &str) = (6560, "Create delivery version failed");
    pub const DELETE_DELIVERY: (i64, &str) = (6562, "Delete delivery version failed");
    pub const CREATE_VIEW: (i64, &str) = (6892, "Create view failed");
    pub const UPDATE_VIEW: (i64, &str) = (6893, "Update view failed");
    pub const DELETE_VIEW: (i64, &str) = (6894, "Delete view failed");
    pub const CREATE_TICKET: (i64, &str) = (7100, "Create pre-approval ticket failed");
}

impl ApiError {
    /// A coded Zadig error: `ApiError::code(StatusCode::CONFLICT, codes::CREATE_BUILD, "...")`.
    pub fn code(status: StatusCode, code: (i64, &str), description: impl Into<String>) -> Self {
        Self::coded(status, code.0, code.1, description)
    }
}

/// The workflow domain's refusals, mapped once to the HTTP status and Zadig's code.
impl From<crate::workflow::error::Refusal> for ApiError {
    fn from(r: crate::workflow::error::Refusal) -> Self {
        use crate::workflow::error::{Kind, Op};
        let status = match r.kind {
            Kind::BadRequest => StatusCode::BAD_REQUEST,
            Kind::Forbidden => StatusCode::FORBIDDEN,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::Conflict => StatusCode::CONFLICT,
            Kind::Unavailable => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let code = match r.op {
            Op::CreateTask => codes::CREATE_TASK,
            Op::GetTask => codes::GET_TASK,
            Op::CancelTask => codes::CANCEL_TASK,
            Op::ApproveTask => codes::APPROVE_TASK,
            Op::GetCounter => codes::GET_COUNTER,
            Op::UpsertWorkflow => codes::UPSERT_WORKFLOW,
            Op::FindWorkflow => codes::FIND_WORKFLOW,
            Op::DeleteWorkflow => codes::DELETE_WORKFLOW,
            Op::LintWorkflow => codes::LINT_WORKFLOW,
            Op::CreateView => codes::CREATE_VIEW,
            Op::UpdateView => codes::UPDATE_VIEW,
            Op::DeleteView => codes::DELETE_VIEW,
            Op::CreateTicket => codes::CREATE_TICKET,
        };
        ApiError::code(status, code, r.message)
    }
}
