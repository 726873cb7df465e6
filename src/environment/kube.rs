//! The cluster side of environments: namespaces, server-side apply of rendered objects with
//! one field manager ([`FIELD_MANAGER`]), deletes and live reads. Every call goes through
//! [`ClusterClient::call`], so it is bounded and its failure names the cluster.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Scope;
use serde_json::{Value, json};

use super::model::ResourceRef;
use crate::cluster::client::ClusterClient;
use crate::error::{ApiError, ApiResult, ErrorKind};

/// The one field manager every write of ours uses.
pub const FIELD_MANAGER: &str = "zadig-server";

/// Namespace labels Zadig puts on namespaces it creates (spec §1.5).
pub const LABEL_CREATED_BY: &str = "createdBy";
pub const CREATED_BY_VALUE: &str = "koderover";
pub const LABEL_PRODUCT: &str = "s-product";
pub const LABEL_SERVICE: &str = "s-service";

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// A patch (not an apply) under our field manager.
fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    }
}

/// What a namespace looks like now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NsState {
    Absent,
    Active,
    Terminating,
}

pub async fn namespace_state(cc: &ClusterClient, ns: &str) -> ApiResult<NsState> {
    let api: Api<Namespace> = Api::all(cc.client.clone());
    let got = cc
        .call_opt(&format!("reading namespace {ns:?}"), api.get(ns))
        .await?;
    Ok(match got {
        None => NsState::Absent,
        Some(n) if n.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating") => {
            NsState::Terminating
        }
        Some(_) => NsState::Active,
    })
}

/// Create namespace `ns` with Zadig's labels. A create, not an apply: should someone else
/// make `ns` meanwhile, the call fails (409) rather than label their namespace.
pub async fn create_namespace(cc: &ClusterClient, ns: &str, project: &str) -> ApiResult<()> {
    let api: Api<Namespace> = Api::all(cc.client.clone());
    let labels = [
        (LABEL_CREATED_BY, CREATED_BY_VALUE),
        (LABEL_PRODUCT, project),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let body = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(ns.to_string()),
            labels: Some(BTreeMap::from(labels)),
            ..kube::api::ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let params = kube::api::PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..kube::api::PostParams::default()
    };
    cc.call(
        &format!("creating namespace {ns:?}"),
        api.create(&params, &body),
    )
    .await
    .map(|_| ())
}

/// Delete namespace `ns` (and with it everything in it); gone already is fine.
pub async fn delete_namespace(cc: &ClusterClient, ns: &str) -> ApiResult<()> {
    let api: Api<Namespace> = Api::all(cc.client.clone());
    cc.call_opt(
        &format!("deleting namespace {ns:?}"),
        api.delete(ns, &DeleteParams::background()),
    )
    .await
    .map(|_| ())
}

/// Take Zadig's labels off an adopted-then-released namespace.
pub async fn unlabel_namespace(cc: &ClusterClient, ns: &str) -> ApiResult<()> {
    let api: Api<Namespace> = Api::all(cc.client.clone());
    let body = json!({"metadata": {"labels": {LABEL_CREATED_BY: null, LABEL_PRODUCT: null}}});
    cc.call_opt(
        &format!("removing Zadig's labels from namespace {ns:?}"),
        api.patch(ns, &patch_params(), &Patch::Merge(&body)),
    )
    .await
    .map(|_| ())
}

/// `apiVersion` → (group, version).
fn group_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// Resolves kinds to resources through the cluster's discovery, once per kind per call.
#[derive(Default)]
pub struct Kinds {
    seen: HashMap<(String, String), (ApiResource, bool)>,
}

impl Kinds {
    /// The resource of `apiVersion`/`kind`, and whether it is namespaced.
    pub async fn resolve(
        &mut self,
        cc: &ClusterClient,
        api_version: &str,
        kind: &str,
    ) -> ApiResult<(ApiResource, bool)> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(v) = self.seen.get(&key) {
            return Ok(v.clone());
        }
        let (g, v) = group_version(api_version);
        let gvk = GroupVersionKind::gvk(g, v, kind);
        let what = format!("looking up kind {kind} ({api_version})");
        let found = cc
            .call_opt(&what, kube::discovery::pinned_kind(&cc.client, &gvk))
            .await
            .map_err(|e| {
                if matches!(e.kind, ErrorKind::Conflict | ErrorKind::Unreachable) {
                    e
                } else {
                    ApiError::new(
                        ErrorKind::Unprocessable,
                        format!(
                            "kind {kind} ({api_version}) is not served by {}: {}",
                            cc.label, e.description
                        ),
                    )
                }
            })?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::Unprocessable,
                    format!("kind {kind} ({api_version}) is not served by {}", cc.label),
                )
            })?;
        let v = (found.0, found.1.scope == Scope::Namespaced);
        self.seen.insert(key, v.clone());
        Ok(v)
    }
}

fn api_of(cc: &ClusterClient, ar: &ApiResource, namespaced: bool, ns: &str) -> Api<DynamicObject> {
    if namespaced {
        Api::namespaced_with(cc.client.clone(), ns, ar)
    } else {
        Api::all_with(cc.client.clone(), ar)
    }
}

fn resource_of(r: &ResourceRef) -> ApiResource {
    let (g, v) = group_version(&r.api_version);
    ApiResource {
        group: g.to_string(),
        version: v.to_string(),
        api_version: r.api_version.clone(),
        kind: r.kind.clone(),
        plural: r.plural.clone(),
    }
}

/// `apiVersion`, `kind` and `metadata.name` of a rendered object, or 422 naming what lacks.
pub fn identity(obj: &Value) -> ApiResult<(String, String, String)> {
    let s = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (av, kind, name) = (s("/apiVersion"), s("/kind"), s("/metadata/name"));
    if av.is_empty() || kind.is_empty() || name.is_empty() {
        return Err(ApiError::new(
            ErrorKind::Unprocessable,
            format!(
                "a rendered object lacks apiVersion, kind or metadata.name (apiVersion {av:?}, kind {kind:?}, name {name:?})"
            ),
        ));
    }
    Ok((av, kind, name))
}

/// The reference of an object (resolving its kind).
pub async fn reference(
    cc: &ClusterClient,
    kinds: &mut Kinds,
    obj: &Value,
) -> ApiResult<ResourceRef> {
    let (av, kind, name) = identity(obj)?;
    let (ar, namespaced) = kinds.resolve(cc, &av, &kind).await?;
    Ok(ResourceRef {
        api_version: av,
        kind,
        plural: ar.plural,
        namespaced,
        name,
    })
}

/// Server-side apply `obj` (already carrying its namespace when namespaced).
///
/// A Job's pod template cannot change in place: when the API server refuses a change of a
/// Job as immutable, the Job is deleted and created again (as Zadig does with every Job it
/// applies), so it runs once more with the new template.
pub async fn apply(cc: &ClusterClient, ns: &str, r: &ResourceRef, obj: &Value) -> ApiResult<()> {
    match server_side_apply(cc, ns, r, obj).await {
        Err(e) if is_job(r) && immutable(&e) => recreate(cc, ns, r, obj).await,
        other => other.map(|_| ()),
    }
}

/// Server-side apply `obj` as [`apply`] does (not for a Job, which it may create again), and
/// answer the `metadata.uid` of the object applied: what a clean-up later deletes only while
/// it is still that object ([`delete_if_uid`]).
pub async fn apply_uid(
    cc: &ClusterClient,
    ns: &str,
    r: &ResourceRef,
    obj: &Value,
) -> ApiResult<String> {
    let o = server_side_apply(cc, ns, r, obj).await?;
    Ok(o.metadata.uid.unwrap_or_default())
}

async fn server_side_apply(
    cc: &ClusterClient,
    ns: &str,
    r: &ResourceRef,
    obj: &Value,
) -> ApiResult<DynamicObject> {
    let api = api_of(cc, &resource_of(r), r.namespaced, ns);
    cc.call(
        &format!("applying {} {:?}", r.kind, r.name),
        api.patch(&r.name, &apply_params(), &Patch::Apply(obj)),
    )
    .await
}

fn is_job(r: &ResourceRef) -> bool {
    r.kind == "Job" && r.api_version == "batch/v1"
}

/// Whether the API server refused a change only a new object can make (Kubernetes' wording).
fn immutable(e: &ApiError) -> bool {
    e.kind == ErrorKind::Unprocessable && e.description.contains("field is immutable")
}

/// How often a deleted Job is looked for until it is gone.
const GONE_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Delete the object `r` and wait until it is gone, for `within` at most (then a 409 saying
/// it is still there).
pub async fn delete_and_wait(
    cc: &ClusterClient,
    ns: &str,
    r: &ResourceRef,
    within: std::time::Duration,
) -> ApiResult<()> {
    delete(cc, ns, r).await?;
    wait_gone(cc, ns, r, None, within).await
}

/// Wait until object `r` — the one of `uid`, when given: another of its name does not count —
/// is gone, for `within` at most (then a 409 saying it is still there).
pub async fn wait_gone(
    cc: &ClusterClient,
    ns: &str,
    r: &ResourceRef,
    uid: Option<&str>,
    within: std::time::Duration,
) -> ApiResult<()> {
    let until = tokio::time::Instant::now() + within;
    let same = |o: &Value| uid.is_none_or(|u| o.pointer("/metadata/uid") == Some(&json!(u)));
    while get(cc, ns, r).await?.is_some_and(|o| same(&o)) {
        if tokio::time::Instant::now() >= until {
            return Err(ApiError::conflict(format!(
                "{} {:?} was deleted and is still there after {}s",
                r.kind,
                r.name,
                within.as_secs()
            )));
        }
        tokio::time::sleep(GONE_POLL).await;
    }
    Ok(())
}

/// Delete Job `r` (its pods after it), wait until it is gone — within the client's request
/// timeout — and create it from `obj`.
async fn recreate(cc: &ClusterClient, ns: &str, r: &ResourceRef, obj: &Value) -> ApiResult<()> {
    delete_and_wait(cc, ns, r, cc.timeout).await.map_err(|e| {
        e.map_description(|d| {
            format!("{d} (deleted to be created again with its new pod template)")
        })
    })?;
    server_side_apply(cc, ns, r, obj).await.map(|_| ()).map_err(|e| {
        e.map_description(|d| {
            format!(
                "Job {:?} was deleted to be created again with its new pod template (Kubernetes does not change one in place), and creating it failed: {d}",
                r.name
            )
        })
    })
}

/// Strategic-merge patch `body` into the object (Zadig's image update of a workload it does
/// not own: only the fields named change), with our field manager.
pub async fn patch_strategic(
    cc: &ClusterClient,
    ns: &str,
    r: &ResourceRef,
    body: &Value,
) -> ApiResult<()> {
    patch(cc, ns, r, &Patch::Strategic(body)).await
}

/// Patch the object with `body` (strategic-merge, JSON merge or JSON patch), with our field
/// manager.
pub async fn patch<P: serde::Serialize + std::fmt::Debug>(
    cc: &ClusterClient,
    ns: &str,
    r: &ResourceRef,
    body: &Patch<P>,
) -> ApiResult<()> {
    let api = api_of(cc, &resource_of(r), r.namespaced, ns);
    cc.call(
        &format!("patching {} {:?}", r.kind, r.name),
        api.patch(&r.name, &patch_params(), body),
    )
    .await
    .map(|_| ())
}

/// Delete one object; gone already is fine.
pub async fn delete(cc: &ClusterClient, ns: &str, r: &ResourceRef) -> ApiResult<()> {
    let api = api_of(cc, &resource_of(r), r.namespaced, ns);
    cc.call_opt(
        &format!("deleting {} {:?}", r.kind, r.name),
        api.delete(&r.name, &DeleteParams::background()),
    )
    .await
    .map(|_| ())
}

/// How a write conditioned on which object it meets (its uid, its resourceVersion) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guarded {
    Done,
    /// No object of that name.
    Absent,
    /// Refused (409): the object of that name is another one (a new uid), or changed since it
    /// was read (a new resourceVersion); Kubernetes' message.
    Stale(String),
}

/// Run `f`, a write with a precondition, as a [`Guarded`] end.
async fn guarded<T>(
    cc: &ClusterClient,
    what: &str,
    f: impl Future<Output = Result<T, kube::Error>>,
) -> ApiResult<Guarded> {
    let f = async {
        match f.await {
            Ok(_) => Ok(Guarded::Done),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Guarded::Stale(s.message)),
            Err(e) => Err(e),
        }
    };
    Ok(cc.call_opt(what, f).await?.unwrap_or(Guarded::Absent))
}

/// Delete object `r` if it is still the object of `uid` (Kubernetes' delete precondition): a
/// newer object of the same name is not touched.
pub async fn delete_if_uid(
    cc: &ClusterClient,
    ns: &str,
    r: &ResourceRef,
    uid: &str,
) -> ApiResult<Guarded> {
    let api = api_of(cc, &resource_of(r), r.namespaced, ns);
    let mut dp = DeleteParams::background();
    dp.preconditions = Some(Preconditions {
        uid: Some(uid.to_string()),
        resource_version: None,
    });
    let what = format!("deleting {} {:?}", r.kind, r.name);
    guarded(cc, &what, api.delete(&r.name, &dp)).await
}

/// Merge-patch `body` (an object) into object `r` if it has not changed since it was read at
/// `resource_version` (Kubernetes' optimistic concurrency), with our field manager.
pub async fn merge_if_unchanged(
    cc: &ClusterClient,
    ns: &str,
    r: &ResourceRef,
    resource_version: &str,
    mut body: Value,
) -> ApiResult<Guarded> {
    if let Some(m) = body.as_object_mut() {
        let meta = m.entry("metadata").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("resourceVersion".into(), json!(resource_version));
        }
    }
    let api = api_of(cc, &resource_of(r), r.namespaced, ns);
    let what = format!("patching {} {:?}", r.kind, r.name);
    guarded(
        cc,
        &what,
        api.patch(&r.name, &patch_params(), &Patch::Merge(&body)),
    )
    .await
}

/// The live object, if any.
pub async fn get(cc: &ClusterClient, ns: &str, r: &ResourceRef) -> ApiResult<Option<Value>> {
    let api = api_of(cc, &resource_of(r), r.namespaced, ns);
    let got = cc
        .call_opt(
            &format!("reading {} {:?}", r.kind, r.name),
            api.get(&r.name),
        )
        .await?;
    got.map(|o| {
        serde_json::to_value(o)
            .map_err(|e| ApiError::internal(format!("re-encoding {}: {e}", r.kind)))
    })
    .transpose()
}

/// Pods of namespace `ns` matching `labels` (every pod when empty).
pub async fn pods(
    cc: &ClusterClient,
    ns: &str,
    labels: &BTreeMap<String, String>,
) -> ApiResult<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(cc.client.clone(), ns);
    let selector = labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let lp = ListParams::default().labels(&selector);
    Ok(cc
        .call(&format!("listing pods of namespace {ns:?}"), api.list(&lp))
        .await?
        .items)
}

/// The Deployments of namespace `ns`.
pub async fn deployments(cc: &ClusterClient, ns: &str) -> ApiResult<Vec<Deployment>> {
    let api: Api<Deployment> = Api::namespaced(cc.client.clone(), ns);
    Ok(cc
        .call(
            &format!("listing deployments of namespace {ns:?}"),
            api.list(&ListParams::default()),
        )
        .await?
        .items)
}

/// The Service `name` in `ns`, if any.
pub async fn service(cc: &ClusterClient, ns: &str, name: &str) -> ApiResult<Option<Service>> {
    let api: Api<Service> = Api::namespaced(cc.client.clone(), ns);
    cc.call_opt(&format!("reading service {name:?}"), api.get(name))
        .await
}

/// The pod `name` in `ns`, if any.
pub async fn pod(cc: &ClusterClient, ns: &str, name: &str) -> ApiResult<Option<Pod>> {
    let api: Api<Pod> = Api::namespaced(cc.client.clone(), ns);
    cc.call_opt(&format!("reading pod {name:?}"), api.get(name))
        .await
}

/// Delete pod `name` so its controller makes a new one.
pub async fn delete_pod(cc: &ClusterClient, ns: &str, name: &str) -> ApiResult<()> {
    let api: Api<Pod> = Api::namespaced(cc.client.clone(), ns);
    cc.call_opt(
        &format!("deleting pod {name:?}"),
        api.delete(name, &DeleteParams::foreground()),
    )
    .await
    .map(|_| ())
}
