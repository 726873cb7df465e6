//! Validation and normalisation of a workflow definition (spec/workflow.md §2.9), used on
//! create, update and again on the merged definition at execute time.
//!
//! Every failure is a 400 whose description names the offending field by its JSON path
//! (`stages[1].jobs[0].name`), followed by Zadig's text where the spec gives one
//! (`duplicated job name: build`).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::engine::work::Entries;
use crate::error::ApiResult;
use crate::limits;
use crate::validate;
use crate::workflow::error::{Kind, Op, refuse};
use crate::workflow::jobs::JobType;
use crate::workflow::model::{ErrorPolicy, ExecutePolicy, Job, RUN_POLICIES, Workflow, str_of};
use crate::workflow::{approval, bad};

/// `^[a-zA-Z0-9-]+$`: the workflow key.
pub fn is_workflow_key(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn is_cjk(c: char) -> bool {
    ('\u{4e00}'..='\u{9fa5}').contains(&c)
}

/// `^[a-z\u4e00-\u9fa5][a-z0-9\u4e00-\u9fa5-]{0,31}$`: a job name.
pub fn is_job_name(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_ascii_lowercase() || is_cjk(first))
        && s.chars().count() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || is_cjk(c) || c == '-')
}

/// `^[a-zA-Z0-9_]{1,64}$`: an output name.
fn is_output_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Check and normalise a definition in place: defaults filled, legacy freestyle specs
/// converted, approval settings in one spelling. Fails on the first problem with a 400 carrying
/// Zadig's lint code 6545.
pub fn lint(wf: &mut Workflow) -> ApiResult<()> {
    check(wf).map_err(|e| refuse(Kind::BadRequest, Op::LintWorkflow, e.description))
}

fn check(wf: &mut Workflow) -> ApiResult<()> {
    validate::name("name", &wf.name)?;
    if !is_workflow_key(&wf.name) {
        return Err(bad(
            "name",
            "the workflow identifier allows letters, digits and '-' only",
        ));
    }
    validate::name("project", &wf.project)?;
    if wf.display_name.trim().is_empty() {
        wf.display_name = wf.name.clone();
    }
    validate::max_len("display_name", &wf.display_name)?;
    if wf.concurrency_limit < -1 {
        return Err(bad(
            "concurrency_limit",
            format!(
                "must be -1 (unlimited), 0 (not executable) or a positive number, got {}",
                wf.concurrency_limit
            ),
        ));
    }
    lint_params(&mut wf.params)?;
    for (i, ctl) in wf.notify_ctls.iter().enumerate() {
        if !ctl.is_object() {
            return Err(bad(&format!("notify_ctls[{i}]"), "must be an object"));
        }
    }

    let mut stage_names = HashSet::new();
    let mut job_names = HashSet::new();
    for (i, stage) in wf.stages.iter_mut().enumerate() {
        let field = format!("stages[{i}].name");
        validate::name(&field, &stage.name)?;
        if !stage_names.insert(stage.name.clone()) {
            return Err(bad(
                &field,
                format!("duplicated stage name: {}", stage.name),
            ));
        }
        if let Some(approval) = stage.approval.as_mut() {
            if approval.is_null() {
                stage.approval = None;
            } else {
                approval::normalize(approval, &format!("stages[{i}].approval"), true)?;
            }
        }
        approval::ManualExec::read(&stage.manual_exec, &format!("stages[{i}].manual_exec"))?;
        for (j, job) in stage.jobs.iter_mut().enumerate() {
            let field = format!("stages[{i}].jobs[{j}]");
            lint_job(job, &field)?;
            if !job_names.insert(job.name.clone()) {
                return Err(bad(
                    &format!("{field}.name"),
                    format!("duplicated job name: {}", job.name),
                ));
            }
        }
    }
    check_references(wf)
}

fn lint_params(params: &mut [Value]) -> ApiResult<()> {
    use crate::workflow::params::Param;

    let mut names = HashSet::new();
    for (i, p) in params.iter_mut().enumerate() {
        let field = format!("params[{i}]");
        // Every field of the wrong type is a 400 naming it (`params[0].is_credential`): read
        // leniently, a credential sent as `"true"` would be shown and logged in clear.
        let param: Param = crate::workflow::inputs::decode(p, &field)?;
        let Some(m) = p.as_object_mut() else {
            return Err(bad(&field, "must be an object"));
        };
        let name = param.name.as_str();
        validate::name(&format!("{field}.name"), name)?;
        if !names.insert(name.to_string()) {
            return Err(bad(
                &format!("{field}.name"),
                format!("duplicated parameter name: {name}"),
            ));
        }
        if param.kind.is_exported() {
            limits::env_name(&format!("{field}.name"), name)?;
        }
        // The seed's detail shape: every Param has these keys.
        m.insert("type".into(), Value::String(param.kind.as_str().into()));
        for key in ["description", "value", "default"] {
            m.entry(key).or_insert(Value::String(String::new()));
        }
        m.entry("repo").or_insert(Value::Null);
        m.entry("is_credential").or_insert(Value::Bool(false));
    }
    Ok(())
}

/// A credential flag anywhere in a job spec (`envs`, `key_vals`, a service's variables) is a
/// boolean, as Zadig's decoder requires: a flag of another type would be kept as sent and read
/// two ways.
fn check_credential_flags(v: &Value, at: &str) -> ApiResult<()> {
    match v {
        Value::Object(m) => {
            if m.get("is_credential")
                .is_some_and(|f| !matches!(f, Value::Bool(_) | Value::Null))
            {
                return Err(bad(&format!("{at}.is_credential"), "must be a boolean"));
            }
            for (k, c) in m {
                check_credential_flags(c, &format!("{at}.{k}"))?;
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                check_credential_flags(c, &format!("{at}[{i}]"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn lint_job(job: &mut Job, field: &str) -> ApiResult<()> {
    if !is_job_name(&job.name) {
        return Err(bad(
            &format!("{field}.name"),
            format!(
                "job name [{}] did not match ^[a-z\\u4e00-\\u9fa5][a-z0-9\\u4e00-\\u9fa5-]{{0,31}}$",
                job.name
            ),
        ));
    }
    validate::one_of(&format!("{field}.type"), &job.job_type, JobType::NAMES)?;
    check_credential_flags(&job.spec, &format!("{field}.spec"))?;
    validate::one_of(
        &format!("{field}.run_policy"),
        &job.run_policy,
        RUN_POLICIES,
    )?;
    crate::workflow::inputs::decode::<ErrorPolicy>(
        &job.error_policy,
        &format!("{field}.error_policy"),
    )?;
    crate::workflow::inputs::decode::<ExecutePolicy>(
        &job.execute_policy,
        &format!("{field}.execute_policy"),
    )?;
    if job.spec.is_null() {
        job.spec = Value::Object(Map::new());
    }
    let sfield = format!("{field}.spec");
    if !job.spec.is_object() {
        return Err(bad(&sfield, "must be an object"));
    }
    // An unknown type was refused above.
    if let Some(ty) = job.kind() {
        let kind = ty.kind();
        kind.lint(&mut job.spec, &sfield)?;
        if kind.exports_env() {
            check_env_keys(&job.spec, &sfield)?;
        }
    }
    Ok(())
}

/// Every `key` of an `envs` or `key_vals` list anywhere in a job spec (the job's own, or a
/// service's) must be an environment-variable name.
fn check_env_keys(v: &Value, field: &str) -> ApiResult<()> {
    match v {
        Value::Object(m) => {
            for (k, item) in m {
                let f = format!("{field}.{k}");
                match item {
                    Value::Array(list) if k == "envs" || k == "key_vals" => {
                        for (i, kv) in list.iter().enumerate() {
                            if let Some(key) = kv.get("key").and_then(Value::as_str) {
                                limits::env_name(&format!("{f}[{i}].key"), key)?;
                            }
                        }
                    }
                    _ => check_env_keys(item, &f)?,
                }
            }
        }
        Value::Array(list) => {
            for (i, item) in list.iter().enumerate() {
                check_env_keys(item, &format!("{field}[{i}]"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Refuse repository or variable entries the engine could not read: they would fail the job
/// when it runs (400 naming the field).
pub(crate) fn check_entries(kind: Entries, field: &str, list: &[Value]) -> ApiResult<()> {
    crate::engine::work::check_entries(kind, field, list).map_err(|(path, what)| bad(&path, what))
}

pub(crate) fn check_outputs<'a>(
    outputs: impl Iterator<Item = &'a Value>,
    field: &str,
) -> ApiResult<()> {
    for (k, o) in outputs.enumerate() {
        if !is_output_name(str_of(o, "name")) {
            return Err(bad(
                &format!("{field}[{k}].name"),
                "output name must match ^[a-zA-Z0-9_]{1,64}$",
            ));
        }
    }
    Ok(())
}

/// A job that quotes another (`source: fromjob`, a restart's `env_source: fromjob`, a canary
/// release's `from_job`: [`crate::workflow::jobs::JobKind::quotes`]) must quote a job that
/// ends before it starts: a job of an earlier stage, or an earlier job of the same serial stage
/// (jobs of a parallel stage run at the same time). Then each job type's rules across jobs
/// ([`crate::workflow::jobs::JobKind::lint_in`]).
fn check_references(wf: &Workflow) -> ApiResult<()> {
    // job name -> (stage index, position)
    let mut at: HashMap<&str, (usize, usize)> = HashMap::new();
    for (i, s) in wf.stages.iter().enumerate() {
        for (j, job) in s.jobs.iter().enumerate() {
            at.insert(job.name.as_str(), (i, j));
        }
    }
    for (i, s) in wf.stages.iter().enumerate() {
        for (j, job) in s.jobs.iter().enumerate() {
            let Some(kind) = job.kind() else { continue };
            for q in kind.kind().quotes(&job.spec) {
                let field = format!("stages[{i}].jobs[{j}].spec.{}", q.field);
                let target = q.job.as_str();
                if target.is_empty() {
                    let why = match q.flag {
                        Some(flag) => format!("required when `{flag}` is fromjob"),
                        None => "is required".to_string(),
                    };
                    return Err(bad(&field, why));
                }
                let earlier = match at.get(target) {
                    Some(&(ti, _)) if ti < i => true,
                    Some(&(ti, tj)) => ti == i && tj < j && !s.parallel,
                    None => false,
                };
                if !earlier {
                    return Err(bad(
                        &field,
                        format!("can not quote job {target} in job {}", job.name),
                    ));
                }
            }
        }
    }
    for (i, s) in wf.stages.iter().enumerate() {
        for (j, job) in s.jobs.iter().enumerate() {
            if let Some(kind) = job.kind() {
                kind.kind()
                    .lint_in(wf, job, &format!("stages[{i}].jobs[{j}]"))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_job_name("build"));
        assert!(is_job_name("image-release"));
        assert!(is_job_name("构建-1"));
        assert!(!is_job_name("Build"));
        assert!(!is_job_name("1build"));
        assert!(!is_job_name("a_b"));
        assert!(!is_job_name(&"a".repeat(33)));
        assert!(is_job_name(&"a".repeat(32)));
        assert!(is_workflow_key("Work-flow-1"));
        assert!(!is_workflow_key("a_b"));
        assert!(!is_workflow_key(""));
    }
}
