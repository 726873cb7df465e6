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
use super::{InputCx, JobKind, JobType, Runs, Spec, nullable, spec_of, stored, typed};
use crate::engine::executor::{JobEnd, ServerJob};
use crate::environment::service::{deploy_images, deployer, env_for_job};
use crate::error::ApiResult;
use crate::state::AppState;
use crate::workflow::expand::{Expander, narrowed, refused};
use crate::workflow::inputs::{decode, referenced_services, with_list};
use crate::workflow::model::Job;
use crate::workflow::task::JobTask;
use crate::workflow::{bad, task_view};

/// A deploy job; `chart`: a Helm chart deploy, whose services a later `fromjob` job cannot
/// quote.
pub struct Deploy {
    pub chart: bool,
}

/// A deploy job's spec, as defined and as a job task carries it (narrowed to one service
/// module): what is read. The spec itself is stored and carried verbatim.
#[derive(Debug, Default, Deserialize)]
struct DeploySpec {
    #[serde(default, deserialize_with = "nullable")]
    env: String,
    /// `fromjob`: the images are those job `job_name` built.
    #[serde(default, deserialize_with = "nullable")]
    source: String,
    #[serde(default, deserialize_with = "nullable")]
    job_name: String,
    /// What to deploy: `image`, `vars`, `config`.
    #[serde(default, deserialize_with = "nullable")]
    deploy_contents: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    services: Vec<DeployService>,
    /// The documented older flat list; in a job task, the module's image.
    #[serde(default, deserialize_with = "nullable")]
    service_and_images: Vec<ImageItem>,
    /// A job task's service.
    #[serde(default, deserialize_with = "nullable")]
    service_name: String,
    /// A job task's rollout timeout in seconds (0: the project's).
    #[serde(default, deserialize_with = "nullable")]
    timeout: i64,
    /// Pass once the images are set, without waiting for the rollout.
    #[serde(default, deserialize_with = "nullable")]
    skip_check_run_status: bool,
    /// Every other field, kept as sent.
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

impl DeploySpec {
    /// The job whose images are deployed, with `source: fromjob`.
    fn quoted_job(&self) -> Option<&str> {
        (self.source == "fromjob").then_some(self.job_name.as_str())
    }
}

/// A service to deploy and its modules.
#[derive(Debug, Default, Clone, Deserialize)]
struct DeployService {
    #[serde(default, deserialize_with = "nullable")]
    service_name: String,
    #[serde(default, deserialize_with = "nullable")]
    modules: Vec<ImageItem>,
    #[serde(default, deserialize_with = "nullable")]
    variable_kvs: Vec<Value>,
    #[serde(default, deserialize_with = "nullable")]
    variable_yaml: String,
    #[serde(default, deserialize_with = "nullable")]
    update_config: bool,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

/// A `{service_name, service_module, image}` item of `service_and_images`, or a module of a
/// service to deploy (`{service_module, image}`; no image: the `fromjob` job's).
#[derive(Debug, Default, Clone, Deserialize)]
struct ImageItem {
    #[serde(default, deserialize_with = "nullable")]
    service_name: String,
    #[serde(default, deserialize_with = "nullable")]
    service_module: String,
    #[serde(default, deserialize_with = "nullable")]
    image: String,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

#[async_trait::async_trait]
impl JobKind for Deploy {
    fn lint(&self, spec: &mut Value, field: &str) -> ApiResult<()> {
        decode::<DeploySpec>(spec, field).map(drop)
    }

    fn apply_input(&self, cx: &InputCx<'_>, spec: &mut Spec, params: &Value) -> ApiResult<()> {
        apply_input(cx, spec, params)
    }

    fn produced(&self, job: &Job) -> ApiResult<Vec<(String, String)>> {
        if self.chart {
            return Ok(Vec::new());
        }
        let spec: DeploySpec = spec_of(job)?;
        let mut out = Vec::new();
        for s in &spec.services {
            for m in &s.modules {
                out.push((s.service_name.clone(), m.service_module.clone()));
            }
        }
        Ok(out)
    }

    fn expand(&self, x: &mut Expander<'_>, job: &Job) -> ApiResult<Vec<JobTask>> {
        let spec: DeploySpec = spec_of(job)?;
        let env = deploy_env(job, &spec.env)?;
        let from = spec.quoted_job();
        let mut tasks = Vec::new();
        for (svc, raw) in &services(x, job, &spec)? {
            let name = svc.service_name.as_str();
            if svc.modules.is_empty() {
                let mut t = narrowed(job, "services", raw);
                if let Some(m) = t.as_object_mut() {
                    m.insert("service_and_images".into(), Value::Array(Vec::new()));
                }
                tasks.push(x.task(job, &[name], t));
            }
            for (module, raw_module) in stored(raw, "modules", &svc.modules) {
                let mut one = raw.clone();
                if let Some(m) = one.as_object_mut() {
                    m.insert("modules".into(), Value::Array(vec![raw_module.clone()]));
                }
                let mut t = narrowed(job, "services", &one);
                let mname = module.service_module.as_str();
                let image = match (module.image.as_str(), from) {
                    // The image the quoted job produced, rendered when this job starts.
                    ("", Some(b)) => format!("{{{{.job.{b}.{name}.{mname}.output.IMAGE}}}}"),
                    (i, _) => i.to_string(),
                };
                if let Some(m) = t.as_object_mut() {
                    m.insert("service_module".into(), Value::String(mname.to_string()));
                    m.insert("image".into(), Value::String(image.clone()));
                    m.insert(
                        "service_and_images".into(),
                        json!([{"service_name": name, "service_module": mname, "image": image}]),
                    );
                }
                tasks.push(x.task(job, &[name, mname], t));
            }
        }
        some_to_deploy(env, job, tasks)
    }

    fn deploys_to(&self, job: &Job) -> ApiResult<Option<String>> {
        let spec: DeploySpec = spec_of(job)?;
        Ok(Some(spec.env))
    }

    fn touched_services(&self, job: &Job) -> ApiResult<Vec<(String, String)>> {
        let spec: DeploySpec = spec_of(job)?;
        let mut out = Vec::new();
        for s in &spec.services {
            if s.modules.is_empty() {
                out.push((s.service_name.clone(), String::new()));
            }
            for m in &s.modules {
                out.push((s.service_name.clone(), m.service_module.clone()));
            }
        }
        out.extend(
            spec.service_and_images
                .iter()
                .map(|s| (s.service_name.clone(), s.service_module.clone())),
        );
        Ok(out)
    }

    fn view(&self, job: &JobTask) -> Value {
        // The keys of a deploy job task's spec task detail shows as they are.
        const VIEW_KEYS: &[&str] = &[
            "env",
            "production",
            "deploy_contents",
            "skip_check_run_status",
            "variable_kvs",
            "value_merge_strategy",
            "deploy_type",
            "replace_resources",
        ];
        let mut m = task_view::pick(&job.spec, VIEW_KEYS);
        // A job task whose spec is malformed failed naming the field when it ran; its view
        // lists no image.
        let spec: DeploySpec = typed(&job.spec).unwrap_or_default();
        let images: Vec<Value> = spec
            .service_and_images
            .iter()
            .map(|i| {
                let image = Some(task_view::output(job, "IMAGE"))
                    .filter(|o| !o.is_empty())
                    .unwrap_or_else(|| i.image.clone());
                json!({"service_name": i.service_name, "service_module": i.service_module, "image": image})
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
    let spec: DeploySpec = match typed(job.spec) {
        Ok(s) => s,
        Err(e) => {
            return JobEnd::failed(format!("zadig-deploy job task {}: {e}", job.ctx.job_name));
        }
    };
    let (project, env_key) = (job.ctx.project.as_str(), spec.env.as_str());
    let service = spec.service_name.as_str();
    if let Err(e) = deployable(&spec) {
        return JobEnd::failed(e);
    }
    let images = match images_to_deploy(&spec) {
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
    let timeout = match spec.timeout {
        s if s > 0 => s,
        _ => project_timeout_secs(state, project).await,
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
    let mut end = rollout::finish(
        state,
        job,
        spec.skip_check_run_status,
        (cc, ns),
        &deployed.workloads,
        deadline,
    )
    .await;
    end.record = record;
    let image = &images[0].1;
    end.outputs.insert("IMAGE".into(), image.clone());
    end.outputs
        .insert("imageTag".into(), super::build::image_tag(image));
    end
}

/// The (module, image) pairs of the spec's `service_and_images`: each must have an image,
/// and there must be at least one.
fn images_to_deploy(spec: &DeploySpec) -> Result<Vec<(String, String)>, String> {
    let service = &spec.service_name;
    let mut images: Vec<(String, String)> = Vec::new();
    for i in &spec.service_and_images {
        let (module, image) = (&i.service_module, &i.image);
        if image.is_empty() {
            let why = match spec.quoted_job() {
                Some(r) => format!(" (job {r} produced none)"),
                None => String::new(),
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
fn deployable(spec: &DeploySpec) -> Result<(), String> {
    let asks = |what: &str| spec.deploy_contents.iter().any(|c| c == what);
    let svc = spec.services.first();
    let has_vars = svc.is_some_and(|s| !s.variable_kvs.is_empty() || !s.variable_yaml.is_empty());
    let update_config = svc.is_some_and(|s| s.update_config);
    if (asks("vars") && has_vars) || (asks("config") && update_config) {
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

/// The services to deploy, each read and as stored: `services`, else the documented older flat
/// list (`service_and_images`), else — with `source: fromjob` — what the referenced job
/// produces.
fn services(
    x: &Expander<'_>,
    job: &Job,
    spec: &DeploySpec,
) -> ApiResult<Vec<(DeployService, Value)>> {
    if !spec.services.is_empty() {
        return Ok(stored(&job.spec, "services", &spec.services)
            .map(|(t, raw)| (t.clone(), raw.clone()))
            .collect());
    }
    let flat: Vec<ImageItem> = match spec.quoted_job() {
        Some(r) if spec.service_and_images.is_empty() => referenced_services(x.wf, r)?
            .unwrap_or_default()
            .into_iter()
            .map(|(service_name, service_module)| ImageItem {
                service_name,
                service_module,
                ..ImageItem::default()
            })
            .collect(),
        _ => spec.service_and_images.clone(),
    };
    Ok(flat
        .into_iter()
        .map(|i| {
            let raw = json!({
                "service_name": i.service_name,
                "modules": [{"service_module": i.service_module, "image": i.image}],
            });
            let typed = DeployService {
                service_name: i.service_name.clone(),
                modules: vec![i],
                ..DeployService::default()
            };
            (typed, raw)
        })
        .collect())
}

/// The environment `env` a deploy job deploys to; none is a 400 when a task is created.
pub(crate) fn deploy_env<'a>(job: &Job, env: &'a str) -> ApiResult<&'a str> {
    if env.is_empty() {
        return Err(refused(format!(
            "`inputs[].parameters.env_name`: job {} has no environment to deploy to",
            job.name
        )));
    }
    Ok(env)
}

/// A deploy job's job tasks; none (nothing to deploy to `env`) is a 400.
pub(crate) fn some_to_deploy(env: &str, job: &Job, tasks: Vec<JobTask>) -> ApiResult<Vec<JobTask>> {
    if tasks.is_empty() {
        return Err(refused(format!(
            "`inputs[].parameters.service_list`: deploy service is empty for env {env}, job {}",
            job.name
        )));
    }
    Ok(tasks)
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

fn apply_input(cx: &InputCx<'_>, spec: &mut Spec, params: &Value) -> ApiResult<()> {
    let field = cx.field;
    let Some(list) = deploy_input::<DeployServiceInput>(spec, params, field)? else {
        return Ok(());
    };
    let before: DeploySpec = decode(cx.before, &format!("job {}.spec", cx.job))?;
    let configured: Vec<_> = stored(cx.before, "services", &before.services).collect();
    // The services chosen, by name, each as stored (or new) with the modules chosen.
    let mut services: Vec<(&str, Value)> = Vec::new();
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
        let at = match services.iter().position(|(n, _)| *n == s.service_name) {
            Some(at) => at,
            None => {
                let mut base = configured
                    .iter()
                    .find(|(t, _)| t.service_name == s.service_name)
                    .map_or_else(
                        || json!({"service_name": s.service_name}),
                        |(_, raw)| (*raw).clone(),
                    );
                if let Some(m) = base.as_object_mut() {
                    m.insert("modules".into(), json!([]));
                }
                services.push((&s.service_name, base));
                services.len() - 1
            }
        };
        let Some(m) = services[at].1.as_object_mut() else {
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
    spec.insert(
        "services".into(),
        Value::Array(services.into_iter().map(|(_, v)| v).collect()),
    );
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

    fn spec(v: Value) -> DeploySpec {
        typed(&v).unwrap()
    }

    #[test]
    fn only_images_are_deployed() {
        assert!(
            deployable(&spec(
                json!({"deploy_contents": ["image", "vars"], "services": [{"variable_kvs": []}]})
            ))
            .is_ok()
        );
        let vars = json!({"deploy_contents": ["image", "vars"],
            "services": [{"variable_kvs": [{"key": "a", "value": "1"}]}]});
        assert!(
            deployable(&spec(vars))
                .unwrap_err()
                .contains("not implemented")
        );
        let config = json!({"deploy_contents": ["config"], "services": [{"update_config": true}]});
        assert!(deployable(&spec(config)).is_err());
    }

    #[test]
    fn malformed_settings_name_the_field() {
        let e = typed::<DeploySpec>(&json!({"services": [{"update_config": "yes"}]})).unwrap_err();
        assert!(e.starts_with("spec.services[0].update_config:"), "{e}");
        let e = typed::<DeploySpec>(&json!({"env": 1})).unwrap_err();
        assert!(e.starts_with("spec.env:"), "{e}");
        // null reads as absent, as Zadig sends it.
        let s = spec(json!({"services": null, "deploy_contents": null, "timeout": null}));
        assert!(s.services.is_empty() && s.timeout == 0);
    }
}
