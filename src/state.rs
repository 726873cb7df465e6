//! The application state every handler and background loop shares.

use std::ops::Deref;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::build::store::{BuildStore, TemplateStore};
use crate::clock::Clock;
use crate::config::Config;
use crate::engine::Engine;
use crate::engine::finished::TaskFinishedPort;
use crate::project::store::ProjectStore;
use crate::release_plan::details::DetailCache;
use crate::release_plan::store::PlanStore;
use crate::secrets::SecretBox;
use crate::service_template::store::ServiceTemplateStore;
use crate::store::lease::Leases;
use crate::store::sequence::Sequences;
use crate::store::users::UserStore;
use crate::store::{Backend, index_specs};
use crate::workflow::store::WorkflowStore;
use crate::workflow::task::TaskStore;
use crate::workflow::tickets::TicketStore;
use crate::workflow::views::ViewStore;

/// Everything the server holds: configuration, stores, services, clock, shutdown signal.
pub struct App {
    pub config: Config,
    pub backend: Arc<dyn Backend>,
    pub clock: Arc<dyn Clock>,
    /// Cancelled once, at shutdown; every background loop stops on it.
    pub shutdown: CancellationToken,
    /// This process' name in leases (unique per process start).
    pub instance_id: String,
    pub sequences: Sequences,
    pub leases: Leases,
    pub users: UserStore,
    /// Authenticated tokens (embedded store only; see [`crate::auth::TokenCache`]).
    pub token_cache: crate::auth::TokenCache,
    /// Failed authentications per client (see [`crate::auth::throttle`]).
    pub auth_throttle: Arc<crate::auth::throttle::AuthThrottle>,
    pub tasks: TaskStore,
    pub workflows: WorkflowStore,
    pub workflow_views: ViewStore,
    pub approval_tickets: TicketStore,
    /// The workflow engine: dispatcher registry, executor, job logs.
    pub engine: Engine,
    /// Where the engine reports that a release job's task finished (see
    /// [`crate::engine::finished`]); the release-plan side subscribes in [`AppState::build`].
    pub task_finished: TaskFinishedPort,
    pub release_plans: PlanStore,
    /// Rendered release-plan details (on for the embedded store only).
    pub plan_details: Arc<DetailCache>,
    /// Wake-ups of this process' release-plan scheduler loops.
    pub scheduler_wake: crate::scheduler::Wakers,
    pub builds: BuildStore,
    pub build_templates: TemplateStore,
    /// Delivery versions, image registries, chart repositories and their pipeline.
    pub delivery: Arc<crate::delivery::Delivery>,
    /// Projects (`/openapi/projects/project`).
    pub projects: ProjectStore,
    /// K8s YAML service revisions (`/openapi/service/yaml`).
    pub service_templates: ServiceTemplateStore,
    /// The key that encrypts stored credentials (see [`crate::secrets`]).
    pub secrets: Arc<SecretBox>,
    /// Registered Kubernetes clusters and their clients.
    pub clusters: crate::cluster::Clusters,
    /// Environments (namespaces in clusters).
    pub environments: crate::environment::Environments,
}

/// Cheap-to-clone handle on [`App`], the axum state.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl AppState {
    /// Open the stores (running the migrations) and assemble the state.
    pub async fn build(
        config: Config,
        backend: Arc<dyn Backend>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        backend
            .migrate(&index_specs())
            .await
            .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?;
        let b = backend.as_ref();
        // Stores register their sealed fields as they are built; `init` below loads the key and
        // migrates those collections before anything reads them.
        let secrets = Arc::new(SecretBox::new());
        let plan_details = Arc::new(DetailCache::new(backend.kind() == "embedded"));
        let app = App {
            instance_id: format!("{}-{}", hostname_or_local(), uuid::Uuid::new_v4().simple()),
            sequences: Sequences::new(b),
            leases: Leases::new(b),
            users: UserStore::new(b),
            token_cache: crate::auth::TokenCache::new(backend.kind() == "embedded"),
            auth_throttle: Arc::new(crate::auth::throttle::AuthThrottle::from_config(
                &config, b,
            )?),
            tasks: TaskStore::new(b, &secrets),
            workflows: WorkflowStore::new(b, &secrets),
            workflow_views: ViewStore::new(b),
            approval_tickets: TicketStore::new(b),
            engine: Engine::new(b, &config, &secrets),
            task_finished: TaskFinishedPort::default(),
            release_plans: PlanStore::new(b, &secrets).with_details(plan_details.clone()),
            plan_details,
            scheduler_wake: crate::scheduler::Wakers::default(),
            builds: BuildStore::new(b, &secrets),
            build_templates: TemplateStore::new(b, &secrets),
            projects: ProjectStore::new(b),
            service_templates: ServiceTemplateStore::new(b),
            delivery: Arc::new(crate::delivery::Delivery::new(b, &config, &secrets)?),
            clusters: crate::cluster::Clusters::new(b, &secrets, &config),
            environments: crate::environment::Environments::new(b),
            secrets,
            shutdown: CancellationToken::new(),
            config,
            clock,
            backend,
        };
        app.secrets
            .init(app.backend.as_ref(), &app.config.secret_key_path())
            .await?;
        app.environments
            .store
            .repair_legacy()
            .await
            .map_err(|e| anyhow::anyhow!("cannot repair the stored environments: {e}"))?;
        crate::release_plan::subscribe(&app.task_finished);
        Ok(Self(Arc::new(app)))
    }
}

fn hostname_or_local() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_string())
}
