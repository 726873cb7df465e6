//! Connection hygiene (docs/security.md "Network"): idle and slow connections are closed,
//! and a crowd of idle connections cannot keep `/healthz` (or anyone) out.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Kind, TestApp};

/// Raise this process' soft descriptor limit where the hard limit allows (tests hold both
/// ends of hundreds of connections).
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < 8192
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard.min(8192), hard);
    }
}

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_string()
}

/// `n` connections that never send a byte.
async fn open_idle(app: &TestApp, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(TcpStream::connect(addr(app)).await.expect("connect"));
    }
    v
}

/// Whether the server closed `s` before `deadline`: a read returns EOF (or a reset), after
/// whatever it was told (a refusal's 503).
async fn closed_by(s: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at(deadline.into(), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// How many of `streams` the server closed within `within`.
async fn count_closed(streams: &mut [TcpStream], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    futures::future::join_all(streams.iter_mut().map(|s| closed_by(s, deadline)))
        .await
        .into_iter()
        .filter(|c| *c)
        .count()
}

/// `/healthz` over a new connection; how long it took.
async fn timed_healthz(app: &TestApp) -> Duration {
    let client = crate::harness::client();
    let t = Instant::now();
    let r = client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz answers");
    let took = t.elapsed();
    assert_eq!(r.status().as_u16(), 200);
    took
}

/// `/healthz` answers within 100 ms `when` (the figure is printed as well).
async fn healthz_is_quick(app: &TestApp, when: &str) {
    let took = timed_healthz(app).await;
    eprintln!("/healthz {when}: {took:?}");
    assert!(took < Duration::from_millis(100), "/healthz took {took:?}");
}

/// `what` was closed no sooner than `min` after `since` (its timeout).
#[track_caller]
fn not_before(since: Instant, min: Duration, what: &str) {
    let after = since.elapsed();
    assert!(
        after >= min,
        "{what} closed after {after:?}, before the timeout"
    );
}

async fn idle_connections_do_not_starve_healthz(kind: Kind) {
    raise_fd_limit();
    let Some(app) = TestApp::start_with(kind, |c| c.http_header_read_timeout_secs = 2).await else {
        return;
    };
    timed_healthz(&app).await; // warm: the first request pays for lazy initialisation
    let opened = Instant::now();
    let mut idle = open_idle(&app, 300).await;
    healthz_is_quick(&app, "with 300 idle connections open").await;
    // Every idle connection is closed once the header timeout passed — not before.
    let closed = count_closed(&mut idle, Duration::from_secs(15)).await;
    assert_eq!(closed, 300, "idle connections left open");
    not_before(opened, Duration::from_millis(1500), "idle connections");
    app.stop().await;
}

crate::kind_test!(idle_connections_do_not_starve_healthz);

async fn the_connection_cap_evicts_idle_connections(kind: Kind) {
    raise_fd_limit();
    let Some(app) = TestApp::start_with(kind, |c| {
        c.http_max_connections = 20;
        c.http_header_read_timeout_secs = 60;
    })
    .await
    else {
        return;
    };
    let mut idle = open_idle(&app, 60).await;
    healthz_is_quick(&app, "with 60 idle connections and a cap of 20").await;
    // The oldest idle connections made room (well before the 60 s header timeout); no more
    // than the cap stay open.
    let closed = count_closed(&mut idle, Duration::from_secs(3)).await;
    assert!(
        closed >= 60 - 20,
        "only {closed} of 60 idle connections were closed"
    );
    assert!(
        closed < 60,
        "the newest idle connections stay open under the cap"
    );
    // Ordinary requests keep working at the cap.
    for _ in 0..5 {
        app.get("/openapi/users").await.expect(200);
        timed_healthz(&app).await;
    }
    app.stop().await;
}

crate::kind_test!(the_connection_cap_evicts_idle_connections);

async fn slow_and_kept_alive_connections_are_closed(kind: Kind) {
    let Some(app) = TestApp::start_with(kind, |c| {
        c.http_header_read_timeout_secs = 1;
        c.http_keepalive_idle_secs = 2;
    })
    .await
    else {
        return;
    };
    // Keep-alive: one request, then idle; closed after the idle timeout, not the header one.
    let mut kept = TcpStream::connect(addr(&app)).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("\"ok\"") {
        let n = tokio::time::timeout(Duration::from_secs(5), kept.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    let answered = Instant::now();
    // Slowloris: a head that trickles in is cut at the header timeout.
    let mut slow = TcpStream::connect(addr(&app)).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let trickle = async {
        for i in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if slow
                .write_all(format!("x-slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return started.elapsed();
            }
            let mut b = [0u8; 64];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), slow.read(&mut b)).await
            {
                return started.elapsed();
            }
        }
        panic!("the slow head was never cut");
    };
    let cut = trickle.await;
    assert!(
        cut >= Duration::from_millis(900) && cut < Duration::from_secs(3),
        "slow head cut after {cut:?}"
    );
    assert!(
        closed_by(&mut kept, answered + Duration::from_secs(6)).await,
        "kept-alive connection left open"
    );
    not_before(
        answered,
        Duration::from_millis(1800),
        "kept-alive connection",
    );
    app.stop().await;
}

crate::kind_test!(slow_and_kept_alive_connections_are_closed);
