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
//!   copies deleted — a blue copy lives for its task only, as in Zadig. A late clean-up
//!   (retried in the background) touches only what is still the deploy's own (module
//!   `undo`).

mod plan;
mod switch;
mod undo;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use self::plan::{Plan, blue_service, module_for, name_of, plan};
use self::switch::{create_blue, release, still_free};
use self::undo::{restore, undo};
use super::deploy_common::{
    creator_uid, deploy_env, env_of, lint_release, project_timeout_secs, released_job,
    service_images, some_to_deploy, whole_services,
};
use super::rollout;
use super::{
    InputCx, JobKind, JobType, Quote, Runs, Spec, ended, nullable, spec_of, stored, task_spec,
    typed,
};
use crate::cluster::client::ClusterClient;
use crate::cluster::service::client_for;
use crate::engine::executor::{JobEnd, ServerJob};
use crate::environment::service::{applied_objects, client, deployer, env_to_change};
use crate::error::ApiResult;
use crate::state::AppState;
use crate::workflow::expand::{Expander, narrowed, refused};
use crate::workflow::inputs::decode;
use crate::workflow::model::Job;
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
    /// A job task's service: its fields are at the spec's top level, read as a [`BlueGreenService`] of
    /// their own (a `#[serde(flatten)]`ed field would lose the failing field's name in errors).
    #[serde(skip)]
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
    /// Who the deploy marks the green Service as held by ([`undo::OWNER_NOTE`]), set before
    /// the cluster changes; empty in records from before marks, whose clean-up undoes by name
    /// once no task of the project runs.
    green_service_mark: String,
    /// The `metadata.uid` of each blue copy the deploy made (empty: not made).
    blue_deployment_uid: String,
    blue_service_uid: String,
}

const PLACED_KEYS: &[&str] = &[
    "cluster_id",
    "namespace",
    "green_deployment_name",
    "green_service_name",
    "green_selector",
    "blue_deployment_name",
    "blue_service_name",
    "green_service_mark",
    "blue_deployment_uid",
    "blue_service_uid",
];

impl Placed {
    fn record(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }
}

#[async_trait::async_trait]
impl JobKind for BlueGreen {
    /// A release quotes its deploy job, `from_job`, always; a deploy quotes none.
    fn quotes(&self, spec: &Value) -> Vec<Quote> {
        if !self.release {
            return Vec::new();
        }
        vec![Quote::of(spec, "from_job")]
    }

    fn lint(&self, spec: &mut Value, field: &str) -> ApiResult<()> {
        let s: BlueGreenSpec = decode(spec, field)?;
        decode::<BlueGreenService>(spec, field)?;
        if self.release {
            return lint_release(&s.from_job, field, JobType::K8sBlueGreenDeploy);
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
        let Some(list) = service_images(params, cx.field)? else {
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
            released_job(x.wf, job, &spec.from_job, JobType::K8sBlueGreenDeploy)?
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
        let (spec, cc, mut plan) = match prepare(state, &job).await {
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
        // From here on the cluster changes: the record tells the clean-up what to undo, and
        // which objects are this deploy's (what it made, the mark it puts on what it holds).
        let ctx = job.ctx;
        plan.placed.green_service_mark = format!(
            "{}#{}/{}/{}",
            ctx.workflow,
            ctx.task_id,
            ctx.job_name,
            uuid::Uuid::new_v4().simple()
        );
        let mut end = ended(create_blue(state, &at, &mut plan, deadline).await);
        end.record.extend(plan.placed.record());
        end
    }

    /// Undo what a deploy set up (see the module's doc); nothing when it changed nothing. What
    /// a newer deploy holds or made under the same names is left to it, and said.
    async fn clean(
        &self,
        state: &AppState,
        _project: &str,
        job: &JobTask,
    ) -> Result<Option<String>, String> {
        let Some(placed) = self.placed(job) else {
            return Ok(None);
        };
        let cc = client_for(state, &placed.cluster_id)
            .await
            .map_err(|e| e.description)?;
        let say = |m: &str| tracing::info!(job = %job.name, "{m}");
        let undone = if placed.green_service_mark.is_empty() {
            restore(&cc, &placed, &say).await.map(|()| None)
        } else {
            undo(&cc, &placed, &say).await
        };
        undone.map_err(|e| {
            format!(
                "cannot undo the blue-green deploy (Service {} still selects only the \
                 labelled pods, Deployment {} may remain): {e}",
                placed.green_service_name, placed.blue_deployment_name
            )
        })
    }

    /// A deploy recorded before deploys marked what they hold cannot tell a newer deploy's
    /// blue copy from its own.
    fn clean_waits_for_idle_project(&self, job: &JobTask) -> bool {
        self.placed(job)
            .is_some_and(|p| p.green_service_mark.is_empty())
    }
}

impl BlueGreen {
    /// What a deploy job task set up, when it changed the cluster.
    fn placed(&self, job: &JobTask) -> Option<Placed> {
        if self.release {
            return None;
        }
        typed::<Placed>(&job.spec)
            .ok()
            .filter(|p| !p.blue_deployment_name.is_empty())
    }
}

/// A job task's spec, cluster client and plan: its service as applied in its environment,
/// for a task creator allowed to change the environment (as `zadig-deploy`).
async fn prepare(
    state: &AppState,
    job: &ServerJob<'_>,
) -> Result<(BlueGreenSpec, ClusterClient, Plan), String> {
    let mut spec: BlueGreenSpec = task_spec(job)?;
    spec.service = task_spec(job)?;
    let caller = deployer(state, creator_uid(job)).await?;
    let env = env_to_change(state, (&job.ctx.project, &spec.env), &caller).await?;
    let cc = client(state, &env).await?;
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
