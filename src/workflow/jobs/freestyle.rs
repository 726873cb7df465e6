//! `freestyle`: a script job (spec/workflow.md §1.4, §5.9). Its spec comes in the current
//! format (`runtime.installs`, `repos`, `script`, `envs`, `advanced_setting`) or the legacy
//! `properties` + `steps` one (converted at lint, `workflow/legacy.rs`); with
//! `freestyle_type: service_freestyle` it runs once per service. The engine runs its steps in
//! order — tools (checked on the PATH), git (repositories cloned), the script — as a local
//! process.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{InputCx, JobKind, JobType, Runs, ServiceItem, Spec, nullable, spec_of, stored, typed};
use crate::engine::executor::{JobContext, PreparedJob, Step};
use crate::engine::kube::placement::{self, PlacedSpec};
use crate::engine::work::{
    Entries, assemble, installs_of, merge_vars, missing_integration, output_names, repos_of,
    script_step, timeout_of, vars_of,
};
use crate::error::ApiResult;
use crate::state::AppState;
use crate::workflow::expand::{Expander, nothing_to_run};
use crate::workflow::inputs::{
    KvInput, RepoInput, RepoMode, ServiceInput, apply_service_input, decode, merge_kvs,
    merge_repos, referenced_services,
};
use crate::workflow::model::Job;
use crate::workflow::task::JobTask;
use crate::workflow::{bad, legacy, lint, task_view};

/// The `freestyle` job type.
pub struct Freestyle;

/// A freestyle job's spec in the current format (lint converts the legacy one): what input
/// merging and expansion read. The spec itself is stored verbatim.
#[derive(Debug, Default, Deserialize)]
struct JobSpec {
    /// `""` (one job task) or `service_freestyle` (one per service).
    #[serde(default, deserialize_with = "nullable")]
    freestyle_type: String,
    /// `fromjob`: the services are those job `job_name` produces.
    #[serde(default, deserialize_with = "nullable")]
    source: String,
    #[serde(default, deserialize_with = "nullable")]
    job_name: String,
    #[serde(default, deserialize_with = "nullable")]
    services: Vec<ServiceItem>,
    /// Repository objects, merged with inputs as stored.
    #[serde(default, deserialize_with = "nullable")]
    repos: Vec<Value>,
    /// Variables (RuntimeKeyVal objects), merged with inputs as stored.
    #[serde(default, deserialize_with = "nullable")]
    envs: Vec<Value>,
    #[serde(default, deserialize_with = "nullable")]
    advanced_setting: Advanced,
    /// Every other field, kept as sent.
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

/// `advanced_setting` as the engine and lint read it.
#[derive(Debug, Default, Deserialize)]
struct Advanced {
    /// Minutes.
    #[serde(default, deserialize_with = "nullable")]
    timeout: Option<i64>,
    /// `{name, description}` objects.
    #[serde(default, deserialize_with = "nullable")]
    outputs: Vec<Value>,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

#[async_trait::async_trait]
impl JobKind for Freestyle {
    fn lint(&self, spec: &mut Value, field: &str) -> ApiResult<()> {
        if let Some(m) = spec.as_object_mut() {
            legacy::to_current(m, field)?;
        }
        let typed: JobSpec = decode(spec, field)?;
        let _: PlacedSpec = decode(spec, field)?;
        lint::check_entries(Entries::Repos, &format!("{field}.repos"), &typed.repos)?;
        lint::check_entries(Entries::Vars, &format!("{field}.envs"), &typed.envs)?;
        for (k, s) in typed.services.iter().enumerate() {
            let repos = format!("{field}.services[{k}].repos");
            lint::check_entries(Entries::Repos, &repos, &s.repos)?;
        }
        lint::check_outputs(
            typed.advanced_setting.outputs.iter(),
            &format!("{field}.advanced_setting.outputs"),
        )
    }

    fn exports_env(&self) -> bool {
        true
    }

    fn apply_input(&self, cx: &InputCx<'_>, spec: &mut Spec, params: &Value) -> ApiResult<()> {
        apply_input(cx, spec, params)
    }

    fn produced(&self, job: &Job) -> ApiResult<Vec<(String, String)>> {
        let spec: JobSpec = spec_of(job)?;
        Ok(spec.services.iter().map(|s| s.pair()).collect())
    }

    fn expand(&self, x: &mut Expander<'_>, job: &Job) -> ApiResult<Vec<JobTask>> {
        let spec: JobSpec = spec_of(job)?;
        let mut tasks = if spec.freestyle_type == "service_freestyle" {
            let items: Vec<(Value, Vec<String>)> = stored(&job.spec, "services", &spec.services)
                .map(|(t, raw)| {
                    let mut raw = raw.clone();
                    // The service's variables and repositories are the job task's.
                    if let Some(m) = raw.as_object_mut() {
                        if let Some(kv) = m.get("key_vals").cloned() {
                            m.insert("envs".into(), kv);
                        }
                        if t.repos.is_empty() {
                            m.remove("repos");
                        }
                    }
                    (raw, t.names())
                })
                .collect();
            if items.is_empty() {
                return Err(nothing_to_run(
                    &job.name,
                    "no service to run: list services in inputs[].parameters.services",
                ));
            }
            x.per_item(job, "services", items.iter().map(|(v, n)| (v, n.clone())))
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
        let task: TaskSpec =
            typed(spec).map_err(|e| format!("freestyle job task {}: {e}", ctx.job_name))?;
        let placed: PlacedSpec =
            typed(spec).map_err(|e| format!("freestyle job task {}: {e}", ctx.job_name))?;
        let mut job = prepare_job(ctx, &task)?;
        job.placement = placement::resolve(&state.config, &placed.runtime())?;
        Ok(job)
    }
}

#[derive(Debug, Default, Deserialize)]
struct FreestyleInput {
    #[serde(default)]
    kv: Vec<KvInput>,
    #[serde(default)]
    repo_info: Vec<RepoInput>,
    services: Option<Vec<ServiceInput>>,
}

/// A candidate service of a service freestyle job: its (service, module) and the item as
/// stored (or made from what a `fromjob` job produces).
type Candidate = ((String, String), Value);

fn apply_input(cx: &InputCx<'_>, spec: &mut Map<String, Value>, params: &Value) -> ApiResult<()> {
    let (field, job) = (cx.field, cx.job);
    let input: FreestyleInput = decode(params, field)?;
    let before: JobSpec = decode(cx.before, &format!("job {job}.spec"))?;
    let mut envs = before.envs.clone();
    merge_kvs(&mut envs, &input.kv, false, &format!("{field}.kv"), job)?;
    spec.insert("envs".into(), Value::Array(envs.clone()));
    let repos = merge_repos(
        &before.repos,
        &input.repo_info,
        RepoMode::Replace,
        &format!("{field}.repo_info"),
    )?;
    spec.insert("repos".into(), Value::Array(repos.clone()));
    match before.freestyle_type.as_str() {
        "" => Ok(()),
        "service_freestyle" => {
            let fromjob = before.source == "fromjob";
            let candidates: Vec<Candidate> = if fromjob {
                let r = &before.job_name;
                referenced_services(cx.wf, r)?
                    .ok_or_else(|| {
                        bad(
                            &format!("{field}.services"),
                            format!("FreeStyleJob: refered job {r} not found"),
                        )
                    })?
                    .into_iter()
                    .map(|(s, m)| {
                        let item = json!({"service_name": s, "service_module": m});
                        ((s, m), item)
                    })
                    .collect()
            } else {
                stored(cx.before, "services", &before.services)
                    .map(|(t, raw)| (t.pair(), raw.clone()))
                    .collect()
            };
            let services = match input.services {
                Some(list) => {
                    let defaults = (envs, repos);
                    services_input(cx, &before, &list, &candidates, &defaults)?
                }
                None => candidates.into_iter().map(|(_, v)| v).collect(),
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
    before: &JobSpec,
    list: &[ServiceInput],
    candidates: &[Candidate],
    (envs, repos): &(Vec<Value>, Vec<Value>),
) -> ApiResult<Vec<Value>> {
    let sfield = format!("{}.services", cx.field);
    let fromjob = before.source == "fromjob";
    let mut out = Vec::new();
    for (k, s) in list.iter().enumerate() {
        if s.service_name.is_empty() {
            return Err(bad(&format!("{sfield}[{k}].service_name"), "is required"));
        }
        let known = candidates
            .iter()
            .find(|((n, m), _)| (n.as_str(), m.as_str()) == s.pair());
        if fromjob && known.is_none() {
            return Err(bad(
                &format!("{sfield}[{k}]"),
                format!(
                    "service {}/{} is not produced by job {}",
                    s.service_name, s.service_module, before.job_name
                ),
            ));
        }
        let mut item = known.map_or_else(
            || json!({"service_name": s.service_name, "service_module": s.service_module}),
            |(_, v)| v.clone(),
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

/// A freestyle job task's spec (current format, plus the executor's `properties` + `steps`
/// made when the task was created, or legacy steps): what the engine reads. A field of the
/// wrong type fails the job naming it.
#[derive(Debug, Default, Deserialize)]
struct TaskSpec {
    #[serde(default, deserialize_with = "nullable")]
    properties: Properties,
    #[serde(default, deserialize_with = "nullable")]
    advanced_setting: Advanced,
    #[serde(default, deserialize_with = "nullable")]
    steps: Vec<LegacyStep>,
    #[serde(default, deserialize_with = "nullable")]
    runtime: Installs,
    #[serde(default, deserialize_with = "nullable")]
    repos: Vec<Value>,
    #[serde(default, deserialize_with = "nullable")]
    script: String,
    #[serde(default, deserialize_with = "nullable")]
    script_type: String,
    #[serde(default, deserialize_with = "nullable")]
    object_storage_upload: Upload,
    #[serde(default, deserialize_with = "nullable")]
    envs: Vec<Value>,
    #[serde(default, deserialize_with = "nullable")]
    key_vals: Vec<Value>,
    /// Minutes (after `properties.timeout` and `advanced_setting.timeout`).
    #[serde(default, deserialize_with = "nullable")]
    timeout: Option<i64>,
    #[serde(default, deserialize_with = "nullable")]
    outputs: Vec<Value>,
    #[serde(default, deserialize_with = "nullable")]
    service_name: String,
    #[serde(default, deserialize_with = "nullable")]
    service_module: String,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

/// The executor's `properties`: the timeout and the variables.
#[derive(Debug, Default, Deserialize)]
struct Properties {
    #[serde(default, deserialize_with = "nullable")]
    timeout: Option<i64>,
    #[serde(default, deserialize_with = "nullable")]
    envs: Vec<Value>,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

/// `runtime` (and a `tools` step's spec): the tools to find on the PATH.
#[derive(Debug, Default, Deserialize)]
struct Installs {
    #[serde(default, deserialize_with = "nullable")]
    installs: Vec<Value>,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
struct Upload {
    #[serde(default, deserialize_with = "nullable")]
    enabled: bool,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

/// A step of the executor's `steps`: its type and its spec.
#[derive(Debug, Default, Deserialize)]
struct LegacyStep {
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    kind: String,
    #[serde(default, deserialize_with = "nullable")]
    spec: StepSpec,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

/// What a step's spec holds, by its type: `installs` (tools), `repos` (git), `script`.
#[derive(Debug, Default, Deserialize)]
struct StepSpec {
    #[serde(default, deserialize_with = "nullable")]
    installs: Vec<Value>,
    #[serde(default, deserialize_with = "nullable")]
    repos: Vec<Value>,
    #[serde(default, deserialize_with = "nullable")]
    script: String,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

/// A freestyle job: legacy `properties` + `steps`, or the current format.
fn prepare_job(ctx: &JobContext, spec: &TaskSpec) -> Result<PreparedJob, String> {
    let (props, adv) = (&spec.properties, &spec.advanced_setting);
    let mut steps = Vec::new();
    if spec.steps.is_empty() {
        let installs = installs_of("spec.runtime.installs", &spec.runtime.installs)?;
        if !installs.is_empty() {
            steps.push(Step::Tools(installs));
        }
        let repos = repos_of("spec.repos", &spec.repos)?;
        if !repos.is_empty() {
            steps.push(Step::Git(repos));
        }
        steps.push(script_step(&spec.script_type, &spec.script)?);
        if spec.object_storage_upload.enabled {
            return Err(missing_integration(
                "freestyle (object_storage_upload)",
                "object-storage",
            ));
        }
    } else {
        for (i, step) in spec.steps.iter().enumerate() {
            let sspec = &step.spec;
            let field = |list: &str| format!("spec.steps[{i}].spec.{list}");
            match step.kind.as_str() {
                "tools" => steps.push(Step::Tools(installs_of(
                    &field("installs"),
                    &sspec.installs,
                )?)),
                "git" => steps.push(Step::Git(repos_of(&field("repos"), &sspec.repos)?)),
                t @ ("shell" | "batch_file" | "powershell") => {
                    steps.push(script_step(t, &sspec.script)?);
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
        merge_vars(
            vars_of("spec.properties.envs", &props.envs)?,
            vars_of("spec.envs", &spec.envs)?,
        ),
        vars_of("spec.key_vals", &spec.key_vals)?,
    );
    let timeout = props.timeout.or(adv.timeout).or(spec.timeout);
    let mut outputs = output_names(&adv.outputs);
    outputs.extend(output_names(&spec.outputs));
    outputs.dedup();
    let service = (spec.service_name.as_str(), spec.service_module.as_str());
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
