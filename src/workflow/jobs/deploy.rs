//! `zadig-deploy` and `zadig-helm-chart-deploy`: deploy service modules' images (charts) to an
//! environment, one job task per (service, module) — per service when it names no module.
//! Running them needs a Kubernetes cluster, which this server does not drive yet.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::{InputCx, JobKind, Runs, Spec};
use crate::error::{ApiError, ApiResult};
use crate::workflow::expand::{Expander, narrowed, refused};
use crate::workflow::inputs::{decode, referenced_services, take_list, with_list};
use crate::workflow::model::{Job, arr_of, str_of};
use crate::workflow::task::JobTask;
use crate::workflow::{bad, task_view};

/// A deploy job; `chart`: a Helm chart deploy, whose services a later `fromjob` job cannot
/// quote.
pub struct Deploy {
    pub chart: bool,
}

#[async_trait::async_trait]
impl JobKind for Deploy {
    fn apply_input(&self, cx: &InputCx<'_>, spec: &mut Spec, params: &Value) -> ApiResult<()> {
        apply_input(spec, params, cx.field)
    }

    fn produced(&self, spec: &Value) -> Vec<Value> {
        if self.chart {
            return Vec::new();
        }
        let mut out = Vec::new();
        for s in arr_of(spec, "services") {
            for m in arr_of(s, "modules") {
                out.push(json!({"service_name": str_of(s, "service_name"),
                    "service_module": str_of(m, "service_module")}));
            }
        }
        out
    }

    fn expand(&self, x: &mut Expander<'_>, job: &Job) -> ApiResult<Vec<JobTask>> {
        let env = deploy_env(job)?;
        let mut tasks = Vec::new();
        for svc in &services(x, job) {
            let name = str_of(svc, "service_name");
            let modules = arr_of(svc, "modules");
            if modules.is_empty() {
                let mut t = narrowed(job, "services", svc);
                if let Some(m) = t.as_object_mut() {
                    m.insert("service_and_images".into(), Value::Array(Vec::new()));
                }
                tasks.push(x.task(job, &[name], t));
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
                        json!([{"service_name": name, "service_module": mname, "image": image}]),
                    );
                }
                tasks.push(x.task(job, &[name, mname], t));
            }
        }
        if tasks.is_empty() {
            return Err(no_service(env, job));
        }
        Ok(tasks)
    }

    fn deploys_to<'a>(&self, spec: &'a Value) -> Option<&'a str> {
        Some(str_of(spec, "env"))
    }

    fn touched_services(&self, spec: &Value) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for s in arr_of(spec, "services") {
            let modules = arr_of(s, "modules");
            if modules.is_empty() {
                out.push((str_of(s, "service_name").to_string(), String::new()));
            }
            for m in modules {
                out.push((
                    str_of(s, "service_name").to_string(),
                    str_of(m, "service_module").to_string(),
                ));
            }
        }
        out.extend(arr_of(spec, "service_and_images").iter().map(|s| {
            (
                str_of(s, "service_name").to_string(),
                str_of(s, "service_module").to_string(),
            )
        }));
        out
    }

    fn view(&self, job: &JobTask) -> Value {
        let s = &job.spec;
        let mut m = task_view::pick(
            s,
            &[
                "env",
                "production",
                "deploy_contents",
                "skip_check_run_status",
                "variable_kvs",
                "value_merge_strategy",
                "deploy_type",
            ],
        );
        let images: Vec<Value> = arr_of(s, "service_and_images")
            .iter()
            .map(|i| {
                let image = Some(task_view::output(job, "IMAGE"))
                    .filter(|o| !o.is_empty())
                    .unwrap_or_else(|| str_of(i, "image").to_string());
                json!({"service_name": str_of(i, "service_name"), "service_module": str_of(i, "service_module"), "image": image})
            })
            .collect();
        m.insert("service_and_images".into(), Value::Array(images));
        Value::Object(m)
    }

    fn runs(&self) -> Runs {
        Runs::Needs("kubernetes")
    }
}

/// The services to deploy: `services`, else the documented older flat list
/// (`service_and_images`), else — with `source: fromjob` — what the referenced job produces.
fn services(x: &Expander<'_>, job: &Job) -> Vec<Value> {
    let spec = &job.spec;
    let mut services: Vec<Value> = arr_of(spec, "services").to_vec();
    if services.is_empty() {
        let flat: Vec<Value> = if arr_of(spec, "service_and_images").is_empty()
            && str_of(spec, "source") == "fromjob"
        {
            referenced_services(x.wf, str_of(spec, "job_name")).unwrap_or_default()
        } else {
            arr_of(spec, "service_and_images").to_vec()
        };
        for item in flat {
            services.push(json!({
                "service_name": str_of(&item, "service_name"),
                "modules": [{"service_module": str_of(&item, "service_module"), "image": str_of(&item, "image")}],
            }));
        }
    }
    services
}

/// The environment a deploy job deploys to; none is a 400 when a task is created.
pub(crate) fn deploy_env(job: &Job) -> ApiResult<&str> {
    let env = str_of(&job.spec, "env");
    if env.is_empty() {
        return Err(refused(format!(
            "`inputs[].parameters.env_name`: job {} has no environment to deploy to",
            job.name
        )));
    }
    Ok(env)
}

/// The 400 of a deploy job with nothing to deploy.
pub(crate) fn no_service(env: &str, job: &Job) -> ApiError {
    refused(format!(
        "`inputs[].parameters.service_list`: deploy service is empty for env {env}, job {}",
        job.name
    ))
}

#[derive(Debug, Default, Deserialize)]
struct DeployServiceInput {
    #[serde(default)]
    service_name: String,
    #[serde(default)]
    service_module: String,
    #[serde(default)]
    image_name: String,
    #[serde(default)]
    value_merge_strategy: String,
}

/// A deploy job's input (`zadig-deploy`, `zadig-vm-deploy`): the env and the services.
#[derive(Debug, Deserialize)]
#[serde(bound = "S: DeserializeOwned")]
struct DeployInput<S> {
    #[serde(default)]
    env_name: String,
    #[serde(default)]
    service_list: Option<Vec<S>>,
}

impl<S> Default for DeployInput<S> {
    fn default() -> Self {
        Self {
            env_name: String::new(),
            service_list: None,
        }
    }
}

/// Decode a deploy input and apply its `env_name` (an empty one keeps the configured env);
/// the service list when one was given.
pub(crate) fn deploy_input<S: DeserializeOwned>(
    spec: &mut Map<String, Value>,
    params: &Value,
    field: &str,
) -> ApiResult<Option<Vec<S>>> {
    let input: DeployInput<S> = decode(params, field)?;
    if !input.env_name.is_empty() {
        spec.insert("env".into(), Value::String(input.env_name));
    }
    Ok(input.service_list)
}

fn apply_input(spec: &mut Map<String, Value>, params: &Value, field: &str) -> ApiResult<()> {
    let Some(list) = deploy_input::<DeployServiceInput>(spec, params, field)? else {
        return Ok(());
    };
    let stored = take_list(&Value::Object(spec.clone()), "services");
    let mut services: Vec<Value> = Vec::new();
    let mut flat = Vec::new();
    for (k, s) in list.iter().enumerate() {
        let f = format!("{field}.service_list[{k}]");
        if s.service_name.is_empty() {
            return Err(bad(&format!("{f}.service_name"), "is required"));
        }
        crate::validate::one_of(
            &format!("{f}.value_merge_strategy"),
            &s.value_merge_strategy,
            &["", "reuse-values", "override"],
        )?;
        let at = match services
            .iter()
            .position(|v| str_of(v, "service_name") == s.service_name)
        {
            Some(at) => at,
            None => {
                let mut base = stored
                    .iter()
                    .find(|v| str_of(v, "service_name") == s.service_name)
                    .cloned()
                    .unwrap_or_else(|| json!({"service_name": s.service_name}));
                if let Some(m) = base.as_object_mut() {
                    m.insert("modules".into(), json!([]));
                }
                services.push(base);
                services.len() - 1
            }
        };
        let Some(m) = services[at].as_object_mut() else {
            continue;
        };
        if !s.service_module.is_empty() {
            let module = json!({
                "service_module": s.service_module, "image": s.image_name, "image_name": image_base(&s.image_name),
            });
            with_list(m, "modules", |l| {
                l.push(module);
                Ok(())
            })?;
        }
        if !s.value_merge_strategy.is_empty() {
            m.insert("value_merge_strategy".into(), json!(s.value_merge_strategy));
        }
        flat.push(json!({"service_name": s.service_name, "service_module": s.service_module, "image": s.image_name}));
    }
    spec.insert("services".into(), Value::Array(services));
    spec.insert("service_and_images".into(), Value::Array(flat));
    Ok(())
}

/// `registry/ns/name:tag` → `name`.
fn image_base(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split(':').next().unwrap_or(last).to_string()
}
