//! `k8s-canary-deploy` and `k8s-canary-release` (spec/environments.md §6.6): a canary of the
//! Deployment behind a Kubernetes Service, then its release. Both run inside the server, one
//! job task per target (key `<job>.<k8s_service_name>`), for a task creator allowed to deploy
//! into the namespace (as `custom-deploy`).
//!
//! The Deployment behind a target's Service is the one whose pod template carries every label
//! of the Service's selector (the pods the Service routes to), canaries aside.
//! - **Deploy** copies it as `<name>-zadig-canary` — `canary_percentage` of its replicas
//!   (rounded up) and the target's `image` on container `container_name` — so the Service sends
//!   part of its traffic to the new image, and waits for the canary to be ready
//!   (`deploy_timeout` minutes, 0: 10).
//! - **Release** (its `from_job` names the deploy job) deletes the canary, waits until it is
//!   gone, sets the image on the Deployment and waits for its rollout (`release_timeout`
//!   minutes, 0: 10).

use k8s_openapi::api::apps::v1::Deployment;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::custom_deploy::{allowed_client, image_patch};
use super::deploy_common::{lint_release, released_job, service_images};
use super::rollout;
use super::{
    InputCx, JobKind, JobType, Quote, Runs, Spec, ended, nullable, spec_of, stored, task_spec,
};
use crate::cluster::client::ClusterClient;
use crate::engine::executor::{JobEnd, ServerJob};
use crate::environment::kube as k;
use crate::environment::model::ResourceRef;
use crate::error::ApiResult;
use crate::state::AppState;
use crate::workflow::expand::{Expander, nothing_to_run};
use crate::workflow::inputs::decode;
use crate::workflow::model::Job;
use crate::workflow::task::JobTask;
use crate::workflow::{bad, task_view};

/// What a canary's name adds to its Deployment's (Zadig's).
const CANARY_SUFFIX: &str = "-zadig-canary";

/// A canary deploy (`release: false`) or release job.
pub struct Canary {
    pub release: bool,
}

/// A canary deploy job's spec, as defined (`targets`) and as its job tasks carry it (one
/// target's fields at the top level): what is read; the spec is stored verbatim.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CanarySpec {
    /// The cluster (empty: the local one).
    #[serde(deserialize_with = "nullable")]
    cluster_id: String,
    #[serde(deserialize_with = "nullable")]
    namespace: String,
    #[serde(deserialize_with = "nullable")]
    targets: Vec<Target>,
    /// A job task's target: its fields are at the spec's top level, read as a [`Target`] of
    /// their own (a `#[serde(flatten)]`ed field would lose the failing field's name in errors).
    #[serde(skip)]
    target: Target,
    /// A release job's deploy job.
    #[serde(deserialize_with = "nullable")]
    from_job: String,
    /// A release job's timeout, in minutes (0: 10).
    #[serde(deserialize_with = "nullable")]
    release_timeout: i64,
}

/// A Service whose Deployment gets a canary, and the canary's image and size.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct Target {
    #[serde(deserialize_with = "nullable")]
    k8s_service_name: String,
    #[serde(deserialize_with = "nullable")]
    container_name: String,
    #[serde(deserialize_with = "nullable")]
    image: String,
    /// The canary's share of the Deployment's replicas, 1 to 100.
    #[serde(deserialize_with = "nullable")]
    canary_percentage: i64,
    /// Minutes (0: 10).
    #[serde(deserialize_with = "nullable")]
    deploy_timeout: i64,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

#[async_trait::async_trait]
impl JobKind for Canary {
    /// A release quotes its deploy job, `from_job`, always.
    fn quotes(&self, spec: &Value) -> Vec<Quote> {
        if !self.release {
            return Vec::new();
        }
        vec![Quote::of(spec, "from_job")]
    }

    fn lint(&self, spec: &mut Value, field: &str) -> ApiResult<()> {
        let s: CanarySpec = decode(spec, field)?;
        decode::<Target>(spec, field)?;
        if self.release {
            return lint_release(&s.from_job, field, JobType::K8sCanaryDeploy);
        }
        for (i, t) in s.targets.iter().enumerate() {
            if !(1..=100).contains(&t.canary_percentage) {
                return Err(bad(
                    &format!("{field}.targets[{i}].canary_percentage"),
                    format!("must be 1 to 100, got {}", t.canary_percentage),
                ));
            }
        }
        Ok(())
    }

    /// A deploy job's `service_list` sets the image of its targets by Service (Zadig's
    /// `CanaryDeployJobInput`); a Service the job has no target for is a 400 naming it.
    fn apply_input(&self, cx: &InputCx<'_>, spec: &mut Spec, params: &Value) -> ApiResult<()> {
        if self.release {
            return crate::workflow::inputs::record_as_is(spec, params, cx.field);
        }
        let Some(list) = service_images(params, cx.field)? else {
            return Ok(());
        };
        let before: CanarySpec = decode(cx.before, &format!("job {}.spec", cx.job))?;
        let mut targets: Vec<Value> = stored(cx.before, "targets", &before.targets)
            .map(|(_, raw)| raw.clone())
            .collect();
        for (k, s) in list.iter().enumerate() {
            let at = before
                .targets
                .iter()
                .position(|t| t.k8s_service_name == s.service_name);
            let Some(t) = at.and_then(|at| targets.get_mut(at)?.as_object_mut()) else {
                return Err(bad(
                    &format!("{}.service_list[{k}].service_name", cx.field),
                    format!("the job has no target for service {:?}", s.service_name),
                ));
            };
            t.insert("image".into(), json!(s.image_name));
        }
        spec.insert("targets".into(), Value::Array(targets));
        Ok(())
    }

    fn expand(&self, x: &mut Expander<'_>, job: &Job) -> ApiResult<Vec<JobTask>> {
        let spec: CanarySpec = spec_of(job)?;
        if !self.release {
            if spec.targets.is_empty() {
                return Err(nothing_to_run(&job.name, "no target to deploy a canary of"));
            }
            let items = stored(&job.spec, "targets", &spec.targets)
                .map(|(t, raw)| (raw, vec![t.k8s_service_name.clone()]));
            return Ok(x.per_item(job, "targets", items));
        }
        // One task per target of the deploy job quoted, with its cluster and namespace.
        let deploy = released_job(x.wf, job, &spec.from_job, JobType::K8sCanaryDeploy)?;
        let quoted: CanarySpec = spec_of(deploy)?;
        let mut tasks = Vec::new();
        for (t, raw) in stored(&deploy.spec, "targets", &quoted.targets) {
            let mut one = job.spec.clone();
            if let (Some(m), Some(target)) = (one.as_object_mut(), raw.as_object()) {
                m.extend(target.clone());
                m.insert("cluster_id".into(), json!(quoted.cluster_id));
                m.insert("namespace".into(), json!(quoted.namespace));
            }
            tasks.push(x.task(job, &[&t.k8s_service_name], one));
        }
        if tasks.is_empty() {
            return Err(nothing_to_run(&job.name, "no canary to release"));
        }
        Ok(tasks)
    }

    fn view(&self, job: &JobTask) -> Value {
        const VIEW_KEYS: &[&str] = &[
            "cluster_id",
            "namespace",
            "k8s_service_name",
            "container_name",
            "image",
            "canary_percentage",
            "canary_replica",
            "workload_type",
            "workload_name",
            "canary_workload_name",
            "deploy_timeout",
            "release_timeout",
        ];
        Value::Object(task_view::pick(&job.spec, VIEW_KEYS))
    }

    fn runs(&self) -> Runs {
        Runs::InServer
    }

    async fn run(&self, _ty: JobType, state: &AppState, job: ServerJob<'_>) -> JobEnd {
        ended(self.canary(state, &job).await)
    }
}

impl Canary {
    async fn canary(&self, state: &AppState, job: &ServerJob<'_>) -> Result<JobEnd, String> {
        let mut spec: CanarySpec = task_spec(job)?;
        spec.target = task_spec(job)?;
        let ns = spec.namespace.as_str();
        let cc = allowed_client(state, job, &spec.cluster_id, ns).await?;
        let live = deployment_behind(&cc, ns, &spec.target.k8s_service_name).await?;
        if self.release {
            release(state, job, &cc, &spec, &live).await
        } else {
            deploy(state, job, &cc, &spec.target, ns, live).await
        }
    }
}

/// A Deployment's reference.
pub(super) fn deployment_ref(name: &str) -> ResourceRef {
    ResourceRef::namespaced("apps/v1", "Deployment", "deployments", name)
}

/// A Deployment's `spec.replicas` (absent: 1, Kubernetes' default).
pub(super) fn replicas_of(live: &Value) -> i64 {
    live.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

/// A copy of Deployment `live` named `name` in `ns` — its labels, its spec with `replicas`
/// replicas, `image` on `container` and `pod_label` added to its pod template — and the
/// container's image in `live`. A container `live` lacks is the job's error.
pub(super) fn copy_of(
    live: &Value,
    (ns, name): (&str, &str),
    (container, image): (&str, &str),
    replicas: i64,
    pod_label: Option<(&str, &str)>,
) -> Result<(Value, String), String> {
    let original = live
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut spec = live.get("spec").cloned().unwrap_or(json!({}));
    let c = spec
        .pointer_mut("/template/spec/containers")
        .and_then(Value::as_array_mut)
        .and_then(|cs| {
            cs.iter_mut()
                .find(|c| c.get("name").and_then(Value::as_str) == Some(container))
        })
        .ok_or_else(|| format!("container {container} not found in deployment {original}"))?;
    let origin = c
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    c["image"] = json!(image);
    spec["replicas"] = json!(replicas);
    if let (Some((k, v)), Some(labels)) = (
        pod_label,
        spec.pointer_mut("/template/metadata/labels")
            .and_then(Value::as_object_mut),
    ) {
        labels.insert(k.into(), json!(v));
    }
    let object = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns,
            "labels": live.pointer("/metadata/labels").cloned().unwrap_or(json!({}))},
        "spec": spec});
    Ok((object, origin))
}

/// The deadline of a timeout in minutes (0: 10 minutes), as [`rollout::deadline`].
pub(super) fn minutes(state: &AppState, m: i64) -> (i64, i64) {
    rollout::deadline(state, if m > 0 { m.saturating_mul(60) } else { 600 })
}

/// The Deployment (as JSON) the Service `svc` routes to: the one, canaries aside, whose pod
/// template has every label of the Service's selector. The error is the job's.
async fn deployment_behind(cc: &ClusterClient, ns: &str, svc: &str) -> Result<Value, String> {
    let service = k::service(cc, ns, svc)
        .await
        .map_err(|e| format!("can't read service {svc}: {}", e.description))?
        .ok_or_else(|| format!("service: {svc} not found in namespace {ns}"))?;
    let spec = service.spec.unwrap_or_default();
    if spec.cluster_ip.as_deref() == Some("None") {
        return Err(format!(
            "service {svc} is a headless service, which canary deployment does not support"
        ));
    }
    let selector = spec.selector.unwrap_or_default();
    if selector.is_empty() {
        return Err(format!(
            "service {svc} has no selector: it routes to no Deployment"
        ));
    }
    let routed = |d: &Deployment| {
        let labels = d
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.as_ref());
        selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    };
    let found: Vec<Deployment> = k::deployments(cc, ns)
        .await
        .map_err(|e| format!("list deployments error: {}", e.description))?
        .into_iter()
        .filter(|d| {
            !d.metadata
                .name
                .as_deref()
                .unwrap_or("")
                .ends_with(CANARY_SUFFIX)
        })
        .filter(routed)
        .collect();
    match found.as_slice() {
        [one] => serde_json::to_value(one).map_err(|e| format!("re-encoding a deployment: {e}")),
        [] => Err(format!("no deployment found behind service {svc}")),
        many => Err(format!(
            "more than one deployment found behind service {svc}: {}",
            many.iter()
                .filter_map(|d| d.metadata.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Create the canary of `live` for target `t` and wait for it to be ready.
async fn deploy(
    state: &AppState,
    job: &ServerJob<'_>,
    cc: &ClusterClient,
    t: &Target,
    ns: &str,
    live: Value,
) -> Result<JobEnd, String> {
    let name = live
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let canary = format!("{name}{CANARY_SUFFIX}");
    let canary_ref = deployment_ref(&canary);
    let existing = k::get(cc, ns, &canary_ref)
        .await
        .map_err(|e| format!("can't read {canary}: {}", e.description))?;
    if existing.is_some() {
        return Err(format!(
            "canary deployment {canary} already exists: release it (k8s-canary-release) or delete it first"
        ));
    }
    let replicas = replicas_of(&live);
    // ceil(replicas × percentage / 100), as Zadig.
    let canary_replicas = (replicas * t.canary_percentage + 99) / 100;
    let (object, origin) = copy_of(
        &live,
        (ns, &canary),
        (&t.container_name, &t.image),
        canary_replicas,
        None,
    )?;
    job.log.info(&format!("the original image is: {origin}"));
    k::apply(cc, ns, &canary_ref, &object).await.map_err(|e| {
        format!(
            "create canary deployment: {canary} failed: {}",
            e.description
        )
    })?;
    job.log.info(&format!(
        "canary deployment: {canary} created ({canary_replicas} of {replicas} replicas, image {})",
        t.image
    ));
    let deadline = minutes(state, t.deploy_timeout);
    let mut end = rollout::finish(state, job, false, (cc, ns), &[canary_ref], deadline).await;
    end.record = Map::from_iter([
        ("workload_type".to_string(), json!("Deployment")),
        ("workload_name".to_string(), json!(name)),
        ("canary_workload_name".to_string(), json!(canary)),
        ("canary_replica".to_string(), json!(canary_replicas)),
    ]);
    Ok(end)
}

/// Delete the canary of `live`, set the target's image on `live` and wait for its rollout.
async fn release(
    state: &AppState,
    job: &ServerJob<'_>,
    cc: &ClusterClient,
    spec: &CanarySpec,
    live: &Value,
) -> Result<JobEnd, String> {
    let (ns, t) = (spec.namespace.as_str(), &spec.target);
    let name = live
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let canary = format!("{name}{CANARY_SUFFIX}");
    let (deadline_ms, secs) = minutes(state, spec.release_timeout);
    let within = std::time::Duration::from_secs(secs.unsigned_abs());
    k::delete_and_wait(cc, ns, &deployment_ref(&canary), within)
        .await
        .map_err(|e| format!("delete canary deployment {canary} error: {}", e.description))?;
    job.log
        .info(&format!("canary deployment: {canary} deleted"));
    let workload = deployment_ref(name);
    let patch = image_patch(
        "/spec/template/spec",
        "containers",
        &t.container_name,
        &t.image,
    );
    k::patch_strategic(cc, ns, &workload, &patch)
        .await
        .map_err(|e| format!("update deployment: {name} image error: {}", e.description))?;
    job.log
        .info(&format!("updating deployment: {name} image to {}", t.image));
    let mut end = rollout::finish(
        state,
        job,
        false,
        (cc, ns),
        &[workload],
        (deadline_ms, secs),
    )
    .await;
    end.record = Map::from_iter([
        ("workload_type".to_string(), json!("Deployment")),
        ("workload_name".to_string(), json!(name)),
        ("canary_workload_name".to_string(), json!(canary)),
    ]);
    Ok(end)
}
