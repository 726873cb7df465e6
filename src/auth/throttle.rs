//! Failed-authentication throttling: a client that presents `auth_max_failures` wrong tokens
//! within `auth_failure_window_secs` is refused further attempts, without its token being
//! checked, until that window has passed since its last counted failure (docs/security.md).
//!
//! A client is the peer address of its connection (an IPv6 address by its /64, the smallest
//! block one host is usually given). Time comes from the injected [`Clock`].
//!
//! Two tables. The fast path is in memory, per process, bounded by `auth_throttle_max_clients`:
//! it counts the checks in flight and remembers until when a client is refused, so a success
//! never touches the store. Each failure is also counted in the store every replica shares
//! ([`AuthFailures`]), and the shared count read back: once it reaches the limit the client is
//! refused here until the shared window ends. A replica learns of another's failures only at
//! a failure of its own, so a client guessing one attempt at a time gets at most
//! `max_failures + replicas - 1` tries per window. When the store cannot record a failure it is
//! counted in memory only (a logged warning), never turned into an error or an acceptance.
//!
//! Attempts are counted before the token is checked: a client may have at most
//! `max_failures - failures` checks in flight, and further attempts wait for one to end. So a
//! burst of parallel guesses gets no more tries than sequential ones on a replica that has
//! counted the client's failures, while a client whose tokens are valid only waits, briefly,
//! when it has that many checks in flight at once.
//! A success does not forget earlier failures: one valid low-privilege token must not let a
//! client reset its count and go on guessing another (the admin's) token.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::response::Response;

use ipnet::IpNet;

use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::Config;
use crate::release_plan::egress::parse_networks;
use crate::store::Backend;
use crate::store::auth_failures::{AuthFailures, Window};

/// How long a failure may take to be recorded in the store before it is counted locally only
/// (a store that hangs must not hold a wrong token's answer, and the client's attempts, long).
const STORE_TIMEOUT: Duration = Duration::from_secs(3);

/// Who is counted: an IPv4 address, or an IPv6 /64.
pub type ClientKey = IpAddr;

/// The client key of an address (`None`, no peer known: one shared key).
pub fn client_key(ip: Option<IpAddr>) -> ClientKey {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V6(v6)) => {
            let mut s = v6.segments();
            s[4..].fill(0);
            IpAddr::V6(Ipv6Addr::from(s))
        }
        Some(v4) => v4,
        None => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// The client of a request, for the throttle: the peer address the accept loop recorded and
/// the entries of `X-Forwarded-For` (in order, `None` for one that is not an address; read only
/// when the peer is a trusted proxy, see [`AuthThrottle::key_of`]).
#[derive(Debug, Clone, Default)]
pub struct Client {
    peer: Option<SocketAddr>,
    forwarded: Vec<Option<IpAddr>>,
}

/// An `X-Forwarded-For` entry as proxies write it: an address, or one with a port
/// (`203.0.113.7:4711`, `[2001:db8::5]:4711`), or a bracketed IPv6 address.
fn forwarded_addr(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            let inner = entry.strip_prefix('[')?.strip_suffix(']')?;
            inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        })
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("?").split(','))
            .map(forwarded_addr)
            .collect();
        Ok(Self { peer, forwarded })
    }
}

impl Blocked {
    /// What a refused client is told (the API's error description, the dashboard's page).
    fn message(self) -> String {
        format!(
            "too many failed authentications from this address: try again in {}s \
             (auth_max_failures per auth_failure_window_secs)",
            self.retry_after_secs
        )
    }

    /// The 429 answer: `body` made of the message, plus `Retry-After` in seconds.
    fn answer(self, body: impl FnOnce(&str) -> Response) -> Response {
        let mut resp = body(&self.message());
        resp.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(self.retry_after_secs),
        );
        resp
    }
}

/// One client's record.
#[derive(Debug, Default)]
struct Entry {
    /// Failures counted in the current window (the shared count, as last read, when higher).
    failures: u32,
    /// When the current window ends, ms: a window after the client's first failure here, or
    /// the shared window's end.
    window_end_ms: i64,
    /// Refused until then (ms), once `failures` reached the limit.
    blocked_until_ms: Option<i64>,
    /// Checks begun and not yet ended.
    pending: u32,
}

impl Entry {
    /// Forget a window (and a block) that has passed.
    fn refresh(&mut self, now_ms: i64) {
        let ended = match self.blocked_until_ms {
            Some(until) => now_ms >= until,
            None => now_ms >= self.window_end_ms,
        };
        if ended {
            self.failures = 0;
            self.blocked_until_ms = None;
        }
    }

    /// Nothing worth keeping: no failure counted, no check in flight.
    fn idle(&self) -> bool {
        self.failures == 0 && self.pending == 0
    }
}

/// A refused attempt: the client may try again after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    pub retry_after_secs: u64,
}

/// The failure counts of every client (see the module doc).
pub struct AuthThrottle {
    /// 0: no throttling.
    max_failures: u32,
    window_ms: i64,
    max_clients: usize,
    /// `trusted_proxies`: peers whose `X-Forwarded-For` is believed.
    trusted: Vec<IpNet>,
    clients: Mutex<HashMap<ClientKey, Entry>>,
    /// Woken whenever a check ends, for attempts waiting on their client's in-flight checks.
    ended: Notify,
    /// The failures shared with every replica on the store (`None`: this process only).
    shared: Option<AuthFailures>,
    /// When this process last swept the ended shared windows, ms.
    swept_ms: AtomicI64,
}

impl AuthThrottle {
    pub fn new(max_failures: u32, window_secs: u64, max_clients: usize) -> Self {
        Self {
            max_failures,
            window_ms: i64::try_from(window_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            max_clients: max_clients.max(1),
            trusted: Vec::new(),
            clients: Mutex::new(HashMap::new()),
            ended: Notify::new(),
            shared: None,
            swept_ms: AtomicI64::new(i64::MIN),
        }
    }

    /// Count failures in `store` too, shared with every replica on it.
    pub fn shared_through(self, store: AuthFailures) -> Self {
        Self {
            shared: Some(store),
            ..self
        }
    }

    /// The throttle `c` configures, sharing its counts through `backend` (`trusted_proxies`
    /// must parse: [`Config::validate`]).
    pub fn from_config(c: &Config, backend: &dyn Backend) -> anyhow::Result<Self> {
        Ok(Self {
            trusted: parse_networks("trusted_proxies", &c.trusted_proxies)?,
            shared: Some(AuthFailures::new(backend)),
            ..Self::new(
                c.auth_max_failures,
                c.auth_failure_window_secs,
                c.auth_throttle_max_clients,
            )
        })
    }

    /// Who `client` is: its peer address, or, when the peer is a trusted proxy, the last
    /// address of `X-Forwarded-For` that is not a trusted proxy (each proxy appends the address
    /// it saw, so what stands left of it is whatever the client chose to send). When the walk
    /// from the right meets an entry that is not an address (`unknown`, an obfuscated name)
    /// before such an address, or finds none, the peer is the client: going further left, or
    /// taking a trusted address the client may have written itself, would let one client
    /// change its key at will.
    pub fn key_of(&self, client: &Client) -> ClientKey {
        let trusted = |ip: &IpAddr| {
            let ip = ip.to_canonical();
            self.trusted.iter().any(|n| n.contains(&ip))
        };
        let peer = client.peer.map(|p| p.ip());
        let ip = match peer {
            Some(p) if trusted(&p) => client
                .forwarded
                .iter()
                .rev()
                .find(|a| a.is_none_or(|a| !trusted(&a)))
                .copied()
                .flatten()
                .or(peer),
            _ => peer,
        };
        client_key(ip)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ClientKey, Entry>> {
        // A panic while holding the lock leaves counts that are still counts.
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Begin the authentication attempt of a request from `client`, or answer its 429:
    /// `refused` makes the body of the message (the API's error JSON, the dashboard's page),
    /// and `Retry-After` is added.
    pub async fn attempt(
        self: &Arc<Self>,
        client: &Client,
        clock: &dyn Clock,
        refused: impl FnOnce(&str) -> Response,
    ) -> Result<Attempt, Response> {
        self.begin(self.key_of(client), clock)
            .await
            .map_err(|blocked| blocked.answer(refused))
    }

    /// Begin an authentication attempt of `client`: refused while it is blocked, else an
    /// [`Attempt`] whose outcome the caller reports (waiting first while the client has as
    /// many checks in flight as it has failures left).
    pub async fn begin(
        self: &Arc<Self>,
        client: ClientKey,
        clock: &dyn Clock,
    ) -> Result<Attempt, Blocked> {
        if self.max_failures == 0 {
            return Ok(Attempt {
                throttle: None,
                client,
            });
        }
        loop {
            let ended = self.ended.notified();
            {
                let mut clients = self.lock();
                let now = clock.now_ms();
                if !clients.contains_key(&client) {
                    self.make_room(&mut clients, now);
                }
                let entry = clients.entry(client).or_default();
                entry.refresh(now);
                if let Some(until) = entry.blocked_until_ms {
                    let ms = u64::try_from(until.saturating_sub(now)).unwrap_or(0);
                    return Err(Blocked {
                        retry_after_secs: ms.div_ceil(1000).max(1),
                    });
                }
                if entry.failures.saturating_add(entry.pending) < self.max_failures {
                    entry.pending += 1;
                    return Ok(Attempt {
                        throttle: Some(self.clone()),
                        client,
                    });
                }
            }
            // `ended` was created before the lock was released: no wake-up is lost.
            ended.await;
        }
    }

    /// End a check of `client` that did not fail (or whose outcome is unknown).
    fn end(&self, client: ClientKey) {
        let mut clients = self.lock();
        if let Some(entry) = clients.get_mut(&client) {
            entry.pending = entry.pending.saturating_sub(1);
            if entry.idle() {
                clients.remove(&client);
            }
        }
        drop(clients);
        self.ended.notify_waiters();
    }

    /// Count a failure of `client` in the store, in the client's shared window: `None` when
    /// nothing is shared, or the store failed (logged; the failure is then counted locally
    /// only). Sweeps ended windows at most once a window.
    async fn record(&self, client: ClientKey, now_ms: i64) -> Option<Window> {
        let store = self.shared.as_ref()?;
        let key = client.to_string();
        let recorded = tokio::time::timeout(
            STORE_TIMEOUT,
            store.record(&key, now_ms, self.window_ms, self.max_failures),
        )
        .await;
        let last = self.swept_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) >= self.window_ms
            && self
                .swept_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let store = store.clone();
            tokio::spawn(async move {
                if let Err(e) = store.sweep(now_ms).await {
                    tracing::warn!("sweeping ended failed-authentication windows failed: {e}");
                }
            });
        }
        match recorded {
            Ok(Ok(window)) => Some(window),
            Ok(Err(e)) => {
                tracing::warn!(client = %client, "a failed authentication of {client} could not be recorded in the store, counted by this replica only: {e}");
                None
            }
            Err(_) => {
                tracing::warn!(client = %client, "recording a failed authentication of {client} in the store took over {}s; counted by this replica only", STORE_TIMEOUT.as_secs());
                None
            }
        }
    }

    /// End a failed check of `client`: count it, with `shared` the shared window it was
    /// counted in (if it was), and refuse the client once the count reaches the limit.
    fn end_failed(&self, client: ClientKey, shared: Option<Window>, now_ms: i64) {
        let mut clients = self.lock();
        if let Some(entry) = clients.get_mut(&client) {
            entry.pending = entry.pending.saturating_sub(1);
            entry.refresh(now_ms);
            let local_end = now_ms.saturating_add(self.window_ms);
            let first = entry.failures == 0;
            entry.failures = entry.failures.saturating_add(1);
            entry.window_end_ms = match shared {
                Some(w) => {
                    entry.failures = entry.failures.max(w.count);
                    if first {
                        w.until_ms
                    } else {
                        entry.window_end_ms.max(w.until_ms)
                    }
                }
                None if first => local_end,
                None => entry.window_end_ms,
            };
            if entry.failures >= self.max_failures {
                // The shared block when the shared count reached the limit, else a local one.
                let until = shared
                    .filter(|w| w.count >= self.max_failures)
                    .map_or(local_end, |w| w.until_ms.max(local_end));
                entry.blocked_until_ms = Some(until);
                tracing::warn!(client = %client, "authentication of {client} refused for {}s after {} failures (auth_max_failures)",
                    until.saturating_sub(now_ms).div_euclid(1000), entry.failures);
            }
        }
        drop(clients);
        self.ended.notify_waiters();
    }

    /// Keep the table under its cap before adding a client: drop the records whose window
    /// has passed, then the oldest windows (an eighth of the table at once, so a flood of new
    /// clients does not scan it at every attempt). Clients with checks in flight are kept.
    fn make_room(&self, clients: &mut HashMap<ClientKey, Entry>, now_ms: i64) {
        if clients.len() < self.max_clients {
            return;
        }
        clients.retain(|_, e| {
            e.refresh(now_ms);
            !e.idle()
        });
        if clients.len() < self.max_clients {
            return;
        }
        let mut oldest: Vec<(i64, ClientKey)> = clients
            .iter()
            .filter(|(_, e)| e.pending == 0)
            .map(|(k, e)| (e.window_end_ms, *k))
            .collect();
        let n = (self.max_clients / 8).clamp(1, oldest.len().max(1));
        if oldest.len() > n {
            oldest.select_nth_unstable(n);
        }
        for (_, k) in oldest.into_iter().take(n) {
            clients.remove(&k);
        }
    }

    /// How many clients are tracked (tests).
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }
}

/// A check in flight; report its outcome with [`Attempt::failed`] or [`Attempt::succeeded`].
/// Dropped without one (the store failed), it counts as neither.
pub struct Attempt {
    /// `None` when throttling is off or the outcome was reported.
    throttle: Option<Arc<AuthThrottle>>,
    client: ClientKey,
}

impl Attempt {
    /// The token was wrong: count a failure (here and in the shared store).
    pub async fn failed(mut self, clock: &dyn Clock) {
        // `self` keeps the check in flight while the store is written: if this future is
        // dropped meanwhile, `Drop` ends it.
        let Some(t) = self.throttle.clone() else {
            return;
        };
        let now = clock.now_ms();
        let shared = t.record(self.client, now).await;
        self.throttle = None;
        t.end_failed(self.client, shared, now);
    }

    /// The token was right (earlier failures are not forgotten; the store is not touched).
    pub fn succeeded(mut self) {
        if let Some(t) = self.throttle.take() {
            t.end(self.client);
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some(t) = self.throttle.take() {
            t.end(self.client);
        }
    }
}

#[cfg(test)]
mod tests;
