//! Failed-authentication throttling: a client that presents `auth_max_failures` wrong tokens
//! within `auth_failure_window_secs` is refused further attempts, without its token being
//! checked, until that window has passed since its last counted failure (docs/security.md).
//!
//! A client is the peer address of its connection (an IPv6 address by its /64, the smallest
//! block one host is usually given). The table is in memory, per process, and bounded by
//! `auth_throttle_max_clients`. Time comes from the injected [`Clock`].
//!
//! Attempts are counted before the token is checked: a client may have at most
//! `max_failures - failures` checks in flight, and further attempts wait for one to end. So a
//! burst of parallel guesses gets no more tries than sequential ones, while a client whose
//! tokens are valid only waits, briefly, when it has that many checks in flight at once.
//! A success does not forget earlier failures: one valid low-privilege token must not let a
//! client reset its count and go on guessing another (the admin's) token.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::IpNet;

use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::Config;
use crate::release_plan::egress::parse_networks;

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
/// the addresses of `X-Forwarded-For` (in order; read only when the peer is a trusted proxy,
/// see [`AuthThrottle::key_of`]).
#[derive(Debug, Clone, Default)]
pub struct Client {
    peer: Option<SocketAddr>,
    forwarded: Vec<IpAddr>,
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
        // Entries that are not addresses (`unknown`, obfuscated names) are passed over: a
        // trusted proxy appends the address it saw, so the client is never one of them.
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .collect();
        Ok(Self { peer, forwarded })
    }
}

impl Blocked {
    /// What a refused client is told (the API's error description, the dashboard's page).
    pub fn message(self) -> String {
        format!(
            "too many failed authentications from this address: try again in {}s \
             (auth_max_failures per auth_failure_window_secs)",
            self.retry_after_secs
        )
    }

    /// The `Retry-After` header of the answer.
    pub fn header(self) -> (axum::http::HeaderName, axum::http::HeaderValue) {
        (
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(self.retry_after_secs),
        )
    }
}

/// One client's record.
#[derive(Debug, Default)]
struct Entry {
    /// Failures counted in the current window.
    failures: u32,
    /// When the current window started (its first failure), ms.
    window_start_ms: i64,
    /// Refused until then (ms), once `failures` reached the limit.
    blocked_until_ms: Option<i64>,
    /// Checks begun and not yet ended.
    pending: u32,
}

impl Entry {
    /// Forget a window (and a block) that has passed.
    fn refresh(&mut self, now_ms: i64, window_ms: i64) {
        let ended = match self.blocked_until_ms {
            Some(until) => now_ms >= until,
            None => now_ms >= self.window_start_ms.saturating_add(window_ms),
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
        }
    }

    /// The throttle `c` configures (`trusted_proxies` must parse: [`Config::validate`]).
    pub fn from_config(c: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            trusted: parse_networks("trusted_proxies", &c.trusted_proxies)?,
            ..Self::new(
                c.auth_max_failures,
                c.auth_failure_window_secs,
                c.auth_throttle_max_clients,
            )
        })
    }

    /// Who `client` is: its peer address, or, when the peer is a trusted proxy, the last
    /// address of `X-Forwarded-For` that is not a trusted proxy (each proxy appends the address
    /// it saw, so what stands left of it is whatever the client chose to send).
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
                .find(|a| !trusted(a))
                .or(client.forwarded.first())
                .copied()
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
                entry.refresh(now, self.window_ms);
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

    /// End a check of `client`: count it when it `failed`.
    fn end(&self, client: ClientKey, failed: bool, now_ms: i64) {
        let mut clients = self.lock();
        if let Some(entry) = clients.get_mut(&client) {
            entry.pending = entry.pending.saturating_sub(1);
            if failed {
                entry.refresh(now_ms, self.window_ms);
                if entry.failures == 0 {
                    entry.window_start_ms = now_ms;
                }
                entry.failures += 1;
                if entry.failures >= self.max_failures {
                    entry.blocked_until_ms = Some(now_ms.saturating_add(self.window_ms));
                    tracing::warn!(client = %client, "authentication of {client} refused for {}s after {} failures (auth_max_failures)",
                        self.window_ms / 1000, entry.failures);
                }
            }
            if entry.idle() {
                clients.remove(&client);
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
        let window = self.window_ms;
        clients.retain(|_, e| {
            e.refresh(now_ms, window);
            !e.idle()
        });
        if clients.len() < self.max_clients {
            return;
        }
        let mut oldest: Vec<(i64, ClientKey)> = clients
            .iter()
            .filter(|(_, e)| e.pending == 0)
            .map(|(k, e)| (e.window_start_ms, *k))
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
    /// The token was wrong: count a failure.
    pub fn failed(mut self, clock: &dyn Clock) {
        if let Some(t) = self.throttle.take() {
            t.end(self.client, true, clock.now_ms());
        }
    }

    /// The token was right (earlier failures are not forgotten).
    pub fn succeeded(mut self, clock: &dyn Clock) {
        if let Some(t) = self.throttle.take() {
            t.end(self.client, false, clock.now_ms());
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some(t) = self.throttle.take() {
            t.end(self.client, false, i64::MIN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    fn ip(s: &str) -> ClientKey {
        client_key(Some(s.parse().unwrap()))
    }

    #[tokio::test]
    async fn blocks_after_the_limit_until_the_window_passes() {
        let clock = ManualClock::new(1_000_000);
        let t = Arc::new(AuthThrottle::new(3, 60, 100));
        let a = ip("10.0.0.1");
        for _ in 0..3 {
            t.begin(a, &clock).await.unwrap().failed(&clock);
        }
        let blocked = t.begin(a, &clock).await.err().unwrap();
        assert_eq!(blocked.retry_after_secs, 60);
        // Another client is not concerned.
        t.begin(ip("10.0.0.2"), &clock)
            .await
            .unwrap()
            .succeeded(&clock);
        clock.advance(Duration::from_millis(59_500));
        assert_eq!(t.begin(a, &clock).await.err().unwrap().retry_after_secs, 1);
        clock.advance(Duration::from_millis(500));
        t.begin(a, &clock).await.unwrap().succeeded(&clock);
        assert_eq!(t.tracked(), 0, "a passed window is forgotten");
    }

    #[tokio::test]
    async fn a_success_does_not_reset_the_count_and_old_failures_expire() {
        let clock = ManualClock::new(0);
        let t = Arc::new(AuthThrottle::new(3, 60, 100));
        let a = ip("10.0.0.1");
        t.begin(a, &clock).await.unwrap().failed(&clock);
        t.begin(a, &clock).await.unwrap().failed(&clock);
        t.begin(a, &clock).await.unwrap().succeeded(&clock);
        t.begin(a, &clock).await.unwrap().failed(&clock);
        assert!(t.begin(a, &clock).await.is_err());
        // Failures spread over more than a window never block.
        let b = ip("10.0.0.9");
        for _ in 0..5 {
            t.begin(b, &clock).await.unwrap().failed(&clock);
            t.begin(b, &clock).await.unwrap().failed(&clock);
            clock.advance(Duration::from_secs(61));
        }
        assert!(t.begin(b, &clock).await.is_ok());
    }

    #[tokio::test]
    async fn parallel_checks_get_no_more_tries() {
        let clock = ManualClock::new(0);
        let t = Arc::new(AuthThrottle::new(2, 60, 100));
        let a = ip("10.0.0.1");
        let first = t.begin(a, &clock).await.unwrap();
        let second = t.begin(a, &clock).await.unwrap();
        // A third waits for one of the two to end ...
        let waiting = {
            let t = t.clone();
            let clock = clock.clone();
            tokio::spawn(async move { t.begin(a, &clock).await.map(|at| at.succeeded(&clock)) })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        first.failed(&clock);
        second.failed(&clock);
        // ... and is refused once both failed.
        assert!(waiting.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn ipv6_counts_by_64_and_the_table_is_bounded() {
        assert_eq!(ip("2001:db8::1"), ip("2001:db8::ffff:2"));
        assert_ne!(ip("2001:db8::1"), ip("2001:db8:0:1::1"));
        assert_eq!(ip("::ffff:10.0.0.1"), ip("10.0.0.1"));
        let clock = ManualClock::new(0);
        let t = Arc::new(AuthThrottle::new(5, 60, 16));
        for i in 0..100u8 {
            t.begin(ip(&format!("10.0.1.{i}")), &clock)
                .await
                .unwrap()
                .failed(&clock);
            clock.advance(Duration::from_millis(10));
        }
        assert!(t.tracked() <= 16, "{}", t.tracked());
        // The newest client is still counted.
        let last = ip("10.0.1.99");
        for _ in 0..4 {
            t.begin(last, &clock).await.unwrap().failed(&clock);
        }
        assert!(t.begin(last, &clock).await.is_err());
    }

    #[tokio::test]
    async fn zero_means_off() {
        let clock = ManualClock::new(0);
        let t = Arc::new(AuthThrottle::new(0, 60, 16));
        for _ in 0..50 {
            t.begin(ip("10.0.0.1"), &clock)
                .await
                .unwrap()
                .failed(&clock);
        }
        assert_eq!(t.tracked(), 0);
    }
}
