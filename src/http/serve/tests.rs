//! Unit tests of the accept loop's error classification and eviction order.

use super::*;

#[test]
fn accept_errors_are_classified() {
    assert!(is_fd_exhaustion(&io::Error::from_raw_os_error(
        nix::errno::Errno::EMFILE as i32
    )));
    assert!(is_fd_exhaustion(&io::Error::from_raw_os_error(
        nix::errno::Errno::ENFILE as i32
    )));
    assert!(!is_fd_exhaustion(&io::Error::from(
        io::ErrorKind::ConnectionAborted
    )));
    assert!(is_connection_error(&io::Error::from(
        io::ErrorKind::ConnectionAborted
    )));
    assert!(!is_connection_error(&io::Error::from_raw_os_error(
        nix::errno::Errno::EMFILE as i32
    )));
}

#[test]
fn eviction_prefers_the_oldest_never_used_idle_connection() {
    let r = Registry::default();
    let kept_alive = r.register();
    kept_alive.served.store(1, Ordering::SeqCst);
    let busy = r.register();
    busy.served.store(1, Ordering::SeqCst);
    busy.active.store(1, Ordering::SeqCst);
    let fresh_old = r.register();
    let fresh_new = r.register();
    assert!(r.evict_idle());
    assert!(fresh_old.evict.is_cancelled());
    assert!(!fresh_new.evict.is_cancelled());
    assert!(r.evict_idle());
    assert!(fresh_new.evict.is_cancelled());
    assert!(r.evict_idle());
    assert!(kept_alive.evict.is_cancelled());
    assert!(
        !r.evict_idle(),
        "a connection with a request in flight stays"
    );
    assert!(!busy.evict.is_cancelled());
    assert_eq!(r.len(), 1);
}
