//! Sign-in attempts: how many PINs anyone may try for one staff id, and how many PIN
//! checks may run at once.
//!
//! An attempt is *reserved* before its PIN is checked, in the same step that looks at
//! the lock, so a burst of simultaneous attempts cannot all pass the check before the
//! first failure is counted: an id gets at most [`MAX_FAILURES`] PIN checks per lockout.
//! Ids are tallied whether or not an account has them, so a locked id and an unknown
//! one answer alike and the answers do not tell which ids exist. Each PIN check runs
//! Argon2 (tens of milliseconds, about 19 MiB), so at most [`MAX_CONCURRENT_CHECKS`]
//! run at once; the others wait a little, then are turned away.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::staff::StaffError;

/// Wrong PINs that lock an id (PCI DSS 8.3.4 allows at most 10).
pub const MAX_FAILURES: u32 = 5;
/// How long a locked id stays locked (PCI DSS 8.3.4: at least 30 minutes).
pub const LOCKOUT: Duration = Duration::from_secs(30 * 60);
/// PIN checks running at once, across all ids (each holds Argon2's memory).
pub const MAX_CONCURRENT_CHECKS: usize = 2;
/// How long a sign-in waits for a free check before it is told to try again.
pub const CHECK_WAIT: Duration = Duration::from_secs(5);

/// One id's recent attempts.
struct Tally {
    failures: u32,
    in_flight: u32,
    locked_until: Option<Instant>,
    last_failure: Instant,
}

impl Tally {
    /// Nothing left to remember: no lock running, no check running, no recent failure.
    fn is_stale(&self, now: Instant) -> bool {
        self.in_flight == 0
            && !matches!(self.locked_until, Some(u) if u > now)
            && (self.failures == 0 || now - self.last_failure >= LOCKOUT)
    }
}

/// The attempts of every id, and the checks running.
pub struct Lockout {
    tallies: Arc<Mutex<HashMap<String, Tally>>>,
    checks: Arc<Semaphore>,
    peak: Arc<std::sync::atomic::AtomicUsize>,
    running: Arc<std::sync::atomic::AtomicUsize>,
}

impl Default for Lockout {
    fn default() -> Self {
        Lockout {
            tallies: Arc::default(),
            checks: Arc::new(Semaphore::new(MAX_CONCURRENT_CHECKS)),
            peak: Arc::default(),
            running: Arc::default(),
        }
    }
}

impl Lockout {
    /// Reserves one PIN check for `id`, or says why not (locked, or its remaining
    /// tries are all being checked right now).
    pub fn reserve(&self, id: &str) -> Result<Reservation, StaffError> {
        let now = Instant::now();
        let mut tallies = lock(&self.tallies);
        // Forget what no longer matters, so tallies of made-up ids do not pile up:
        // their number is bounded by the check rate over one lockout period.
        tallies.retain(|_, t| !t.is_stale(now));
        let t = tallies.entry(id.to_string()).or_insert(Tally {
            failures: 0,
            in_flight: 0,
            locked_until: None,
            last_failure: now,
        });
        if let Some(until) = t.locked_until.filter(|u| *u > now) {
            return Err(StaffError::Locked {
                minutes: (until - now).as_secs().div_ceil(60).max(1),
            });
        }
        t.locked_until = None;
        if t.failures + t.in_flight >= MAX_FAILURES {
            return Err(StaffError::Busy);
        }
        t.in_flight += 1;
        Ok(Reservation {
            tallies: self.tallies.clone(),
            id: id.to_string(),
            done: false,
            checking: false,
        })
    }

    /// Waits (at most [`CHECK_WAIT`]) for one of the [`MAX_CONCURRENT_CHECKS`] check slots.
    pub async fn check_slot(&self) -> Result<CheckSlot, StaffError> {
        let permit = tokio::time::timeout(CHECK_WAIT, self.checks.clone().acquire_owned())
            .await
            .map_err(|_| StaffError::Busy)?
            .map_err(|_| StaffError::Busy)?;
        use std::sync::atomic::Ordering;
        let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(running, Ordering::SeqCst);
        Ok(CheckSlot {
            _permit: permit,
            running: self.running.clone(),
        })
    }

    /// The most PIN checks seen running at once since start (for tests and metrics).
    pub fn peak_concurrent_checks(&self) -> usize {
        self.peak.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The right to check one PIN for one id. Settle it with the outcome; dropped
/// unsettled after its check began (the check panicked or the caller went away) it
/// counts as a wrong PIN, since a PIN may have been tried; dropped before, as nothing.
pub struct Reservation {
    tallies: Arc<Mutex<HashMap<String, Tally>>>,
    id: String,
    done: bool,
    checking: bool,
}

impl Reservation {
    /// The PIN check is about to run: from now on an unsettled end counts as a wrong PIN.
    pub fn checking(&mut self) {
        self.checking = true;
    }

    /// The PIN was right: the id's wrong PINs are forgiven.
    pub fn succeeded(mut self) {
        self.settle(Some(true));
    }

    /// The PIN was wrong (or the id unknown): counted, and the id locks at the limit.
    pub fn failed(mut self) {
        self.settle(Some(false));
    }

    /// No PIN was checked (no check slot came free): nothing counted.
    pub fn released(mut self) {
        self.settle(None);
    }

    fn settle(&mut self, outcome: Option<bool>) {
        if self.done {
            return;
        }
        self.done = true;
        let now = Instant::now();
        let mut tallies = lock(&self.tallies);
        let Some(t) = tallies.get_mut(&self.id) else {
            return;
        };
        t.in_flight = t.in_flight.saturating_sub(1);
        match outcome {
            Some(true) => t.failures = 0,
            Some(false) => {
                t.failures += 1;
                t.last_failure = now;
                if t.failures >= MAX_FAILURES {
                    t.failures = 0;
                    t.locked_until = Some(now + LOCKOUT);
                    tracing::warn!(staff = %self.id, "console sign-in id locked after wrong PINs");
                }
            }
            None => {}
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let outcome = self.checking.then_some(false);
        self.settle(outcome);
    }
}

/// One of the few PIN checks allowed to run at once; the slot frees when dropped.
pub struct CheckSlot {
    _permit: OwnedSemaphorePermit,
    running: Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for CheckSlot {
    fn drop(&mut self) {
        self.running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reservation_is_refused_while_the_remaining_tries_are_all_being_checked() {
        let l = Lockout::default();
        let _held: Vec<_> = (0..MAX_FAILURES)
            .map(|_| l.reserve("amartin").unwrap())
            .collect();
        assert_eq!(l.reserve("amartin").err(), Some(StaffError::Busy));
    }

    #[tokio::test]
    async fn a_reservation_dropped_unsettled_during_its_check_counts_as_a_wrong_pin() {
        let l = Lockout::default();
        for _ in 0..MAX_FAILURES {
            let mut r = l.reserve("amartin").unwrap();
            r.checking();
            drop(r);
        }
        assert_eq!(
            l.reserve("amartin").err(),
            Some(StaffError::Locked { minutes: 30 })
        );
    }

    #[tokio::test]
    async fn a_reservation_dropped_before_its_check_counts_nothing() {
        let l = Lockout::default();
        for _ in 0..MAX_FAILURES * 2 {
            drop(l.reserve("amartin").unwrap());
        }
        assert!(l.reserve("amartin").is_ok());
    }

    #[tokio::test]
    async fn a_released_reservation_counts_nothing() {
        let l = Lockout::default();
        for _ in 0..MAX_FAILURES * 2 {
            l.reserve("amartin").unwrap().released();
        }
        assert!(l.reserve("amartin").is_ok());
    }

    #[tokio::test]
    async fn a_right_pin_forgives_earlier_wrong_ones() {
        let l = Lockout::default();
        for _ in 0..MAX_FAILURES - 1 {
            l.reserve("amartin").unwrap().failed();
        }
        l.reserve("amartin").unwrap().succeeded();
        for _ in 0..MAX_FAILURES - 1 {
            l.reserve("amartin").unwrap().failed();
        }
        assert!(l.reserve("amartin").is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn wrong_pins_are_forgotten_after_a_quiet_lockout_period() {
        let l = Lockout::default();
        for _ in 0..MAX_FAILURES - 1 {
            l.reserve("amartin").unwrap().failed();
        }
        tokio::time::advance(LOCKOUT).await;
        l.reserve("amartin").unwrap().failed();
        assert!(
            l.reserve("amartin").is_ok(),
            "one failure since the quiet period"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_checks_run_at_once_than_the_cap_and_the_rest_wait_then_give_up() {
        let l = Lockout::default();
        let held: Vec<_> = futures_slots(&l, MAX_CONCURRENT_CHECKS).await;
        assert_eq!(l.peak_concurrent_checks(), MAX_CONCURRENT_CHECKS);
        assert_eq!(l.check_slot().await.err(), Some(StaffError::Busy));
        drop(held);
        assert!(l.check_slot().await.is_ok());
        assert_eq!(l.peak_concurrent_checks(), MAX_CONCURRENT_CHECKS);
    }

    async fn futures_slots(l: &Lockout, n: usize) -> Vec<CheckSlot> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(l.check_slot().await.unwrap());
        }
        v
    }
}
