//! The contract's tables: required query parameters and fields, and the
//! property schemas beyond utoipa's types. `.ci/run` drives schemathesis against them.

use serde_json::{Value, json};

use super::OBJECT_ID;

/// The environment routes' production group: each route shares its handler body with the test
/// group's route of the same path without this segment (`http::groups::both_groups!`).
const PRODUCTION_ENVS: &str = "/openapi/environments/production";

/// The query parameters `method path` requires: its [`REQUIRED_QUERY`] row, and `projectKey`
/// wherever an environment route takes it (every one reads it through
/// `http::environments::ProjectQuery`, which refuses its absence).
pub(super) fn required_query(method: &str, path: &str) -> Vec<&'static str> {
    let (path, production) = match path.strip_prefix(PRODUCTION_ENVS) {
        Some(rest) => (format!("/openapi/environments{rest}"), true),
        None => (path.to_string(), false),
    };
    let mut names: Vec<&'static str> = REQUIRED_QUERY
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map(|(_, _, names)| names.to_vec())
        .unwrap_or_default();
    if path.starts_with("/openapi/environments") && !names.contains(&"projectKey") {
        names.push("projectKey");
    }
    // The production group never deletes objects, so it ignores `isDelete`.
    names.retain(|n| !(production && *n == "isDelete"));
    names
}
use crate::validate::MAX_NAME_LEN;

/// Query parameters a route refuses to do without (400 `… is required`): (method, path, names).
/// A route of the production environments (`/openapi/environments/production…`) requires what
/// its test-group twin does, but `isDelete`; `projectKey` of the environment routes is added by
/// [`required_query`].
pub(super) const REQUIRED_QUERY: &[(&str, &str, &[&str])] = &[
    // Environments (spec/environments.md §5); the production group follows.
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
pub(super) const REQUIRED_NAMES: &[(&str, &[&str])] = &[
    // Clusters and environments (spec/environments.md §3, §5).
    ("ClusterInput", &["name"]),
    ("CreateEnvInput", &["env_key", "cluster_id", "namespace"]),
    ("ServiceInput", &["service_name"]),
    ("AddServicesInput", &["env_key"]),
    ("RemoveServicesInput", &["env_key"]),
    ("UpdateServicesInput", &["service_list"]),
    ("ServiceVariablesInput", &["service_name"]),
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
    ("Pair", &["key"]),
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
    ("CreateServiceRequest", &["service_name", "yaml"]),
    ("UpdateYamlRequest", &["type"]),
    ("UpdateVariablesRequest", &["service_variable_kvs"]),
    ("ServiceVariableKV", &["key"]),
];

/// Property schemas beyond utoipa's types: closed value lists, ranges, id patterns, lengths.
pub(super) fn property_overrides() -> Vec<(&'static str, &'static str, Value)> {
    let mut all = release_plan_overrides();
    all.extend(workflow_overrides());
    all.extend(service_overrides());
    all
}

/// Release plans, their jobs and hooks.
fn release_plan_overrides() -> Vec<(&'static str, &'static str, Value)> {
    use crate::release_plan::machine::CallbackResult;
    use crate::release_plan::model::HookEvent;
    let hook_events = HookEvent::NAMES;
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
            json!({"type": "string", "enum": CallbackResult::NAMES}),
        ),
        (
            "HookSettingInput",
            "hook_events",
            json!({"type": "array", "items": {"type": "string", "enum": hook_events}}),
        ),
    ]
}

/// Workflows, tasks, tickets, views, builds and build templates.
fn workflow_overrides() -> Vec<(&'static str, &'static str, Value)> {
    use crate::workflow::approval::ErrorDecision;
    vec![
        (
            "ApproveRequest",
            "task_id",
            json!({"type": "integer", "format": "int64", "minimum": 1}),
        ),
        (
            "ErrorHandlingRequest",
            "decision",
            json!({"type": "string", "enum": ErrorDecision::NAMES}),
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
            "Output",
            "name",
            json!({"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$", "maxLength": MAX_NAME_LEN}),
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

/// Delivery, projects and services.
fn service_overrides() -> Vec<(&'static str, &'static str, Value)> {
    let mut var_types = crate::service_template::variables::VAR_TYPES.to_vec();
    var_types.push("");
    vec![
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
            // `""` (absent, or `null`) means `string`.
            json!({"type": "string", "enum": var_types}),
        ),
    ]
}
