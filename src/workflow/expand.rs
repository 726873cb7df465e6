//! Expanding a merged workflow definition into a task's stages and job tasks
//! (spec/workflow.md §3.5).
//!
//! A job expands into one job task per service/module (build, deploy, test, scan, service
//! freestyle, VM deploy), per target (custom deploy) or exactly one (everything else). Each
//! job task's `spec` is the job's spec narrowed to that job task: the per-item list holds just
//! the one item, whose fields are also copied to the top level (`service_name`,
//! `service_module`, `build_name`, `key_vals`, `repos`, `image`, …). Freestyle job tasks carry
//! both the current format and the executor's `properties` + `steps` (§5.9).
//!
//! Job-task names follow the documentation's readable scheme — `<service>-<module>-<job>`
//! for per-service tasks, the job name otherwise — lower-cased, at most 63 characters, made
//! unique within the task with a `-2`, `-3` … suffix. Jobs that do not run are kept as one
//! job task with status `skipped`.

use std::collections::HashSet;

use axum::http::StatusCode;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult, codes};
use crate::workflow::inputs::referenced_services;
use crate::workflow::legacy;
use crate::workflow::model::{Job, Stage, Workflow, arr_of, str_of};
use crate::workflow::task::{ApproveUser, JobTask, StageApproval, StageTask, status};

/// Longest job-task name (a Kubernetes-style name: it keys logs and containers).
const MAX_NAME: usize = 63;

fn nothing_to_run(job: &str, what: &str) -> ApiError {
    ApiError::code(
        StatusCode::BAD_REQUEST,
        codes::CREATE_TASK,
        format!("`inputs`: job {job} has {what}"),
    )
}

/// The stages of a task for `wf`; `runs(job)` tells whether a job runs (else it is skipped).
pub fn stages(wf: &Workflow, runs: &dyn Fn(&str) -> bool) -> ApiResult<Vec<StageTask>> {
    let mut used = HashSet::new();
    let mut out = Vec::new();
    for stage in &wf.stages {
        let mut jobs = Vec::new();
        for job in &stage.jobs {
            if runs(&job.name) {
                jobs.extend(job_tasks(wf, job, &mut used)?);
            } else {
                let mut t = job_task(job, &[], job.spec.clone(), &mut used);
                t.status = status::SKIPPED.to_string();
                jobs.push(t);
            }
        }
        let skipped = jobs.iter().all(|j| j.status == status::SKIPPED);
        if !skipped && let Some(a) = &stage.approval {
            check_native_approval(a.get("native_approval"), &format!("stage {}", stage.name))?;
        }
        out.push(StageTask {
            name: stage.name.clone(),
            status: if skipped {
                status::SKIPPED
            } else {
                status::NOT_RUN
            }
            .to_string(),
            parallel: stage.parallel,
            approval: if skipped { None } else { stage_approval(stage) },
            manual_exec: stage.manual_exec.clone(),
            jobs,
            ..StageTask::default()
        });
    }
    Ok(out)
}

/// A stage's enabled approval as the task records it.
fn stage_approval(stage: &Stage) -> Option<StageApproval> {
    let a = stage.approval.as_ref()?;
    if !a.get("enabled").and_then(Value::as_bool).unwrap_or(false) {
        return None;
    }
    let na = a.get("native_approval").cloned().unwrap_or(Value::Null);
    let mut extra = std::collections::BTreeMap::new();
    if let Some(m) = a.as_object() {
        for (k, v) in m {
            if !["enabled", "type", "description"].contains(&k.as_str()) {
                extra.insert(k.clone(), v.clone());
            }
        }
    }
    Some(StageApproval {
        enabled: true,
        kind: str_of(a, "type").to_string(),
        approve_users: approvers(&na),
        timeout: na.get("timeout").and_then(Value::as_i64).unwrap_or(0),
        needed_approvers: na
            .get("needed_approvers")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        description: str_of(a, "description").to_string(),
        extra,
        ..StageApproval::default()
    })
}

/// The approvers of a `native_approval` object, with no vote yet.
pub fn approvers(native: &Value) -> Vec<ApproveUser> {
    arr_of(native, "approve_users")
        .iter()
        .map(|u| ApproveUser {
            user_id: str_of(u, "user_id").to_string(),
            user_name: str_of(u, "user_name").to_string(),
            ..ApproveUser::default()
        })
        .collect()
}

/// Zadig's checks of a native approval when a task is created.
fn check_native_approval(native: Option<&Value>, what: &str) -> ApiResult<()> {
    let Some(na) = native.filter(|v| v.is_object()) else {
        return Ok(());
    };
    let users = arr_of(na, "approve_users").len();
    let needed = na
        .get("needed_approvers")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let err = |d: String| ApiError::code(StatusCode::BAD_REQUEST, codes::CREATE_TASK, d);
    if users == 0 {
        return Err(err(format!("{what}: num of approve-users is 0")));
    }
    if usize::try_from(needed).is_ok_and(|n| n > users) {
        return Err(err(format!(
            "{what}: all approve users should not less than needed approvers"
        )));
    }
    Ok(())
}

/// Lower-case, `[a-z0-9-]` and letters of other scripts only, at most [`MAX_NAME`] characters,
/// unique in `used`.
fn unique_name(parts: &[&str], used: &mut HashSet<String>) -> String {
    let raw = parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("-");
    let clean: String = raw
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric()) {
                c
            } else {
                '-'
            }
        })
        .take(MAX_NAME)
        .collect();
    if used.insert(clean.clone()) {
        return clean;
    }
    (2..)
        .map(|n| {
            let suffix = format!("-{n}");
            let head: String = clean.chars().take(MAX_NAME - suffix.len()).collect();
            format!("{head}{suffix}")
        })
        .find(|c| used.insert(c.clone()))
        .unwrap_or(clean)
}

/// One job task of `job` for the item named by `parts` (service, module …).
fn job_task(job: &Job, parts: &[&str], spec: Value, used: &mut HashSet<String>) -> JobTask {
    let mut name_parts: Vec<&str> = parts.to_vec();
    name_parts.push(&job.name);
    let mut display: Vec<&str> = vec![&job.name];
    display.extend(parts.iter().filter(|p| !p.is_empty()));
    JobTask {
        name: unique_name(&name_parts, used),
        key: job.name.clone(),
        display_name: display.join("-"),
        origin_name: job.name.clone(),
        job_type: job.job_type.clone(),
        status: status::NOT_RUN.to_string(),
        spec,
        run_policy: job.run_policy.clone(),
        error_policy: job.error_policy.clone(),
        execute_policy: job.execute_policy.clone(),
        ..JobTask::default()
    }
}

/// The job's spec without candidate lists, with `list` holding just `item`, whose fields are
/// also set at the top level.
fn narrowed(job: &Job, list: &str, item: &Value) -> Value {
    let mut spec: Map<String, Value> = job
        .spec
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !k.ends_with("_options") && !k.starts_with("default_"))
        .collect();
    if let Some(m) = item.as_object() {
        for (k, v) in m {
            spec.insert(k.clone(), v.clone());
        }
    }
    spec.insert(list.to_string(), Value::Array(vec![item.clone()]));
    Value::Object(spec)
}

fn job_tasks(wf: &Workflow, job: &Job, used: &mut HashSet<String>) -> ApiResult<Vec<JobTask>> {
    let spec = &job.spec;
    let per_item = |list: &str,
                    items: &[Value],
                    parts: &dyn Fn(&Value) -> Vec<String>,
                    used: &mut HashSet<String>| {
        items
            .iter()
            .map(|item| {
                let p = parts(item);
                let p: Vec<&str> = p.iter().map(String::as_str).collect();
                job_task(job, &p, narrowed(job, list, item), used)
            })
            .collect::<Vec<_>>()
    };
    let svc_module = |v: &Value| {
        vec![
            str_of(v, "service_name").to_string(),
            str_of(v, "service_module").to_string(),
        ]
    };
    let tasks = match job.job_type.as_str() {
        "zadig-build" => {
            let items = arr_of(spec, "service_and_builds");
            if items.is_empty() {
                return Err(nothing_to_run(
                    &job.name,
                    "no service to build: list services in inputs[].parameters.service_list",
                ));
            }
            per_item("service_and_builds", items, &svc_module, used)
        }
        "zadig-deploy" | "zadig-helm-chart-deploy" | "zadig-vm-deploy" => {
            deploy_tasks(wf, job, used)?
        }
        "custom-deploy" => {
            let items = arr_of(spec, "targets");
            if items.is_empty() {
                return Err(nothing_to_run(
                    &job.name,
                    "no target to deploy: list targets in inputs[].parameters.target_list",
                ));
            }
            per_item(
                "targets",
                items,
                &|t: &Value| {
                    // "<WorkloadType>/<workload>/<container>" → workload, container
                    str_of(t, "target")
                        .split('/')
                        .skip(1)
                        .map(str::to_string)
                        .collect()
                },
                used,
            )
        }
        "zadig-test" | "zadig-scanning" => {
            let (type_key, service_type, services, modules) = if job.job_type == "zadig-test" {
                (
                    "test_type",
                    "service_test",
                    "service_and_tests",
                    "test_modules",
                )
            } else {
                (
                    "scanning_type",
                    "service_scanning",
                    "service_and_scannings",
                    "scannings",
                )
            };
            let tasks = if str_of(spec, type_key) == service_type {
                per_item(services, arr_of(spec, services), &svc_module, used)
            } else {
                per_item(
                    modules,
                    arr_of(spec, modules),
                    &|m: &Value| vec![str_of(m, "name").to_string()],
                    used,
                )
            };
            if tasks.is_empty() {
                return Err(nothing_to_run(&job.name, "nothing to test or scan"));
            }
            tasks
        }
        "freestyle" => {
            let mut tasks = if str_of(spec, "freestyle_type") == "service_freestyle" {
                let items: Vec<Value> = arr_of(spec, "services")
                    .iter()
                    .map(|s| {
                        let mut s = s.clone();
                        // The service's variables and repositories are the job task's.
                        if let Some(m) = s.as_object_mut() {
                            if let Some(kv) = m.get("key_vals").cloned() {
                                m.insert("envs".into(), kv);
                            }
                            if arr_of(&Value::Object(m.clone()), "repos").is_empty() {
                                m.remove("repos");
                            }
                        }
                        s
                    })
                    .collect();
                if items.is_empty() {
                    return Err(nothing_to_run(
                        &job.name,
                        "no service to run: list services in inputs[].parameters.services",
                    ));
                }
                per_item("services", &items, &svc_module, used)
            } else {
                vec![job_task(job, &[], spec.clone(), used)]
            };
            for t in &mut tasks {
                let (props, steps) = legacy::task_steps(&t.spec);
                if let Some(m) = t.spec.as_object_mut() {
                    m.insert("properties".into(), props);
                    m.insert("steps".into(), steps);
                }
            }
            tasks
        }
        "approval" => {
            if ["", "native"].contains(&str_of(spec, "type")) {
                check_native_approval(spec.get("native_approval"), &format!("job {}", job.name))?;
            }
            vec![job_task(job, &[], spec.clone(), used)]
        }
        _ => vec![job_task(job, &[], spec.clone(), used)],
    };
    Ok(tasks)
}

/// Deploy jobs: one job task per (service, module) — per service when it names no module;
/// with `source: fromjob` and no services listed, the referenced job's services.
fn deploy_tasks(wf: &Workflow, job: &Job, used: &mut HashSet<String>) -> ApiResult<Vec<JobTask>> {
    let spec = &job.spec;
    let env = str_of(spec, "env");
    if env.is_empty() {
        return Err(ApiError::code(
            StatusCode::BAD_REQUEST,
            codes::CREATE_TASK,
            format!(
                "`inputs[].parameters.env_name`: job {} has no environment to deploy to",
                job.name
            ),
        ));
    }
    let mut tasks = Vec::new();
    if job.job_type == "zadig-vm-deploy" {
        for item in arr_of(spec, "service_and_vm_deploys") {
            let name = str_of(item, "service_name").to_string();
            tasks.push(job_task(
                job,
                &[&name],
                narrowed(job, "service_and_vm_deploys", item),
                used,
            ));
        }
    } else {
        let mut services: Vec<Value> = arr_of(spec, "services").to_vec();
        if services.is_empty() {
            // The documented older list, or what the referenced build produces.
            let flat: Vec<Value> = if arr_of(spec, "service_and_images").is_empty()
                && str_of(spec, "source") == "fromjob"
            {
                referenced_services(wf, str_of(spec, "job_name")).unwrap_or_default()
            } else {
                arr_of(spec, "service_and_images").to_vec()
            };
            for item in flat {
                services.push(serde_json::json!({
                    "service_name": str_of(&item, "service_name"),
                    "modules": [{"service_module": str_of(&item, "service_module"), "image": str_of(&item, "image")}],
                }));
            }
        }
        for svc in &services {
            let name = str_of(svc, "service_name");
            let modules = arr_of(svc, "modules");
            if modules.is_empty() {
                let mut t = narrowed(job, "services", svc);
                if let Some(m) = t.as_object_mut() {
                    m.insert("service_and_images".into(), Value::Array(Vec::new()));
                }
                tasks.push(job_task(job, &[name], t, used));
            }
            for module in modules {
                let mut one = svc.clone();
                if let Some(m) = one.as_object_mut() {
                    m.insert("modules".into(), Value::Array(vec![module.clone()]));
                }
                let mut t = narrowed(job, "services", &one);
                let mname = str_of(module, "service_module");
                let image = str_of(module, "image");
                if let Some(m) = t.as_object_mut() {
                    m.insert("service_module".into(), Value::String(mname.to_string()));
                    m.insert("image".into(), Value::String(image.to_string()));
                    m.insert(
                        "service_and_images".into(),
                        serde_json::json!([{"service_name": name, "service_module": mname, "image": image}]),
                    );
                }
                tasks.push(job_task(job, &[name, mname], t, used));
            }
        }
    }
    if tasks.is_empty() {
        return Err(ApiError::code(
            StatusCode::BAD_REQUEST,
            codes::CREATE_TASK,
            format!(
                "`inputs[].parameters.service_list`: deploy service is empty for env {env}, job {}",
                job.name
            ),
        ));
    }
    Ok(tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_clean_and_unique() {
        let mut used = HashSet::new();
        assert_eq!(
            unique_name(&["Svc_A", "mod.1", "build"], &mut used),
            "svc-a-mod-1-build"
        );
        assert_eq!(
            unique_name(&["svc-a", "mod-1", "build"], &mut used),
            "svc-a-mod-1-build-2"
        );
        assert_eq!(unique_name(&["", "build"], &mut used), "build");
        let long = unique_name(&[&"x".repeat(100)], &mut used);
        assert_eq!(long.chars().count(), MAX_NAME);
        let long2 = unique_name(&[&"x".repeat(100)], &mut used);
        assert!(long2.ends_with("-2") && long2.chars().count() == MAX_NAME);
        assert_eq!(unique_name(&["构建"], &mut used), "构建");
    }
}
