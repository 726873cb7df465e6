//! `k8s-gray-release` and `k8s-gray-rollback` (spec/environments.md §6.6): move a Deployment
//! to a new image in steps, beside a gray copy, and back. Both run inside the server, one job
//! task per target Deployment (key `<job>.<workload_name>`), for a task creator allowed to
//! deploy into the namespace (as `custom-deploy`).
//!
//! - The **first** release job (no `from_job`) records on the Deployment (annotations) its
//!   image, container and replicas, creates `<name>-zadig-gray` — `gray_scale` % of the
//!   replicas (rounded up), the new image, pod label `zadig-gray-release: released-by-zadig` —
//!   waits for it, then scales the Deployment down to the rest and waits.
//! - A **later** release job (`from_job`: the first one, whose targets it takes) moves the
//!   split to its `gray_scale`; at 100 the Deployment gets the new image and all its replicas
//!   back, and the gray copy is deleted.
//! - **Rollback** gives the Deployment back the recorded image and replicas and deletes the
//!   gray copy.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::canary::{copy_of, deployment_ref, minutes, replicas_of};
use super::custom_deploy::{allowed_client, image_patch};
use super::rollout;
use super::{
    InputCx, JobKind, JobType, Quote, Runs, Spec, ended, nullable, spec_of, stored, task_spec,
};
use crate::cluster::client::ClusterClient;
use crate::engine::executor::{JobEnd, JobStatus, ServerJob};
use crate::environment::kube as k;
use crate::error::ApiResult;
use crate::state::AppState;
use crate::workflow::expand::{Expander, nothing_to_run, refused};
use crate::workflow::inputs::decode;
use crate::workflow::model::{Job, Workflow};
use crate::workflow::task::JobTask;
use crate::workflow::{bad, task_view};

/// What a gray copy's name adds to its Deployment's (Zadig's).
const GRAY_SUFFIX: &str = "-zadig-gray";
/// The pod label of a gray copy (Zadig's).
const GRAY_LABEL: (&str, &str) = ("zadig-gray-release", "released-by-zadig");
/// The annotations that record the Deployment as it was before its gray release.
const IMAGE_NOTE: &str = "zadig-gray-release-image";
const CONTAINER_NOTE: &str = "zadig-gray-release-container";
const REPLICA_NOTE: &str = "zadig-gray-release-replica";

/// A gray release (`rollback: false`) or rollback job.
pub struct Gray {
    pub rollback: bool,
}

/// A gray job's spec, as defined (`targets`) and as its job tasks carry it (one target's
/// fields at the top level): what is read; the spec is stored verbatim.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct GraySpec {
    #[serde(deserialize_with = "nullable")]
    cluster_id: String,
    #[serde(deserialize_with = "nullable")]
    namespace: String,
    /// A later release job's first release job.
    #[serde(deserialize_with = "nullable")]
    from_job: String,
    /// The new image's share of the replicas, in %.
    #[serde(deserialize_with = "nullable")]
    gray_scale: i64,
    /// Minutes (0: 10).
    #[serde(deserialize_with = "nullable")]
    deploy_timeout: i64,
    #[serde(deserialize_with = "nullable")]
    rollback_timeout: i64,
    #[serde(deserialize_with = "nullable")]
    targets: Vec<Target>,
    /// A job task's target: its fields are at the spec's top level, read as a [`Target`] of
    /// their own (a `#[serde(flatten)]`ed field would lose the failing field's name in errors).
    #[serde(skip)]
    target: Target,
}

/// A Deployment and, for a release, the container and its new image.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct Target {
    #[serde(deserialize_with = "nullable")]
    workload_type: String,
    #[serde(deserialize_with = "nullable")]
    workload_name: String,
    #[serde(deserialize_with = "nullable")]
    container_name: String,
    #[serde(deserialize_with = "nullable")]
    image: String,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TargetInput {
    workload_name: String,
    image_name: String,
}

#[derive(Debug, Default, Deserialize)]
struct GrayInput {
    target_list: Option<Vec<TargetInput>>,
}

#[async_trait::async_trait]
impl JobKind for Gray {
    fn lint(&self, spec: &mut Value, field: &str) -> ApiResult<()> {
        let s: GraySpec = decode(spec, field)?;
        decode::<Target>(spec, field)?;
        for (i, t) in s.targets.iter().enumerate() {
            if !matches!(t.workload_type.as_str(), "" | "Deployment") {
                return Err(bad(
                    &format!("{field}.targets[{i}].workload_type"),
                    format!("must be Deployment, got {:?}", t.workload_type),
                ));
            }
        }
        if self.rollback {
            return Ok(());
        }
        let first = s.from_job.is_empty();
        let most = if first { 99 } else { 100 };
        if !(1..=most).contains(&s.gray_scale) {
            return Err(bad(
                &format!("{field}.gray_scale"),
                format!(
                    "must be 1 to {most}{}, got {}",
                    if first {
                        " (the first release job cannot release in full)"
                    } else {
                        ""
                    },
                    s.gray_scale
                ),
            ));
        }
        Ok(())
    }

    /// A first release job's later jobs, in the workflow's order (Zadig's rule): at least one,
    /// all but the last below 100, the last at 100 — so a gray release always ends in full.
    fn lint_in(&self, wf: &Workflow, job: &Job, field: &str) -> ApiResult<()> {
        if self.rollback || !spec_of::<GraySpec>(job)?.from_job.is_empty() {
            return Ok(());
        }
        let mut later = Vec::new();
        for (i, s) in wf.stages.iter().enumerate() {
            for (j, q) in s.jobs.iter().enumerate() {
                if q.kind() == Some(JobType::K8sGrayRelease)
                    && crate::workflow::model::str_of(&q.spec, "from_job") == job.name
                {
                    let at = format!("stages[{i}].jobs[{j}].spec.gray_scale");
                    later.push((at, spec_of::<GraySpec>(q)?.gray_scale));
                }
            }
        }
        let Some(((last_at, last), steps)) = later.split_last() else {
            return Err(bad(
                &format!("{field}.name"),
                format!(
                    "no later k8s-gray-release job (from_job: {}) releases it in full",
                    job.name
                ),
            ));
        };
        if let Some((at, _)) = steps.iter().find(|(_, scale)| *scale >= 100) {
            return Err(bad(
                at,
                format!(
                    "only the last later job of {} may release in full",
                    job.name
                ),
            ));
        }
        if *last != 100 {
            return Err(bad(
                last_at,
                format!(
                    "the last later job of {} must release in full (100), got {last}",
                    job.name
                ),
            ));
        }
        Ok(())
    }

    /// A later release job quotes its first one (`from_job`).
    fn quotes(&self, spec: &Value) -> Vec<Quote> {
        let from = crate::workflow::model::str_of(spec, "from_job");
        if self.rollback || from.is_empty() {
            return Vec::new();
        }
        vec![Quote::of(spec, "from_job")]
    }

    /// `target_list` chooses targets by `workload_name` and, for a release, sets their image
    /// (`image_name`); a Deployment the job has no target for is a 400 naming it.
    fn apply_input(&self, cx: &InputCx<'_>, spec: &mut Spec, params: &Value) -> ApiResult<()> {
        let input: GrayInput = decode(params, cx.field)?;
        let Some(list) = input.target_list else {
            return Ok(());
        };
        let before: GraySpec = decode(cx.before, &format!("job {}.spec", cx.job))?;
        let targets: Vec<_> = stored(cx.before, "targets", &before.targets).collect();
        let mut chosen = Vec::new();
        for (k, t) in list.iter().enumerate() {
            let Some((_, raw)) = targets
                .iter()
                .find(|(d, _)| d.workload_name == t.workload_name)
            else {
                return Err(bad(
                    &format!("{}.target_list[{k}].workload_name", cx.field),
                    format!("the job has no target {:?}", t.workload_name),
                ));
            };
            let mut raw = (*raw).clone();
            if let (false, Some(m)) = (self.rollback, raw.as_object_mut()) {
                m.insert("image".into(), json!(t.image_name));
            }
            chosen.push(raw);
        }
        spec.insert("targets".into(), Value::Array(chosen));
        Ok(())
    }

    fn expand(&self, x: &mut Expander<'_>, job: &Job) -> ApiResult<Vec<JobTask>> {
        let spec: GraySpec = spec_of(job)?;
        // A later release takes the first release job's cluster, namespace and targets.
        let (first, owner) = match spec.from_job.as_str() {
            "" => (true, job),
            from if !self.rollback => {
                let quoted = x
                    .wf
                    .job(from)
                    .filter(|q| q.kind() == Some(JobType::K8sGrayRelease))
                    .filter(|q| spec_of::<GraySpec>(q).is_ok_and(|s| s.from_job.is_empty()))
                    .ok_or_else(|| {
                        refused(format!(
                            "`from_job`: job {} quotes {from:?}, which is not a first k8s-gray-release job (one without from_job) of the workflow",
                            job.name
                        ))
                    })?;
                (false, quoted)
            }
            _ => (true, job),
        };
        let source: GraySpec = spec_of(owner)?;
        let mut tasks = Vec::new();
        for (t, raw) in stored(&owner.spec, "targets", &source.targets) {
            let mut one = job.spec.clone();
            if let (Some(m), Some(target)) = (one.as_object_mut(), raw.as_object()) {
                m.remove("targets");
                m.extend(target.clone());
                m.insert("cluster_id".into(), json!(source.cluster_id));
                m.insert("namespace".into(), json!(source.namespace));
                m.insert("first_job".into(), json!(first && !self.rollback));
                m.insert(
                    "gray_workload_name".into(),
                    json!(format!("{}{GRAY_SUFFIX}", t.workload_name)),
                );
            }
            tasks.push(x.task(job, &[&t.workload_name], one));
        }
        if tasks.is_empty() {
            return Err(nothing_to_run(&job.name, "no target Deployment"));
        }
        Ok(tasks)
    }

    fn view(&self, job: &JobTask) -> Value {
        const VIEW_KEYS: &[&str] = &[
            "cluster_id",
            "namespace",
            "workload_type",
            "workload_name",
            "container_name",
            "image",
            "gray_scale",
            "gray_workload_name",
            "gray_replica",
            "total_replica",
            "first_job",
            "deploy_timeout",
            "rollback_timeout",
        ];
        Value::Object(task_view::pick(&job.spec, VIEW_KEYS))
    }

    fn runs(&self) -> Runs {
        Runs::InServer
    }

    async fn run(&self, _ty: JobType, state: &AppState, job: ServerJob<'_>) -> JobEnd {
        ended(self.gray(state, &job).await)
    }
}

/// Where a job task works, and until when.
struct At<'a> {
    cc: ClusterClient,
    ns: &'a str,
    deadline: (i64, i64),
}

impl Gray {
    async fn gray(&self, state: &AppState, job: &ServerJob<'_>) -> Result<JobEnd, String> {
        let mut spec: GraySpec = task_spec(job)?;
        spec.target = task_spec(job)?;
        let ns = spec.namespace.as_str();
        let cc = allowed_client(state, job, &spec.cluster_id, ns).await?;
        let timeout = if self.rollback {
            spec.rollback_timeout
        } else {
            spec.deploy_timeout
        };
        let at = At {
            cc,
            ns,
            deadline: minutes(state, timeout),
        };
        let name = spec.target.workload_name.as_str();
        let live = k::get(&at.cc, ns, &deployment_ref(name))
            .await
            .map_err(|e| format!("can't read deployment {name}: {}", e.description))?
            .ok_or_else(|| format!("deployment: {name} not found"))?;
        let gray = format!("{name}{GRAY_SUFFIX}");
        let gray_live = k::get(&at.cc, ns, &deployment_ref(&gray))
            .await
            .map_err(|e| format!("can't read deployment {gray}: {}", e.description))?;
        let mut end = if self.rollback {
            rollback(state, job, &at, name, &live, gray_live.is_some()).await?
        } else {
            release(state, job, &at, &spec, &live, gray_live.is_some()).await?
        };
        end.record.insert("gray_workload_name".into(), json!(gray));
        Ok(end)
    }
}

/// The Deployment's recorded image, container and replicas (its annotations).
fn recorded(live: &Value, name: &str) -> Result<(String, String, i64), String> {
    let note = |key: &str| {
        live.pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                format!("deployment {name} has no zadig gray release info ({key}): no first gray release job ran on it")
            })
    };
    let replicas = note(REPLICA_NOTE)?;
    let replicas = replicas
        .parse()
        .map_err(|_| format!("annotation {REPLICA_NOTE}: {replicas} is not a number"))?;
    Ok((
        note(IMAGE_NOTE)?.to_string(),
        note(CONTAINER_NOTE)?.to_string(),
        replicas,
    ))
}

/// Merge-patch `body` into Deployment `name`.
async fn merge(at: &At<'_>, name: &str, body: Value, what: &str) -> Result<(), String> {
    k::patch(
        &at.cc,
        at.ns,
        &deployment_ref(name),
        &kube::api::Patch::Merge(&body),
    )
    .await
    .map_err(|e| format!("{what} deployment: {name} failed: {}", e.description))
}

/// Wait for Deployment `name` to roll out: `Some(end)` when it did not (timeout, failure,
/// cancel).
async fn not_ready(
    state: &AppState,
    job: &ServerJob<'_>,
    at: &At<'_>,
    name: &str,
) -> Option<JobEnd> {
    let r = [deployment_ref(name)];
    let end = rollout::finish(state, job, false, (&at.cc, at.ns), &r, at.deadline).await;
    (end.status != JobStatus::Passed).then_some(end)
}

/// Set `image` on `container` and `replicas` on Deployment `name`, and wait for it.
async fn restore(
    state: &AppState,
    job: &ServerJob<'_>,
    at: &At<'_>,
    name: &str,
    (container, image, replicas): (&str, &str, i64),
) -> Result<Option<JobEnd>, String> {
    let mut patch = image_patch("/spec/template/spec", "containers", container, image);
    patch["spec"]["replicas"] = json!(replicas);
    k::patch_strategic(&at.cc, at.ns, &deployment_ref(name), &patch)
        .await
        .map_err(|e| format!("update origin deployment: {name} failed: {}", e.description))?;
    job.log.info(&format!(
        "deployment {name}: image {image}, {replicas} replicas"
    ));
    Ok(not_ready(state, job, at, name).await)
}

/// Delete the gray copy of `name` and wait until it is gone.
async fn delete_gray(job: &ServerJob<'_>, at: &At<'_>, name: &str) -> Result<(), String> {
    let gray = format!("{name}{GRAY_SUFFIX}");
    let within = std::time::Duration::from_secs(at.deadline.1.unsigned_abs());
    k::delete_and_wait(&at.cc, at.ns, &deployment_ref(&gray), within)
        .await
        .map_err(|e| format!("delete gray deployment {gray} error: {}", e.description))?;
    job.log.info(&format!("gray deployment {gray} deleted"));
    Ok(())
}

/// A release step of target `spec.target` (Deployment `live`).
async fn release(
    state: &AppState,
    job: &ServerJob<'_>,
    at: &At<'_>,
    spec: &GraySpec,
    live: &Value,
    gray_exists: bool,
) -> Result<JobEnd, String> {
    let t = &spec.target;
    let name = t.workload_name.as_str();
    let gray = format!("{name}{GRAY_SUFFIX}");
    let first = spec.from_job.is_empty();
    let total = if first {
        replicas_of(live)
    } else {
        recorded(live, name)?.2
    };
    // ceil(total × gray_scale / 100), as Zadig.
    let gray_replicas = (total * spec.gray_scale.min(100) + 99) / 100;
    let left = total - gray_replicas;
    let record = Map::from_iter([
        ("total_replica".to_string(), json!(total)),
        ("gray_replica".to_string(), json!(gray_replicas)),
    ]);
    if first {
        if gray_exists {
            return Err(format!("gray deployment: {gray} already exists"));
        }
        create_gray(job, at, t, live, gray_replicas).await?;
        if let Some(end) = not_ready(state, job, at, &gray).await {
            return Ok(with(end, record));
        }
    } else if !gray_exists {
        return Err(format!(
            "gray deployment: {gray} not found: the first gray release job has not run"
        ));
    } else if spec.gray_scale >= 100 {
        // In full: the Deployment takes the new image and all its replicas back.
        if let Some(end) =
            restore(state, job, at, name, (&t.container_name, &t.image, total)).await?
        {
            return Ok(with(end, record));
        }
        delete_gray(job, at, name).await?;
        return Ok(with(rollout::end(JobStatus::Passed, ""), record));
    } else {
        merge(
            at,
            &gray,
            json!({"spec": {"replicas": gray_replicas}}),
            "scale gray",
        )
        .await?;
        job.log.info(&format!(
            "gray deployment {gray} scaled to {gray_replicas} replicas"
        ));
        if let Some(end) = not_ready(state, job, at, &gray).await {
            return Ok(with(end, record));
        }
    }
    merge(
        at,
        name,
        json!({"spec": {"replicas": left}}),
        "scale origin",
    )
    .await?;
    job.log
        .info(&format!("deployment {name} scaled to {left} replicas"));
    let end = not_ready(state, job, at, name)
        .await
        .unwrap_or_else(|| rollout::end(JobStatus::Passed, ""));
    Ok(with(end, record))
}

/// Record the Deployment as it is on it, and create its gray copy with `replicas` of the new
/// image.
async fn create_gray(
    job: &ServerJob<'_>,
    at: &At<'_>,
    t: &Target,
    live: &Value,
    replicas: i64,
) -> Result<(), String> {
    let name = t.workload_name.as_str();
    let gray = format!("{name}{GRAY_SUFFIX}");
    let (object, origin) = copy_of(
        live,
        (at.ns, &gray),
        (&t.container_name, &t.image),
        replicas,
        Some(GRAY_LABEL),
    )?;
    let total = replicas_of(live);
    let notes = json!({"metadata": {"annotations": {IMAGE_NOTE: origin, CONTAINER_NOTE: t.container_name,
        REPLICA_NOTE: total.to_string()}}});
    merge(at, name, notes, "annotate origin").await?;
    k::apply(&at.cc, at.ns, &deployment_ref(&gray), &object)
        .await
        .map_err(|e| {
            format!(
                "create gray release deployment: {gray} failed: {}",
                e.description
            )
        })?;
    job.log.info(&format!(
        "gray deployment {gray} created: {replicas} replicas of {} (was {origin})",
        t.image
    ));
    Ok(())
}

/// Give Deployment `name` its recorded image and replicas back; delete its gray copy.
async fn rollback(
    state: &AppState,
    job: &ServerJob<'_>,
    at: &At<'_>,
    name: &str,
    live: &Value,
    gray_exists: bool,
) -> Result<JobEnd, String> {
    let (image, container, total) = recorded(live, name)
        .map_err(|e| format!("deployment {name} get gray rollback info failed: {e}"))?;
    if let Some(end) = restore(state, job, at, name, (&container, &image, total)).await? {
        return Ok(end);
    }
    if gray_exists {
        delete_gray(job, at, name).await?;
    }
    let record = Map::from_iter([
        ("image".to_string(), json!(image)),
        ("container_name".to_string(), json!(container)),
        ("total_replica".to_string(), json!(total)),
    ]);
    Ok(with(rollout::end(JobStatus::Passed, ""), record))
}

/// `end` with `record` set on the job task's spec.
fn with(mut end: JobEnd, record: Map<String, Value>) -> JobEnd {
    end.record.extend(record);
    end
}
