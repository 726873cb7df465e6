//! zadig-server: Zadig's OpenAPI in one binary.
//!
//! [`start`] assembles the state (stores, clock, services), starts the background loops and
//! serves the router on a given listener — both, or one of them, as the configured
//! [`config::Role`] says; `main.rs` only parses the command line. Tests start the same server
//! on `127.0.0.1:0` with a [`clock::ManualClock`].

#![forbid(unsafe_code)]

pub mod auth;
pub mod build;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod engine;
pub mod environment;
pub mod error;
pub mod fault;
pub mod http;
pub mod limits;
pub mod masking;
pub mod null_as_zero;
pub mod project;
pub mod release_plan;
pub mod repo;
pub mod scheduler;
pub mod secrets;
pub mod service_template;
pub mod state;
pub mod store;
pub mod ui;
pub mod validate;
mod wire;
pub mod worker;
pub mod workflow;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::Config;
use crate::state::AppState;
use crate::store::Backend;

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub state: AppState,
    serve: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

/// Build the state on `backend`, bootstrap the admin, start the background loops (role
/// `workers` or `both`) and serve on `listener` (the API for `api` or `both`; only `/healthz`
/// and `/metrics` for `workers`).
pub async fn start(
    config: Config,
    backend: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
    listener: TcpListener,
) -> anyhow::Result<Server> {
    http::metrics::init();
    engine::sandbox::harden_server();
    let admin_token = config.admin_token.clone();
    let state = AppState::build(config, backend, clock).await?;
    if !admin_token.is_empty() {
        auth::bootstrap_admin(&state, &admin_token).await?;
    }
    let role = state.config.role;
    let background = if role.runs_workers() {
        spawn_background(&state)
    } else {
        Vec::new()
    };
    let addr = listener.local_addr()?;
    let app = http::router(state.clone());
    let token = state.shutdown.clone();
    let limits = http::serve::Limits::from_config(&state.config);
    let serve = tokio::spawn(http::serve::serve(listener, app, limits, token));
    tracing::info!(%addr, storage = state.backend.kind(), role = role.as_str(),
        "zadig-server ({} role) listening on {addr}", role.as_str());
    Ok(Server {
        addr,
        state,
        serve,
        background,
    })
}

/// The background loops of every area, all stopped by `state.shutdown`.
fn spawn_background(state: &AppState) -> Vec<JoinHandle<()>> {
    let mut loops = vec![tokio::spawn(delivery::pipeline::run(state.clone()))];
    loops.extend(scheduler::spawn(state));
    loops.extend(engine::spawn(state));
    loops.push(tokio::spawn(crate::workflow::notify::deliver::run(
        state.clone(),
    )));
    loops
}

impl Server {
    /// Stop accepting, let in-flight requests finish (bounded by `shutdown_timeout_secs`) and
    /// stop the background loops.
    pub async fn shutdown(self) {
        self.state.shutdown.cancel();
        let limit = Duration::from_secs(self.state.config.shutdown_timeout_secs);
        let all = async {
            let _ = self.serve.await;
            for h in self.background {
                let _ = h.await;
            }
        };
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!("shutdown did not finish within {}s", limit.as_secs());
        }
    }

    /// Run until SIGINT/SIGTERM, then shut down gracefully.
    pub async fn run_until_signal(self) {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
