//! The finishing pass over the generated OpenAPI document: what holds for every operation is
//! written once here instead of on each of the ~70 handlers.
//!
//! - every response has a `description` (OpenAPI 3.1 requires one; utoipa leaves it empty);
//! - every `/openapi` and `/api` operation documents 401 (the token check in front of them),
//!   400 when it takes parameters or a body (the extractors answer 400 naming the field), 413
//!   when it takes a body (`body_limit`), 404 when it has path parameters, 500 (a server fault)
//!   and 503 (storage down, `request_timeout_secs`) — all with [`ErrorBody`];
//! - the open routes (`/healthz`, `/metrics`) drop the global bearer requirement;
//! - path and query parameters say what the handlers enforce (24-hex ids, positive task ids and
//!   pages, name lengths, the release-plan status list, which query parameters are required);
//! - request bodies say which fields are required, their closed value lists, lengths and id
//!   patterns, and which fields take `null` (those decoded with Zadig's null-as-default rule);
//! - every schema a request body reaches states the size limits of [`crate::limits`]
//!   (`maxLength`, `maxItems`), computed by the server's own key → limit functions.
//!
//! The tables below are the contract: `.ci/run` drives schemathesis against them
//! (`negative_data_rejection` fails when the server accepts what they forbid,
//! `positive_data_acceptance` when it refuses what they allow).
//!
//! The statuses a handler answers for its own reasons (403, 409, …) stay on its
//! `#[utoipa::path]`.

use serde_json::{Map, Value, json};

use crate::error::ErrorBody;
use crate::release_plan::model::Status;
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
        "503" => "Storage does not answer, or the request took longer than `request_timeout_secs`",
        "500" => "A server fault; the details are only in the server log",
        _ => "Answer",
    }
}

/// A required name: non-blank, at most [`MAX_NAME_LEN`] characters.
fn name_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": MAX_NAME_LEN, "pattern": NOT_BLANK})
}

/// Query parameters a route refuses to do without (400 `… is required`): (method, path, names).
const REQUIRED_QUERY: &[(&str, &str, &[&str])] = &[
    // Environments (spec/environments.md §5).
    ("get", "/openapi/environments", &["projectKey"]),
    ("post", "/openapi/environments", &["projectKey"]),
    ("get", "/openapi/environments/{name}", &["projectKey"]),
    ("put", "/openapi/environments/{name}", &["projectKey"]),
    (
        "delete",
        "/openapi/environments/{name}",
        &["projectKey", "isDelete"],
    ),
    (
        "get",
        "/openapi/environments/service/yaml",
        &["projectKey", "envName", "serviceName"],
    ),
    (
        "post",
        "/openapi/environments/service/yaml",
        &["projectKey"],
    ),
    (
        "delete",
        "/openapi/environments/service/yaml",
        &["projectKey"],
    ),
    (
        "get",
        "/openapi/environments/{name}/services/{serviceName}",
        &["projectKey"],
    ),
    (
        "get",
        "/openapi/environments/{name}/service/{serviceName}/pods",
        &["projectKey"],
    ),
    (
        "post",
        "/openapi/environments/{name}/service/{serviceName}/restart",
        &["projectKey"],
    ),
    (
        "post",
        "/openapi/environments/{name}/pod/{podName}/restart",
        &["projectKey"],
    ),
    (
        "get",
        "/openapi/environments/{name}/variable",
        &["projectKey"],
    ),
    (
        "put",
        "/openapi/environments/{name}/variable",
        &["projectKey"],
    ),
    ("get", "/openapi/environments/production", &["projectKey"]),
    ("post", "/openapi/environments/production", &["projectKey"]),
    (
        "get",
        "/openapi/environments/production/{name}",
        &["projectKey"],
    ),
    (
        "put",
        "/openapi/environments/production/{name}",
        &["projectKey"],
    ),
    (
        "delete",
        "/openapi/environments/production/{name}",
        &["projectKey"],
    ),
    (
        "get",
        "/openapi/environments/production/service/yaml",
        &["projectKey", "envName", "serviceName"],
    ),
    (
        "post",
        "/openapi/environments/production/service/yaml",
        &["projectKey"],
    ),
    (
        "delete",
        "/openapi/environments/production/service/yaml",
        &["projectKey"],
    ),
    (
        "get",
        "/openapi/environments/production/{name}/services/{serviceName}",
        &["projectKey"],
    ),
    (
        "get",
        "/openapi/environments/production/{name}/service/{serviceName}/pods",
        &["projectKey"],
    ),
    (
        "post",
        "/openapi/environments/production/{name}/service/{serviceName}/restart",
        &["projectKey"],
    ),
    (
        "post",
        "/openapi/environments/production/{name}/pod/{podName}/restart",
        &["projectKey"],
    ),
    (
        "get",
        "/openapi/environments/production/{name}/variable",
        &["projectKey"],
    ),
    (
        "put",
        "/openapi/environments/production/{name}/variable",
        &["projectKey"],
    ),
    ("get", "/openapi/build", &["projectKey"]),
    ("get", "/openapi/build/{buildName}/detail", &["projectKey"]),
    ("delete", "/openapi/build", &["name"]),
    ("get", "/openapi/delivery/releases", &["projectKey"]),
    (
        "get",
        "/openapi/delivery/releases/detail",
        &["projectKey", "versionName"],
    ),
    ("get", "/openapi/delivery/releases/{id}", &["projectKey"]),
    ("delete", "/openapi/delivery/releases/{id}", &["projectKey"]),
    ("get", "/openapi/workflows", &["projectKey"]),
    (
        "delete",
        "/openapi/workflows/custom",
        &["workflowKey", "projectKey"],
    ),
    ("get", "/openapi/workflows/custom/task", &["workflowKey"]),
    ("delete", "/openapi/workflows/custom/task", &["workflowKey"]),
    (
        "get",
        "/openapi/workflows/custom/{workflowKey}/detail",
        &["projectKey"],
    ),
    (
        "get",
        "/openapi/workflows/custom/{workflowKey}/tasks",
        &["projectKey"],
    ),
    ("get", "/openapi/workflows/view", &["projectKey"]),
    ("put", "/openapi/workflows/view/{viewName}", &["projectKey"]),
    (
        "delete",
        "/openapi/workflows/view/{viewName}",
        &["projectKey"],
    ),
    (
        "get",
        "/openapi/workflows/custom/{workflowKey}/task/{taskID}/manual-exec",
        &["projectKey"],
    ),
    (
        "post",
        "/openapi/workflows/custom/{workflowKey}/task/{taskID}/manual-exec",
        &["projectKey"],
    ),
    // Projects and K8s YAML services (spec/environments.md §2, §4).
    ("get", "/openapi/projects/project/detail", &["projectKey"]),
    (
        "get",
        "/openapi/projects/project/globalVariable",
        &["projectKey"],
    ),
    ("delete", "/openapi/projects/project", &["projectKey"]),
    ("post", "/openapi/service/yaml/raw", &["projectKey"]),
    (
        "post",
        "/openapi/service/yaml/production/raw",
        &["projectKey"],
    ),
    ("get", "/openapi/service/yaml/services", &["projectKey"]),
    (
        "get",
        "/openapi/service/yaml/production/services",
        &["projectKey"],
    ),
    ("get", "/openapi/service/yaml/{name}", &["projectKey"]),
    ("put", "/openapi/service/yaml/{name}", &["projectKey"]),
    ("delete", "/openapi/service/yaml/{name}", &["projectKey"]),
    (
        "get",
        "/openapi/service/yaml/production/{name}",
        &["projectKey"],
    ),
    (
        "put",
        "/openapi/service/yaml/production/{name}",
        &["projectKey"],
    ),
    (
        "delete",
        "/openapi/service/yaml/production/{name}",
        &["projectKey"],
    ),
    (
        "put",
        "/openapi/service/yaml/{name}/variable",
        &["projectKey"],
    ),
    (
        "put",
        "/openapi/service/yaml/production/{name}/variable",
        &["projectKey"],
    ),
];

/// Request-body fields that must be present and non-blank names, by schema.
const REQUIRED_NAMES: &[(&str, &[&str])] = &[
    // Clusters and environments (spec/environments.md §3, §5).
    ("ClusterInput", &["name"]),
    ("CreateEnvInput", &["env_key", "cluster_id", "namespace"]),
    ("ServiceInput", &["service_name"]),
    ("AddServicesInput", &["env_key"]),
    ("RemoveServicesInput", &["env_key"]),
    (
        "ScaleInput",
        &[
            "project_key",
            "env_key",
            "service_name",
            "workload_name",
            "workload_type",
        ],
    ),
    (
        "ImageInput",
        &[
            "product_name",
            "service_name",
            "name",
            "container_name",
            "image",
        ],
    ),
    ("PlanInput", &["name", "manager"]),
    ("JobInput", &["name", "type"]),
    ("JobActionInput", &["id", "type"]),
    (
        "CallbackInput",
        &["hook_event", "release_plan_id", "instance_code", "result"],
    ),
    ("ExecuteRequest", &["workflow_key", "project_key"]),
    ("ApproveRequest", &["workflow_key", "stage_name", "task_id"]),
    ("ErrorHandlingRequest", &["decision"]),
    ("ManualExecRequest", &["stage_name"]),
    ("CreateUserRequest", &["account"]),
    ("CreateViewRequest", &["project_key", "name"]),
    (
        "CreateTicketRequest",
        &["approval_id", "project_key", "status"],
    ),
    ("RegistryInput", &["address", "provider"]),
    ("HelmRepoInput", &["repo_name", "url"]),
    (
        "NewVersion",
        &["project_key", "version_name", "source", "services"],
    ),
    ("TemplateRequest", &["name"]),
    ("TemplateBuildRequest", &["name", "template_name"]),
    ("TicketServiceInput", &["service_name"]),
    ("ViewWorkflowInput", &["workflow_key", "workflow_type"]),
    ("ViewChange", &["workflow_key", "workflow_type"]),
    (
        "CreateProjectRequest",
        &["project_name", "project_key", "project_type"],
    ),
    (
        "InitYamlRequest",
        &["project_name", "project_key", "service_list"],
    ),
    ("InitService", &["source", "service_name"]),
    ("CreateServiceRequest", &["service_name"]),
    ("UpdateYamlRequest", &["type"]),
    ("UpdateVariablesRequest", &["service_variable_kvs"]),
    ("ServiceVariableKV", &["key"]),
];

/// Fields decoded with Zadig's null-as-default rule: `null` is accepted and means the default.
const NULLABLE: &[(&str, &[&str])] = &[
    (
        "PlanInput",
        &[
            "manager_identity_type",
            "description",
            "start_time",
            "end_time",
            "schedule_execute_time",
            "jobs",
        ],
    ),
    ("JobInput", &["manager", "manager_identity_type"]),
    ("JobActionInput", &["name"]),
    ("ApproveInput", &["approve", "comment"]),
    ("CallbackInput", &["failed_reason"]),
    ("InitYamlRequest", &["service_list", "env_list"]),
    ("InitService", &["variable_yaml"]),
    ("CreateServiceRequest", &["variable_yaml"]),
    ("ServiceVariableKV", &["options"]),
    (
        "HookSettingInput",
        &["enable", "enable_call_back", "hook_address", "hook_events"],
    ),
];

/// Property schemas beyond utoipa's types: closed value lists, ranges, id patterns, lengths.
fn property_overrides() -> Vec<(&'static str, &'static str, Value)> {
    use crate::release_plan::model::HookEvent;
    let hook_events: Vec<&str> = HookEvent::ALL.iter().map(|e| e.as_str()).collect();
    let time = json!({"type": "integer", "format": "int64", "minimum": 0});
    vec![
        ("PlanInput", "start_time", time.clone()),
        ("PlanInput", "end_time", time.clone()),
        ("PlanInput", "schedule_execute_time", time),
        (
            "PlanInput",
            "manager_identity_type",
            json!({"type": "string", "maxLength": MAX_NAME_LEN}),
        ),
        (
            "JobInput",
            "type",
            json!({"type": "string", "enum": ["text", "workflow"]}),
        ),
        (
            "JobActionInput",
            "type",
            json!({"type": "string", "enum": ["text", "workflow"]}),
        ),
        (
            "CallbackInput",
            "hook_event",
            json!({"type": "string", "enum": hook_events}),
        ),
        (
            "CallbackInput",
            "release_plan_id",
            json!({"type": "string", "pattern": OBJECT_ID}),
        ),
        (
            "CallbackInput",
            "result",
            json!({"type": "string", "enum": ["success", "failed"]}),
        ),
        (
            "HookSettingInput",
            "hook_events",
            json!({"type": "array", "items": {"type": "string", "enum": hook_events}}),
        ),
        (
            "ApproveRequest",
            "task_id",
            json!({"type": "integer", "format": "int64", "minimum": 1}),
        ),
        (
            "ErrorHandlingRequest",
            "decision",
            json!({"type": "string", "enum": ["ignore", "reject"]}),
        ),
        (
            "RemarkRequest",
            "remark",
            json!({"type": "string", "maxLength": 4096}),
        ),
        (
            "CreateTicketRequest",
            "status",
            json!({"type": "integer", "enum": [0, 1]}),
        ),
        (
            "RegistryInput",
            "provider",
            json!({"type": "string", "enum": crate::delivery::registry::PROVIDERS}),
        ),
        (
            "NewVersion",
            "source",
            json!({"type": "string", "enum": crate::delivery::model::SOURCES}),
        ),
        (
            "NewVersion",
            "services",
            json!({"type": "array", "minItems": 1, "items": {"type": "object"}}),
        ),
        (
            "ViewWorkflowInput",
            "workflow_type",
            json!({"type": "string", "enum": ["custom", "product"]}),
        ),
        (
            "ViewChange",
            "workflow_type",
            json!({"type": "string", "enum": ["custom", "product"]}),
        ),
        (
            "CreateProjectRequest",
            "project_type",
            json!({"type": "string", "enum": ["yaml"]}),
        ),
        (
            "CreateProjectRequest",
            "project_key",
            json!({"type": "string", "minLength": 1, "maxLength": MAX_NAME_LEN, "pattern": "^[a-z0-9-]+$"}),
        ),
        (
            "InitYamlRequest",
            "project_key",
            json!({"type": "string", "minLength": 1, "maxLength": MAX_NAME_LEN, "pattern": "^[a-z0-9-]+$"}),
        ),
        (
            "InitService",
            "source",
            json!({"type": "string", "enum": ["yaml"]}),
        ),
        (
            "UpdateYamlRequest",
            "type",
            json!({"type": "string", "enum": ["k8s"]}),
        ),
        (
            "ServiceVariableKV",
            "value",
            json!({"type": ["string", "number", "boolean", "null"],
                "description": "A scalar for `string`/`enum`/`bool`; YAML text for `yaml`."}),
        ),
        (
            "ServiceVariableKV",
            "type",
            json!({"type": "string", "enum": crate::service_template::variables::VAR_TYPES}),
        ),
        // Zadig's lenient forms, accepted as such.
        (
            "CreateTicketRequest",
            "envs",
            json!({"oneOf": [{"type": "array", "items": {"type": "string"}},
                {"type": "string", "description": "comma-separated (the seed's form)"},
                {"type": "null"}]}),
        ),
        (
            "TemplateRequest",
            "installs",
            json!({"oneOf": [
                {"type": "array", "items": {"type": "object",
                    "properties": {"name": {"type": "string"}, "version": {"type": "string"}}}},
                {"type": "string", "description": "`name:version` entries separated by commas"},
                {"type": "null"}]}),
        ),
        (
            "BuildRequest",
            "installs",
            json!({"oneOf": [
                {"type": "array", "items": {"type": "object",
                    "properties": {"name": {"type": "string"}, "version": {"type": "string"}}}},
                {"type": "string", "description": "`name:version` entries separated by commas"}]}),
        ),
    ]
}

fn property<'a>(
    schemas: &'a mut Map<String, Value>,
    schema: &str,
    field: &str,
) -> Option<&'a mut Map<String, Value>> {
    schemas
        .get_mut(schema)?
        .get_mut("properties")?
        .get_mut(field)?
        .as_object_mut()
}

fn finish_schemas(doc: &mut Value) {
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for (schema, fields) in NULLABLE {
        for field in *fields {
            if let Some(p) = property(schemas, schema, field)
                && let Some(Value::String(t)) = p.get("type").cloned()
            {
                p.insert("type".into(), json!([t, "null"]));
            }
        }
    }
    for (schema, field, over) in property_overrides() {
        if let Some(p) = property(schemas, schema, field)
            && let Value::Object(over) = over
        {
            let nullable = p
                .get("type")
                .and_then(Value::as_array)
                .is_some_and(|t| t.contains(&json!("null")));
            if over.contains_key("oneOf") {
                // A union replaces utoipa's single type.
                p.retain(|k, _| k == "description");
            }
            p.extend(over);
            let required = REQUIRED_NAMES
                .iter()
                .any(|(s, f)| *s == schema && f.contains(&field));
            if nullable
                && !required
                && let Some(Value::String(t)) = p.get("type").cloned()
            {
                p.insert("type".into(), json!([t, "null"]));
            }
        }
    }
    for (schema, fields) in REQUIRED_NAMES {
        for field in *fields {
            if let Some(p) = property(schemas, schema, field)
                && let Some(Value::Array(types)) = p.get("type").cloned()
                && let Some(t) = types.iter().find(|t| *t != "null")
            {
                // `null` is refused like an absent value.
                p.insert("type".into(), t.clone());
            }
            if let Some(p) = property(schemas, schema, field)
                && p.get("type") == Some(&json!("string"))
                && !p.contains_key("enum")
                && !p.contains_key("pattern")
            {
                p.extend(name_schema().as_object().cloned().unwrap_or_default());
            }
        }
        if let Some(s) = schemas.get_mut(*schema).and_then(Value::as_object_mut) {
            let mut req: Vec<Value> = s
                .get("required")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for field in *fields {
                if !req.contains(&json!(field)) {
                    req.push(json!(field));
                }
            }
            s.insert("required".into(), Value::Array(req));
        }
    }
}

fn finish_value(doc: &mut Value) {
    finish_schemas(doc);
    state_size_limits(doc);
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
        let required = REQUIRED_QUERY
            .iter()
            .find(|(m, p, _)| *m == method && *p == path)
            .map(|(_, _, names)| *names)
            .unwrap_or_default();
        for p in params {
            let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
            if p.get("in") == Some(&json!("query")) && required.contains(&name) {
                p["required"] = json!(true);
            }
            constrain_parameter(path, p);
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
        let mut add = vec!["401", "500", "503"];
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
            responses.entry(status).or_insert_with(
                || json!({"description": describe(status), "content": error_ref()}),
            );
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

/// What the document says about the size limits, once (`info.description`).
const SIZE_LIMITS_NOTE: &str = " Every string and array of a request body is bounded by the key it \
sits under (`maxLength`, `maxItems`); the server counts string lengths in UTF-8 bytes, so \
`maxLength` is exact for ASCII text and a non-ASCII string may be refused below it.";

/// State the size limits of [`crate::limits`] on every schema a request body reaches.
///
/// The server checks every string and array of a body by the JSON key it sits under
/// ([`crate::limits::document`]: [`crate::limits::string_limit`] and
/// [`crate::limits::array_limit`]), wherever it sits; the same functions give the limit of each
/// property here, so the document and the server cannot drift. An existing tighter bound (a name
/// ≤ [`MAX_NAME_LEN`]) is kept. Free-form objects (`{"type": "object"}`) and map values (their
/// key is the client's) state nothing.
///
/// The server's string limits are in UTF-8 bytes; JSON Schema's `maxLength` counts characters.
/// The byte limit is stated as `maxLength`: exact for ASCII (a string of N ASCII characters is N
/// bytes), looser than the server for other text. Components shared with responses are bounded
/// too, which holds: the server returns what it accepted, under the same keys.
fn state_size_limits(doc: &mut Value) {
    let mut pending: Vec<String> = Vec::new();
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for op in item.values_mut() {
                let Some(content) = op
                    .pointer_mut("/requestBody/content")
                    .and_then(Value::as_object_mut)
                else {
                    continue;
                };
                for media in content.values_mut() {
                    if let Some(schema) = media.get_mut("schema") {
                        schema_refs(schema, &mut pending);
                        limit_schema(schema, "");
                    }
                }
            }
        }
    }
    if let Some(Value::String(d)) = doc.pointer_mut("/info/description")
        && !d.ends_with(SIZE_LIMITS_NOTE)
    {
        d.push_str(SIZE_LIMITS_NOTE);
    }
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let mut done = std::collections::BTreeSet::new();
    while let Some(name) = pending.pop() {
        if !done.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = schemas.get_mut(&name) {
            schema_refs(schema, &mut pending);
            limit_schema(schema, "");
        }
    }
}

/// The components a schema refers to, anywhere in it.
fn schema_refs(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(name) = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
            {
                out.push(name.to_string());
            }
            map.values().for_each(|v| schema_refs(v, out));
        }
        Value::Array(list) => list.iter().for_each(|v| schema_refs(v, out)),
        _ => {}
    }
}

/// Bound a schema that sits under `key` (`""` at the top of a body or a component), and its
/// properties (each under its own name), items (under the array's key, as the server checks
/// them) and union variants.
fn limit_schema(schema: &mut Value, key: &str) {
    let Some(s) = schema.as_object_mut() else {
        return;
    };
    let has_type = |s: &Map<String, Value>, t: &str| match s.get("type") {
        Some(Value::String(x)) => x == t,
        Some(Value::Array(xs)) => xs.iter().any(|x| x == t),
        _ => false,
    };
    if has_type(s, "string") && !s.contains_key("enum") && !s.contains_key("const") {
        cap(s, "maxLength", crate::limits::string_limit(key));
    }
    if has_type(s, "array") {
        cap(s, "maxItems", crate::limits::array_limit(key));
        if let Some(items) = s.get_mut("items") {
            limit_schema(items, key);
        }
    }
    if let Some(props) = s.get_mut("properties").and_then(Value::as_object_mut) {
        for (name, prop) in props.iter_mut() {
            limit_schema(prop, name);
        }
    }
    for union in ["allOf", "oneOf", "anyOf"] {
        if let Some(Value::Array(variants)) = s.get_mut(union) {
            for v in variants {
                limit_schema(v, key);
            }
        }
    }
}

/// Set `bound` (`maxLength`, `maxItems`) to `limit` unless it is already tighter.
fn cap(s: &mut Map<String, Value>, bound: &str, limit: usize) {
    let limit = limit as u64;
    let current = s.get(bound).and_then(Value::as_u64);
    s.insert(bound.into(), json!(current.map_or(limit, |c| c.min(limit))));
}

/// What the handlers enforce on a parameter, by its name (the names are shared across
/// routes and mean the same everywhere).
fn constrain_parameter(path: &str, p: &mut Value) {
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
        ("pageNum" | "page", "query") => {
            if path == "/openapi/release_plan/v1" {
                p["required"] = json!(true);
            }
            let mut s = json!({"type": "integer", "format": "int64", "minimum": 1});
            // Every page of the largest size must start within a signed 64-bit offset.
            if let Some(rule) = page_rule(path) {
                s["maximum"] = json!(i64::MAX.unsigned_abs() / rule.max_size);
            }
            s
        }
        ("pageSize", "query") => {
            if path == "/openapi/release_plan/v1" {
                p["required"] = json!(true);
            }
            let mut s = json!({"type": "integer", "format": "int64", "minimum": 1});
            if let Some(rule) = page_rule(path) {
                s["maximum"] = json!(rule.max_size);
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
            "enum": Status::ALL.map(Status::as_str),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{MAX_ITEMS, MAX_JOBS, MAX_STRING_BYTES, MAX_TEXT_BYTES, MAX_URL_BYTES};

    #[test]
    fn request_schemas_state_the_size_limits_by_key() {
        let mut doc = json!({
            "paths": {"/x": {"post": {"requestBody": {"content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Body"}}}}}}},
            "components": {"schemas": {
                "Body": {"type": "object", "properties": {
                    "description": {"type": ["string", "null"]},
                    "name": {"type": "string", "maxLength": 256},
                    "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                    "labels": {"oneOf": [
                        {"type": "array", "items": {"type": "string"}}, {"type": "string"}]},
                }},
                "Job": {"type": "object", "properties": {"hook_address": {"type": "string"},
                    "kind": {"type": "string", "enum": ["a"]}}},
                "Unused": {"type": "object", "properties": {"description": {"type": "string"}}},
            }},
        });
        state_size_limits(&mut doc);
        let s = &doc["components"]["schemas"];
        let body = &s["Body"]["properties"];
        assert_eq!(body["description"]["maxLength"], MAX_TEXT_BYTES);
        assert_eq!(body["name"]["maxLength"], 256, "a tighter bound stays");
        assert_eq!(body["jobs"]["maxItems"], MAX_JOBS);
        assert_eq!(body["labels"]["oneOf"][0]["maxItems"], MAX_ITEMS);
        assert_eq!(
            body["labels"]["oneOf"][0]["items"]["maxLength"],
            MAX_STRING_BYTES
        );
        assert_eq!(body["labels"]["oneOf"][1]["maxLength"], MAX_STRING_BYTES);
        let job = &s["Job"]["properties"];
        assert_eq!(job["hook_address"]["maxLength"], MAX_URL_BYTES);
        assert!(
            job["kind"].get("maxLength").is_none(),
            "closed lists stay as they are"
        );
        assert!(
            s["Unused"]["properties"]["description"]
                .get("maxLength")
                .is_none(),
            "only what a request body reaches"
        );
    }
}
