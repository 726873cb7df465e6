//! `zadig-deploy` and `zadig-helm-chart-deploy`: deploy service modules' images (charts) to an
//! environment, one job task per service (spec/environments.md §6.3).
//!
//! A `zadig-deploy` job task runs inside the server (spec/environments.md §6.4): its modules'
//! images are set in the environment through `environment::service::deploy_images` (the image
//! routes' apply path), the workloads' previous and new images are recorded as
//! `replace_resources`, and the rollout is waited for ([`super::rollout`]) unless
//! `skip_check_run_status`. With `deploy_contents` `vars` (values given) or `config` (with
//! `update_config`) the service is rendered again — at the revision the environment runs, or
//! the template's latest — and all of it applied. Helm chart deploys are not implemented.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::deploy_common::{
    creator_uid, deploy_env, deploy_input, env_of, project_timeout_secs, some_to_deploy,
};
use super::rollout;
use super::{
    InputCx, JobKind, JobType, Runs, Spec, ended, nullable, spec_of, stored, task_spec, typed,
};
use crate::engine::executor::{JobEnd, ServerJob};
use crate::environment::service::{Rerender, Window, deploy_images, deployer, env_for_job};
use crate::error::ApiResult;
use crate::service_template::RenderVariableKV;
use crate::state::AppState;
use crate::workflow::expand::{Expander, narrowed};
use crate::workflow::inputs::{decode, referenced_services, with_list};
use crate::workflow::model::Job;
use crate::workflow::task::JobTask;
use crate::workflow::{bad, task_view};

/// A deploy job; `chart`: a Helm chart deploy, whose services a later `fromjob` job cannot
/// quote.
pub struct Deploy {
    pub chart: bool,
}

/// A deploy job's spec, as defined and as a job task carries it (narrowed to one service):
/// what is read. The spec itself is stored and carried verbatim.
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
    /// The documented older flat list; in a job task, its modules' images.
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
    variable_kvs: Vec<RenderVariableKV>,
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
        let s: DeploySpec = decode(spec, field)?;
        unknown_content(&s).map_or(Ok(()), |(i, why)| {
            Err(bad(&format!("{field}.deploy_contents[{i}]"), why))
        })
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
            let images: Vec<Value> = stored(raw, "modules", &svc.modules)
                .map(|(module, raw_module)| {
                    let mname = module.service_module.as_str();
                    let image = match (module.image.as_str(), from) {
                        // The image the quoted job produced, rendered when this job starts.
                        ("", Some(b)) => format!("{{{{.job.{b}.{name}.{mname}.output.IMAGE}}}}"),
                        (i, _) => i.to_string(),
                    };
                    let mut item =
                        json!({"service_name": name, "service_module": mname, "image": image});
                    if let (Some(m), Some(n)) = (item.as_object_mut(), raw_module.get("image_name"))
                    {
                        m.insert("image_name".into(), n.clone());
                    }
                    item
                })
                .collect();
            let mut t = narrowed(job, "services", raw);
            if let Some(m) = t.as_object_mut() {
                m.insert("service_and_images".into(), Value::Array(images));
            }
            tasks.push(x.task(job, &[name], t));
        }
        some_to_deploy(env, job, tasks)
    }

    fn deploys_to(&self, job: &Job) -> ApiResult<Option<String>> {
        env_of(job).map(Some)
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
            "yaml_content",
        ];
        let mut m = task_view::pick(&job.spec, VIEW_KEYS);
        // A job task whose spec is malformed failed naming the field when it ran; its view
        // lists no image.
        let spec: DeploySpec = typed(&job.spec).unwrap_or_default();
        let images: Vec<Value> = spec
            .service_and_images
            .iter()
            .map(|i| {
                let image = Some(task_view::output(job, &module_output(&i.service_module, "IMAGE")))
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
        rollout::with_banners(job.log, async { ended(deploy(state, &job).await) }).await
    }
}

/// What `deploy_contents` may name.
const CONTENTS: &[&str] = &["image", "vars", "config"];

/// The first entry of `deploy_contents` that is not one of [`CONTENTS`], and why.
fn unknown_content(spec: &DeploySpec) -> Option<(usize, String)> {
    let (i, c) = spec
        .deploy_contents
        .iter()
        .enumerate()
        .find(|(_, c)| !CONTENTS.contains(&c.as_str()))?;
    Some((
        i,
        format!("must be one of {}, got {c:?}", CONTENTS.join(", ")),
    ))
}

/// Run a `zadig-deploy` job task (spec/environments.md §6.4).
async fn deploy(state: &AppState, job: &ServerJob<'_>) -> Result<JobEnd, String> {
    let spec: DeploySpec = task_spec(job)?;
    let (project, env_key) = (job.ctx.project.as_str(), spec.env.as_str());
    let service = spec.service_name.as_str();
    let plan = Contents::of(&spec)?;
    let env = env_for_job(state, project, env_key).await?;
    job.log.info(&format!(
        "Start to deploy k8s yaml service {service}, env: {env_key}, namespace: {}, deploy contents: {}",
        env.namespace,
        plan.describe()
    ));
    let timeout = match spec.timeout {
        s if s > 0 => s,
        _ => project_timeout_secs(state, project).await,
    };
    let deadline = rollout::deadline(state, timeout);
    let at = (project, env_key, service);
    let deployed = deploy_as(state, job, at, &plan.images, plan.rerender.as_ref()).await?;
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
    // The values deployed, none for images alone (Zadig keeps only those on the task), and
    // the service's YAML as now applied.
    end.record
        .insert("variable_kvs".into(), json!(deployed.values));
    end.record
        .insert("yaml_content".into(), json!(deployed.yaml));
    for (module, image) in &plan.images {
        end.outputs
            .insert(module_output(module, "IMAGE"), image.clone());
        end.outputs.insert(
            module_output(module, "imageTag"),
            super::build::image_tag(image),
        );
    }
    Ok(end)
}

/// A module's output of a deploy job task: `{{.job.<job>.<service>.<module>.output.<name>}}`
/// in the task context (`engine::job_context`), as Zadig.
fn module_output(module: &str, name: &str) -> String {
    format!("{module}.{name}")
}

/// What a job task deploys: module images (`image`), and the service rendered again with new
/// values (`vars`) or at the template's latest revision (`config` with `update_config`).
#[derive(Debug)]
struct Contents {
    images: Vec<(String, String)>,
    rerender: Option<Rerender>,
}

impl Contents {
    /// Read from a job task's spec. No `deploy_contents` deploys images (Zadig's older jobs);
    /// `vars` with no values given changes no value, so it deploys the images alone.
    fn of(spec: &DeploySpec) -> Result<Self, String> {
        let asks = |what: &str| spec.deploy_contents.iter().any(|c| c == what);
        if let Some((i, why)) = unknown_content(spec) {
            return Err(format!("spec.deploy_contents[{i}] {why}"));
        }
        let image = spec.deploy_contents.is_empty() || asks("image");
        let svc = spec.services.first();
        let vars = match svc {
            Some(s) if asks("vars") => {
                if s.variable_kvs.is_empty() && !s.variable_yaml.trim().is_empty() {
                    return Err(format!(
                        "service {} gives its values as variable_yaml, which this server does not read; give them as variable_kvs",
                        spec.service_name
                    ));
                }
                s.variable_kvs.clone()
            }
            _ => Vec::new(),
        };
        let latest = asks("config") && svc.is_some_and(|s| s.update_config);
        let rerender = (!vars.is_empty() || latest).then_some(Rerender { vars, latest });
        let images = if image {
            images_to_deploy(spec)?
        } else {
            Vec::new()
        };
        if images.is_empty() && rerender.is_none() {
            return Err(format!(
                "service {} has nothing to deploy: no module image{}",
                spec.service_name,
                if image {
                    ""
                } else {
                    " asked for (deploy contents lack image), no variable values (vars) and no configuration update (config with update_config)"
                }
            ));
        }
        Ok(Self { images, rerender })
    }

    /// The log's "deploy contents" words.
    fn describe(&self) -> String {
        let mut out = Vec::new();
        if !self.images.is_empty() {
            out.push("image");
        }
        if let Some(r) = &self.rerender {
            if !r.vars.is_empty() {
                out.push("variables");
            }
            if r.latest {
                out.push("configuration");
            }
        }
        out.join(", ")
    }
}

/// The (module, image) pairs of the spec's `service_and_images`: each must have an image.
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
    Ok(images)
}

/// Deploy `images` of the service (rendered again with `rerender`) for the task's creator.
async fn deploy_as(
    state: &AppState,
    job: &ServerJob<'_>,
    at: (&str, &str, &str),
    images: &[(String, String)],
    rerender: Option<&Rerender>,
) -> Result<crate::environment::service::Deployed, String> {
    let caller = deployer(state, creator_uid(job)).await?;
    deploy_images(state, at, (images, rerender), &caller, Window::Refuse).await
}

/// The services to deploy, each read and as stored: `services`, else the documented older flat
/// list (`service_and_images`), else — with `source: fromjob` — what the referenced job
/// produces; a flat list's items are grouped by service.
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
    // One service per name, its modules in the list's order.
    let mut grouped: Vec<DeployService> = Vec::new();
    for i in flat {
        match grouped
            .iter_mut()
            .find(|t| t.service_name == i.service_name)
        {
            Some(t) => t.modules.push(i),
            None => grouped.push(DeployService {
                service_name: i.service_name.clone(),
                modules: vec![i],
                ..DeployService::default()
            }),
        }
    }
    Ok(grouped
        .into_iter()
        .map(|t| {
            let modules: Vec<Value> = t
                .modules
                .iter()
                .map(|m| json!({"service_module": m.service_module, "image": m.image}))
                .collect();
            let raw = json!({"service_name": t.service_name, "modules": modules});
            (t, raw)
        })
        .collect())
}

/// A `service_list` item of a deploy job's execute input (seed 002).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DeployServiceInput {
    service_name: String,
    service_module: String,
    image_name: String,
    value_merge_strategy: String,
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
    fn deploy_contents_say_what_is_deployed() {
        let image = json!({"service_name": "shop", "service_module": "web", "image": "a:1"});
        let with = |contents: Value, svc: Value| {
            Contents::of(&spec(
                json!({"service_name": "shop", "deploy_contents": contents,
                "services": [svc], "service_and_images": [image]}),
            ))
        };
        // No values given: the images alone, as before `vars` was read.
        let c = with(json!(["image", "vars"]), json!({"variable_kvs": []})).unwrap();
        assert_eq!(c.images, [("web".to_string(), "a:1".to_string())]);
        assert!(c.rerender.is_none());
        assert_eq!(c.describe(), "image");
        // Values given: rendered again at the deployed revision.
        let c = with(
            json!(["image", "vars"]),
            json!({"variable_kvs": [{"key": "a", "value": "1"}]}),
        )
        .unwrap();
        let r = c.rerender.as_ref().unwrap();
        assert!(!r.latest && r.vars.len() == 1);
        assert_eq!(c.describe(), "image, variables");
        // `config` with `update_config`, without `image`: the latest revision, no image.
        let c = with(json!(["config"]), json!({"update_config": true})).unwrap();
        assert!(c.images.is_empty() && c.rerender.is_some_and(|r| r.latest && r.vars.is_empty()));
        // Without `update_config` there is nothing to deploy.
        let e = with(json!(["config"]), json!({"update_config": false})).unwrap_err();
        assert!(e.contains("nothing to deploy"), "{e}");
        // No contents at all: images (Zadig's older jobs).
        assert!(with(json!([]), json!({})).unwrap().rerender.is_none());
        let e = with(json!(["image", "secrets"]), json!({})).unwrap_err();
        assert!(e.contains("\"secrets\""), "{e}");
        let e = with(json!(["vars"]), json!({"variable_yaml": "a: 1"})).unwrap_err();
        assert!(e.contains("variable_kvs"), "{e}");
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
