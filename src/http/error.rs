//! The HTTP edge of errors: each [`ErrorKind`] gets its honest status here, once, and an
//! [`ApiError`] becomes Zadig's error JSON with that status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorKind};

/// The HTTP status of an error of kind `kind`.
pub const fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::Conflict | ErrorKind::Unreachable => StatusCode::CONFLICT,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::BadGateway => StatusCode::BAD_GATEWAY,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// For code at the edge that speaks in statuses (`ApiError::new(StatusCode::…, …)`): the
/// kind of a status; one without a kind of its own is a server fault.
impl From<StatusCode> for ErrorKind {
    fn from(status: StatusCode) -> Self {
        match status {
            StatusCode::BAD_REQUEST => Self::BadRequest,
            StatusCode::UNAUTHORIZED => Self::Unauthorized,
            StatusCode::FORBIDDEN => Self::Forbidden,
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::CONFLICT => Self::Conflict,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::UNPROCESSABLE_ENTITY => Self::Unprocessable,
            StatusCode::TOO_MANY_REQUESTS => Self::TooManyRequests,
            StatusCode::BAD_GATEWAY => Self::BadGateway,
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable,
            _ => Self::Internal,
        }
    }
}

impl ApiError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        status_of(self.kind)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), axum::Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire is unchanged: each kind keeps the code and message of its status.
    #[test]
    fn kinds_round_trip_their_status() {
        for kind in [
            ErrorKind::BadRequest,
            ErrorKind::Unauthorized,
            ErrorKind::Forbidden,
            ErrorKind::NotFound,
            ErrorKind::MethodNotAllowed,
            ErrorKind::Conflict,
            ErrorKind::PayloadTooLarge,
            ErrorKind::Unprocessable,
            ErrorKind::TooManyRequests,
            ErrorKind::BadGateway,
            ErrorKind::Internal,
            ErrorKind::Unavailable,
        ] {
            let status = status_of(kind);
            assert_eq!(ErrorKind::from(status), kind);
            assert_eq!(kind.code(), i64::from(status.as_u16()));
            if kind != ErrorKind::Internal {
                assert_eq!(Some(kind.summary()), status.canonical_reason());
            }
        }
    }

    /// An unreachable cluster is a conflict on the wire; a route gives it its own code.
    #[test]
    fn unreachable_is_a_conflict_with_the_route_code() {
        let e = ApiError::new(ErrorKind::Unreachable, "cluster \"c\" (x) is unreachable");
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert_eq!((e.code, e.message.as_str()), (409, "Conflict"));
        let e = e.during((6074, "Create environment failed"));
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert_eq!(e.code, 6074);
        let other = ApiError::conflict("taken").during((6074, "Create environment failed"));
        assert_eq!(other.code, 409);
    }
}
