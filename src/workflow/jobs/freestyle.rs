//! `freestyle`: a script job (spec/workflow.md §1.4, §5.9). Its spec comes in the current
//! format (`runtime.installs`, `repos`, `script`, `envs`, `advanced_setting`) or the legacy
//! `properties` + `steps` one (converted at lint, `workflow/legacy.rs`); with
//! `freestyle_type: service_freestyle` it runs once per service. The engine runs its steps in
//! order — tools (checked on the PATH), git (repositories cloned), the script — as a local
//! process.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{InputCx, JobKind, JobType, Runs, Spec};
use crate::engine::executor::{JobContext, PreparedJob, Step};
use crate::engine::kube::placement;
use crate::engine::work::{
    arr, assemble, installs_of, merge_vars, missing_integration, output_names, repos_of, s,
    script_step, timeout_of, vars_of,
};
use crate::error::ApiResult;
use crate::state::AppState;
use crate::workflow::expand::{Expander, nothing_to_run, svc_module};
use crate::workflow::inputs::{
    KvInput, RepoInput, RepoMode, ServiceInput, apply_service_input, decode, merge_kvs,
    merge_repos, pair_of, referenced_services, take_list, with_list,
};
use crate::workflow::model::{Job, arr_of, str_of};
use crate::workflow::task::JobTask;
use crate::workflow::{bad, legacy, lint, task_view};

/// The `freestyle` job type.
pub struct Freestyle;

#[async_trait::async_trait]
impl JobKind for Freestyle {
    fn lint(&self, spec: &mut Value, field: &str) -> ApiResult<()> {
        if let Some(m) = spec.as_object_mut() {
            legacy::to_current(m, field)?;
        }
        lint::check_outputs(
            spec["advanced_setting"]["outputs"]
                .as_array()
                .into_iter()
                .flatten(),
            &format!("{field}.advanced_setting.outputs"),
        )
    }

    fn exports_env(&self) -> bool {
        true
    }

    fn apply_input(&self, cx: &InputCx<'_>, spec: &mut Spec, params: &Value) -> ApiResult<()> {
        apply_input(cx, spec, params)
    }

    fn produced(&self, spec: &Value) -> Vec<Value> {
        crate::workflow::inputs::pairs(arr_of(spec, "services"))
    }

    fn expand(&self, x: &mut Expander<'_>, job: &Job) -> ApiResult<Vec<JobTask>> {
        let spec = &job.spec;
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
            x.per_item(job, "services", &items, &svc_module)
        } else {
            vec![x.single(job)]
        };
        for t in &mut tasks {
            let (props, steps) = legacy::task_steps(&t.spec);
            if let Some(m) = t.spec.as_object_mut() {
                m.insert("properties".into(), props);
                m.insert("steps".into(), steps);
            }
        }
        Ok(tasks)
    }

    fn view(&self, job: &JobTask) -> Value {
        task_view::built_view(job, "envs")
    }

    fn runs(&self) -> Runs {
        Runs::Process
    }

    async fn prepare(
        &self,
        _ty: JobType,
        state: &AppState,
        ctx: &JobContext,
        spec: &Value,
    ) -> Result<PreparedJob, String> {
        let mut job = prepare_job(ctx, spec)?;
        job.placement = placement::resolve(&state.config, &placement::freestyle_runtime(spec))?;
        Ok(job)
    }
}

#[derive(Debug, Default, Deserialize)]
struct FreestyleInput {
    #[serde(default)]
    kv: Vec<KvInput>,
    #[serde(default)]
    repo_info: Vec<RepoInput>,
    #[serde(default)]
    services: Option<Vec<ServiceInput>>,
}

fn apply_input(cx: &InputCx<'_>, spec: &mut Map<String, Value>, params: &Value) -> ApiResult<()> {
    let (field, before, job) = (cx.field, cx.before, cx.job);
    let input: FreestyleInput = decode(params, field)?;
    with_list(spec, "envs", |l| {
        merge_kvs(l, &input.kv, false, &format!("{field}.kv"), job)
    })?;
    let repos = merge_repos(
        arr_of(before, "repos"),
        &input.repo_info,
        RepoMode::Replace,
        &format!("{field}.repo_info"),
    )?;
    spec.insert("repos".into(), Value::Array(repos.clone()));
    match str_of(before, "freestyle_type") {
        "" => Ok(()),
        "service_freestyle" => {
            let fromjob = str_of(before, "source") == "fromjob";
            let candidates = if fromjob {
                let r = str_of(before, "job_name");
                referenced_services(cx.wf, r).ok_or_else(|| {
                    bad(
                        &format!("{field}.services"),
                        format!("FreeStyleJob: refered job {r} not found"),
                    )
                })?
            } else {
                take_list(before, "services")
            };
            let services = match input.services {
                Some(list) => {
                    let envs = take_list(&Value::Object(spec.clone()), "envs");
                    let defaults = (envs, repos);
                    services_input(cx, &list, &candidates, fromjob, &defaults)?
                }
                None => candidates,
            };
            spec.insert("services".into(), Value::Array(services));
            Ok(())
        }
        other => Err(bad(
            field,
            format!("freestyle job type {other} not supported"),
        )),
    }
}

/// The services a service freestyle job runs for, from its input's `services` list; a
/// service without its own variables or repositories gets the job's (`defaults`).
fn services_input(
    cx: &InputCx<'_>,
    list: &[ServiceInput],
    candidates: &[Value],
    fromjob: bool,
    (envs, repos): &(Vec<Value>, Vec<Value>),
) -> ApiResult<Vec<Value>> {
    let sfield = format!("{}.services", cx.field);
    let mut out = Vec::new();
    for (k, s) in list.iter().enumerate() {
        if s.service_name.is_empty() {
            return Err(bad(&format!("{sfield}[{k}].service_name"), "is required"));
        }
        let known = candidates.iter().find(|c| pair_of(c) == s.pair());
        if fromjob && known.is_none() {
            return Err(bad(
                &format!("{sfield}[{k}]"),
                format!(
                    "service {}/{} is not produced by job {}",
                    s.service_name,
                    s.service_module,
                    str_of(cx.before, "job_name")
                ),
            ));
        }
        let mut item = known.cloned().unwrap_or_else(
            || json!({"service_name": s.service_name, "service_module": s.service_module}),
        );
        if let Some(m) = item.as_object_mut() {
            if !m.contains_key("key_vals") {
                m.insert("key_vals".into(), Value::Array(envs.clone()));
            }
            if !m.contains_key("repos") {
                m.insert("repos".into(), Value::Array(repos.clone()));
            }
        }
        apply_service_input(
            &mut item,
            s,
            RepoMode::Replace,
            false,
            &format!("{sfield}[{k}]"),
            cx.job,
        )?;
        out.push(item);
    }
    Ok(out)
}

/// A freestyle job: legacy `properties` + `steps`, or the current format.
fn prepare_job(ctx: &JobContext, spec: &Value) -> Result<PreparedJob, String> {
    let props = spec.get("properties").unwrap_or(&Value::Null);
    let adv = spec.get("advanced_setting").unwrap_or(&Value::Null);
    let mut steps = Vec::new();
    let legacy_steps = arr(spec, "steps");
    if legacy_steps.is_empty() {
        let installs = installs_of(arr(spec.get("runtime").unwrap_or(&Value::Null), "installs"));
        if !installs.is_empty() {
            steps.push(Step::Tools(installs));
        }
        let repos = repos_of(arr(spec, "repos"))?;
        if !repos.is_empty() {
            steps.push(Step::Git(repos));
        }
        let script = s(spec, "script");
        steps.push(script_step(s(spec, "script_type"), script)?);
        if spec
            .get("object_storage_upload")
            .and_then(|o| o.get("enabled"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            return Err(missing_integration(
                "freestyle (object_storage_upload)",
                "object-storage",
            ));
        }
    } else {
        for step in legacy_steps {
            let sspec = step.get("spec").unwrap_or(&Value::Null);
            match s(step, "type") {
                "tools" => steps.push(Step::Tools(installs_of(arr(sspec, "installs")))),
                "git" => steps.push(Step::Git(repos_of(arr(sspec, "repos"))?)),
                t @ ("shell" | "batch_file" | "powershell") => {
                    steps.push(script_step(t, s(sspec, "script"))?);
                }
                "archive" | "object_storage_upload" => {
                    return Err(missing_integration(
                        "freestyle (archive step)",
                        "object-storage",
                    ));
                }
                "perforce" => {
                    return Err(missing_integration("freestyle (perforce step)", "perforce"));
                }
                "debug_before" | "debug_after" | "" => {}
                other => return Err(format!("freestyle step type {other} is not supported")),
            }
        }
    }
    let vars = merge_vars(
        merge_vars(vars_of(arr(props, "envs")), vars_of(arr(spec, "envs"))),
        vars_of(arr(spec, "key_vals")),
    );
    let timeout = props
        .get("timeout")
        .or_else(|| adv.get("timeout"))
        .or_else(|| spec.get("timeout"))
        .and_then(Value::as_i64);
    let mut outputs = output_names(arr(adv, "outputs"));
    outputs.extend(output_names(arr(spec, "outputs")));
    outputs.dedup();
    let service = (s(spec, "service_name"), s(spec, "service_module"));
    let mut extra = Vec::new();
    if !service.0.is_empty() {
        extra.push(("SERVICE_NAME".to_string(), service.0.to_string()));
        extra.push(("SERVICE_MODULE".to_string(), service.1.to_string()));
    }
    Ok(assemble(
        ctx,
        steps,
        vars,
        service,
        extra,
        outputs,
        timeout_of(timeout),
    ))
}
