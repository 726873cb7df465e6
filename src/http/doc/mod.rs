//! The finishing pass over the generated OpenAPI document: what holds for every operation is
//! written once here instead of on each of the ~70 handlers.
//!
//! - every response has a `description` (OpenAPI 3.1 requires one; utoipa leaves it empty);
//! - every `/openapi` and `/api` operation documents 401 (the token check in front of them), 429
//!   (the failed-authentication throttle),
//!   400 when it takes parameters or a body (the extractors answer 400 naming the field), 413
//!   when it takes a body (`body_limit`), 404 when it has path parameters, 500 (a server fault)
//!   and 503 (storage down, `request_timeout_secs`) — all with [`ErrorBody`];
//! - the open routes (`/healthz`, `/metrics`) drop the global bearer requirement;
//! - path and query parameters say what the handlers enforce (24-hex ids, positive task ids and
//!   pages, name lengths, the release-plan status list, which query parameters are required);
//! - request bodies say which fields are required, their closed value lists, lengths and id
//!   patterns, and which fields take `null` (computed: those whose zero value is valid, since
//!   the decoder reads `null` as the zero value — [`nullable`]);
//! - every schema a request body reaches states the size limits of [`crate::limits`]
//!   (`maxLength`, `maxItems`), computed by the server's own key → limit functions.
//!
//! The tables below are the contract: `.ci/run` drives schemathesis against them
//! (`negative_data_rejection` fails when the server accepts what they forbid,
//! `positive_data_acceptance` when it refuses what they allow).
//!
//! The statuses a handler answers for its own reasons (403, 409, …) stay on its
//! `#[utoipa::path]`.
//!
//! The files: [`tables`] (the contract's tables), [`schemas`] (applying them to the
//! components), [`nullable`] (which request fields take `null`), [`params`] (parameters), [`size_limits`] (the bounds of [`crate::limits`]);
//! this file walks the operations.

mod nullable;
mod params;
mod schemas;
mod size_limits;
mod tables;

use serde_json::{Map, Value, json};

use crate::error::ErrorBody;
use crate::validate::MAX_NAME_LEN;

/// Routes that need no token.
const OPEN: &[&str] = &["/healthz", "/metrics"];

/// A 24-hex ObjectId (release plans, delivery versions): anything else → 400 naming `id`.
const OBJECT_ID: &str = "^[0-9a-fA-F]{24}$";

/// At least one non-space character: names are checked with `trim().is_empty()`.
const NOT_BLANK: &str = "\\S";

/// Apply the pass to a document produced by utoipa; the result is served as JSON (a
/// round trip through utoipa's types would not keep every 3.1 construct).
pub fn finish(spec: &utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(spec).unwrap_or_else(|e| {
        tracing::error!(error = %e, "the OpenAPI document does not serialize: {e}");
        json!({})
    });
    finish_value(&mut doc);
    doc
}

fn error_ref() -> Value {
    json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", <ErrorBody as utoipa::ToSchema>::name())}}})
}

fn describe(status: &str) -> &'static str {
    match status {
        "200" => "Success",
        "400" => {
            "Bad input: malformed JSON, a wrong type, a missing or unknown value; `description` names the field or parameter"
        }
        "401" => "No API token, or an unknown or revoked one",
        "403" => "The caller is not allowed to do this (not an admin, owner, approver …)",
        "404" => "The resource (or a resource the request names) does not exist",
        "409" => "Wrong state for this action, or a duplicate",
        "413" => "The request body is larger than `body_limit`",
        "429" => {
            "Too many wrong API tokens from this address (`auth_max_failures`); the token was not checked, retry after `Retry-After` seconds"
        }
        "503" => "Storage does not answer, or the request took longer than `request_timeout_secs`",
        "500" => "A server fault; the details are only in the server log",
        _ => "Answer",
    }
}

/// A required name: non-blank, at most [`MAX_NAME_LEN`] characters.
fn name_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": MAX_NAME_LEN, "pattern": NOT_BLANK})
}

fn finish_value(doc: &mut Value) {
    schemas::finish(doc);
    nullable::mark(doc);
    size_limits::state(doc);
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if !matches!(
                method.as_str(),
                "get" | "put" | "post" | "delete" | "patch" | "head" | "options"
            ) {
                continue;
            }
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            finish_operation(path, method, op);
        }
    }
}

fn finish_operation(path: &str, method: &str, op: &mut Map<String, Value>) {
    let open = OPEN.contains(&path);
    if open {
        op.insert("security".into(), json!([]));
    }
    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        let required = tables::required_query(method, path);
        for p in params {
            let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
            if p.get("in") == Some(&json!("query")) && required.contains(&name) {
                p["required"] = json!(true);
            }
            params::constrain(path, p);
        }
    }
    let has_params = op
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    let has_body = op.contains_key("requestBody");
    let has_path_params = path.contains('{');
    let responses = op
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    let Some(responses) = responses else {
        return;
    };
    if !open {
        let mut add = vec!["401", "429", "500", "503"];
        if has_params || has_body {
            add.push("400");
        }
        if has_body {
            add.push("413");
        }
        if has_path_params {
            add.push("404");
        }
        for status in add {
            responses.entry(status).or_insert_with(|| {
                let mut r = json!({"description": describe(status), "content": error_ref()});
                if status == "429" {
                    // The throttle always says when to come back.
                    r["headers"] = json!({"Retry-After": {
                        "description": "Seconds until the address may try a token again",
                        "schema": {"type": "integer", "minimum": 1}}});
                }
                r
            });
        }
    }
    for (status, resp) in responses.iter_mut() {
        if let Some(r) = resp.as_object_mut() {
            let empty = r
                .get("description")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty);
            if empty {
                r.insert("description".into(), json!(describe(status)));
            }
        }
    }
}
