//! How task detail shows a job task: the per-type summary of its spec (each job type's
//! `JobKind::view`, `workflow::jobs`) and the helpers those views share — variables with
//! credentials masked, recorded outputs, picked keys — and its run time.

use serde_json::{Map, Value, json};

use crate::workflow::model::{arr_of, str_of};
use crate::workflow::task::JobTask;

pub use crate::masking::MASK;

/// Variables as the detail shows them (`key`, `value`, `type`, `is_credential`), credential
/// values masked.
pub(crate) fn envs_view(vars: &[Value]) -> Value {
    Value::Array(
        vars.iter()
            .map(|v| {
                let secret = crate::masking::is_credential_var(v);
                json!({
                    "key": str_of(v, "key"),
                    "value": if secret { Value::String(MASK.into()) } else { v.get("value").cloned().unwrap_or(json!("")) },
                    "type": v.get("type").cloned().unwrap_or(json!("string")),
                    "is_credential": secret,
                })
            })
            .collect(),
    )
}

/// A recorded output of a job task, `""` when it has none.
pub(crate) fn output(job: &JobTask, key: &str) -> String {
    job.outputs.get(key).cloned().unwrap_or_default()
}

/// `keys` of `spec` (null when absent), for a view.
pub(crate) fn pick(spec: &Value, keys: &[&str]) -> Map<String, Value> {
    let mut m = Map::new();
    for k in keys {
        m.insert(
            (*k).to_string(),
            spec.get(*k).cloned().unwrap_or(Value::Null),
        );
    }
    m
}

/// The view of a job task that builds in a process (build, freestyle): its repositories,
/// image, package, service and variables (`vars_key`).
pub(crate) fn built_view(job: &JobTask, vars_key: &str) -> Value {
    let s = &job.spec;
    let image = Some(output(job, "IMAGE"))
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| str_of(s, "image").to_string());
    json!({
        "repos": arr_of(s, "repos"),
        "image": image,
        "package": output(job, "PKG_FILE"),
        "service_name": str_of(s, "service_name"),
        "service_module": str_of(s, "service_module"),
        "envs": envs_view(arr_of(s, vars_key)),
    })
}

/// The per-type summary of a job task's spec shown by task detail (spec §2.4), as its type
/// shows it (`workflow::jobs`); the spec itself for an unknown type.
pub fn job_spec_view(job: &JobTask) -> Value {
    match job.kind() {
        Some(ty) => ty.kind().view(job),
        None => job.spec.clone(),
    }
}

/// Seconds a job task has run: 0 before it starts, to its end or to now.
pub fn cost_seconds(job: &JobTask, now: i64) -> i64 {
    match (job.start_time, job.end_time) {
        (0, _) => 0,
        (start, 0) => (now - start).max(0),
        (start, end) => (end - start).max(0),
    }
}
