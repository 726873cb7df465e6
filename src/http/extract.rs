//! Extractors whose rejections come out as Zadig's error JSON naming the offending field.
//!
//! axum's own `Json`/`Query`/`Path` reject with plain text; ours decode through
//! `serde_path_to_error` so the description says which key was wrong
//! (`invalid request body: start_time: invalid type: string "x", expected i64`).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON request body (any content type is accepted: `curl -d` sends a form type) or a JSON
/// response.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

/// A 400 for a value that does not decode: `{named} `<path>`: <error>` when the error is at a
/// field, else `{whole}: <error>`.
fn decode_error<E: std::fmt::Display>(
    e: &serde_path_to_error::Error<E>,
    named: &str,
    whole: &str,
) -> ApiError {
    let path = e.path().to_string();
    ApiError::bad_request(if path != "." && !path.is_empty() {
        format!("{named} `{path}`: {}", e.inner())
    } else {
        format!("{whole}: {}", e.inner())
    })
}

/// Decode JSON bytes into `T`, naming the field on failure; strings and arrays over their size
/// limit ([`crate::limits::document`]) are a 400 naming their JSON path.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "request body is empty: expected a JSON object",
        ));
    }
    // Every string and array of a body is bounded by its key (crate::limits), before any
    // domain rule runs.
    let value = serde_json::from_slice::<serde_json::Value>(bytes)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?;
    crate::limits::document(&value)?;
    decode_value(value)
}

/// Decode parsed JSON into `T` under Zadig's null-as-zero rule ([`crate::null_as_zero`]),
/// naming the field on failure (a value of the wrong type is a field error, never "not valid
/// JSON").
fn decode_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    crate::null_as_zero::deserialize(value)
        .map_err(|e| decode_error(&e, "invalid request body: field", "invalid request body"))
}

/// Decode an already-parsed JSON object body into `T`, naming the field on failure (for routes
/// whose body shape depends on the query, e.g. `?source=template`). Anything but an object is
/// refused (serde would take an array for a struct whose fields all have defaults).
pub fn decode_object<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "invalid request body: expected a JSON object",
        ));
    }
    decode_value(value)
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body is larger than the configured body_limit",
                )
            } else {
                ApiError::bad_request(format!("cannot read request body: {}", rej.body_text()))
            }
        })?;
        // Every request body is an object; serde would take an array for a struct whose
        // fields all have defaults and silently apply nothing.
        if let Some(first) = bytes.iter().find(|b| !b.is_ascii_whitespace())
            && *first != b'{'
        {
            return Err(ApiError::bad_request(
                "invalid request body: expected a JSON object",
            ));
        }
        decode_json(&bytes).map(Json)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Query-string parameters, naming the parameter on failure.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

/// Decode a query string into `T`, naming the parameter on failure.
pub fn decode_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de)
        .map_err(|e| decode_error(&e, "invalid query parameter", "invalid query string"))
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        decode_query(parts.uri.query().unwrap_or_default()).map(Query)
    }
}

/// Path parameters; a value that does not parse names the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|rej| {
                ApiError::bad_request(format!("invalid path parameter: {}", rej.body_text()))
            })
    }
}

/// `{"message":"success"}`, Zadig's answer for a success without payload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Success {
    pub message: &'static str,
}

impl Success {
    pub fn new() -> Json<Success> {
        Json(Success { message: "success" })
    }
}
