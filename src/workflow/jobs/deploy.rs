//! `zadig-deploy` and `zadig-helm-chart-deploy`: deploy service modules' images (charts) to an
//! environment, one job task per (service, module) — per service when it names no module.
//!
//! A `zadig-deploy` job task runs inside the server (spec/environments.md §6.4): the module's
//! image is set in the environment through `environment::service::deploy_images` (the image
//! routes' apply path), the workloads' previous and new images are recorded as
//! `replace_resources`, and the rollout is waited for ([`super::rollout`]) unless
//! `skip_check_run_status`. Helm chart deploys are not implemented.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::rollout;
use super::{InputCx, JobKind, JobType, Runs, Spec};
use crate::engine::executor::{JobEnd, ServerJob};
use crate::environment::service::{deploy_images, deployer, env_for_job};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
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
        let from =
            (str_of(&job.spec, "source") == "fromjob").then(|| str_of(&job.spec, "job_name"));
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
                let image = match (str_of(module, "image"), from) {
                    // The image the quoted job produced, rendered when this job starts.
                    ("", Some(b)) => format!("{{{{.job.{b}.{name}.{mname}.output.IMAGE}}}}"),
                    (i, _) => i.to_string(),
                };
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
                "replace_resources",
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
        if self.chart {
            Runs::Missing("Helm chart deploys")
        } else {
            Runs::InServer
        }
    }

    async fn run(&self, _ty: JobType, state: &AppState, job: ServerJob<'_>) -> JobEnd {
        rollout::with_banners(job.log, deploy(state, &job)).await
    }
}

/// Run a `zadig-deploy` job task (spec/environments.md §6.4).
async fn deploy(state: &AppState, job: &ServerJob<'_>) -> JobEnd {
    let spec = job.spec;
    let (project, env_key) = (job.ctx.project.as_str(), str_of(spec, "env"));
    let service = str_of(spec, "service_name");
    if let Err(e) = deployable(spec) {
        return JobEnd::failed(e);
    }
    let images = match images_to_deploy(spec, service) {
        Ok(i) => i,
        Err(e) => return JobEnd::failed(e),
    };
    let env = match env_for_job(state, project, env_key).await {
        Ok(e) => e,
        Err(e) => return JobEnd::failed(e),
    };
    job.log.info(&format!(
        "Start to deploy k8s yaml service {service}, env: {env_key}, namespace: {}, deploy contents: image",
        env.namespace
    ));
    let timeout = match rollout::timeout_field(spec, "seconds") {
        Ok(s) if s > 0 => s,
        Ok(_) => project_timeout_secs(state, project).await,
        Err(e) => return JobEnd::failed(e),
    };
    let deadline = rollout::deadline(state, timeout);
    let deployed = match deploy_as(state, job, (project, env_key, service), &images).await {
        Ok(d) => d,
        Err(e) => return JobEnd::failed(e),
    };
    for c in &deployed.changes {
        job.log.info(&format!(
            "{} {} container {}: {} -> {}",
            c.kind, c.name, c.container, c.origin, c.image
        ));
    }
    let record = rollout::record(&deployed.changes);
    let (cc, ns) = (&deployed.cc, &deployed.namespace);
    let mut end = rollout::finish(state, job, cc, ns, &deployed.workloads, deadline).await;
    end.record = record;
    let image = &images[0].1;
    end.outputs.insert("IMAGE".into(), image.clone());
    end.outputs
        .insert("imageTag".into(), super::build::image_tag(image));
    end
}

/// The (module, image) pairs of the spec's `service_and_images`: each must have an image,
/// and there must be at least one.
fn images_to_deploy(spec: &Value, service: &str) -> Result<Vec<(String, String)>, String> {
    let mut images: Vec<(String, String)> = Vec::new();
    for i in arr_of(spec, "service_and_images") {
        let (module, image) = (str_of(i, "service_module"), str_of(i, "image"));
        if image.is_empty() {
            let why = match str_of(spec, "source") {
                "fromjob" => format!(" (job {} produced none)", str_of(spec, "job_name")),
                _ => String::new(),
            };
            return Err(format!(
                "module {module} of service {service} has no image to deploy{why}"
            ));
        }
        images.push((module.to_string(), image.to_string()));
    }
    if images.is_empty() {
        return Err(format!(
            "service {service} names no module image to deploy (deploy contents: image)"
        ));
    }
    Ok(images)
}

/// Deploy `images` of the service for the task's creator.
async fn deploy_as(
    state: &AppState,
    job: &ServerJob<'_>,
    (project, env_key, service): (&str, &str, &str),
    images: &[(String, String)],
) -> Result<crate::environment::service::Deployed, String> {
    let caller = deployer(state, creator_uid(job)).await?;
    deploy_images(state, project, env_key, service, images, &caller).await
}

/// The uid of the task's creator (the user a deploy job acts for).
pub(crate) fn creator_uid<'a>(job: &'a ServerJob<'_>) -> &'a str {
    job.ctx
        .context
        .get("workflow.task.creator.userId")
        .map_or("", String::as_str)
}

/// Only images are deployed here: a job asking to deploy variables or configuration fails
/// saying so rather than deploying less than it asked.
fn deployable(spec: &serde_json::Value) -> Result<(), String> {
    let contents: Vec<&str> = arr_of(spec, "deploy_contents")
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    let svc = arr_of(spec, "services").first();
    let has_vars = svc.is_some_and(|s| {
        !arr_of(s, "variable_kvs").is_empty() || !str_of(s, "variable_yaml").is_empty()
    });
    let update_config = svc
        .and_then(|s| s.get("update_config"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    if (contents.contains(&"vars") && has_vars) || (contents.contains(&"config") && update_config) {
        return Err(
            "deploying service variables or configuration (deploy_contents vars, config) is not implemented by this server; deploy images only"
                .to_string(),
        );
    }
    Ok(())
}

/// The project's deploy timeout in seconds (`timeout` minutes; 0: the default).
async fn project_timeout_secs(state: &AppState, project: &str) -> i64 {
    match state.projects.get(project).await {
        Ok(Some(p)) if p.timeout > 0 => p.timeout.saturating_mul(60),
        _ => rollout::DEFAULT_TIMEOUT_SECS,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_images_are_deployed() {
        assert!(
            deployable(
                &json!({"deploy_contents": ["image", "vars"], "services": [{"variable_kvs": []}]})
            )
            .is_ok()
        );
        let vars = json!({"deploy_contents": ["image", "vars"],
            "services": [{"variable_kvs": [{"key": "a", "value": "1"}]}]});
        assert!(deployable(&vars).unwrap_err().contains("not implemented"));
        let config = json!({"deploy_contents": ["config"], "services": [{"update_config": true}]});
        assert!(deployable(&config).is_err());
    }
}
