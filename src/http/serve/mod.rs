//! The HTTP server: our own accept loop over hyper-util's auto (HTTP/1.1 + HTTP/2) connection
//! builder, so every connection is bounded (docs/security.md "Network"):
//!
//! - **header-read timeout** (`http_header_read_timeout_secs`): a connection that has not sent
//!   a complete request head within it of being accepted — or, on a kept-alive connection,
//!   of the first byte of its next request — is closed (slowloris needs no login);
//! - **keep-alive idle timeout** (`http_keepalive_idle_secs`) between requests;
//! - **a cap on open connections** (`http_max_connections`): at the cap a new connection is
//!   still accepted and the oldest *idle* connection (never sent a request first, then the
//!   longest idle kept-alive one) is closed to make room, so idle connections cannot lock
//!   anyone out; only when every connection has a request in flight is the newcomer refused;
//! - **accept errors** never end the loop: on EMFILE/ENFILE it closes an idle connection to
//!   free a descriptor and backs off (5 ms doubling to 1 s, logged once per burst).
//!
//! The timeouts are enforced by a watchdog per connection rather than by hyper's own
//! `header_read_timeout`: hyper 1.x starts that timer as soon as it waits for the next head,
//! so on a kept-alive connection it would also cut the idle time to the header timeout, and it
//! does not cover HTTP/2 or the protocol sniffing that precedes both.
//!
//! Shutdown: when the token is cancelled the listener closes, every connection is asked to
//! finish gracefully (in-flight requests complete), and after `shutdown_timeout_secs` the
//! remaining connections are dropped.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::Config;

mod tracked;
use tracked::{Active, Tracked, TrackedBody};

/// How long a connection asked to close (timeout, eviction) may take before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// First and longest pause after an accept error that is not about one connection.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The connection limits, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub keepalive_idle: Duration,
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
}

impl Limits {
    pub fn from_config(c: &Config) -> Self {
        Self {
            header_read_timeout: Duration::from_secs(c.http_header_read_timeout_secs),
            keepalive_idle: Duration::from_secs(c.http_keepalive_idle_secs),
            max_connections: c.http_connection_cap(),
            shutdown_timeout: Duration::from_secs(c.shutdown_timeout_secs),
        }
    }
}

/// Serve `router` on `listener` until `shutdown` is cancelled, then drain (bounded).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let mut acceptor = Acceptor {
        registry: Arc::new(Registry::default()),
        builder: Arc::new(connection_builder()),
        router,
        limits,
        shutdown: shutdown.clone(),
        backoff: None,
        failures: 0,
        refused: Burst::default(),
    };
    let mut tasks = JoinSet::new();
    tracing::info!(
        max_connections = limits.max_connections,
        "accepting at most {} connections (header read timeout {}s, keep-alive idle {}s)",
        limits.max_connections,
        limits.header_read_timeout.as_secs(),
        limits.keepalive_idle.as_secs()
    );
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => acceptor.accepted(stream, peer, &mut tasks),
                Err(e) => if let Some(delay) = acceptor.failed(&e) {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
    drop(listener);
    drain(tasks, limits).await;
}

/// The connection builder: HTTP/1.1 with keep-alive, and HTTP/2.
fn connection_builder() -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    // The watchdog owns the header timeout (see the module doc); hyper's default of 30 s
    // would otherwise apply as soon as a timer is set.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None::<Duration>)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// The accept loop's state: what a new connection is served with, and the accept errors'
/// backoff.
struct Acceptor {
    registry: Arc<Registry>,
    builder: Arc<Builder<TokioExecutor>>,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
    backoff: Option<Duration>,
    failures: u64,
    refused: Burst,
}

impl Acceptor {
    /// Serve a new connection in `tasks` — at the cap, once an idle one is evicted, else
    /// refuse it.
    fn accepted(&mut self, stream: TcpStream, peer: SocketAddr, tasks: &mut JoinSet<()>) {
        if self.failures > 0 {
            tracing::info!(
                "accepting connections again after {} failed accepts",
                self.failures
            );
            self.failures = 0;
        }
        self.backoff = None;
        let max = self.limits.max_connections;
        if self.registry.len() >= max && !self.registry.evict_idle() {
            refuse(stream);
            if self.refused.hit() {
                tracing::warn!(
                    "connection refused: {max} connections open (http_max_connections) and every one has a request in flight"
                );
            }
            return;
        }
        let conn = self.registry.register();
        tasks.spawn(serve_connection(
            (stream, peer),
            self.router.clone(),
            self.builder.clone(),
            conn,
            self.registry.clone(),
            self.limits,
            self.shutdown.clone(),
        ));
    }

    /// Note a failed accept; the pause before the next one (none when only that connection
    /// failed).
    fn failed(&mut self, e: &io::Error) -> Option<Duration> {
        if is_connection_error(e) {
            // That connection is gone already; the listener is fine.
            tracing::debug!(error = %e, "accept: {e}");
            return None;
        }
        let delay = self
            .backoff
            .map_or(BACKOFF_MIN, |d| (d * 2).min(BACKOFF_MAX));
        self.backoff = Some(delay);
        if self.failures == 0 {
            tracing::warn!(error = %e, "accept failed: {e}; backing off (up to {}s between attempts) until it works again", BACKOFF_MAX.as_secs());
        }
        self.failures += 1;
        if is_fd_exhaustion(e) {
            // Free a descriptor for whoever is waiting in the backlog.
            self.registry.evict_idle();
        }
        Some(delay)
    }
}

/// Wait for the connection tasks, which saw the shutdown token and are finishing their
/// in-flight requests, up to `shutdown_timeout`; then drop the rest.
async fn drain(mut tasks: JoinSet<()>, limits: Limits) {
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.shutdown_timeout, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            "{} connections still open after {}s (shutdown_timeout_secs): closing them",
            tasks.len(),
            limits.shutdown_timeout.as_secs()
        );
        tasks.shutdown().await;
    }
}

/// Errors of `accept` that concern one connection, not the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Out of file descriptors (per process or system-wide) or socket buffers.
fn is_fd_exhaustion(e: &io::Error) -> bool {
    use nix::errno::Errno;
    e.raw_os_error().is_some_and(|code| {
        matches!(
            Errno::from_raw(code),
            Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM
        )
    })
}

/// Best effort: tell a refused client why, without waiting for it.
fn refuse(stream: TcpStream) {
    metrics::counter!("http_connections_closed_total", "reason" => "refused").increment(1);
    let _ = stream.try_write(
        b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
    );
}

/// Logs a repeated condition once per burst (at most every 10 s).
#[derive(Default)]
struct Burst {
    last: Option<Instant>,
}

impl Burst {
    fn hit(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(10))
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// What the server knows about one open connection. Times are milliseconds since `epoch`,
/// plus one, so that 0 can mean "none".
struct Conn {
    id: u64,
    epoch: Instant,
    accepted_ms: u64,
    /// Requests whose response has not been sent completely yet.
    active: AtomicUsize,
    /// Requests whose head was received.
    served: AtomicU64,
    idle_since_ms: AtomicU64,
    /// First byte of the next request head while idle (0: none yet).
    head_started_ms: AtomicU64,
    /// Wakes the watchdog when `active` drops to 0 or a head starts.
    wake: Notify,
    /// Cancelled to close the connection to make room for another.
    evict: CancellationToken,
}

impl Conn {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms.saturating_sub(1))
    }

    /// When the connection is due to be closed, and why; `None` while a request is in flight.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, &'static str)> {
        if self.active.load(Ordering::SeqCst) > 0 {
            return None;
        }
        if self.served.load(Ordering::SeqCst) == 0 {
            let at = self.at(self.accepted_ms) + limits.header_read_timeout;
            return Some((at, "header_timeout"));
        }
        match self.head_started_ms.load(Ordering::SeqCst) {
            0 => Some((
                self.at(self.idle_since_ms.load(Ordering::SeqCst)) + limits.keepalive_idle,
                "idle_timeout",
            )),
            head => Some((self.at(head) + limits.header_read_timeout, "header_timeout")),
        }
    }

    /// Eviction order: never-used connections before kept-alive ones, oldest first.
    fn eviction_key(&self) -> (bool, u64, u64) {
        (
            self.served.load(Ordering::SeqCst) > 0,
            self.idle_since_ms.load(Ordering::SeqCst),
            self.id,
        )
    }
}

/// The open connections.
#[derive(Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    epoch: std::sync::OnceLock<Instant>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        // The map stays consistent even if a holder panicked (single inserts/removes).
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn register(&self) -> Arc<Conn> {
        let epoch = *self.epoch.get_or_init(Instant::now);
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let now = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let conn = Arc::new(Conn {
            id,
            epoch,
            accepted_ms: now,
            active: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(now),
            head_started_ms: AtomicU64::new(0),
            wake: Notify::new(),
            evict: CancellationToken::new(),
        });
        let mut map = self.lock();
        map.insert(id, conn.clone());
        metrics::gauge!("http_connections_open").set(map.len() as f64);
        conn
    }

    fn remove(&self, id: u64) {
        let mut map = self.lock();
        map.remove(&id);
        metrics::gauge!("http_connections_open").set(map.len() as f64);
    }

    /// Close the connection that is cheapest to lose (no request in flight; see
    /// [`Conn::eviction_key`]). It leaves the count at once. False when every connection is busy.
    fn evict_idle(&self) -> bool {
        let mut map = self.lock();
        let victim = map
            .values()
            .filter(|c| c.active.load(Ordering::SeqCst) == 0)
            .min_by_key(|c| c.eviction_key())
            .map(|c| c.id);
        let Some(conn) = victim.and_then(|id| map.remove(&id)) else {
            return false;
        };
        metrics::gauge!("http_connections_open").set(map.len() as f64);
        metrics::counter!("http_connections_closed_total", "reason" => "evicted").increment(1);
        tracing::debug!(
            "connection cap reached: closing idle connection {}",
            conn.id
        );
        conn.evict.cancel();
        true
    }
}

/// Removes a connection from the registry when its task ends, however it ends.
struct Deregister {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Deregister {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

/// Serve one accepted connection (its stream and peer address).
async fn serve_connection(
    (stream, peer): (TcpStream, SocketAddr),
    router: Router,
    builder: Arc<Builder<TokioExecutor>>,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let _registered = Deregister {
        registry,
        id: conn.id,
    };
    // Small API answers: do not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(Tracked {
        inner: stream,
        conn: conn.clone(),
    });
    let svc_conn = conn.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let active = Active::start(svc_conn.clone());
        let router = router.clone();
        // The peer address, for what is counted per client (failed authentications).
        req.extensions_mut().insert(ConnectInfo(peer));
        async move {
            let resp = router.oneshot(req.map(Body::new)).await?;
            Ok::<_, std::convert::Infallible>(resp.map(|inner| TrackedBody {
                inner,
                _active: active,
            }))
        }
    });
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let mut asked_to_close = false;
    // Set once the connection was asked to close for a timeout or eviction.
    let mut drop_at: Option<Instant> = None;
    loop {
        let deadline = drop_at.or_else(|| conn.deadline(&limits).map(|(at, _)| at));
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!("connection {} ended: {e}", conn.id);
                }
                return;
            }
            () = conn.evict.cancelled(), if !asked_to_close => {
                asked_to_close = true;
                connection.as_mut().graceful_shutdown();
                drop_at = Some(Instant::now() + CLOSE_GRACE);
            }
            () = shutdown.cancelled(), if !asked_to_close => {
                // In-flight requests finish; the server's shutdown bound drops the rest.
                asked_to_close = true;
                connection.as_mut().graceful_shutdown();
            }
            () = sleep_until(deadline) => {
                if drop_at.is_some() {
                    if conn.active.load(Ordering::SeqCst) == 0 {
                        return;
                    }
                    // A request slipped in before the close took effect: let it finish.
                    drop_at = Some(Instant::now() + CLOSE_GRACE);
                    continue;
                }
                if let Some((at, reason)) = conn.deadline(&limits)
                    && Instant::now() >= at
                {
                    metrics::counter!("http_connections_closed_total", "reason" => reason).increment(1);
                    tracing::debug!("closing connection {} ({reason})", conn.id);
                    asked_to_close = true;
                    connection.as_mut().graceful_shutdown();
                    drop_at = Some(Instant::now() + CLOSE_GRACE);
                }
            }
            () = conn.wake.notified() => {}
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
