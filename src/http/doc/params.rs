//! Path and query parameters: what the handlers enforce, by parameter name.

use serde_json::{Value, json};

use super::{NOT_BLANK, OBJECT_ID};
use crate::release_plan::model::Status;
use crate::validate::MAX_NAME_LEN;

/// What the handlers enforce on a parameter, by its name (the names are shared across
/// routes and mean the same everywhere).
pub(super) fn constrain(path: &str, p: &mut Value) {
    let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
    let location = p.get("in").and_then(Value::as_str).unwrap_or_default();
    let schema = match (name, location) {
        ("id", "path")
            if path.starts_with("/openapi/release_plan/")
                || path.starts_with("/openapi/delivery/releases/") =>
        {
            json!({"type": "string", "pattern": OBJECT_ID})
        }
        ("uid", "path") => json!({"type": "string", "format": "uuid"}),
        // The log routes read any integer (a task that does not exist has an empty log).
        ("taskID", "path") if path.starts_with("/openapi/logs/") => {
            json!({"type": "integer", "format": "int64"})
        }
        ("taskID", "path") => json!({"type": "integer", "format": "int64", "minimum": 1}),
        ("taskId", "query") => {
            p["required"] = json!(true);
            json!({"type": "integer", "format": "int64", "minimum": 1})
        }
        ("pageNum" | "page" | "pageSize", "query") => {
            let mut s = json!({"type": "integer", "format": "int64", "minimum": 1});
            if let Some(rule) = page_rule(path) {
                let (max, doc) = page_doc(name, rule);
                s["maximum"] = json!(max);
                if let Some((text, required)) = doc {
                    p["description"] = json!(text);
                    p["required"] = json!(required);
                }
            }
            s
        }
        // A boolean; the server also takes Go's other `strconv.ParseBool` spellings (1, t, T,
        // TRUE, …; spec/environments.md §5.6), which an enum cannot list without clashing
        // names in generated clients.
        ("isDelete", "query") if path.starts_with("/openapi/environments/") => {
            json!({"type": "boolean"})
        }
        ("status", "path") if path.starts_with("/openapi/release_plan/") => json!({
            "type": "string",
            "enum": Status::NAMES,
        }),
        (
            "workflowKey" | "name" | "buildName" | "viewName" | "jobName" | "workflowName"
            | "versionName" | "projectKey" | "envName" | "serviceName" | "podName",
            _,
        ) if location == "path" || p.get("required") == Some(&json!(true)) => json!({
            "type": "string", "minLength": 1, "maxLength": MAX_NAME_LEN, "pattern": NOT_BLANK,
        }),
        _ => return,
    };
    p["schema"] = schema;
}

/// A paging parameter's bound and, but for `page` (the task list's alias of `pageNum`, which
/// keeps its own text), its description and whether it is required: the rule
/// `crate::limits::Paging::parse` enforces.
fn page_doc(name: &str, rule: &crate::limits::PageRule) -> (u64, Option<(String, bool)>) {
    let (what, default, max) = match name {
        "pageSize" => ("Page size", rule.default_size, rule.max_size),
        // Every page of the largest size must start within a signed 64-bit offset.
        _ => (
            "1-based page",
            rule.default_num,
            i64::MAX.unsigned_abs() / rule.max_size,
        ),
    };
    if name == "page" {
        return (max, None);
    }
    let doc = match default {
        Some(d) => (format!("{what}, default {d}, at most {max}."), false),
        None => (format!("{what} (required), at most {max}."), true),
    };
    (max, Some(doc))
}

/// How a list route pages (crate::limits), by its path.
fn page_rule(path: &str) -> Option<&'static crate::limits::PageRule> {
    use crate::limits::{
        BUILD_TEMPLATES_PAGE, BUILDS_PAGE, DELIVERY_VERSIONS_PAGE, RELEASE_PLANS_PAGE, USERS_PAGE,
        WORKFLOW_TASKS_PAGE,
    };
    match path {
        "/openapi/users" => Some(&USERS_PAGE),
        "/openapi/release_plan/v1" => Some(&RELEASE_PLANS_PAGE),
        "/openapi/build" => Some(&BUILDS_PAGE),
        "/openapi/templates/build" => Some(&BUILD_TEMPLATES_PAGE),
        "/openapi/delivery/releases" => Some(&DELIVERY_VERSIONS_PAGE),
        "/openapi/projects/project" => Some(&crate::project::PROJECTS_PAGE),
        p if p.starts_with("/openapi/workflows/custom/") && p.ends_with("/tasks") => {
            Some(&WORKFLOW_TASKS_PAGE)
        }
        _ => None,
    }
}
