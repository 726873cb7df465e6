//! Test-only fault injection: a debug build started with `ZADIG_TEST_FAULT=<point>` aborts
//! (as `kill -9` would stop it: no clean-up, no graceful shutdown) when it reaches that point,
//! so a test can check that a crash exactly there loses nothing (tests/it/workflow_notify.rs).
//!
//! Release builds (`cargo build --release`, the Docker image) compile the points to nothing and
//! only warn that the variable is ignored, so a stray variable cannot make production crash.
//! The variable is read once by `main` before the `ZADIG_*` environment is scrubbed; it is not
//! a configuration key (no file or config key can set it).

use std::sync::OnceLock;

/// The environment variable.
pub const ENV: &str = "ZADIG_TEST_FAULT";

/// Where a process may be made to abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// A task's status change (with its notices) is stored; nothing is queued yet.
    NotifyBeforeQueue,
    /// The notices are queued in `workflow_notifications`; the task still lists them.
    NotifyBeforeClear,
}

impl Point {
    const ALL: [Point; 2] = [Point::NotifyBeforeQueue, Point::NotifyBeforeClear];

    pub fn name(self) -> &'static str {
        match self {
            Point::NotifyBeforeQueue => "notify-before-queue",
            Point::NotifyBeforeClear => "notify-before-clear",
        }
    }
}

/// The value `ZADIG_TEST_FAULT` had at start-up.
static ARMED: OnceLock<String> = OnceLock::new();

/// Read `ZADIG_TEST_FAULT` (from `main`, before the environment is scrubbed).
pub fn arm_from_env() {
    if let Ok(v) = std::env::var(ENV)
        && !v.is_empty()
    {
        let _ = ARMED.set(v);
    }
}

/// What to log at start-up when the variable was set (`None` when it was not).
pub fn warning() -> Option<String> {
    let v = ARMED.get()?;
    if !cfg!(debug_assertions) {
        return Some(format!(
            "{ENV} is set and ignored: release builds have no fault injection"
        ));
    }
    Some(match Point::ALL.iter().find(|p| p.name() == v) {
        Some(p) => format!(
            "{ENV}={}: this test build aborts when it reaches that point",
            p.name()
        ),
        None => format!(
            "{ENV}={v:?} names no fault point (known: {})",
            Point::ALL.map(Point::name).join(", ")
        ),
    })
}

/// Abort here when the process was started to (debug builds only).
pub fn point(p: Point) {
    if cfg!(debug_assertions) && ARMED.get().is_some_and(|v| v == p.name()) {
        tracing::error!("{ENV}: aborting at {}", p.name());
        std::process::abort();
    }
}
