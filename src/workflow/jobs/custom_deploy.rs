//! `custom-deploy`: set images of workloads (`<WorkloadType>/<workload>/<container>`
//! targets), one job task per target (spec/environments.md §6.5). A job task runs inside the
//! server: the workload in `namespace` of cluster `cluster_id` (empty: the local one) must
//! have the container; its image is changed by a strategic-merge patch (the workload is not
//! ours, so only that field changes), the previous and new image are recorded as
//! `replace_resources`, and the rollout is waited for (`timeout` minutes, 0: 10) unless
//! `skip_check_run_status`.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::rollout;
use super::{InputCx, JobKind, JobType, Runs, Spec, ended, nullable, spec_of, stored, task_spec};
use crate::cluster::client::ClusterClient;
use crate::cluster::service::client_for;
use crate::engine::executor::{JobEnd, ServerJob};
use crate::environment::kube as k;
use crate::environment::model::ResourceRef;
use crate::environment::rules::pod_spec_pointer;
use crate::environment::service::{ImageChange, deployer, may_deploy_to_namespace};
use crate::error::ApiResult;
use crate::state::AppState;
use crate::workflow::expand::{Expander, nothing_to_run};
use crate::workflow::inputs::decode;
use crate::workflow::model::{Job, str_of};
use crate::workflow::task::JobTask;
use crate::workflow::{bad, task_view};

/// The `custom-deploy` job type.
pub struct CustomDeploy;

/// A `custom-deploy` job's spec, as defined (`targets`) and as a job task carries it (one
/// target's fields at the top level): what is read; the spec itself is stored verbatim.
#[derive(Debug, Default, Deserialize)]
struct CustomDeploySpec {
    #[serde(default, deserialize_with = "nullable")]
    targets: Vec<TargetItem>,
    /// A job task's `<WorkloadType>/<workload>/<container>`.
    #[serde(default, deserialize_with = "nullable")]
    target: String,
    /// A job task's image to set.
    #[serde(default, deserialize_with = "nullable")]
    image: String,
    #[serde(default, deserialize_with = "nullable")]
    namespace: String,
    /// The cluster (empty: the local one).
    #[serde(default, deserialize_with = "nullable")]
    cluster_id: String,
    /// The rollout timeout in minutes (0: the default).
    #[serde(default, deserialize_with = "nullable")]
    timeout: i64,
    /// Pass once the images are set, without waiting for the rollout.
    #[serde(default, deserialize_with = "nullable")]
    skip_check_run_status: bool,
    /// Every other field, kept as sent.
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

/// A target: `<WorkloadType>/<workload>/<container>` and the image to set.
#[derive(Debug, Default, Deserialize)]
struct TargetItem {
    #[serde(default, deserialize_with = "nullable")]
    target: String,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
struct TargetInput {
    #[serde(default)]
    workload_type: String,
    #[serde(default)]
    workload_name: String,
    #[serde(default)]
    container_name: String,
    #[serde(default)]
    image_name: String,
}

#[derive(Debug, Default, Deserialize)]
struct CustomDeployInput {
    target_list: Option<Vec<TargetInput>>,
}

#[async_trait::async_trait]
impl JobKind for CustomDeploy {
    fn lint(&self, spec: &mut Value, field: &str) -> ApiResult<()> {
        decode::<CustomDeploySpec>(spec, field).map(drop)
    }

    fn apply_input(&self, cx: &InputCx<'_>, spec: &mut Spec, params: &Value) -> ApiResult<()> {
        let field = cx.field;
        let input: CustomDeployInput = decode(params, field)?;
        let Some(list) = input.target_list else {
            return Ok(());
        };
        let mut targets = Vec::new();
        for (k, t) in list.iter().enumerate() {
            let f = format!("{field}.target_list[{k}]");
            for (key, v) in [
                ("workload_type", &t.workload_type),
                ("workload_name", &t.workload_name),
                ("container_name", &t.container_name),
            ] {
                if v.is_empty() {
                    return Err(bad(&format!("{f}.{key}"), "is required"));
                }
            }
            targets.push(json!({
                "target": format!("{}/{}/{}", t.workload_type, t.workload_name, t.container_name),
                "image": t.image_name,
            }));
        }
        spec.insert("targets".into(), Value::Array(targets));
        Ok(())
    }

    fn expand(&self, x: &mut Expander<'_>, job: &Job) -> ApiResult<Vec<JobTask>> {
        let spec: CustomDeploySpec = spec_of(job)?;
        if spec.targets.is_empty() {
            return Err(nothing_to_run(
                &job.name,
                "no target to deploy: list targets in inputs[].parameters.target_list",
            ));
        }
        let items = stored(&job.spec, "targets", &spec.targets).map(|(t, raw)| {
            // "<WorkloadType>/<workload>/<container>" → workload, container
            let names = t.target.split('/').skip(1).map(str::to_string).collect();
            (raw, names)
        });
        let mut tasks = x.per_item(job, "targets", items);
        // Zadig's key names the workload type too: `<job>.<type>.<workload>.<container>`.
        for (task, (t, _)) in tasks
            .iter_mut()
            .zip(stored(&job.spec, "targets", &spec.targets))
        {
            task.key = format!("{}.{}", job.name, t.target.replace('/', "."));
        }
        Ok(tasks)
    }

    fn view(&self, job: &JobTask) -> Value {
        // The keys of a `custom-deploy` job task's spec task detail shows as they are.
        const VIEW_KEYS: &[&str] = &[
            "target",
            "image",
            "cluster_id",
            "namespace",
            "skip_check_run_status",
            "replace_resources",
        ];
        let mut m = task_view::pick(&job.spec, VIEW_KEYS);
        // As stored: absent shows as "".
        let cluster = job.spec.get("cluster_id").cloned().unwrap_or(json!(""));
        m.insert("cluster_name".into(), cluster);
        Value::Object(m)
    }

    fn runs(&self) -> Runs {
        Runs::InServer
    }

    async fn run(&self, _ty: JobType, state: &AppState, job: ServerJob<'_>) -> JobEnd {
        rollout::with_banners(job.log, async { ended(deploy(state, &job).await) }).await
    }
}

/// The workload kinds a target may name, with their API version and plural.
fn workload_ref(kind: &str, name: &str) -> Option<ResourceRef> {
    let (api_version, plural) = match kind {
        "Deployment" => ("apps/v1", "deployments"),
        "StatefulSet" => ("apps/v1", "statefulsets"),
        "CronJob" => ("batch/v1", "cronjobs"),
        _ => return None,
    };
    Some(ResourceRef::namespaced(api_version, kind, plural, name))
}

/// `{"spec": {"template": {"spec": {"<key>": [{name, image}]}}}}` for the pod spec at `ptr`.
pub(super) fn image_patch(ptr: &str, key: &str, container: &str, image: &str) -> Value {
    let mut v = json!({ key: [{"name": container, "image": image}] });
    for seg in ptr.split('/').filter(|s| !s.is_empty()).rev() {
        v = json!({ seg: v });
    }
    v
}

/// A parsed `custom-deploy` target: the container of a workload in a namespace, and the
/// image to set.
struct Target<'a> {
    kind: &'a str,
    name: &'a str,
    container: &'a str,
    ns: &'a str,
    image: &'a str,
    workload: ResourceRef,
}

/// The spec's `target` (`<WorkloadType>/<name>/<container>`), `namespace` and `image`; the
/// error is the job's failure.
fn target_of(spec: &CustomDeploySpec) -> Result<Target<'_>, String> {
    let target = spec.target.as_str();
    let parts: Vec<&str> = target.split('/').collect();
    let [kind, name, container] = parts.as_slice() else {
        return Err(format!(
            "target {target:?} is not <WorkloadType>/<name>/<container>"
        ));
    };
    let (ns, image) = (spec.namespace.as_str(), spec.image.as_str());
    if ns.is_empty() || image.is_empty() {
        return Err(format!(
            "target {target}: the namespace and the image are required (namespace {ns:?}, image {image:?})"
        ));
    }
    let Some(workload) = workload_ref(kind, name) else {
        return Err(format!("workload type: {kind} not supported"));
    };
    Ok(Target {
        kind,
        name,
        container,
        ns,
        image,
        workload,
    })
}

/// The client of cluster `cluster_id`, once the task's creator is known to be allowed to
/// deploy into `ns` there.
pub(super) async fn allowed_client(
    state: &AppState,
    job: &ServerJob<'_>,
    cluster_id: &str,
    ns: &str,
) -> Result<ClusterClient, String> {
    let caller = deployer(state, super::deploy_common::creator_uid(job)).await?;
    may_deploy_to_namespace(state, &caller, &job.ctx.project, cluster_id, ns).await?;
    client_for(state, cluster_id)
        .await
        .map_err(|e| format!("can't init k8s client: {}", e.description))
}

/// Where `container` is in the live workload's pod spec at `ptr` (`containers` or
/// `initContainers`), with its image.
fn live_container(live: &Value, ptr: &str, container: &str) -> Option<(&'static str, String)> {
    ["containers", "initContainers"]
        .into_iter()
        .find_map(|key| {
            live.pointer(&format!("{ptr}/{key}"))
                .and_then(Value::as_array)
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c.get("name").and_then(Value::as_str) == Some(container))
                })
                .map(|c| (key, str_of(c, "image").to_string()))
        })
}

/// Run one `custom-deploy` target (spec/environments.md §6.5).
async fn deploy(state: &AppState, job: &ServerJob<'_>) -> Result<JobEnd, String> {
    let spec: CustomDeploySpec = task_spec(job)?;
    let t = target_of(&spec)?;
    let (kind, name, container, ns, image) = (t.kind, t.name, t.container, t.ns, t.image);
    let cc = allowed_client(state, job, &spec.cluster_id, ns).await?;
    let deadline = rollout::deadline(state, spec.timeout.saturating_mul(60));
    let r = t.workload;
    let live = k::get(&cc, ns, &r)
        .await
        .map_err(|e| format!("can't read {kind} {name}: {}", e.description))?
        .ok_or_else(|| format!("{} {name} not found", kind.to_lowercase()))?;
    let ptr = pod_spec_pointer(kind).unwrap_or("/spec/template/spec");
    let (key, origin) = live_container(&live, ptr, container).ok_or_else(|| {
        format!(
            "workload type: {kind},name: {name}, container {container} is not found in namespace {ns}"
        )
    })?;
    job.log.info(&format!(
        "{kind} {name} container {container} in namespace {ns}: {origin} -> {image}"
    ));
    k::patch_strategic(&cc, ns, &r, &image_patch(ptr, key, container, image))
        .await
        .map_err(|e| {
            format!(
                "failed to update container image in {ns}/{}/{name}/{container}: {}",
                r.plural, e.description
            )
        })?;
    let record = rollout::record(&[ImageChange {
        kind: kind.to_string(),
        name: name.to_string(),
        container: container.to_string(),
        origin,
        image: image.to_string(),
    }]);
    let mut end = rollout::finish(
        state,
        job,
        spec.skip_check_run_status,
        (&cc, ns),
        &[r],
        deadline,
    )
    .await;
    end.record = record;
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_patches_follow_the_pod_spec() {
        assert_eq!(
            image_patch("/spec/template/spec", "containers", "web", "nginx:2"),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}})
        );
        assert_eq!(
            image_patch(
                "/spec/jobTemplate/spec/template/spec",
                "initContainers",
                "i",
                "x:1"
            ),
            json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"initContainers": [{"name": "i", "image": "x:1"}]}}}}}})
        );
        assert!(workload_ref("DaemonSet", "d").is_none());
        assert_eq!(
            workload_ref("CronJob", "c").unwrap().api_version,
            "batch/v1"
        );
    }
}
