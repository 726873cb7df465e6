//! The delivery pipeline: a background loop that finds versions in `creating`/`retrying`,
//! claims each with a lease (so one replica runs it), copies its pushed images, packages
//! (and pushes) its Helm charts, and writes `success` or `failed` (spec/delivery.md §7,
//! DESIGN.md §5).
//!
//! - The work is the version document itself: nothing is held only in memory, so a restart
//!   or another replica picks up where a run stopped. Items that passed are not redone.
//! - Every write is fenced by the version's `attempt` and our lease (see [`super::store`]);
//!   a run whose version was deleted or taken over stops at its next write or lease renewal,
//!   and a delete in this process cancels the run at once.
//! - A failed copy is recorded on the image and fails the version; there is no automatic
//!   retry (the retry route re-runs what failed).
//! - On shutdown a run gives its lease back without an outcome.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use oci_client::Reference;
use tokio_util::sync::CancellationToken;

use super::chart::{ChartSpec, package};
use super::copier::{CopyError, RegistryAccess, fold_host, parse_image, registry_host};
use super::model::{
    ChartPackage, DeliveryVersion, ItemStatus, TYPE_HELM, VersionImage, VersionService,
    VersionStatus,
};
use super::registry::{HelmRepo, Registry};
use crate::state::AppState;
use crate::store::StoreResult;
use crate::worker::{Pool, renewing};

/// Run the pipeline until shutdown.
pub async fn run(state: AppState) {
    let d = state.delivery.clone();
    let ttl = lease_ttl(&state);
    let poll = Duration::from_millis(state.config.delivery_poll_ms.max(10));
    let mut pool = Pool::new(state.config.delivery_workers);
    loop {
        pool.fill(
            &state.shutdown,
            "delivery pipeline",
            || d.versions.claim(&state.instance_id, ttl),
            |v| run_version(state.clone(), v),
        )
        .await;
        if !pool.wait(&state.shutdown, &d.wake, poll).await {
            break;
        }
    }
    // Runs watch the shutdown token and give their leases back.
    pool.join().await;
}

fn lease_ttl(state: &AppState) -> Duration {
    Duration::from_secs(state.config.delivery_lease_secs.max(1))
}

/// How a run ended.
enum End {
    /// All items were tried; the outcome is on the version.
    Done,
    /// Stopped (shutdown, delete, lost lease) before the end.
    Stopped,
}

async fn run_version(state: AppState, mut v: DeliveryVersion) {
    let d = state.delivery.clone();
    let owner = state.instance_id.clone();
    let token = state.shutdown.child_token();
    d.running_map().insert(v.id.clone(), token.clone());
    tracing::info!(delivery.id = %v.id, attempt = v.attempt, "delivery version {} ({}) pipeline started", v.version, v.status.as_str());

    // Keep the lease while we work; losing it (delete, retry, takeover) stops the run.
    let held = v.clone();
    let ttl = lease_ttl(&state);
    let finished = renewing(
        complete(&state, &mut v, &owner, &token),
        ttl,
        &token,
        &format!("delivery version {}", held.id),
        || d.versions.renew(&held, &owner, ttl),
    )
    .await;
    token.cancel();
    if !finished && state.shutdown.is_cancelled() {
        // Hand the run over at once instead of after the lease expires.
        let _ = d.versions.release(&v, &owner).await;
    }
    d.running_map().remove(&v.id);
}

/// Run the version's pending work and store its outcome: true when the outcome was stored.
async fn complete(
    state: &AppState,
    v: &mut DeliveryVersion,
    owner: &str,
    token: &CancellationToken,
) -> bool {
    let d = &state.delivery;
    let end = match execute(state, v, token).await {
        Ok(end) => end,
        Err(e) => {
            tracing::warn!(delivery.id = %v.id, error = %e, "delivery version {} run interrupted by a storage error: {e}", v.id);
            End::Stopped
        }
    };
    match end {
        End::Done => {
            let now = state.clock.now();
            match d.versions.finish(v, owner, now).await {
                Ok(true) => {
                    tracing::info!(delivery.id = %v.id, status = v.status.as_str(),
                        "delivery version {} finished: {}", v.version, v.status.as_str());
                    true
                }
                Ok(false) => false,
                Err(e) => {
                    tracing::warn!(delivery.id = %v.id, error = %e, "cannot store the outcome of delivery version {}: {e}", v.id);
                    false
                }
            }
        }
        End::Stopped => false,
    }
}

/// Save progress; `false` means the run is no longer ours.
async fn save(state: &AppState, v: &DeliveryVersion) -> StoreResult<bool> {
    state
        .delivery
        .versions
        .save_services(v, &state.instance_id, state.clock.now())
        .await
}

/// Run every pending item of `v`, then set its outcome (not yet stored).
async fn execute(
    state: &AppState,
    v: &mut DeliveryVersion,
    token: &CancellationToken,
) -> StoreResult<End> {
    if !copy_images(state, v, token).await? {
        return Ok(End::Stopped);
    }
    if v.kind == TYPE_HELM && !push_charts(state, v, token).await? {
        return Ok(End::Stopped);
    }
    set_outcome(v);
    Ok(End::Done)
}

/// Copy the pending images, a few at a time, saving each start and end. False when the run
/// stopped (shutdown, delete, lost lease).
async fn copy_images(
    state: &AppState,
    v: &mut DeliveryVersion,
    token: &CancellationToken,
) -> StoreResult<bool> {
    let d = &state.delivery;
    let target = if v.image_registry_id.is_empty() {
        None
    } else {
        d.registries.registry(&v.image_registry_id).await?
    };
    let all_registries = d.registries.registries().await?;
    let ctx = CopyCtx {
        state,
        target: target.as_ref(),
        target_id: v.image_registry_id.clone(),
        registries: &all_registries,
        timeout: Duration::from_secs(state.config.delivery_copy_timeout_secs.max(1)),
        token,
    };
    let mut queue = v
        .services
        .iter()
        .enumerate()
        .flat_map(|(si, s)| {
            s.images
                .iter()
                .enumerate()
                .filter(|(_, im)| im.push_image && im.status != ItemStatus::Passed)
                .map(move |(ii, _)| (si, ii))
        })
        .collect::<Vec<_>>()
        .into_iter();
    let parallel = state.config.delivery_copy_parallelism.max(1);
    let mut copies = FuturesUnordered::new();
    loop {
        while copies.len() < parallel {
            let Some((si, ii)) = queue.next() else { break };
            if token.is_cancelled() {
                return Ok(false);
            }
            let im = &mut v.services[si].images[ii];
            im.status = ItemStatus::Running;
            let (source, target_image) = (im.source_image.clone(), im.target_image.clone());
            if !save(state, v).await? {
                return Ok(false);
            }
            let ctx = &ctx;
            copies.push(async move { (si, ii, ctx.copy(&source, &target_image).await) });
        }
        let Some((si, ii, result)) = copies.next().await else {
            return Ok(true);
        };
        let Some(result) = result else {
            return Ok(false);
        };
        record_copy(&v.id, &mut v.services[si].images[ii], result);
        if !save(state, v).await? {
            return Ok(false);
        }
    }
}

/// An image copy's end on its item (and in the metrics and the log).
fn record_copy(id: &str, im: &mut VersionImage, result: Result<String, CopyError>) {
    match result {
        Ok(digest) => {
            metrics::counter!("delivery_image_copies_total", "result" => ItemStatus::Passed.as_str()).increment(1);
            tracing::info!(delivery.id = %id, "copied {} to {} ({digest})", im.source_image, im.target_image);
            im.status = ItemStatus::Passed;
            im.error.clear();
            im.digest = digest;
        }
        Err(e) => {
            metrics::counter!("delivery_image_copies_total", "result" => ItemStatus::Failed.as_str()).increment(1);
            tracing::warn!(delivery.id = %id, "copy of {} to {} failed: {e}", im.source_image, im.target_image);
            im.status = ItemStatus::Failed;
            im.error = format!(
                "failed to copy image {} to {}: {e}",
                im.source_image, im.target_image
            );
        }
    }
}

/// Package (and push) the pending charts of a Helm version, one service at a time. False
/// when the run stopped.
async fn push_charts(
    state: &AppState,
    v: &mut DeliveryVersion,
    token: &CancellationToken,
) -> StoreResult<bool> {
    let repo = if v.chart_repo_name.is_empty() {
        Ok(None)
    } else {
        state
            .delivery
            .registries
            .repo_by_name(&v.chart_repo_name)
            .await?
            .map(Some)
            .ok_or_else(|| format!("chart repository {:?} not found", v.chart_repo_name))
    };
    for si in 0..v.services.len() {
        if v.services[si].chart_status == ItemStatus::Passed {
            continue;
        }
        if token.is_cancelled() {
            return Ok(false);
        }
        let outcome = match &repo {
            Ok(repo) => {
                tokio::select! {
                    () = token.cancelled() => return Ok(false),
                    r = chart(state, v, si, repo.as_ref()) => r?,
                }
            }
            Err(e) => Err(e.clone()),
        };
        record_chart(&v.id, &mut v.services[si], outcome);
        if !save(state, v).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A chart's end on its service (and in the metrics and the log); `Ok` holds where it was
/// pushed (empty: packaged only).
fn record_chart(id: &str, s: &mut VersionService, outcome: Result<String, String>) {
    match outcome {
        Ok(at) => {
            metrics::counter!("delivery_charts_total", "result" => ItemStatus::Passed.as_str())
                .increment(1);
            tracing::info!(delivery.id = %id, "chart {}-{} of {} packaged{}", s.chart_name, s.chart_version, s.service_name,
                if at.is_empty() { String::new() } else { format!(", pushed to {at}") });
            s.chart_status = ItemStatus::Passed;
            s.error.clear();
        }
        Err(e) => {
            metrics::counter!("delivery_charts_total", "result" => ItemStatus::Failed.as_str())
                .increment(1);
            tracing::warn!(delivery.id = %id, "chart of {} failed: {e}", s.service_name);
            s.chart_status = ItemStatus::Failed;
            s.error = format!(
                "failed to package or push chart {}-{}: {e}",
                s.chart_name, s.chart_version
            );
        }
    }
}

/// The version's outcome from its items: `success`, or `failed` with every item's error.
fn set_outcome(v: &mut DeliveryVersion) {
    let mut errors = Vec::new();
    for s in &v.services {
        for im in &s.images {
            if im.push_image && im.status != ItemStatus::Passed {
                errors.push(format!(
                    "service {} container {}: {}",
                    s.service_name, im.container_name, im.error
                ));
            }
        }
        if v.kind == TYPE_HELM && s.chart_status != ItemStatus::Passed {
            errors.push(format!("service {}: {}", s.service_name, s.error));
        }
    }
    if errors.is_empty() {
        v.status = VersionStatus::Success;
        v.error.clear();
    } else {
        v.status = VersionStatus::Failed;
        v.error = multi_error(&errors);
    }
}

/// Zadig's multi-error text: `1 error occurred:\n\t* e\n\n`.
fn multi_error(errors: &[String]) -> String {
    let head = if errors.len() == 1 {
        "1 error occurred:".to_string()
    } else {
        format!("{} errors occurred:", errors.len())
    };
    let mut text = head;
    for e in errors {
        text.push_str("\n\t* ");
        text.push_str(e);
    }
    text.push_str("\n\n");
    text
}

/// How to reach a registry entry (an ECR registry's AWS keys exchanged for a login).
async fn access_of(state: &AppState, r: &Registry) -> Result<RegistryAccess, CopyError> {
    let (username, password) = state
        .delivery
        .login(r, state.clock.now_ms())
        .await
        .map_err(CopyError)?;
    Ok(RegistryAccess {
        username,
        password,
        plain_http: r.plain_http(),
        ca_pem: (r.enable_tls && !r.tls_cert.trim().is_empty()).then(|| r.tls_cert.clone()),
    })
}

/// The configured registry an image lives on (the one whose namespace prefixes its
/// repository first), or anonymous HTTPS access.
async fn source_access(
    state: &AppState,
    src: &Reference,
    registries: &[Registry],
) -> Result<RegistryAccess, CopyError> {
    let host = registry_host(src);
    let on_host: Vec<&Registry> = registries
        .iter()
        .filter(|r| fold_host(&r.host()) == host)
        .collect();
    let repo = src.repository();
    let found = on_host
        .iter()
        .find(|r| {
            !r.namespace.is_empty()
                && repo.starts_with(&format!("{}/", r.namespace.trim_matches('/')))
        })
        .or(on_host.first());
    match found {
        Some(r) => access_of(state, r).await,
        None => Ok(RegistryAccess::default()),
    }
}

/// What every image copy of a run shares.
struct CopyCtx<'a> {
    state: &'a AppState,
    target: Option<&'a Registry>,
    target_id: String,
    registries: &'a [Registry],
    timeout: Duration,
    token: &'a CancellationToken,
}

/// Aborts a spawned task when dropped (a stopped run must not leave copies behind).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl CopyCtx<'_> {
    /// Copy one image; `None` when the run was stopped meanwhile.
    async fn copy(&self, source: &str, target_image: &str) -> Option<Result<String, CopyError>> {
        let Some(target) = self.target else {
            return Some(Err(CopyError(format!(
                "image registry {:?} not found",
                self.target_id
            ))));
        };
        let src = match parse_image(source, "") {
            Ok(r) => r,
            Err(e) => return Some(Err(CopyError(format!("source image {e}")))),
        };
        let dst = match parse_image(target_image, "") {
            Ok(r) => r,
            Err(e) => return Some(Err(CopyError(format!("target image {e}")))),
        };
        let src_access = match source_access(self.state, &src, self.registries).await {
            Ok(a) => a,
            Err(e) => return Some(Err(CopyError(format!("source registry: {}", e.0)))),
        };
        let dst_access = match access_of(self.state, target).await {
            Ok(a) => a,
            Err(e) => return Some(Err(e)),
        };
        let copier = Arc::clone(&self.state.delivery.copier);
        let timeout = self.timeout;
        // A separate task, so a panic in the transport fails this copy instead of the run.
        let mut job = AbortOnDrop(tokio::spawn(async move {
            tokio::time::timeout(timeout, copier.copy(&src, &src_access, &dst, &dst_access)).await
        }));
        tokio::select! {
            () = self.token.cancelled() => None,
            r = &mut job.0 => Some(match r {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(CopyError(format!(
                    "timed out after {}s (delivery_copy_timeout_secs)",
                    timeout.as_secs()
                ))),
                Err(e) => Err(CopyError(format!("the copy task failed: {e}"))),
            }),
        }
    }
}

/// Package the chart of service `si` (on the base chart, if any), keep it with the version
/// and push it to `repo`. Returns where it was pushed (`""` when kept only).
async fn chart(
    state: &AppState,
    v: &DeliveryVersion,
    si: usize,
    repo: Option<&HelmRepo>,
) -> StoreResult<Result<String, String>> {
    let d = &state.delivery;
    let s = &v.services[si];
    let b64 = base64::engine::general_purpose::STANDARD;
    let base = match d.versions.chart(&v.id, &s.service_name).await? {
        Some(p) => match b64.decode(p.tgz.as_bytes()) {
            Ok(b) => Some(b),
            Err(e) => return Ok(Err(format!("the stored base chart is corrupt: {e}"))),
        },
        None => None,
    };
    let now = state.clock.now();
    let description = format!(
        "{} {} of project {}",
        s.service_name, v.version, v.project_name
    );
    let pkg = match package(&ChartSpec {
        name: &s.chart_name,
        version: &s.chart_version,
        values_yaml: &s.yaml_content,
        description: &description,
        base: base.as_deref(),
        mtime: u64::try_from(now).unwrap_or(0),
    }) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    d.versions
        .put_chart(&ChartPackage {
            id: ChartPackage::key(&v.id, &s.service_name),
            version_id: v.id.clone(),
            service_name: s.service_name.clone(),
            chart_name: s.chart_name.clone(),
            chart_version: s.chart_version.clone(),
            packaged: true,
            tgz: b64.encode(&pkg.tgz),
            updated_at: now,
        })
        .await?;
    let Some(repo) = repo else {
        return Ok(Ok(String::new()));
    };
    let limit = Duration::from_secs(state.config.delivery_copy_timeout_secs.max(1));
    let pushed = d
        .publisher
        .push(repo, &s.chart_name, &s.chart_version, &pkg);
    Ok(tokio::time::timeout(limit, pushed)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "timed out after {}s (delivery_copy_timeout_secs)",
                limit.as_secs()
            ))
        }))
}
