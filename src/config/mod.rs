//! Layered configuration: compiled-in `config/default.toml` < `--config FILE` < `ZADIG_*` env.
//!
//! Every key of [`Config`] can be set by the env var `ZADIG_<KEY>` (upper case). A value of
//! the wrong type or out of range stops the server at start with an error naming the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

/// Which storage backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    Embedded,
    Mongodb,
}

/// SQLite's `synchronous` setting for the embedded store (`embedded_synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddedSynchronous {
    /// A write is acknowledged once it survives power loss (the WAL is synced on every commit).
    Full,
    /// The WAL is synced only at checkpoints: faster, but the last commits may be lost on power
    /// loss (never corrupted).
    Normal,
}

impl EmbeddedSynchronous {
    /// The value of SQLite's `PRAGMA synchronous`.
    pub fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// What the engine does when a protection of the job sandbox is missing (`engine_sandbox`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// Jobs fail naming the missing protection (the default).
    Required,
    /// Jobs run without the missing protection.
    BestEffort,
}

impl SandboxMode {
    /// What a missing protection means for jobs, for the start-up log.
    pub fn consequence(self) -> &'static str {
        match self {
            Self::Required => {
                "jobs will fail (engine_sandbox = required; set it to best-effort to run them without this protection)"
            }
            Self::BestEffort => "jobs run without this protection (engine_sandbox = best-effort)",
        }
    }
}

/// What a `serve` process does (`role`, or `serve --role`): API and worker replicas can
/// scale apart on one MongoDB because every piece of background work is found in the store
/// and claimed with a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The HTTP API, the dashboard and `/healthz`/`/metrics`; no background loop.
    Api,
    /// The background loops (engine dispatch, release-plan scheduler, delivery pipeline);
    /// the listener answers only `/healthz` and `/metrics`.
    Workers,
    /// Both (one process does everything).
    Both,
}

impl Role {
    /// Whether this process serves the API (and the dashboard).
    pub fn serves_api(self) -> bool {
        matches!(self, Self::Api | Self::Both)
    }

    /// Whether this process runs the background loops.
    pub fn runs_workers(self) -> bool {
        matches!(self, Self::Workers | Self::Both)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Workers => "workers",
            Self::Both => "both",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "api" => Ok(Self::Api),
            "workers" => Ok(Self::Workers),
            "both" => Ok(Self::Both),
            _ => Err(format!("expected api, workers or both, got {s:?}")),
        }
    }
}

/// The server's configuration. See `config/default.toml` for each key's meaning.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// What `serve` runs: `api`, `workers` or `both` (see [`Role`]).
    pub role: Role,
    pub listen: SocketAddr,
    pub storage: StorageKind,
    pub data_dir: PathBuf,
    /// The AES-256-GCM key for credentials at rest; empty = `<data_dir>/secret.key`, created at
    /// first start. Every replica sharing one MongoDB must use the same key file.
    pub secret_key_file: PathBuf,
    /// SQLite `synchronous` of the embedded store: `full` (durable) or `normal`.
    pub embedded_synchronous: EmbeddedSynchronous,
    pub mongodb_uri: String,
    pub mongodb_database: String,
    pub admin_token: String,
    /// Failed authentications (wrong API tokens, API or dashboard sign-in) a client may make
    /// within `auth_failure_window_secs` before its attempts are refused; 0 = no limit
    /// (see [`crate::auth::throttle`]).
    pub auth_max_failures: u32,
    /// The window of `auth_max_failures`, and how long a client is refused once it reached it.
    pub auth_failure_window_secs: u64,
    /// Most clients whose failures are tracked at once (the oldest are forgotten beyond).
    pub auth_throttle_max_clients: usize,
    /// Reverse proxies (CIDRs or addresses) whose `X-Forwarded-For` names the client for the
    /// throttle; empty: the peer address is the client.
    pub trusted_proxies: Vec<String>,
    pub log: String,
    pub log_format: LogFormat,
    pub body_limit: usize,
    pub request_timeout_secs: u64,
    pub shutdown_timeout_secs: u64,
    /// A connection must send a complete request head within this many seconds of being
    /// accepted (or of the first byte of a later request) or it is closed.
    pub http_header_read_timeout_secs: u64,
    /// A keep-alive connection idle between requests for this long is closed.
    pub http_keepalive_idle_secs: u64,
    /// Most client connections held open at once; 0 = half the soft `RLIMIT_NOFILE`
    /// (see [`Config::http_connection_cap`]).
    pub http_max_connections: usize,
    /// Most workflow tasks this process runs at once; 0 = number of cores × 4.
    pub engine_max_tasks: usize,
    /// Most job tasks of one parallel stage running at once.
    pub engine_parallel_jobs: usize,
    /// Where job workspaces are created; empty = `<data_dir>/workspace`.
    pub engine_workspace_dir: PathBuf,
    /// Keep a job's workspace after it ends (for debugging) instead of deleting it.
    pub engine_keep_workspaces: bool,
    /// Liveness lease of this process' engine, in seconds: tasks of a process whose lease
    /// expired are recovered by another (or the restarted) process.
    pub engine_lease_ttl_secs: u64,
    /// Safety-net interval of the dispatcher and the cross-replica cancel check, in ms (the
    /// dispatcher is woken by events of its own process; this bounds how late it notices work
    /// and cancels of other processes — with split roles, every task an API process creates).
    pub engine_sweep_interval_ms: u64,
    /// `required`: a job fails when a sandbox protection is missing; `best-effort`: it runs
    /// without it.
    pub engine_sandbox: SandboxMode,
    /// `uid:gid` jobs run as when the server runs as root.
    pub engine_job_user: String,
    /// The program that launches sandboxed jobs; empty = this executable.
    pub engine_sandbox_launcher: PathBuf,
    /// Directories every job may write besides its own (shared caches).
    pub engine_sandbox_writable: Vec<PathBuf>,
    /// Integrations enabled for job types that need more than a local process (comma
    /// separated; see [`INTEGRATIONS`]). None has a driver in this version.
    pub engine_integrations: String,
    /// The cluster jobs that name none run on (a cluster id); empty = they run as local
    /// processes (see [`crate::engine::kube`]).
    pub engine_kube_cluster: String,
    /// The namespace Kubernetes jobs run in (Zadig's `koderover-agent`).
    pub engine_kube_namespace: String,
    /// A job's image by its `build_os` (`{ "ubuntu 22.04" = "ubuntu:22.04" }`).
    pub engine_kube_images: std::collections::BTreeMap<String, String>,
    /// The image whose entrypoint is zadig-server, run as the init container that copies the
    /// job agent into the pod; empty = no init container (the job image has the agent).
    pub engine_kube_agent_image: String,
    /// Where the job agent is in the pod's main container (absolute).
    pub engine_kube_agent_path: String,
    /// How long a job pod Kubernetes cannot start (unschedulable, a container config error)
    /// may wait before the job fails, in seconds.
    pub engine_kube_pending_secs: u64,
    /// `ttlSecondsAfterFinished` of a Kubernetes job (a backstop: the executor deletes it).
    pub engine_kube_ttl_secs: u64,
    /// A job task's clean-up that still fails when its task ends is retried in the background
    /// after this many seconds, the pause doubling after each failure ...
    pub engine_clean_up_retry_secs: u64,
    /// ... up to this many seconds between two retries ...
    pub engine_clean_up_retry_max_secs: u64,
    /// ... until this many seconds after the first failure; then it is given up (the job task's
    /// error says so).
    pub engine_clean_up_give_up_secs: u64,
    pub release_plan_hook_timeout_secs: u64,
    pub release_plan_hook_retry_secs: Vec<u64>,
    /// Networks (CIDR or single addresses) hooks must not connect to, on top of the built-in
    /// deny list (see [`crate::release_plan::egress`]).
    pub hook_denied_networks: Vec<String>,
    /// Networks hooks may connect to even though the built-in deny list covers them.
    pub hook_allowed_networks: Vec<String>,
    /// Where users reach this server (`https://zadig.example.com`); workflow notifications link
    /// to the task's dashboard page under it. Empty: messages carry no link.
    pub public_url: String,
    /// Timeout of one workflow-notification POST, in seconds.
    pub notify_timeout_secs: u64,
    /// Delays before each retry of a failed workflow notification, in seconds.
    pub notify_retry_secs: Vec<u64>,
    pub release_plan_poll_ms: u64,
    pub release_plan_lease_secs: u64,
    pub release_plan_reconcile_secs: u64,
    pub release_plan_workers: usize,
    pub delivery_workers: usize,
    pub delivery_lease_secs: u64,
    pub delivery_poll_ms: u64,
    pub delivery_copy_timeout_secs: u64,
    pub delivery_copy_parallelism: usize,
    pub registry_connect_timeout_secs: u64,
    pub registry_read_timeout_secs: u64,
    /// ECR API endpoint; empty = AWS's regional endpoint.
    pub delivery_ecr_endpoint: String,
    /// Lifetime of a dashboard session, in seconds.
    pub ui_session_secs: u64,
    /// `Secure` on the dashboard's session cookie: `auto` (when the request came over TLS),
    /// `always` or `never`.
    pub ui_cookie_secure: String,
    /// Longest wait for one call to a Kubernetes API server (connect included), in seconds.
    pub kube_request_timeout_secs: u64,
}

const DEFAULTS: &str = include_str!("../../config/default.toml");

impl Config {
    /// Defaults < file < env.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut fig = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = file {
            if !path.exists() {
                anyhow::bail!("config file {} does not exist", path.display());
            }
            fig = fig.merge(Toml::file(path));
        }
        // Only keys that have a default are configuration, so unrelated `ZADIG_*` variables
        // (e.g. the test suite's `ZADIG_TEST_MONGODB_URI`) are ignored.
        let keys: Vec<String> = Figment::from(Toml::string(DEFAULTS))
            .extract::<std::collections::BTreeMap<String, figment::value::Value>>()?
            .into_keys()
            .collect();
        fig = fig.merge(
            Env::prefixed("ZADIG_")
                .filter(move |k| keys.iter().any(|x| k.as_str().eq_ignore_ascii_case(x))),
        );
        Self::extract(fig)
    }

    /// Only the compiled-in defaults (tests start from these).
    pub fn defaults() -> Self {
        // The defaults are compiled in and covered by tests.
        Self::extract(Figment::from(Toml::string(DEFAULTS)))
            .unwrap_or_else(|e| panic!("config/default.toml is invalid: {e}"))
    }

    fn extract(fig: Figment) -> anyhow::Result<Self> {
        let cfg: Config = fig.extract().map_err(|e| {
            let keys: Vec<String> = e
                .clone()
                .into_iter()
                .filter_map(|e| e.path.last().cloned())
                .collect();
            anyhow::anyhow!("invalid configuration (key {}): {e}", keys.join(", "))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The engine's global cap of running tasks (`engine_max_tasks`, 0 = cores × 4).
    pub fn engine_task_cap(&self) -> usize {
        if self.engine_max_tasks > 0 {
            return self.engine_max_tasks;
        }
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get) * 4
    }

    /// The cap on open client connections: `http_max_connections`, or when that is 0 half the
    /// soft `RLIMIT_NOFILE` (at least 32). Each connection costs one descriptor; the other half
    /// stays for what the server needs besides clients — database connections, the embedded
    /// store's files, job processes' pipes and workspaces, registry and hook connections — so
    /// a flood of clients cannot starve them (at the usual limit of 1024 the cap is 512).
    pub fn http_connection_cap(&self) -> usize {
        if self.http_max_connections > 0 {
            return self.http_max_connections;
        }
        let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(1024, |(soft, _)| soft);
        usize::try_from(soft / 2).unwrap_or(usize::MAX).max(32)
    }

    /// The key file for credentials at rest (`secret_key_file`, or `<data_dir>/secret.key`).
    pub fn secret_key_path(&self) -> PathBuf {
        crate::secrets::key_path(&self.secret_key_file, &self.data_dir)
    }

    /// The root of job workspaces, absolute: jobs run with their workspace as the current
    /// directory, so a relative root (the default `./data`) would not resolve inside them.
    pub fn engine_workspace_root(&self) -> PathBuf {
        let root = if self.engine_workspace_dir.as_os_str().is_empty() {
            self.data_dir.join("workspace")
        } else {
            self.engine_workspace_dir.clone()
        };
        std::path::absolute(&root).unwrap_or(root)
    }

    /// `engine_job_user` as numbers (validated at load).
    pub fn engine_job_ids(&self) -> (u32, u32) {
        validate::parse_ids(&self.engine_job_user).unwrap_or((65534, 65534))
    }

    /// `public_url` without a trailing slash (empty when unset).
    pub fn public_base(&self) -> &str {
        self.public_url.trim().trim_end_matches('/')
    }
}

/// The integrations job types may need, with what they are. None has a driver in this
/// version; `engine_integrations` lists the enabled ones once drivers exist.
/// Kubernetes is not one of them: clusters are registered through `/openapi/system/cluster`.
pub const INTEGRATIONS: &[(&str, &str)] = &[
    ("vm-agent", "agents on virtual machines / hosts"),
    (
        "container-runtime",
        "a container runtime to run plugin images",
    ),
    ("database", "database instances"),
    ("nacos", "a Nacos server"),
    ("apollo", "an Apollo configuration server"),
    ("tapd", "a TAPD project-management account"),
    ("jira", "a Jira server"),
    ("pingcode", "a PingCode account"),
    ("meego", "a Meego (Feishu project) account"),
    ("jenkins", "a Jenkins server"),
    ("grafana", "a Grafana server"),
    ("guanceyun", "a Guance Cloud account"),
    ("blueking", "a BlueKing server"),
    ("apisix", "an APISIX gateway"),
    ("sae", "Alibaba Cloud SAE"),
    ("im", "an instant-messaging app (Lark, DingTalk, WeCom)"),
    ("ai", "an AI service"),
    ("image-registry", "image registries to copy images between"),
    ("testing", "test definitions (the testing module API)"),
    ("scanning", "code-scanning definitions and a scanner"),
    ("object-storage", "object storage for archives"),
    ("perforce", "a Perforce server"),
    ("windows", "a Windows executor (batch_file scripts)"),
    ("workflow-trigger", "triggering other workflows from a job"),
];

mod validate;
