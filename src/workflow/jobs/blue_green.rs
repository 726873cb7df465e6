//! `k8s-blue-green-deploy` and `k8s-blue-green-release` (Zadig's v2 jobs, spec/environments.md
//! §6.6): a blue copy of a service's Deployment with the new images beside the running
//! (green) one, then the switch. Both run inside the server, one job task per service (key
//! `<job>.<service>`), for a task creator allowed to change the environment.
//!
//! The green Deployment is the one Deployment the service applies in the environment; the
//! green Service the one of its Services selecting that Deployment's pods.
//! - **Deploy** labels the green pods `zadig-blue-green-version: origin` and adds that label
//!   to the green Service's selector (so it keeps routing to them alone), creates the job's
//!   blue Service (`blue_service_yaml`) and `<deployment>-blue` — the green Deployment with the
//!   job's images, its pods labelled `zadig-blue-green-version: blue` — and waits for it.
//! - **Release** (its `from_job` names the deploy job) points the green Service at the blue
//!   pods, deploys the images to the green Deployment as `zadig-deploy` does (the environment
//!   records them), waits for its rollout, points the Service back at the green pods and
//!   deletes the blue copies.
//! - When the task ends, whatever its status, what a deploy set up is undone
//!   ([`JobKind::clean`]): the Service's selector and the pods' labels restored, the blue
//!   copies deleted — a blue copy lives for its task only, as in Zadig.

use std::collections::BTreeMap;

use kube::api::Patch;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::canary::deployment_ref;
use super::custom_deploy::allowed_client;
use super::deploy_common::{
    creator_uid, deploy_env, env_of, project_timeout_secs, some_to_deploy, whole_services,
};
use super::rollout;
use super::{
    InputCx, JobKind, JobType, Quote, Runs, Spec, ended, nullable, spec_of, stored, task_spec,
    typed,
};
use crate::cluster::client::ClusterClient;
use crate::cluster::service::client_for;
use crate::engine::executor::{JobEnd, JobStatus, ServerJob};
use crate::environment::kube as k;
use crate::environment::model::ResourceRef;
use crate::environment::service::{applied_objects, deploy_images, deployer, env_for_job};
use crate::error::{ApiResult, ErrorKind};
use crate::state::AppState;
use crate::workflow::expand::{Expander, narrowed, refused};
use crate::workflow::inputs::decode;
use crate::workflow::model::{Job, str_of};
use crate::workflow::task::JobTask;
use crate::workflow::{bad, task_view};

/// The label telling green pods (`origin`) from blue ones (`blue`), Zadig's.
const VERSION_LABEL: &str = "zadig-blue-green-version";
const ORIGIN: &str = "origin";
const BLUE: &str = "blue";
/// What a blue Deployment's name adds to the green one's (Zadig's).
const BLUE_SUFFIX: &str = "-blue";
/// How long a deleted blue Deployment may take to be gone.
const DELETE_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// A blue-green deploy (`release: false`) or release job.
pub struct BlueGreen {
    pub release: bool,
}

/// A blue-green job's spec, as defined (`services`) and as its job tasks carry it (one
/// service's fields at the top level): what is read; the spec is stored verbatim.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BlueGreenSpec {
    /// Empty for Zadig's older (v1) jobs, which Zadig no longer runs either.
    #[serde(deserialize_with = "nullable")]
    version: String,
    #[serde(deserialize_with = "nullable")]
    env: String,
    #[serde(deserialize_with = "nullable")]
    services: Vec<BlueGreenService>,
    /// A release job's deploy job.
    #[serde(deserialize_with = "nullable")]
    from_job: String,
    /// A job task's service.
    #[serde(flatten)]
    service: BlueGreenService,
}

/// A service to deploy blue: its blue Service and the images of its modules (containers).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct BlueGreenService {
    #[serde(deserialize_with = "nullable")]
    service_name: String,
    #[serde(deserialize_with = "nullable")]
    blue_service_yaml: String,
    #[serde(deserialize_with = "nullable")]
    service_and_image: Vec<ModuleImage>,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct ModuleImage {
    #[serde(deserialize_with = "nullable")]
    service_module: String,
    #[serde(deserialize_with = "nullable")]
    image: String,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

impl BlueGreenService {
    /// The (module, image) pairs to deploy.
    fn images(&self) -> Vec<(String, String)> {
        self.service_and_image
            .iter()
            .map(|m| (m.service_module.clone(), m.image.clone()))
            .collect()
    }
}

/// Where a deploy put the blue copies, and the green objects it changed: recorded on the job
/// task once it changes the cluster, read back to undo it. These keys are removed from a job
/// task's spec when it is made, so only the run can set them.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
struct Placed {
    cluster_id: String,
    namespace: String,
    green_deployment_name: String,
    green_service_name: String,
    /// The green Deployment's pod selector (the pods labelled `origin`).
    green_selector: BTreeMap<String, String>,
    blue_deployment_name: String,
    blue_service_name: String,
}

const PLACED_KEYS: &[&str] = &[
    "cluster_id",
    "namespace",
    "green_deployment_name",
    "green_service_name",
    "green_selector",
    "blue_deployment_name",
    "blue_service_name",
];

impl Placed {
    fn record(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ServiceInput {
    service_name: String,
    image_name: String,
}

#[derive(Debug, Default, Deserialize)]
struct BlueGreenInput {
    service_list: Option<Vec<ServiceInput>>,
}

#[async_trait::async_trait]
impl JobKind for BlueGreen {
    /// A release quotes its deploy job, `from_job`, always; a deploy quotes none.
    fn quotes(&self, spec: &Value) -> Vec<Quote> {
        if !self.release {
            return Vec::new();
        }
        vec![Quote {
            field: "from_job",
            flag: None,
            job: str_of(spec, "from_job").to_string(),
        }]
    }

    fn lint(&self, spec: &mut Value, field: &str) -> ApiResult<()> {
        let s: BlueGreenSpec = decode(spec, field)?;
        if self.release {
            if s.from_job.is_empty() {
                return Err(bad(
                    &format!("{field}.from_job"),
                    "names the k8s-blue-green-deploy job to release",
                ));
            }
            return Ok(());
        }
        if s.version.is_empty() {
            return Err(bad(
                &format!("{field}.version"),
                "this blue-green job is of Zadig's older kind (no version), which is not supported: create it again",
            ));
        }
        Ok(())
    }

    /// `service_list` sets the image of services of the deploy job (Zadig's
    /// `BlueGreenDeployJobInput`): of the service's one module, or of the module named as the
    /// image is; a service or module the job cannot tell is a 400 naming the field.
    fn apply_input(&self, cx: &InputCx<'_>, spec: &mut Spec, params: &Value) -> ApiResult<()> {
        if self.release {
            return crate::workflow::inputs::record_as_is(spec, params, cx.field);
        }
        let input: BlueGreenInput = decode(params, cx.field)?;
        let Some(list) = input.service_list else {
            return Ok(());
        };
        let before: BlueGreenSpec = decode(cx.before, &format!("job {}.spec", cx.job))?;
        let mut services: Vec<Value> = stored(cx.before, "services", &before.services)
            .map(|(_, raw)| raw.clone())
            .collect();
        for (k, s) in list.iter().enumerate() {
            let at = |f: &str| format!("{}.service_list[{k}].{f}", cx.field);
            let Some(i) = before
                .services
                .iter()
                .position(|t| t.service_name == s.service_name)
            else {
                return Err(bad(
                    &at("service_name"),
                    format!("the job has no service {:?}", s.service_name),
                ));
            };
            let modules = &before.services[i].service_and_image;
            let m = module_for(modules, &s.image_name).ok_or_else(|| {
                bad(
                    &at("image_name"),
                    format!(
                        "service {} has modules {}: name the image as one of them",
                        s.service_name,
                        modules
                            .iter()
                            .map(|m| m.service_module.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
            if let Some(image) = services
                .get_mut(i)
                .and_then(|v| v.get_mut("service_and_image"))
                .and_then(|v| v.get_mut(m))
                .and_then(Value::as_object_mut)
            {
                image.insert("image".into(), json!(s.image_name));
            }
        }
        spec.insert("services".into(), Value::Array(services));
        Ok(())
    }

    fn expand(&self, x: &mut Expander<'_>, job: &Job) -> ApiResult<Vec<JobTask>> {
        let spec: BlueGreenSpec = spec_of(job)?;
        // A release takes its deploy job's environment and services.
        let deploy = if self.release {
            let from = spec.from_job.as_str();
            x.wf.job(from)
                .filter(|q| q.kind() == Some(JobType::K8sBlueGreenDeploy))
                .ok_or_else(|| {
                    refused(format!(
                        "`from_job`: job {} releases {from:?}, which is not a k8s-blue-green-deploy job of the workflow",
                        job.name
                    ))
                })?
        } else {
            job
        };
        let source: BlueGreenSpec = spec_of(deploy)?;
        let env = deploy_env(deploy, &source.env)?;
        let mut tasks = Vec::new();
        for (i, (s, raw)) in stored(&deploy.spec, "services", &source.services).enumerate() {
            let blue = blue_service(&s.blue_service_yaml).map_err(|why| {
                refused(format!(
                    "`services[{i}].blue_service_yaml`: job {}, service {}: {why}",
                    deploy.name, s.service_name
                ))
            })?;
            if let Some(m) = s.service_and_image.iter().find(|m| m.image.is_empty()) {
                return Err(refused(format!(
                    "`inputs[].parameters.service_list`: job {}, service {}: module {} has no image to deploy",
                    deploy.name, s.service_name, m.service_module
                )));
            }
            let mut one = narrowed(deploy, "services", raw);
            if let Some(m) = one.as_object_mut() {
                for key in PLACED_KEYS {
                    m.remove(*key);
                }
                if self.release {
                    m.extend(job.spec.as_object().cloned().unwrap_or_default());
                    m.insert("services".into(), json!([raw]));
                }
                m.insert("blue_service_name".into(), json!(name_of(&blue)));
            }
            tasks.push(x.task(job, &[&s.service_name], one));
        }
        some_to_deploy(env, job, tasks)
    }

    fn deploys_to(&self, job: &Job) -> ApiResult<Option<String>> {
        (!self.release).then(|| env_of(job)).transpose()
    }

    fn touched_services(&self, job: &Job) -> ApiResult<Vec<(String, String)>> {
        if self.release {
            return Ok(Vec::new());
        }
        let spec: BlueGreenSpec = spec_of(job)?;
        Ok(whole_services(
            spec.services.into_iter().map(|s| s.service_name).collect(),
        ))
    }

    fn view(&self, job: &JobTask) -> Value {
        const VIEW_KEYS: &[&str] = &[
            "env",
            "production",
            "service_name",
            "service_and_image",
            "namespace",
            "green_deployment_name",
            "green_service_name",
            "blue_deployment_name",
            "blue_service_name",
            "replace_resources",
        ];
        Value::Object(task_view::pick(&job.spec, VIEW_KEYS))
    }

    fn runs(&self) -> Runs {
        Runs::InServer
    }

    async fn run(&self, _ty: JobType, state: &AppState, job: ServerJob<'_>) -> JobEnd {
        let (spec, cc, plan) = match prepare(state, &job).await {
            Ok(p) => p,
            Err(e) => return JobEnd::failed(e),
        };
        let (ns, timeout) = (
            plan.placed.namespace.clone(),
            project_timeout_secs(state, &job.ctx.project).await,
        );
        let deadline = rollout::deadline(state, timeout);
        let at = At {
            cc: &cc,
            ns: &ns,
            job: &job,
        };
        if self.release {
            let mut end = ended(release(state, &at, &spec, &plan.placed, deadline).await);
            end.record.extend(plan.placed.record());
            return end;
        }
        if let Err(e) = still_free(&at, &plan.placed).await {
            return JobEnd::failed(e);
        }
        // From here on the cluster changes: the record tells the clean-up what to undo.
        let mut end = ended(create_blue(state, &at, &plan, deadline).await);
        end.record.extend(plan.placed.record());
        end
    }

    /// Undo what a deploy set up (see the module's doc); nothing when it changed nothing.
    async fn clean(&self, state: &AppState, _project: &str, job: &JobTask) {
        if self.release {
            return;
        }
        let Ok(placed) = typed::<Placed>(&job.spec) else {
            return;
        };
        if placed.blue_deployment_name.is_empty() {
            return;
        }
        let done = match client_for(state, &placed.cluster_id).await {
            Ok(cc) => restore(&cc, &placed, &|m| tracing::info!(job = %job.name, "{m}")).await,
            Err(e) => Err(e.description),
        };
        if let Err(e) = done {
            tracing::warn!(job = %job.name, "cannot undo the blue-green deploy of {}: {e}", job.name);
        }
    }
}

/// The module of `modules` an input's image is for: the only one, or the one named as the
/// image's repository (`reg/ns/web:1.2` is module `web`); its index.
fn module_for(modules: &[ModuleImage], image: &str) -> Option<usize> {
    if modules.len() == 1 {
        return Some(0);
    }
    let repo = image.rsplit('/').next().unwrap_or(image);
    let name = repo.split([':', '@']).next().unwrap_or(repo);
    modules.iter().position(|m| m.service_module == name)
}

/// `metadata.name` of an object.
fn name_of(o: &Value) -> &str {
    o.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The string map at `ptr` of `o` (labels, a selector).
fn labels_at(o: &Value, ptr: &str) -> BTreeMap<String, String> {
    o.pointer(ptr)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether every label of `selector` is in `labels`.
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A job's blue Service from its YAML: a Service with a name and a selector.
fn blue_service(yaml: &str) -> Result<Value, String> {
    if yaml.trim().is_empty() {
        return Err("the blue service YAML is empty".into());
    }
    let o: Value = serde_yaml_ng::from_str(yaml)
        .map_err(|e| format!("the blue service YAML does not parse: {e}"))?;
    if str_of(&o, "kind") != "Service" || name_of(&o).is_empty() {
        return Err("the blue service YAML is not a Service with a name".into());
    }
    if labels_at(&o, "/spec/selector").is_empty() {
        return Err(format!("blue service {} has no selector", name_of(&o)));
    }
    Ok(o)
}

/// What a job task works on: the objects it creates and the names of all it touches.
#[derive(Debug)]
struct Plan {
    placed: Placed,
    blue_deployment: Value,
    blue_service: Value,
}

/// The blue copies of the green objects among `objects` (a service's, as applied in
/// namespace `ns` of cluster `cluster_id`) for `svc`; the error is the job's.
fn plan(
    objects: &[Value],
    (cluster_id, ns): (&str, &str),
    svc: &BlueGreenService,
) -> Result<Plan, String> {
    let name = &svc.service_name;
    let of_kind = |kind: &'static str| objects.iter().filter(move |o| str_of(o, "kind") == kind);
    let green = match of_kind("Deployment").collect::<Vec<_>>()[..] {
        [one] => one,
        [] => return Err(format!("service {name} has no deployment")),
        _ => return Err(format!("service {name} has more than one deployment")),
    };
    let green_name = name_of(green);
    let selector = labels_at(green, "/spec/selector/matchLabels");
    if selector.is_empty() {
        return Err(format!("service {name} deployment selector is empty"));
    }
    let routed: Vec<&Value> = of_kind("Service")
        .filter(|s| {
            let sel = labels_at(s, "/spec/selector");
            !sel.is_empty() && selects(&sel, &selector)
        })
        .collect();
    let green_service = match routed[..] {
        [one] => name_of(one),
        [] => {
            return Err(format!(
                "service {name} has no k8s service selecting the pods of deployment {green_name}"
            ));
        }
        _ => {
            return Err(format!(
                "service {name} has more than one k8s service selecting the pods of deployment {green_name}: {}",
                routed
                    .iter()
                    .map(|s| name_of(s))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    };
    let mut blue_service = blue_service(&svc.blue_service_yaml)?;
    let blue_service_name = name_of(&blue_service).to_string();
    if blue_service_name == green_service {
        return Err(format!(
            "blue service {blue_service_name} has the name of the green one"
        ));
    }
    blue_service["metadata"]["namespace"] = json!(ns);
    let blue_name = format!("{green_name}{BLUE_SUFFIX}");
    let blue_deployment = blue_copy(green, &blue_name, svc)?;
    let blue_pods = labels_at(&blue_deployment, "/spec/template/metadata/labels");
    if !selects(&labels_at(&blue_service, "/spec/selector"), &blue_pods) {
        return Err(format!(
            "service {name}: blue service {blue_service_name} does not select the pods of {blue_name}"
        ));
    }
    Ok(Plan {
        placed: Placed {
            cluster_id: cluster_id.into(),
            namespace: ns.into(),
            green_deployment_name: green_name.into(),
            green_service_name: green_service.into(),
            green_selector: selector,
            blue_deployment_name: blue_name,
            blue_service_name,
        },
        blue_deployment,
        blue_service,
    })
}

/// Deployment `green` as `name`: Zadig's release labels, `zadig-blue-green-version: blue` on
/// its pods and in its selector, the job's images on their containers (one the Deployment
/// lacks is the job's error).
fn blue_copy(green: &Value, name: &str, svc: &BlueGreenService) -> Result<Value, String> {
    let mut blue = green.clone();
    blue["metadata"]["name"] = json!(name);
    let labels = [
        ("zadigx-release-type", "blue-green"),
        ("zadigx-release-service-name", svc.service_name.as_str()),
    ];
    set_labels(&mut blue, "/metadata/labels", &labels);
    set_labels(
        &mut blue,
        "/spec/selector/matchLabels",
        &[(VERSION_LABEL, BLUE)],
    );
    set_labels(
        &mut blue,
        "/spec/template/metadata/labels",
        &[(VERSION_LABEL, BLUE)],
    );
    let containers = blue
        .pointer_mut("/spec/template/spec/containers")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| format!("deployment {} has no containers", name_of(green)))?;
    for (module, image) in svc.images() {
        let c = containers
            .iter_mut()
            .find(|c| str_of(c, "name") == module)
            .ok_or_else(|| {
                format!(
                    "container {module} not found in deployment {}",
                    name_of(green)
                )
            })?;
        c["image"] = json!(image);
    }
    Ok(blue)
}

/// Add `pairs` to the string map at `ptr` of `o`, creating it.
fn set_labels(o: &mut Value, ptr: &str, pairs: &[(&str, &str)]) {
    let mut at = &mut *o;
    for part in ptr.trim_start_matches('/').split('/') {
        if !at.get(part).is_some_and(Value::is_object) {
            at[part] = json!({});
        }
        at = &mut at[part];
    }
    for (k, v) in pairs {
        at[*k] = json!(v);
    }
}

/// A job task's spec, cluster client and plan: its service as applied in its environment,
/// for a task creator allowed to change it.
async fn prepare(
    state: &AppState,
    job: &ServerJob<'_>,
) -> Result<(BlueGreenSpec, ClusterClient, Plan), String> {
    let spec: BlueGreenSpec = task_spec(job)?;
    let env = env_for_job(state, &job.ctx.project, &spec.env).await?;
    let cc = allowed_client(state, job, &env.cluster_id, &env.namespace).await?;
    let name = &spec.service.service_name;
    let svc = env.service(name).ok_or_else(|| {
        format!(
            "service {name} is not deployed in {}: a blue-green deploy copies what the environment runs",
            env.label()
        )
    })?;
    let plan = plan(
        &applied_objects(&env, svc),
        (&env.cluster_id, &env.namespace),
        &spec.service,
    )?;
    Ok((spec, cc, plan))
}

/// Where a job task runs.
struct At<'a> {
    cc: &'a ClusterClient,
    ns: &'a str,
    job: &'a ServerJob<'a>,
}

fn service_ref(name: &str) -> ResourceRef {
    ResourceRef {
        api_version: "v1".into(),
        kind: "Service".into(),
        plural: "services".into(),
        namespaced: true,
        name: name.into(),
    }
}

fn pod_ref(name: &str) -> ResourceRef {
    ResourceRef {
        api_version: "v1".into(),
        kind: "Pod".into(),
        plural: "pods".into(),
        namespaced: true,
        name: name.into(),
    }
}

/// Merge-patch `body` into object `r`; `what` names the change in the error.
async fn merge(
    cc: &ClusterClient,
    ns: &str,
    r: &ResourceRef,
    body: Value,
    what: &str,
) -> Result<(), String> {
    k::patch(cc, ns, r, &Patch::Merge(&body))
        .await
        .map_err(|e| format!("{what} error: {}", e.description))
}

/// Point Service `name`'s selector at the pods of `version` (`None`: at all the Deployment's
/// pods again).
async fn route(
    cc: &ClusterClient,
    ns: &str,
    name: &str,
    version: Option<&str>,
) -> Result<(), String> {
    let body = json!({"spec": {"selector": {VERSION_LABEL: version}}});
    merge(
        cc,
        ns,
        &service_ref(name),
        body,
        &format!("update service {name} selector"),
    )
    .await
}

/// Set (or, with `None`, remove) the version label of the pods selected by `selector`; how many.
async fn label_pods(
    cc: &ClusterClient,
    ns: &str,
    selector: &BTreeMap<String, String>,
    version: Option<&str>,
) -> Result<usize, String> {
    let pods = k::pods(cc, ns, selector)
        .await
        .map_err(|e| format!("list pods error: {}", e.description))?;
    let mut n = 0;
    for p in pods {
        let name = p.metadata.name.unwrap_or_default();
        let has = p
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(VERSION_LABEL))
            .map(String::as_str);
        if has == version {
            continue;
        }
        let body = json!({"metadata": {"labels": {VERSION_LABEL: version}}});
        // A pod gone meanwhile (replaced by a rollout) needs no label.
        match k::patch(cc, ns, &pod_ref(&name), &Patch::Merge(&body)).await {
            Ok(()) => n += 1,
            Err(e) if e.kind == ErrorKind::NotFound => {}
            Err(e) => return Err(format!("label pod {name} error: {}", e.description)),
        }
    }
    Ok(n)
}

/// Neither blue copy may exist yet (a Deployment or Service of that name is someone's).
async fn still_free(at: &At<'_>, placed: &Placed) -> Result<(), String> {
    for r in [
        deployment_ref(&placed.blue_deployment_name),
        service_ref(&placed.blue_service_name),
    ] {
        let found = k::get(at.cc, at.ns, &r)
            .await
            .map_err(|e| format!("can't read {} {}: {}", r.kind, r.name, e.description))?;
        if found.is_some() {
            return Err(format!(
                "blue {} {} already exists in namespace {}: delete it, or let the task that made it end",
                r.kind.to_lowercase(),
                r.name,
                at.ns
            ));
        }
    }
    Ok(())
}

/// Deploy: keep the green Service on the green pods, create the blue copies and wait for them.
async fn create_blue(
    state: &AppState,
    at: &At<'_>,
    plan: &Plan,
    deadline: (i64, i64),
) -> Result<JobEnd, String> {
    let (p, log) = (&plan.placed, at.job.log);
    let n = label_pods(at.cc, at.ns, &p.green_selector, Some(ORIGIN)).await?;
    log.info(&format!("add origin label to {n} pods"));
    route(at.cc, at.ns, &p.green_service_name, Some(ORIGIN)).await?;
    log.info(&format!(
        "add origin label selector to service: {}",
        p.green_service_name
    ));
    for (r, o) in [
        (service_ref(&p.blue_service_name), &plan.blue_service),
        (
            deployment_ref(&p.blue_deployment_name),
            &plan.blue_deployment,
        ),
    ] {
        let kind = r.kind.to_lowercase();
        k::apply(at.cc, at.ns, &r, o)
            .await
            .map_err(|e| format!("create blue {kind}: {} error: {}", r.name, e.description))?;
        log.info(&format!("create blue {kind}: {} success", r.name));
    }
    let blue = [deployment_ref(&p.blue_deployment_name)];
    Ok(rollout::finish(state, at.job, false, (at.cc, at.ns), &blue, deadline).await)
}

/// Release: route the green Service to the blue pods, deploy the images to the green
/// Deployment and wait for it, then route back and delete the blue copies.
async fn release(
    state: &AppState,
    at: &At<'_>,
    spec: &BlueGreenSpec,
    p: &Placed,
    deadline: (i64, i64),
) -> Result<JobEnd, String> {
    let log = at.job.log;
    let blue = k::get(at.cc, at.ns, &deployment_ref(&p.blue_deployment_name))
        .await
        .map_err(|e| {
            format!(
                "can't read deployment {}: {}",
                p.blue_deployment_name, e.description
            )
        })?;
    if blue.is_none() {
        return Err(format!(
            "blue deployment {} not found: job {} did not create it",
            p.blue_deployment_name, spec.from_job
        ));
    }
    route(at.cc, at.ns, &p.green_service_name, Some(BLUE)).await?;
    log.info(&format!(
        "service {} routes to the blue deployment {}",
        p.green_service_name, p.blue_deployment_name
    ));
    let caller = deployer(state, creator_uid(at.job)).await?;
    let service = (
        at.job.ctx.project.as_str(),
        spec.env.as_str(),
        spec.service.service_name.as_str(),
    );
    let deployed = deploy_images(state, service, &spec.service.images(), None, &caller).await?;
    for c in &deployed.changes {
        log.info(&format!(
            "{} {} container {}: {} -> {}",
            c.kind, c.name, c.container, c.origin, c.image
        ));
    }
    let mut end = rollout::finish(
        state,
        at.job,
        false,
        (at.cc, at.ns),
        &deployed.workloads,
        deadline,
    )
    .await;
    end.record = rollout::record(&deployed.changes);
    if end.status == JobStatus::Passed {
        restore(at.cc, p, &|m| log.info(m)).await?;
        log.info(&format!(
            "blue-green deployment: {} release successfully",
            p.green_deployment_name
        ));
    }
    Ok(end)
}

/// Undo a deploy: the green Service selects all the green Deployment's pods again, the blue
/// copies are deleted, the pods' version labels removed. Each step is skipped when done.
async fn restore(
    cc: &ClusterClient,
    p: &Placed,
    say: &(dyn Fn(&str) + Sync),
) -> Result<(), String> {
    let ns = p.namespace.as_str();
    let green = k::service(cc, ns, &p.green_service_name)
        .await
        .map_err(|e| {
            format!(
                "can't read service {}: {}",
                p.green_service_name, e.description
            )
        })?;
    let selected = green
        .and_then(|s| s.spec)
        .and_then(|s| s.selector)
        .is_some_and(|s| s.contains_key(VERSION_LABEL));
    if selected {
        route(cc, ns, &p.green_service_name, None).await?;
        say(&format!(
            "service {} selects all pods of deployment {} again",
            p.green_service_name, p.green_deployment_name
        ));
    }
    k::delete_and_wait(
        cc,
        ns,
        &deployment_ref(&p.blue_deployment_name),
        DELETE_WITHIN,
    )
    .await
    .map_err(|e| {
        format!(
            "delete blue deployment {} error: {}",
            p.blue_deployment_name, e.description
        )
    })?;
    k::delete(cc, ns, &service_ref(&p.blue_service_name))
        .await
        .map_err(|e| {
            format!(
                "delete blue service {} error: {}",
                p.blue_service_name, e.description
            )
        })?;
    say(&format!(
        "blue deployment {} and blue service {} deleted",
        p.blue_deployment_name, p.blue_service_name
    ));
    let n = label_pods(cc, ns, &p.green_selector, None).await?;
    if n > 0 {
        say(&format!("remove origin label from {n} pods"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> Vec<Value> {
        vec![
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "ns"},
                "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "cache"},
                "spec": {"selector": {"app": "cache"}}}),
        ]
    }

    fn service(yaml: &str, image: &str) -> BlueGreenService {
        BlueGreenService {
            service_name: "shop".into(),
            blue_service_yaml: yaml.into(),
            service_and_image: vec![ModuleImage {
                service_module: "web".into(),
                image: image.into(),
                _extra: Map::new(),
            }],
            _extra: Map::new(),
        }
    }

    const BLUE_YAML: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web-blue\nspec:\n  selector:\n    app: web\n    zadig-blue-green-version: blue\n";

    #[test]
    fn plans_the_blue_copies_of_the_green_objects() {
        let p = plan(&shop(), ("c1", "ns"), &service(BLUE_YAML, "nginx:1.27")).unwrap();
        assert_eq!(p.placed.green_deployment_name, "web");
        assert_eq!(p.placed.green_service_name, "web");
        assert_eq!(p.placed.blue_deployment_name, "web-blue");
        assert_eq!(p.placed.blue_service_name, "web-blue");
        assert_eq!(p.blue_service["metadata"]["namespace"], "ns");
        let d = &p.blue_deployment;
        assert_eq!(d["metadata"]["name"], "web-blue");
        assert_eq!(d["metadata"]["labels"]["zadigx-release-type"], "blue-green");
        assert_eq!(d["spec"]["selector"]["matchLabels"][VERSION_LABEL], "blue");
        assert_eq!(
            d["spec"]["template"]["metadata"]["labels"][VERSION_LABEL],
            "blue"
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1.27"
        );
        assert_eq!(p.placed.record()["green_selector"], json!({"app": "web"}));
    }

    #[test]
    fn refuses_what_it_cannot_copy() {
        let e =
            |objects: &[Value], svc: BlueGreenService| plan(objects, ("", "ns"), &svc).unwrap_err();
        assert!(e(&shop()[1..], service(BLUE_YAML, "x")).contains("has no deployment"));
        let mut two = shop();
        two.push(json!({"kind": "Service", "metadata": {"name": "web2"}, "spec": {"selector": {"app": "web"}}}));
        assert!(e(&two, service(BLUE_YAML, "x")).contains("more than one k8s service"));
        assert!(e(&shop(), service("", "x")).contains("YAML is empty"));
        let same = BLUE_YAML.replace("web-blue", "web");
        assert!(e(&shop(), service(&same, "x")).contains("has the name of the green one"));
        let other = BLUE_YAML.replace("app: web", "app: other");
        assert!(e(&shop(), service(&other, "x")).contains("does not select the pods of web-blue"));
        let mut svc = service(BLUE_YAML, "x");
        svc.service_and_image[0].service_module = "ghost".into();
        assert!(e(&shop(), svc).contains("container ghost not found in deployment web"));
    }

    #[test]
    fn an_input_image_names_its_module() {
        let m = |name: &str| ModuleImage {
            service_module: name.into(),
            image: String::new(),
            _extra: Map::new(),
        };
        assert_eq!(module_for(&[m("web")], "reg/any:1"), Some(0));
        let two = [m("web"), m("api")];
        assert_eq!(module_for(&two, "reg.io/team/api:1.2"), Some(1));
        assert_eq!(module_for(&two, "api@sha256:ab"), Some(1));
        assert_eq!(module_for(&two, "reg/other:1"), None);
    }
}
