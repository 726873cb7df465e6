//! One `kube` client per cluster, and the bounded, cluster-naming way every call goes out.
//!
//! [`Clients`] caches a client per cluster id together with the cluster record's `version`;
//! a changed record (this process or another replica updated it) is rebuilt on next use, and
//! update/delete drop the entry at once. [`ClusterClient::call`] bounds each call with
//! `kube_request_timeout_secs` and turns failures into [`ApiError`]s that name the cluster:
//! unreachable, timed out or refusing our credentials → [`ErrorKind::Unreachable`] (409, the
//! cluster's state, which an admin fixes; a route gives it its Zadig code), Kubernetes `Invalid`/`BadRequest` → 422, `NotFound` → 404, `Conflict` → 409,
//! a server error of the API server → 502.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

use super::model::{Cluster, TYPE_LOCAL};
use crate::error::{ApiError, ApiResult, ErrorKind};

/// Where the in-cluster configuration comes from, for the error when it is missing.
const IN_CLUSTER_NEEDS: &str = "the environment variables KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT and the service-account token and CA at /var/run/secrets/kubernetes.io/serviceaccount/";

/// Parse a kubeconfig and check it is self-contained: credentials and CA inline, no command
/// to run (`exec`, `auth-provider`) and no local file to read — a kubeconfig naming
/// `/data/secret.key` as its token file would otherwise send the server's files to whatever
/// API server it points at. 400 naming `kube_config` otherwise.
pub fn check_kubeconfig(text: &str) -> ApiResult<Kubeconfig> {
    let bad = |why: String| ApiError::bad_request(format!("`kube_config`: {why}"));
    let kc = Kubeconfig::from_yaml(text).map_err(|e| bad(format!("not a kubeconfig: {e}")))?;
    if kc.clusters.is_empty() {
        return Err(bad("it defines no cluster".to_string()));
    }
    for c in &kc.clusters {
        let Some(cl) = &c.cluster else {
            return Err(bad(format!("cluster {:?} has no settings", c.name)));
        };
        if cl.server.as_deref().unwrap_or_default().trim().is_empty() {
            return Err(bad(format!("cluster {:?} has no `server`", c.name)));
        }
        if cl.certificate_authority.is_some() {
            return Err(bad(format!(
                "cluster {:?}: `certificate-authority` names a file on the server; give `certificate-authority-data` instead",
                c.name
            )));
        }
        if cl.proxy_url.is_some() {
            return Err(bad(format!(
                "cluster {:?}: `proxy-url` is not supported",
                c.name
            )));
        }
    }
    for u in &kc.auth_infos {
        let Some(a) = &u.auth_info else { continue };
        let file = [
            ("tokenFile", a.token_file.is_some()),
            ("client-certificate", a.client_certificate.is_some()),
            ("client-key", a.client_key.is_some()),
        ];
        if let Some((key, _)) = file.iter().find(|(_, set)| *set) {
            return Err(bad(format!(
                "user {:?}: `{key}` names a file on the server; give the credential inline (`token`, `client-certificate-data`, `client-key-data`)",
                u.name
            )));
        }
        if a.exec.is_some() || a.auth_provider.is_some() {
            return Err(bad(format!(
                "user {:?}: `exec` and `auth-provider` would run a command on the server and are not accepted; give a token or a client certificate inline",
                u.name
            )));
        }
    }
    Ok(kc)
}

/// The `kube` configuration of a kubeconfig text (checked as [`check_kubeconfig`]).
pub async fn kube_config(text: &str, timeout: Duration) -> ApiResult<kube::Config> {
    let kc = check_kubeconfig(text)?;
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| ApiError::bad_request(format!("`kube_config`: unusable: {e}")))?;
    with_timeouts(&mut cfg, timeout);
    Ok(cfg)
}

fn with_timeouts(cfg: &mut kube::Config, timeout: Duration) {
    cfg.connect_timeout = Some(timeout);
    cfg.read_timeout = Some(timeout);
    cfg.write_timeout = Some(timeout);
}

/// A client for one cluster, with the cluster's label for errors and the call bound.
#[derive(Clone)]
pub struct ClusterClient {
    pub client: kube::Client,
    /// `cluster "name" (id)`.
    pub label: String,
    pub timeout: Duration,
}

impl ClusterClient {
    /// Run one call to the cluster, bounded; failures name the cluster and `what`.
    pub async fn call<T>(
        &self,
        what: &str,
        f: impl Future<Output = Result<T, kube::Error>>,
    ) -> ApiResult<T> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(kube_error(&self.label, what, &e)),
            Err(_) => Err(self.timed_out(what)),
        }
    }

    fn timed_out(&self, what: &str) -> ApiError {
        ApiError::new(
            ErrorKind::Unreachable,
            format!(
                "{} is unreachable: {what} got no answer within {}s (kube_request_timeout_secs)",
                self.label,
                self.timeout.as_secs()
            ),
        )
    }

    /// Like [`Self::call`], with Kubernetes' `NotFound` as `None`.
    pub async fn call_opt<T>(
        &self,
        what: &str,
        f: impl Future<Output = Result<T, kube::Error>>,
    ) -> ApiResult<Option<T>> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Ok(Some(v)),
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => Ok(None),
            Ok(Err(e)) => Err(kube_error(&self.label, what, &e)),
            Err(_) => Err(self.timed_out(what)),
        }
    }
}

/// A `kube` failure as the client sees it (see the module doc for the statuses).
pub fn kube_error(label: &str, what: &str, err: &kube::Error) -> ApiError {
    match err {
        kube::Error::Api(s) => {
            let text = format!("{what} on {label}: {} ({})", s.message, s.reason);
            match s.code {
                404 => ApiError::not_found(text),
                409 => ApiError::conflict(text),
                400 | 422 => ApiError::new(ErrorKind::Unprocessable, text),
                401 | 403 => ApiError::new(
                    ErrorKind::Unreachable,
                    format!(
                        "{label} refused the credentials of its kubeconfig ({}): {what}: {}",
                        s.code, s.message
                    ),
                ),
                _ => ApiError::new(
                    ErrorKind::BadGateway,
                    format!("{label} failed ({}): {what}: {}", s.code, s.message),
                ),
            }
        }
        other => {
            let detail = crate::error::error_chain(other);
            ApiError::new(
                ErrorKind::Unreachable,
                format!("{label} is unreachable: {what}: {detail}"),
            )
        }
    }
}

/// A cluster that cannot be used as recorded (no in-cluster configuration, a kubeconfig that
/// does not load): like an unreachable one, the cluster's state, which an admin fixes.
fn unusable(description: String) -> ApiError {
    ApiError::new(ErrorKind::Unreachable, description)
}

/// The cache of clients, keyed by cluster id.
pub struct Clients {
    cache: Mutex<HashMap<String, (i64, kube::Client)>>,
    timeout: Duration,
}

impl Clients {
    pub fn new(timeout: Duration) -> Self {
        Self {
            cache: Mutex::new(HashMap::new()),
            timeout,
        }
    }

    /// The client of `cluster`, built once per record version.
    pub async fn get(&self, cluster: &Cluster) -> ApiResult<ClusterClient> {
        let wrap = |client| ClusterClient {
            client,
            label: cluster.label(),
            timeout: self.timeout,
        };
        if let Some((v, c)) = self.lock().get(&cluster.id)
            && *v == cluster.version
        {
            return Ok(wrap(c.clone()));
        }
        let cfg = if cluster.kind == TYPE_LOCAL {
            let mut cfg = kube::Config::incluster().map_err(|e| {
                unusable(format!(
                    "{} is not available: zadig-server is not running in a Kubernetes cluster (it needs {IN_CLUSTER_NEEDS}): {e}",
                    cluster.label()
                ))
            })?;
            with_timeouts(&mut cfg, self.timeout);
            cfg
        } else {
            kube_config(&cluster.kube_config, self.timeout)
                .await
                .map_err(|e| {
                    unusable(format!(
                        "{} has an unusable kubeconfig: {}",
                        cluster.label(),
                        e.description
                    ))
                })?
        };
        let client = kube::Client::try_from(cfg).map_err(|e| {
            unusable(format!(
                "{}: cannot build a Kubernetes client: {e}",
                cluster.label()
            ))
        })?;
        self.lock()
            .insert(cluster.id.clone(), (cluster.version, client.clone()));
        Ok(wrap(client))
    }

    /// Forget the client of cluster `id` (it changed or is gone).
    pub fn invalidate(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, kube::Client)>> {
        // A panic while holding the lock leaves only a cache behind: keep using it.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}
