//! Expanding a merged workflow definition into a task's stages and job tasks
//! (spec/workflow.md §3.5).
//!
//! A job expands as its type says (`workflow::jobs`): one job task per service/module
//! (build, deploy, test, scan, service freestyle, VM deploy), per target (custom deploy) or
//! exactly one (everything else). Each
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

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::workflow::approval::ApprovalSettings;
use crate::workflow::error::{Kind, Op, refuse};
use crate::workflow::model::{Job, Workflow};
use crate::workflow::task::{JobTask, StageTask, Status};

/// Longest job-task name (a Kubernetes-style name: it keys logs and containers).
const MAX_NAME: usize = 63;

/// A 400 refusing to create the task (Zadig's code 6540).
pub(crate) fn refused(what: String) -> ApiError {
    refuse(Kind::BadRequest, Op::CreateTask, what)
}

/// The 400 of a job that expands into no job task.
pub(crate) fn nothing_to_run(job: &str, what: &str) -> ApiError {
    refused(format!("`inputs`: job {job} has {what}"))
}

/// The stages of a task for `wf`; `runs(job)` tells whether a job runs (else it is skipped).
pub fn stages(wf: &Workflow, runs: &dyn Fn(&str) -> bool) -> ApiResult<Vec<StageTask>> {
    let mut used = HashSet::new();
    let mut out = Vec::new();
    for stage in &wf.stages {
        let mut jobs = Vec::new();
        for job in &stage.jobs {
            if runs(&job.name) {
                let mut x = Expander {
                    wf,
                    used: &mut used,
                };
                jobs.extend(match job.kind() {
                    Some(ty) => ty.kind().expand(&mut x, job)?,
                    // Lint refuses unknown types; a stored one runs as one job task (and fails).
                    None => vec![x.single(job)],
                });
            } else {
                let mut t = job_task(job, &[], job.spec.clone(), &mut used);
                t.status = Status::Skipped;
                jobs.push(t);
            }
        }
        let skipped = jobs.iter().all(|j| j.status == Status::Skipped);
        let approval = match &stage.approval {
            Some(stored) if !skipped => {
                let what = format!("stage {}", stage.name);
                let a = ApprovalSettings::read(stored, &format!("{what}.approval"))?;
                a.check_native(&what)?;
                a.stage_task(stored)
            }
            _ => None,
        };
        out.push(StageTask {
            name: stage.name.clone(),
            status: if skipped {
                Status::Skipped
            } else {
                Status::NotRun
            },
            parallel: stage.parallel,
            approval,
            manual_exec: stage.manual_exec.clone(),
            jobs,
            ..StageTask::default()
        });
    }
    Ok(out)
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
    // Zadig's key: the job name and the item's parts, `<job>.<service>[.<module>]`.
    let key = std::iter::once(job.name.as_str())
        .chain(parts.iter().copied())
        .collect::<Vec<_>>()
        .join(".");
    JobTask {
        name: unique_name(&name_parts, used),
        key,
        display_name: display.join("-"),
        origin_name: job.name.clone(),
        job_type: job.job_type.clone(),
        status: Status::NotRun,
        spec,
        run_policy: job.run_policy.clone(),
        error_policy: job.error_policy.clone(),
        execute_policy: job.execute_policy.clone(),
        ..JobTask::default()
    }
}

/// The job's spec without candidate lists, with `list` holding just `item`, whose fields are
/// also set at the top level.
pub(crate) fn narrowed(job: &Job, list: &str, item: &Value) -> Value {
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

/// Expansion state shared by a task's jobs: the definition (for `source: fromjob`) and the
/// job-task names taken so far.
pub struct Expander<'a> {
    pub wf: &'a Workflow,
    used: &'a mut HashSet<String>,
}

impl Expander<'_> {
    /// The job's one job task, with the job's spec.
    pub fn single(&mut self, job: &Job) -> JobTask {
        job_task(job, &[], job.spec.clone(), self.used)
    }

    /// A job task of `job` for the item named by `parts`, with `spec`.
    pub fn task(&mut self, job: &Job, parts: &[&str], spec: Value) -> JobTask {
        job_task(job, parts, spec, self.used)
    }

    /// One job task per item of the spec's `list` (each item as stored, with the names of its
    /// job task), its spec [`narrowed`] to the item.
    pub fn per_item<'v>(
        &mut self,
        job: &Job,
        list: &str,
        items: impl IntoIterator<Item = (&'v Value, Vec<String>)>,
    ) -> Vec<JobTask> {
        items
            .into_iter()
            .map(|(item, names)| {
                let p: Vec<&str> = names.iter().map(String::as_str).collect();
                job_task(job, &p, narrowed(job, list, item), self.used)
            })
            .collect()
    }
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
