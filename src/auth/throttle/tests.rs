//! The throttle's rules on a manual clock: in memory, and shared by two throttles (two
//! replicas) on one embedded store.

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
        t.begin(a, &clock).await.unwrap().failed(&clock).await;
    }
    let blocked = t.begin(a, &clock).await.err().unwrap();
    assert_eq!(blocked.retry_after_secs, 60);
    // Another client is not concerned.
    t.begin(ip("10.0.0.2"), &clock).await.unwrap().succeeded();
    clock.advance(Duration::from_millis(59_500));
    assert_eq!(t.begin(a, &clock).await.err().unwrap().retry_after_secs, 1);
    clock.advance(Duration::from_millis(500));
    t.begin(a, &clock).await.unwrap().succeeded();
    assert_eq!(t.tracked(), 0, "a passed window is forgotten");
}

#[tokio::test]
async fn a_success_does_not_reset_the_count_and_old_failures_expire() {
    let clock = ManualClock::new(0);
    let t = Arc::new(AuthThrottle::new(3, 60, 100));
    let a = ip("10.0.0.1");
    t.begin(a, &clock).await.unwrap().failed(&clock).await;
    t.begin(a, &clock).await.unwrap().failed(&clock).await;
    t.begin(a, &clock).await.unwrap().succeeded();
    t.begin(a, &clock).await.unwrap().failed(&clock).await;
    assert!(t.begin(a, &clock).await.is_err());
    // Failures spread over more than a window never block.
    let b = ip("10.0.0.9");
    for _ in 0..5 {
        t.begin(b, &clock).await.unwrap().failed(&clock).await;
        t.begin(b, &clock).await.unwrap().failed(&clock).await;
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
        tokio::spawn(async move { t.begin(a, &clock).await.map(|at| at.succeeded()) })
    };
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    first.failed(&clock).await;
    second.failed(&clock).await;
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
            .failed(&clock)
            .await;
        clock.advance(Duration::from_millis(10));
    }
    assert!(t.tracked() <= 16, "{}", t.tracked());
    // The newest client is still counted.
    let last = ip("10.0.1.99");
    for _ in 0..4 {
        t.begin(last, &clock).await.unwrap().failed(&clock).await;
    }
    assert!(t.begin(last, &clock).await.is_err());
}

/// An embedded store in a fresh temp dir (kept alive by the returned dir).
async fn store() -> (tempfile::TempDir, Arc<dyn Backend>) {
    let dir = tempfile::tempdir().unwrap();
    let b = crate::store::embedded::SqliteBackend::open(&dir.path().join("zadig.db"))
        .await
        .unwrap();
    let b: Arc<dyn Backend> = Arc::new(b);
    b.migrate(&crate::store::index_specs()).await.unwrap();
    (dir, b)
}

fn replica(max: u32, b: &Arc<dyn Backend>) -> Arc<AuthThrottle> {
    Arc::new(AuthThrottle::new(max, 60, 100).shared_through(AuthFailures::new(b.as_ref())))
}

#[tokio::test]
async fn replicas_share_the_count_within_the_bound() {
    let (_dir, b) = store().await;
    let clock = ManualClock::new(1_000_000);
    let (r1, r2) = (replica(3, &b), replica(3, &b));
    let a = ip("10.0.0.1");
    // Two failures on one replica, one on the other: the third blocks on the second ...
    r1.begin(a, &clock).await.unwrap().failed(&clock).await;
    clock.advance(Duration::from_secs(10));
    r1.begin(a, &clock).await.unwrap().failed(&clock).await;
    r2.begin(a, &clock).await.unwrap().failed(&clock).await;
    assert_eq!(
        r2.begin(a, &clock).await.err().unwrap().retry_after_secs,
        60
    );
    // ... and the first refuses at its next failure: max + replicas - 1 tries in all.
    r1.begin(a, &clock).await.unwrap().failed(&clock).await;
    assert_eq!(
        r1.begin(a, &clock).await.err().unwrap().retry_after_secs,
        60
    );
    // A successful check touches no store: nothing else was written for another client.
    r1.begin(ip("10.0.0.2"), &clock).await.unwrap().succeeded();
    let coll = b.collection("auth_failures");
    assert_eq!(coll.count(&crate::store::Filter::All).await.unwrap(), 1);
    // After the window (a full one from the last failure), a fresh window on both.
    clock.advance(Duration::from_secs(60));
    r2.begin(a, &clock).await.unwrap().failed(&clock).await;
    r1.begin(a, &clock).await.unwrap().succeeded();
    let doc = coll.find_one(&crate::store::Filter::id("10.0.0.1")).await;
    assert_eq!(doc.unwrap().unwrap()["count"], 1);
}

#[tokio::test]
async fn a_store_failure_counts_locally() {
    let (_dir, b) = store().await;
    let clock = ManualClock::new(1_000_000);
    let t = replica(2, &b);
    // A document the store cannot count in: every record fails.
    let bad = serde_json::json!({"id": "10.0.0.1", "count": "x", "until_ms": "never"});
    let coll = b.collection("auth_failures");
    coll.insert(crate::store::to_doc(&bad).unwrap())
        .await
        .unwrap();
    let a = ip("10.0.0.1");
    t.begin(a, &clock).await.unwrap().failed(&clock).await;
    t.begin(a, &clock).await.unwrap().failed(&clock).await;
    assert_eq!(t.begin(a, &clock).await.err().unwrap().retry_after_secs, 60);
}

#[tokio::test]
async fn ended_windows_are_swept() {
    let (_dir, b) = store().await;
    let clock = ManualClock::new(1_000_000);
    let t = replica(5, &b);
    t.begin(ip("10.0.0.1"), &clock)
        .await
        .unwrap()
        .failed(&clock)
        .await;
    clock.advance(Duration::from_secs(61));
    t.begin(ip("10.0.0.2"), &clock)
        .await
        .unwrap()
        .failed(&clock)
        .await;
    let coll = b.collection("auth_failures");
    let gone = crate::store::Filter::id("10.0.0.1");
    for _ in 0..250 {
        if coll.count(&gone).await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        coll.count(&gone).await.unwrap(),
        0,
        "the ended window is swept"
    );
    assert_eq!(coll.count(&crate::store::Filter::All).await.unwrap(), 1);
}

/// `0`: no throttling, nothing counted here nor written to the store.
#[tokio::test]
async fn zero_means_off() {
    let (_dir, b) = store().await;
    let clock = ManualClock::new(0);
    let t = replica(0, &b);
    for _ in 0..5 {
        t.begin(ip("10.0.0.1"), &clock)
            .await
            .unwrap()
            .failed(&clock)
            .await;
    }
    assert_eq!(t.tracked(), 0);
    let coll = b.collection("auth_failures");
    assert_eq!(coll.count(&crate::store::Filter::All).await.unwrap(), 0);
}
