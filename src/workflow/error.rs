//! The workflow domain's errors: what was refused ([`Kind`]) while doing what ([`Op`]), and
//! why. They carry no HTTP status and no Zadig code: `src/error.rs` maps them, once, to the
//! status and Zadig's business code a client sees (the pattern of
//! `release_plan::machine::Rejection`).

/// What kind of refusal: the one kind vocabulary of [`crate::error::ErrorKind`].
pub use crate::error::ErrorKind as Kind;

/// The operation refused; each has Zadig's business code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    CreateTask,
    GetTask,
    CancelTask,
    ApproveTask,
    GetCounter,
    UpsertWorkflow,
    FindWorkflow,
    DeleteWorkflow,
    LintWorkflow,
    CreateView,
    UpdateView,
    DeleteView,
    CreateTicket,
}

/// A refusal of the workflow domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op:?} refused ({kind:?}): {message}")]
pub struct Refusal {
    pub kind: Kind,
    pub op: Op,
    /// What went wrong, naming the field or resource concerned.
    pub message: String,
}

impl Refusal {
    pub fn new(kind: Kind, op: Op, message: impl Into<String>) -> Self {
        Self {
            kind,
            op,
            message: message.into(),
        }
    }

    pub fn bad_request(op: Op, message: impl Into<String>) -> Self {
        Self::new(Kind::BadRequest, op, message)
    }

    pub fn forbidden(op: Op, message: impl Into<String>) -> Self {
        Self::new(Kind::Forbidden, op, message)
    }

    pub fn not_found(op: Op, message: impl Into<String>) -> Self {
        Self::new(Kind::NotFound, op, message)
    }

    pub fn conflict(op: Op, message: impl Into<String>) -> Self {
        Self::new(Kind::Conflict, op, message)
    }
}

/// A refusal as the API error it becomes (mapped in `src/error.rs`), for functions that
/// return [`crate::error::ApiResult`].
pub fn refuse(kind: Kind, op: Op, message: impl Into<String>) -> crate::error::ApiError {
    Refusal::new(kind, op, message).into()
}
