//! `k8s-resource-patch`: patch objects of one namespace of a cluster (spec/environments.md
//! §6.6), one job task per job, run inside the server. Each of `patch_items` names an object
//! (`resource_kind`/`resource_name` of `resource_group`/`resource_version`) in `namespace` of
//! `cluster_id` (empty: the local cluster); its `patch_content` is rendered with its `params`
//! (`{{.name}}` → value) when the job runs and sent as a strategic-merge, JSON merge or JSON
//! patch (`patch_strategy`). Only namespaced kinds, for a task creator allowed to deploy into
//! the namespace (as `custom-deploy`). Each item's error is recorded on it; the job fails when
//! any item failed.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    InputCx, JobKind, JobType, Runs, Spec, ended, nullable, spec_of, stored, task_spec, typed,
};
use crate::cluster::client::ClusterClient;
use crate::engine::executor::{JobEnd, JobStatus, ServerJob};
use crate::engine::render::render_str;
use crate::environment::kube::{self as k, Kinds};
use crate::environment::model::ResourceRef;
use crate::error::ApiResult;
use crate::state::AppState;
use crate::workflow::expand::{Expander, nothing_to_run};
use crate::workflow::inputs::decode;
use crate::workflow::model::Job;
use crate::workflow::params::{Param, ParamType};
use crate::workflow::task::JobTask;
use crate::workflow::{bad, task_view};

/// The `k8s-resource-patch` job type.
pub struct ResourcePatch;

/// A `k8s-resource-patch` job's spec, as defined and as its job task carries it: what is
/// read; the spec itself is stored verbatim.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PatchSpec {
    /// The cluster (empty: the local one).
    #[serde(deserialize_with = "nullable")]
    cluster_id: String,
    #[serde(deserialize_with = "nullable")]
    namespace: String,
    #[serde(deserialize_with = "nullable")]
    patch_items: Vec<PatchItem>,
    /// Every other field, kept as sent.
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

/// An object to patch and the patch.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PatchItem {
    #[serde(deserialize_with = "nullable")]
    resource_name: String,
    #[serde(deserialize_with = "nullable")]
    resource_kind: String,
    /// The API group (empty: the core group).
    #[serde(deserialize_with = "nullable")]
    resource_group: String,
    #[serde(deserialize_with = "nullable")]
    resource_version: String,
    /// The patch, with `{{.<param>}}` placeholders.
    #[serde(deserialize_with = "nullable")]
    patch_content: String,
    #[serde(deserialize_with = "nullable")]
    params: Vec<Param>,
    /// `strategic-merge`, `merge` or `json`.
    #[serde(deserialize_with = "nullable")]
    patch_strategy: String,
    #[serde(flatten)]
    _extra: Map<String, Value>,
}

impl PatchItem {
    fn api_version(&self) -> String {
        match self.resource_group.as_str() {
            "" => self.resource_version.clone(),
            g => format!("{g}/{}", self.resource_version),
        }
    }

    /// `<Kind> <name> (<apiVersion>)`, for logs and errors.
    fn describe(&self) -> String {
        format!(
            "{} {} ({})",
            self.resource_kind,
            self.resource_name,
            self.api_version()
        )
    }

    fn is(&self, t: &TargetInput) -> bool {
        (
            &self.resource_name,
            &self.resource_kind,
            &self.resource_group,
            &self.resource_version,
        ) == (
            &t.resource_name,
            &t.resource_kind,
            &t.resource_group,
            &t.resource_version,
        )
    }
}

/// `content` with each `{{.<param>}}` replaced by the parameter's value (a `multi-select`'s
/// choices joined with `,`), as Zadig.
fn with_params(content: &str, params: &[Param]) -> String {
    params.iter().fold(content.to_string(), |text, p| {
        let value = match p.kind {
            ParamType::MultiSelect => p.choice_value.join(","),
            _ => p.value.clone(),
        };
        text.replace(&format!("{{{{.{}}}}}", p.name), &value)
    })
}

/// What `patch_strategy` may name.
const STRATEGIES: &[&str] = &["strategic-merge", "merge", "json"];

/// The body of `item`'s patch `content` (rendered), by its strategy; the error is the item's.
fn patch_body(item: &PatchItem, content: &str) -> Result<kube::api::Patch<Value>, String> {
    let object = || -> Result<Value, String> {
        match serde_yaml_ng::from_str::<Value>(content) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err("unmarshal yaml input error: the patch is not a mapping".into()),
            Err(e) => Err(format!("unmarshal yaml input error: {e}")),
        }
    };
    match item.patch_strategy.as_str() {
        "strategic-merge" => object().map(kube::api::Patch::Strategic),
        "merge" => object().map(kube::api::Patch::Merge),
        "json" => serde_json::from_str::<json_patch::Patch>(content)
            .map(kube::api::Patch::Json)
            .map_err(|e| format!("unmarshal json patch error: {e}")),
        other => Err(format!("patch strategy {other:?} not supported")),
    }
}

/// An execute input's target: a patch item of the job, and values of its parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TargetInput {
    resource_name: String,
    resource_kind: String,
    resource_group: String,
    resource_version: String,
    inputs: Vec<KvInput>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct KvInput {
    key: String,
    value: String,
}

#[derive(Debug, Default, Deserialize)]
struct PatchInput {
    target_list: Option<Vec<TargetInput>>,
}

#[async_trait::async_trait]
impl JobKind for ResourcePatch {
    fn lint(&self, spec: &mut Value, field: &str) -> ApiResult<()> {
        let s: PatchSpec = decode(spec, field)?;
        for (i, item) in s.patch_items.iter().enumerate() {
            let strategy = item.patch_strategy.as_str();
            if !strategy.is_empty() && !STRATEGIES.contains(&strategy) {
                return Err(bad(
                    &format!("{field}.patch_items[{i}].patch_strategy"),
                    format!("must be one of {}, got {strategy:?}", STRATEGIES.join(", ")),
                ));
            }
        }
        Ok(())
    }

    /// `target_list` chooses the job's patch items to run (Zadig's `K8sPatchJobInput`), each
    /// with values for its parameters; a target the job does not have, or a key that is not
    /// a parameter of its item, is a 400 naming it (Zadig ignores both).
    fn apply_input(&self, cx: &InputCx<'_>, spec: &mut Spec, params: &Value) -> ApiResult<()> {
        let field = cx.field;
        let input: PatchInput = decode(params, field)?;
        let Some(list) = input.target_list else {
            return Ok(());
        };
        let before: PatchSpec = decode(cx.before, &format!("job {}.spec", cx.job))?;
        let items: Vec<_> = stored(cx.before, "patch_items", &before.patch_items).collect();
        let mut chosen = Vec::new();
        for (k, t) in list.iter().enumerate() {
            let f = format!("{field}.target_list[{k}]");
            let Some((item, raw)) = items.iter().find(|(i, _)| i.is(t)) else {
                return Err(bad(
                    &f,
                    format!(
                        "the job has no patch item {} {} of group {:?}, version {:?}",
                        t.resource_kind, t.resource_name, t.resource_group, t.resource_version
                    ),
                ));
            };
            let mut raw = (*raw).clone();
            for (j, kv) in t.inputs.iter().enumerate() {
                let at = item.params.iter().position(|p| p.name == kv.key);
                let slot = at.and_then(|at| raw.get_mut("params")?.get_mut(at)?.as_object_mut());
                let Some(param) = slot else {
                    return Err(bad(
                        &format!("{f}.inputs[{j}].key"),
                        format!("{:?} is not a parameter of the patch item", kv.key),
                    ));
                };
                param.insert("value".into(), json!(kv.value));
            }
            chosen.push(raw);
        }
        spec.insert("patch_items".into(), Value::Array(chosen));
        Ok(())
    }

    fn expand(&self, x: &mut Expander<'_>, job: &Job) -> ApiResult<Vec<JobTask>> {
        let spec: PatchSpec = spec_of(job)?;
        if spec.patch_items.is_empty() {
            return Err(nothing_to_run(
                &job.name,
                "no resource to patch: list patch items, or targets in inputs[].parameters.target_list",
            ));
        }
        Ok(vec![x.single(job)])
    }

    fn view(&self, job: &JobTask) -> Value {
        // Parameters show masked where they are credentials (the masking of every view); the
        // patch shows as defined, not rendered, so it never shows a credential's value.
        Value::Object(task_view::pick(
            &job.spec,
            &["cluster_id", "namespace", "patch_items"],
        ))
    }

    fn runs(&self) -> Runs {
        Runs::InServer
    }

    async fn run(&self, _ty: JobType, state: &AppState, job: ServerJob<'_>) -> JobEnd {
        ended(patch_all(state, &job).await)
    }
}

/// Patch every item of the job task, recording each one's error.
async fn patch_all(state: &AppState, job: &ServerJob<'_>) -> Result<JobEnd, String> {
    let spec: PatchSpec = task_spec(job)?;
    let ns = spec.namespace.as_str();
    if ns.is_empty() {
        return Err("the namespace to patch in is required (spec.namespace)".into());
    }
    let cc = super::custom_deploy::allowed_client(state, job, &spec.cluster_id, ns).await?;
    // The engine rendered the spec with the task's context, which knows nothing of the
    // items' own parameters: each patch is rendered from the spec as stored, first with
    // its parameters (their values as rendered), then with the task's context.
    let stored = typed::<PatchSpec>(&job.ctx.spec)
        .map_err(|e| format!("k8s-resource-patch job task: {e}"))?
        .patch_items;
    // Credential parameters are masked in the log and in the errors recorded.
    let credentials: Vec<String> = spec
        .patch_items
        .iter()
        .flat_map(|i| &i.params)
        .filter(|p| p.is_credential)
        .map(|p| p.value.clone())
        .collect();
    job.log.add_secrets(&credentials);
    let mut kinds = Kinds::default();
    let mut errors = Vec::new();
    for (item, template) in spec.patch_items.iter().zip(&stored) {
        let content = with_params(&template.patch_content, &item.params);
        let content = render_str(&content, &job.ctx.context);
        let error = match patch_one(&cc, &mut kinds, ns, item, &content).await {
            Ok(()) => {
                job.log.info(&format!(
                    "patched {} in namespace {ns} ({})",
                    item.describe(),
                    item.patch_strategy
                ));
                String::new()
            }
            Err(e) => {
                job.log.info(&format!("{}: {e}", item.describe()));
                job.log.mask(&e)
            }
        };
        errors.push(error);
    }
    let mut end = match errors.iter().filter(|e| !e.is_empty()).count() {
        0 => super::rollout::end(JobStatus::Passed, ""),
        n => JobEnd::failed(format!(
            "patch resources error: {n} of {} items failed: {}",
            errors.len(),
            errors
                .iter()
                .filter(|e| !e.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        )),
    };
    // As stored (the patches unrendered), with each item's error.
    end.record
        .insert("patch_items".into(), with_errors(&job.ctx.spec, &errors));
    Ok(end)
}

/// Patch one item's object in `ns`; the error is the item's.
async fn patch_one(
    cc: &ClusterClient,
    kinds: &mut Kinds,
    ns: &str,
    item: &PatchItem,
    content: &str,
) -> Result<(), String> {
    let body = patch_body(item, content)?;
    let (ar, namespaced) = kinds
        .resolve(cc, &item.api_version(), &item.resource_kind)
        .await
        .map_err(|e| e.description)?;
    if !namespaced {
        return Err(format!(
            "kind {} is cluster-scoped: only objects of the namespace may be patched",
            item.resource_kind
        ));
    }
    let r = ResourceRef {
        api_version: item.api_version(),
        kind: item.resource_kind.clone(),
        plural: ar.plural,
        namespaced,
        name: item.resource_name.clone(),
    };
    k::patch(cc, ns, &r, &body)
        .await
        .map_err(|e| format!("patch resource error: {}", e.description))
}

/// The job task's `patch_items` as stored, each with its `error` (Zadig's field).
fn with_errors(spec: &Value, errors: &[String]) -> Value {
    let mut items = spec.get("patch_items").cloned().unwrap_or(json!([]));
    if let Some(list) = items.as_array_mut() {
        for (item, e) in list.iter_mut().zip(errors) {
            if let Some(m) = item.as_object_mut() {
                m.insert("error".into(), json!(e));
            }
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(v: Value) -> PatchItem {
        typed(&v).unwrap()
    }

    #[test]
    fn patches_are_rendered_and_read_by_strategy() {
        let i = item(
            json!({"patch_strategy": "merge", "params": [{"name": "n", "value": "3"},
            {"name": "tags", "type": "multi-select", "choice_value": ["a", "b"]}]}),
        );
        let content = with_params("spec:\n  replicas: {{.n}}\n  x: '{{.tags}}'", &i.params);
        assert_eq!(content, "spec:\n  replicas: 3\n  x: 'a,b'");
        let Ok(kube::api::Patch::Merge(v)) = patch_body(&i, &content) else {
            panic!("not a merge patch")
        };
        assert_eq!(v, json!({"spec": {"replicas": 3, "x": "a,b"}}));
        let json_patch = r#"[{"op": "replace", "path": "/spec/replicas", "value": 2}]"#;
        let j = item(json!({"patch_strategy": "json"}));
        assert!(matches!(
            patch_body(&j, json_patch),
            Ok(kube::api::Patch::Json(_))
        ));
        assert!(patch_body(&j, "{}").is_err_and(|e| e.contains("json patch")));
        let sm = item(json!({"patch_strategy": "strategic-merge"}));
        assert!(patch_body(&sm, "- a").is_err_and(|e| e.contains("not a mapping")));
        let other = item(json!({"patch_strategy": "replace"}));
        assert!(patch_body(&other, "a: 1").is_err_and(|e| e.contains("\"replace\" not supported")));
        assert_eq!(
            item(json!({"resource_group": "apps", "resource_version": "v1"})).api_version(),
            "apps/v1"
        );
        assert_eq!(item(json!({"resource_version": "v1"})).api_version(), "v1");
    }
}
