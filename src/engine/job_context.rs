//! What a job task sees of its task: the rendering context (`{{.workflow.params.x}}`,
//! `{{.job.<key>.output.X}}`, …), the [`JobContext`] handed to the executor, and the
//! evaluation of a job's `execute_policy` (spec/workflow.md §5).

use std::collections::BTreeMap;

use serde_json::Value;

use super::executor::JobContext;
use crate::workflow::model::ExecutePolicy;
use crate::workflow::params::Param;
use crate::workflow::task::{JobTask, Task};

/// The task context for rendering (`{{.workflow.params.x}}`, `{{.job.<key>.output.X}}`, …);
/// `Err` names a task parameter that does not decode (see [`job_context`]).
pub(super) fn context_of(task: &Task) -> Result<BTreeMap<String, String>, String> {
    let params = task_params(task)?;
    let mut ctx = BTreeMap::new();
    let mut put = |k: String, v: String| {
        ctx.insert(k, v);
    };
    put("project".into(), task.project_name.clone());
    put("project.id".into(), task.project_name.clone());
    put("project.name".into(), task.project_name.clone());
    put("workflow.id".into(), task.workflow_name.clone());
    put("workflow.name".into(), task.workflow_name.clone());
    put(
        "workflow.display_name".into(),
        task.workflow_display_name.clone(),
    );
    put("workflow.task.id".into(), task.task_id.to_string());
    put("workflow.task.creator".into(), task.task_creator.clone());
    put(
        "workflow.task.creator.id".into(),
        task.task_creator_account.clone(),
    );
    put(
        "workflow.task.creator.userId".into(),
        task.task_creator_id.clone(),
    );
    put(
        "workflow.task.timestamp".into(),
        task.create_time.to_string(),
    );
    for p in params {
        put(format!("workflow.params.{}", p.name), p.value);
    }
    for s in &task.stages {
        for j in &s.jobs {
            let key = job_key(j);
            put(format!("job.{key}.status"), j.status.to_string());
            for (k, v) in &j.outputs {
                // A deploy job task records each module's outputs as `<module>.<name>` (output
                // names have no dot): `{{.job.<job>.<service>.<module>.output.IMAGE}}`.
                let at = match k.split_once('.') {
                    Some((module, name)) => format!("job.{key}.{module}.output.{name}"),
                    None => format!("job.{key}.output.{k}"),
                };
                put(at, v.clone());
            }
            for list in ["envs", "key_vals"] {
                for kv in j
                    .spec
                    .get(list)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(k) = kv.get("key").and_then(Value::as_str) {
                        put(format!("job.{key}.{k}"), value_text(kv.get("value")));
                    }
                }
            }
        }
    }
    Ok(ctx)
}

pub(super) fn value_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    }
}

/// A job task's key in the context: the workflow job name, plus `.<service>.<module>` for a
/// service module's job task (`{{.job.build.svc.mod.output.IMAGE}}`), `.<service>` for a
/// service's (deploy, restart). Built from the job's name rather than the job task's `key`,
/// which names other items too (a custom deploy's workload).
pub fn job_key(j: &JobTask) -> String {
    let base = [&j.origin_name, &j.key, &j.name]
        .into_iter()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_default();
    let svc = j
        .spec
        .get("service_name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let module = j
        .spec
        .get("service_module")
        .and_then(Value::as_str)
        .unwrap_or("");
    let scope = match module {
        "" => format!(".{svc}"),
        m => format!(".{svc}.{m}"),
    };
    if svc.is_empty() || base.ends_with(&scope) {
        base
    } else {
        format!("{base}{scope}")
    }
}

/// The task's parameters, typed; `Err` names the field that does not decode.
fn task_params(task: &Task) -> Result<Vec<Param>, String> {
    Param::read_all(&task.params).map_err(|e| format!("task parameter {e}"))
}

/// What the executor gets of job task `job` of `task`: its spec, the parameters exported to
/// its environment, the values masked in its log and the rendering context.
///
/// A stored task parameter that does not decode (a task stored before lint refused
/// `"is_credential": "true"`) is not skipped nor read with a default — that would log a
/// credential in clear: `Err` names the field (`params[0].is_credential: …`) and the runner
/// fails the job with it, as a malformed job spec fails it (`jobs::typed`).
pub(super) fn job_context(task: &Task, job: &JobTask) -> Result<JobContext, String> {
    let mut params = Vec::new();
    let mut secrets = Vec::new();
    for p in task_params(task)? {
        if p.is_credential {
            secrets.push(p.value.clone());
        }
        if !p.name.is_empty() && p.kind.is_exported() {
            params.push((p.name, p.value));
        }
    }
    Ok(JobContext {
        project: task.project_name.clone(),
        workflow: task.workflow_name.clone(),
        task_id: task.task_id,
        job_name: job.name.clone(),
        job_type: job.job_type.clone(),
        spec: job.spec.clone(),
        params,
        secrets,
        context: context_of(task)?,
        creator: task.task_creator.clone(),
    })
}

/// Whether a job runs under its `execute_policy` ([`ExecutePolicy`]), its rules rendered over
/// the task context; `Err` names a malformed field of a policy stored before lint checked it.
pub fn execute_policy(policy: &Value, ctx: &BTreeMap<String, String>) -> Result<bool, String> {
    let policy = ExecutePolicy::of(policy)?;
    Ok(policy.runs(|v| super::render::render_str(&value_text(Some(v)), ctx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_policy_rules() {
        let ctx: BTreeMap<String, String> =
            [("workflow.params.env".to_string(), "prod".to_string())].into();
        let p = serde_json::json!({"type": "execute", "match_rule": "all",
            "rules": [{"field": "{{.workflow.params.env}}", "verb": "=", "value": "prod"}]});
        assert_eq!(execute_policy(&p, &ctx), Ok(true));
        let p = serde_json::json!({"type": "skip", "match_rule": "any",
            "rules": [{"field": "{{.workflow.params.env}}", "verb": "contains", "value": "pro"}]});
        assert_eq!(execute_policy(&p, &ctx), Ok(false));
        assert_eq!(execute_policy(&Value::Null, &ctx), Ok(true));
        let p = serde_json::json!({"type": "", "match_rule": null, "rules": [
            {"field": "{{.workflow.params.env}}", "verb": "not-in", "value": "dev, qa"},
            {"field": 7, "verb": "==", "value": "7"}]});
        assert_eq!(execute_policy(&p, &ctx), Ok(true));
        let bad = serde_json::json!({"rules": [{"field": "a", "verb": "~", "value": "b"}]});
        let err = execute_policy(&bad, &ctx).unwrap_err();
        assert!(err.contains("execute_policy.rules[0].verb"), "{err}");
        let bad = serde_json::json!({"type": "sometimes", "rules": []});
        assert!(
            execute_policy(&bad, &ctx)
                .unwrap_err()
                .contains("execute_policy.type")
        );
    }

    #[test]
    fn params_are_read_typed_and_credentials_masked() {
        let job = JobTask::default();
        let mut task = Task {
            params: vec![
                serde_json::json!({"name": "TOKEN", "type": "string", "value": "s3cr3t", "is_credential": true}),
                serde_json::json!({"name": "src", "type": "repo", "value": "r", "repo": null}),
                serde_json::json!({"name": "V", "value": "1.2", "is_credential": null}),
            ],
            ..Task::default()
        };
        let ctx = job_context(&task, &job).unwrap();
        assert_eq!(ctx.secrets, ["s3cr3t"]);
        assert_eq!(
            ctx.params,
            [
                ("TOKEN".into(), "s3cr3t".into()),
                ("V".into(), "1.2".into())
            ]
        );
        assert_eq!(ctx.context["workflow.params.src"], "r");
        assert_eq!(ctx.context["workflow.params.V"], "1.2");

        // A credential flag stored as a string is not taken for "not a credential": the job
        // fails naming the field.
        task.params[0]["is_credential"] = serde_json::json!("true");
        let err = job_context(&task, &job).unwrap_err();
        assert!(err.contains("params[0].is_credential"), "{err}");
        assert!(context_of(&task).is_err());
    }

    #[test]
    fn job_keys() {
        let mut j = JobTask {
            name: "job-0-0-0-build".into(),
            key: "build".into(),
            spec: serde_json::json!({"service_name": "svc", "service_module": "mod"}),
            ..JobTask::default()
        };
        assert_eq!(job_key(&j), "build.svc.mod");
        j.key = "build.svc.mod".into();
        assert_eq!(job_key(&j), "build.svc.mod");
        // A service's job task (deploy): its key names the service, no module.
        j.key = "deploy.svc".into();
        j.spec = serde_json::json!({"service_name": "svc"});
        assert_eq!(job_key(&j), "deploy.svc");
    }
}
