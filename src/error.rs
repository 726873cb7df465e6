//! The one error type of the domain and Zadig's error vocabulary.
//!
//! Every failure a client can see is an [`ApiError`]: an [`ErrorKind`] (what kind of failure,
//! in the domain's terms, like the release-plan machine's `RejectKind`), Zadig's numeric code
//! (6161, 6520, … where the spec names one for the operation, else the kind's) with its fixed
//! summary, and a description naming the field or resource concerned. Domain modules know
//! nothing of HTTP: the edge ([`crate::http::error`]) maps the kind to the honest HTTP status
//! (400/401/403/404/409/413/429/500/503, unlike Zadig) once, and renders the body
//! `{"code","description","extra","message","type":"error"}` (DESIGN.md §1.2).

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

/// What kind of failure an error is. The HTTP edge gives each kind its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or names something invalid (the description says which field).
    BadRequest,
    /// No valid credentials.
    Unauthorized,
    /// The caller may not do this.
    Forbidden,
    NotFound,
    /// The route exists, but not with this method.
    MethodNotAllowed,
    /// The resource is not in a state that allows this, or a name is taken.
    Conflict,
    /// A request body or document beyond the limits.
    PayloadTooLarge,
    /// Well-formed, but a system we drive (a Kubernetes API server) rejected what it says.
    Unprocessable,
    /// The client made too many failed attempts (authentication throttling); not Zadig's.
    TooManyRequests,
    /// A server fault (the details are in the log, never in the answer).
    Internal,
    /// The server cannot take the request now (overload, shutting down).
    Unavailable,
    /// A system we drive (a Kubernetes API server) failed on its side.
    BadGateway,
    /// A system we drive (a Kubernetes API server) cannot be reached, does not answer in time,
    /// refuses our credentials or cannot be used as configured: its state, which an admin
    /// fixes. Answered as a conflict, with the code of the operation it interrupted
    /// ([`ApiError::during`]).
    Unreachable,
}

impl ErrorKind {
    /// Zadig's `code` for an error of this kind without a business code.
    pub const fn code(self) -> i64 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::Conflict | Self::Unreachable => 409,
            Self::PayloadTooLarge => 413,
            Self::Unprocessable => 422,
            Self::TooManyRequests => 429,
            Self::Internal => 500,
            Self::BadGateway => 502,
            Self::Unavailable => 503,
        }
    }

    /// Whether the server is at fault (not the request).
    pub const fn is_server_fault(self) -> bool {
        matches!(self, Self::Internal | Self::Unavailable | Self::BadGateway)
    }

    /// Zadig's fixed `message` for an error of this kind without a business code.
    pub const fn summary(self) -> &'static str {
        match self {
            Self::BadRequest => "Bad Request",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::NotFound => "Not Found",
            Self::MethodNotAllowed => "Method Not Allowed",
            Self::Conflict | Self::Unreachable => "Conflict",
            Self::PayloadTooLarge => "Payload Too Large",
            Self::Unprocessable => "Unprocessable Entity",
            Self::TooManyRequests => "Too Many Requests",
            Self::Internal => "Internal Error",
            Self::BadGateway => "Bad Gateway",
            Self::Unavailable => "Service Unavailable",
        }
    }
}

/// An error answered to the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind:?} {code} {message}: {description}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub code: i64,
    pub message: String,
    pub description: String,
}

/// Result alias for handlers and services.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error whose `code` and `message` are the kind's.
    pub fn new(kind: impl Into<ErrorKind>, description: impl Into<String>) -> Self {
        let kind = kind.into();
        Self {
            kind,
            code: kind.code(),
            message: kind.summary().to_string(),
            description: description.into(),
        }
    }

    /// A Zadig coded error (e.g. 6161).
    pub fn coded(
        kind: impl Into<ErrorKind>,
        code: i64,
        message: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self {
            kind: kind.into(),
            code,
            message: message.into(),
            description: description.into(),
        }
    }

    pub fn bad_request(description: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, description)
    }

    pub fn unauthorized(description: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, description)
    }

    pub fn forbidden(description: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, description)
    }

    pub fn not_found(description: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, description)
    }

    pub fn conflict(description: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, description)
    }

    /// A server fault. The detail is logged here, once; the client gets a generic text.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error: {err}");
        Self::new(
            ErrorKind::Internal,
            "internal server error; the server log has the details",
        )
    }

    /// An unreachable system ([`ErrorKind::Unreachable`]) answered with the Zadig code of the
    /// operation it interrupted (`CREATE_ENV`: 6074 "Create environment failed"), as Zadig
    /// answers every failure of an environment route with the route's code. Other errors keep
    /// their own code.
    pub fn during(mut self, op: (i64, &str)) -> Self {
        if self.kind == ErrorKind::Unreachable {
            self.code = op.0;
            self.message = op.1.to_string();
        }
        self
    }

    /// Keep the kind and code; the description becomes `f` of it (to say where it happened).
    pub fn map_description(mut self, f: impl FnOnce(&str) -> String) -> Self {
        self.description = f(&self.description);
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
    /// A coded Zadig error: `ApiError::code(ErrorKind::Conflict, codes::CREATE_BUILD, "...")`.
    pub fn code(
        kind: impl Into<ErrorKind>,
        code: (i64, &str),
        description: impl Into<String>,
    ) -> Self {
        Self::coded(kind, code.0, code.1, description)
    }
}

/// The workflow domain's refusals, mapped once to the HTTP status and Zadig's code.
impl From<crate::workflow::error::Refusal> for ApiError {
    fn from(r: crate::workflow::error::Refusal) -> Self {
        use crate::workflow::error::Op;
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
        ApiError::code(r.kind, code, r.message)
    }
}

/// An error with its causes (e.g. "…: connection refused"), each cause once: the text of a
/// source that its parent's text already contains is not repeated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn error_chain_names_each_cause_once() {
        let refused = E("connection refused", None);
        let connect = E("connect error: connection refused", Some(Box::new(refused)));
        let top = E("request failed", Some(Box::new(connect)));
        assert_eq!(
            error_chain(&top),
            "request failed: connect error: connection refused"
        );
    }
}
