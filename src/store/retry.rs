//! The one retry policy of read–modify–conditional-write loops.
//!
//! Every aggregate is written with a conditional update (the `version` read, a status, an
//! upsert's unique key); a writer that loses the race re-reads and tries again. The loop
//! shape is the same everywhere:
//!
//! ```ignore
//! let mut attempts = Attempts::new();
//! while attempts.next().await {
//!     let old = read().await?;            // read
//!     let new = change(&old)?;             // modify (may return a domain error)
//!     if store.save(&new, old.version).await? {
//!         return Ok(());                   // conditional write won
//!     }                                    // lost the race: around again
//! }
//! Err(conflict_error)                      // exhausted: the caller's 409
//! ```
//!
//! [`Attempts`] owns the policy: at most [`MAX_ATTEMPTS`] attempts, the first at once and
//! each later one after a jittered, doubling pause (so racing writers spread out instead of
//! colliding again in lock step). The caller keeps its own body and its own exhaustion
//! error, since that text is what its clients see; [`exhausted`] is the plain one.

use std::time::Duration;

use rand::Rng;

use super::StoreError;

/// How many times a conditional write is attempted before giving up.
pub const MAX_ATTEMPTS: u32 = 32;
/// The pause before the second attempt; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(1);
const MAX_PAUSE: Duration = Duration::from_millis(64);

/// The attempts of one read–modify–conditional-write loop (see the module docs).
#[derive(Debug)]
pub struct Attempts {
    done: u32,
}

impl Default for Attempts {
    fn default() -> Self {
        Self::new()
    }
}

impl Attempts {
    pub fn new() -> Self {
        Self { done: 0 }
    }

    /// Whether another attempt may be made. The first call answers at once; later ones first
    /// wait a random pause up to the current backoff. False once the attempts are used up.
    pub async fn next(&mut self) -> bool {
        if self.done >= MAX_ATTEMPTS {
            return false;
        }
        if self.done > 0 {
            tokio::time::sleep(pause(self.done)).await;
        }
        self.done += 1;
        true
    }

    /// How many attempts have been made so far.
    pub fn made(&self) -> u32 {
        self.done
    }
}

/// The random pause before attempt `done + 1`: up to `FIRST_PAUSE · 2^(done-1)`, capped.
fn pause(done: u32) -> Duration {
    let ceiling = FIRST_PAUSE
        .saturating_mul(1 << done.saturating_sub(1).min(16))
        .min(MAX_PAUSE);
    let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(rand::rng().random_range(0..=micros))
}

/// The conflict a loop ends with when every attempt lost its race.
pub fn exhausted(what: &str) -> StoreError {
    StoreError::Conflict(format!(
        "{what} kept changing while this write was applied ({MAX_ATTEMPTS} attempts); retry"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded() {
        let mut a = Attempts::new();
        let mut n = 0;
        while a.next().await {
            n += 1;
        }
        assert_eq!(n, MAX_ATTEMPTS);
        assert_eq!(a.made(), MAX_ATTEMPTS);
        assert!(!a.next().await);
    }

    #[test]
    fn pauses_grow_and_stay_capped() {
        for done in 1..40 {
            assert!(pause(done) <= MAX_PAUSE);
        }
        assert!(pause(1) <= FIRST_PAUSE);
    }
}
