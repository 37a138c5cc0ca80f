//! Who may take which job: staff starts (in staff-start mode) and the jobs a line
//! has taken and not finished.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Orders staff have started, with who started them.
#[derive(Default)]
pub struct StaffStarts {
    started: Mutex<HashMap<String, String>>,
}

impl StaffStarts {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.started.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `staff` started `op`.
    pub fn record(&self, op: &str, staff: &str) {
        self.map().insert(op.to_string(), staff.to_string());
    }

    /// Takes the start of `op` (who started it), if any.
    pub fn take(&self, op: &str) -> Option<String> {
        self.map().remove(op)
    }

    /// Whether `op` was started.
    pub fn contains(&self, op: &str) -> bool {
        self.map().contains_key(op)
    }
}

/// Jobs a line has taken and not finished, so no other line takes them.
#[derive(Default)]
pub struct LineClaims {
    claimed: tokio::sync::Mutex<HashSet<String>>,
}

impl LineClaims {
    /// Locks the claims; the caller reads the runnable list under it, so no line acts
    /// on a list read before another line's claim.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, HashSet<String>> {
        self.claimed.lock().await
    }

    /// The line is done with `op`.
    pub async fn release(&self, op: &str) {
        self.claimed.lock().await.remove(op);
    }
}
