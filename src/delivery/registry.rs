//! Image registries (Zadig's `/openapi/system/registry`, DESIGN.md §5) and Helm chart
//! repositories (our `/openapi/system/helm` extension): models, input checks and stores.
//!
//! Other areas (builds pushing images) find registries through [`RegistryStore`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Identity;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{Backend, Dir, Filter, FindOptions, StoreError, StoreResult, Typed, Update};
use crate::validate;

/// Registry providers Zadig accepts.
pub const PROVIDERS: &[&str] = &["native", "harbor", "dockerhub", "acr", "tcr", "swr", "ecr"];

/// A stored image registry. `secret_key` never leaves the server (nor its `Debug` output).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    pub id: String,
    /// As given: `https://host[:port]`, `http://host[:port]` (plain HTTP) or `host[:port]`.
    pub address: String,
    pub provider: String,
    pub namespace: String,
    pub is_default: bool,
    pub access_key: String,
    pub secret_key: String,
    pub enable_tls: bool,
    pub tls_cert: String,
    pub region: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub updated_by: String,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("id", &self.id)
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for HelmRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelmRepo")
            .field("id", &self.id)
            .field("repo_name", &self.repo_name)
            .field("url", &self.url)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// The registry host (`host[:port]`) images on it are named with.
    pub fn host(&self) -> String {
        address_host(&self.address)
    }

    /// Whether to talk plain HTTP (an `http://` address).
    pub fn plain_http(&self) -> bool {
        self.address
            .trim()
            .to_ascii_lowercase()
            .starts_with("http://")
    }

    /// `<host>/<namespace>`, Zadig's key for a registry (spec/workflow.md: `registry`).
    pub fn key(&self) -> String {
        let host = self.host();
        if self.namespace.is_empty() {
            host
        } else {
            format!("{host}/{}", self.namespace.trim_matches('/'))
        }
    }
}

/// `host[:port]` of a registry address, without scheme, path or trailing slash.
pub fn address_host(address: &str) -> String {
    let a = address.trim().to_ascii_lowercase();
    let a = a
        .strip_prefix("https://")
        .or_else(|| a.strip_prefix("http://"))
        .unwrap_or(&a);
    a.split('/').next().unwrap_or_default().to_string()
}

/// The body of `POST /openapi/system/registry` and `PUT /openapi/system/registry/{id}`.
/// On update, an absent `access_key`/`secret_key`/`enable_tls`/`tls_cert` keeps the stored
/// value.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct RegistryInput {
    #[serde(default)]
    pub address: String,
    /// native, harbor, dockerhub, acr, tcr, swr or ecr.
    #[serde(default)]
    pub provider: String,
    /// Required unless `provider` is `ecr`.
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub is_default: bool,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub enable_tls: Option<bool>,
    pub tls_cert: Option<String>,
    #[serde(default)]
    pub region: String,
}

impl RegistryInput {
    /// Zadig's checks (address required and a URL or host, provider known, namespace required
    /// except for ECR), each naming its field.
    pub fn validate(&self) -> ApiResult<()> {
        validate::name("address", &self.address)?;
        let a = self.address.trim();
        let rest = a
            .strip_prefix("https://")
            .or_else(|| a.strip_prefix("http://"))
            .unwrap_or(a);
        let host = rest.split('/').next().unwrap_or_default();
        if rest.contains("://")
            || host.is_empty()
            || host.contains(char::is_whitespace)
            || host.contains('@')
        {
            return Err(ApiError::bad_request(format!(
                "`address` must be a registry URL such as https://registry.example.com or http://127.0.0.1:5000, got {:?}",
                self.address
            )));
        }
        validate::one_of("provider", &self.provider, PROVIDERS)?;
        if self.provider != "ecr" {
            validate::name("namespace", &self.namespace)?;
        }
        validate::max_len("namespace", &self.namespace)?;
        validate::max_len("region", &self.region)?;
        if self.provider == "ecr" && self.region.trim().is_empty() {
            return Err(ApiError::bad_request(
                "`region` is required for provider ecr",
            ));
        }
        Ok(())
    }
}

/// A stored Helm chart repository. `password` never leaves the server (nor its `Debug`
/// output).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelmRepo {
    pub id: String,
    pub repo_name: String,
    /// `oci://host[:port]/path`, `host[:port]/path` (OCI) or `http(s)://…` (ChartMuseum API).
    pub url: String,
    pub username: String,
    pub password: String,
    /// OCI repositories only: talk plain HTTP instead of HTTPS (Helm's `--plain-http`).
    pub plain_http: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// How a chart repository is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoKind {
    /// An OCI registry: charts are pushed as OCI artifacts to `<host>/<path>/<chart>:<version>`.
    Oci { host: String, path: String },
    /// A ChartMuseum-compatible HTTP repository (ChartMuseum, Harbor's chartrepo).
    ChartMuseum { base: String },
}

/// Classify a chart repository URL; 400 naming `url` for what we cannot push to.
pub fn repo_kind(url: &str) -> ApiResult<RepoKind> {
    let u = url.trim();
    let lower = u.to_ascii_lowercase();
    let oci = |rest: &str| -> ApiResult<RepoKind> {
        let rest = rest.trim_end_matches('/');
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() || host.contains(char::is_whitespace) || host.contains('@') {
            return Err(ApiError::bad_request(format!(
                "`url` must name a registry host, got {url:?}"
            )));
        }
        Ok(RepoKind::Oci {
            host: host.to_ascii_lowercase(),
            path: path.to_string(),
        })
    };
    if lower.starts_with("oci://") {
        oci(&u[6..])
    } else if lower.starts_with("http://") || lower.starts_with("https://") {
        let scheme_len = if lower.starts_with("http://") { 7 } else { 8 };
        if u[scheme_len..].trim_matches('/').is_empty() {
            return Err(ApiError::bad_request(format!(
                "`url` must name a host, got {url:?}"
            )));
        }
        Ok(RepoKind::ChartMuseum {
            base: u.trim_end_matches('/').to_string(),
        })
    } else if lower.starts_with("acr://") {
        Err(ApiError::bad_request(
            "`url`: acr:// (Alibaba Cloud ACR Helm) repositories are not supported; use the instance's OCI address (oci://<instance>.cr.aliyuncs.com/<namespace>)",
        ))
    } else if u.contains("://") {
        Err(ApiError::bad_request(format!(
            "`url` must be oci://…, http(s)://… or a registry address, got {url:?}"
        )))
    } else {
        oci(u)
    }
}

/// The body of `POST /openapi/system/helm` and `PUT /openapi/system/helm/{id}`. On update an
/// absent `password` keeps the stored one.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct HelmRepoInput {
    #[serde(default)]
    pub repo_name: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub username: String,
    pub password: Option<String>,
    /// OCI repositories only: plain HTTP instead of HTTPS.
    #[serde(default)]
    pub plain_http: bool,
}

impl HelmRepoInput {
    pub fn validate(&self) -> ApiResult<()> {
        validate::name("repo_name", &self.repo_name)?;
        validate::name("url", &self.url)?;
        validate::max_len("username", &self.username)?;
        repo_kind(&self.url).map(|_| ())
    }
}

/// Registries and chart repositories.
#[derive(Clone)]
pub struct RegistryStore {
    registries: Typed<Registry>,
    repos: Typed<HelmRepo>,
}

impl RegistryStore {
    /// The stores; `secret_key` and chart-repository `password`s are encrypted at rest
    /// (`access_key` is a user name or an AWS key id, shown by `GET`, so it is not a secret).
    pub fn new(backend: &dyn Backend, secrets: &std::sync::Arc<crate::secrets::SecretBox>) -> Self {
        Self {
            registries: Typed::new(backend, "image_registries").sealed(secrets, &["secret_key"]),
            repos: Typed::new(backend, "helm_repos").sealed(secrets, &["password"]),
        }
    }

    /// Insert a registry; when it is the default, the others stop being so.
    pub async fn insert_registry(&self, r: &Registry) -> StoreResult<()> {
        self.registries.insert(r).await?;
        if r.is_default {
            self.clear_default_except(&r.id).await?;
        }
        Ok(())
    }

    pub async fn replace_registry(&self, r: &Registry) -> StoreResult<bool> {
        let found = self.registries.replace(&Filter::id(&r.id), r).await?;
        if found && r.is_default {
            self.clear_default_except(&r.id).await?;
        }
        Ok(found)
    }

    async fn clear_default_except(&self, id: &str) -> StoreResult<()> {
        self.registries
            .coll
            .update_many(
                &Filter::ne("id", id).and(Filter::eq("is_default", true)),
                &Update::new().set("is_default", false),
            )
            .await?;
        Ok(())
    }

    pub async fn registry(&self, id: &str) -> StoreResult<Option<Registry>> {
        self.registries.get(id).await
    }

    /// Every registry, oldest first.
    pub async fn registries(&self) -> StoreResult<Vec<Registry>> {
        self.registries
            .find(
                &Filter::All,
                &FindOptions::sort("created_at", Dir::Asc).then("id", Dir::Asc),
            )
            .await
    }

    /// The registry whose `<host>/<namespace>` (Zadig's registry key) is `key` (a scheme in
    /// `key` is ignored).
    pub async fn registry_by_key(&self, key: &str) -> StoreResult<Option<Registry>> {
        let want = normalize_key(key);
        Ok(self
            .registries()
            .await?
            .into_iter()
            .find(|r| normalize_key(&r.key()) == want))
    }

    /// Insert a chart repository; a taken `repo_name` is [`StoreError::Duplicate`].
    pub async fn insert_repo(&self, r: &HelmRepo) -> StoreResult<()> {
        self.repos.insert(r).await
    }

    pub async fn replace_repo(&self, r: &HelmRepo) -> StoreResult<bool> {
        self.repos.replace(&Filter::id(&r.id), r).await
    }

    pub async fn repo(&self, id: &str) -> StoreResult<Option<HelmRepo>> {
        self.repos.get(id).await
    }

    pub async fn repo_by_name(&self, name: &str) -> StoreResult<Option<HelmRepo>> {
        self.repos.find_one(&Filter::eq("repo_name", name)).await
    }

    pub async fn repos(&self) -> StoreResult<Vec<HelmRepo>> {
        self.repos
            .find(&Filter::All, &FindOptions::sort("repo_name", Dir::Asc))
            .await
    }

    pub async fn delete_repo(&self, id: &str) -> StoreResult<bool> {
        Ok(self.repos.delete(&Filter::id(id)).await? > 0)
    }
}

fn normalize_key(key: &str) -> String {
    let k = key.trim().to_ascii_lowercase();
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(&k);
    k.trim_matches('/').to_string()
}

/// Map a duplicate `repo_name` to a 409 naming it.
pub fn duplicate_repo(e: StoreError, name: &str) -> ApiError {
    match e {
        StoreError::Duplicate(_) => ApiError::conflict(format!(
            "a chart repository with repo_name {name:?} already exists"
        )),
        other => other.into(),
    }
}

/// Create a registry (system admins only, as in Zadig).
pub async fn create_registry(
    state: &AppState,
    caller: &Identity,
    input: RegistryInput,
) -> ApiResult<Registry> {
    caller.require_admin()?;
    input.validate()?;
    let now = state.clock.now();
    let r = Registry {
        id: validate::new_object_id(now),
        address: input.address.trim().to_string(),
        provider: input.provider,
        namespace: input.namespace.trim().to_string(),
        is_default: input.is_default,
        access_key: input.access_key.unwrap_or_default(),
        secret_key: input.secret_key.unwrap_or_default(),
        enable_tls: input.enable_tls.unwrap_or(false),
        tls_cert: input.tls_cert.unwrap_or_default(),
        region: input.region,
        created_at: now,
        updated_at: now,
        updated_by: caller.name.clone(),
    };
    state.delivery.registries.insert_registry(&r).await?;
    tracing::info!(registry.id = %r.id, "image registry {} created by {}", r.key(), caller.account);
    Ok(r)
}

/// Update a registry; absent credentials and TLS settings keep their stored values.
pub async fn update_registry(
    state: &AppState,
    caller: &Identity,
    id: &str,
    input: RegistryInput,
) -> ApiResult<()> {
    caller.require_admin()?;
    let old = get_registry(state, id).await?;
    input.validate()?;
    let r = Registry {
        address: input.address.trim().to_string(),
        provider: input.provider,
        namespace: input.namespace.trim().to_string(),
        is_default: input.is_default,
        access_key: input.access_key.unwrap_or(old.access_key.clone()),
        secret_key: input.secret_key.unwrap_or(old.secret_key.clone()),
        enable_tls: input.enable_tls.unwrap_or(old.enable_tls),
        tls_cert: input.tls_cert.unwrap_or(old.tls_cert.clone()),
        region: input.region,
        updated_at: state.clock.now(),
        updated_by: caller.name.clone(),
        ..old
    };
    if !state.delivery.registries.replace_registry(&r).await? {
        return Err(ApiError::not_found(format!(
            "image registry {id} not found"
        )));
    }
    tracing::info!(registry.id = %id, "image registry {} updated by {}", r.key(), caller.account);
    Ok(())
}

pub async fn get_registry(state: &AppState, id: &str) -> ApiResult<Registry> {
    state
        .delivery
        .registries
        .registry(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("image registry {id} not found")))
}

/// Create a chart repository (system admins only).
pub async fn create_repo(
    state: &AppState,
    caller: &Identity,
    input: HelmRepoInput,
) -> ApiResult<HelmRepo> {
    caller.require_admin()?;
    input.validate()?;
    let now = state.clock.now();
    let r = HelmRepo {
        id: validate::new_object_id(now),
        repo_name: input.repo_name.trim().to_string(),
        url: input.url.trim().to_string(),
        username: input.username,
        password: input.password.unwrap_or_default(),
        plain_http: input.plain_http,
        created_at: now,
        updated_at: now,
    };
    state
        .delivery
        .registries
        .insert_repo(&r)
        .await
        .map_err(|e| duplicate_repo(e, &r.repo_name))?;
    tracing::info!(helm_repo.id = %r.id, "chart repository {} created by {}", r.repo_name, caller.account);
    Ok(r)
}

/// Update a chart repository; an absent `password` keeps the stored one.
pub async fn update_repo(
    state: &AppState,
    caller: &Identity,
    id: &str,
    input: HelmRepoInput,
) -> ApiResult<()> {
    caller.require_admin()?;
    let old = get_repo(state, id).await?;
    input.validate()?;
    let r = HelmRepo {
        repo_name: input.repo_name.trim().to_string(),
        url: input.url.trim().to_string(),
        username: input.username,
        password: input.password.unwrap_or(old.password.clone()),
        plain_http: input.plain_http,
        updated_at: state.clock.now(),
        ..old
    };
    if !state
        .delivery
        .registries
        .replace_repo(&r)
        .await
        .map_err(|e| duplicate_repo(e, &r.repo_name))?
    {
        return Err(ApiError::not_found(format!(
            "chart repository {id} not found"
        )));
    }
    tracing::info!(helm_repo.id = %id, "chart repository {} updated by {}", r.repo_name, caller.account);
    Ok(())
}

pub async fn get_repo(state: &AppState, id: &str) -> ApiResult<HelmRepo> {
    state
        .delivery
        .registries
        .repo(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("chart repository {id} not found")))
}

/// Delete a chart repository (versions that name it fail their next chart push).
pub async fn delete_repo(state: &AppState, caller: &Identity, id: &str) -> ApiResult<()> {
    caller.require_admin()?;
    if !state.delivery.registries.delete_repo(id).await? {
        return Err(ApiError::not_found(format!(
            "chart repository {id} not found"
        )));
    }
    tracing::info!(helm_repo.id = %id, "chart repository {id} deleted by {}", caller.account);
    Ok(())
}
