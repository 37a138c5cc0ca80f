//! A whole branch on one machine for the end-to-end tests (see `station_branch`).

#![allow(dead_code, unused_imports)]

pub use station_branch::{wait_hub, wait_states, Branch, STATION};

/// A branch in a fresh temporary folder; keep the folder guard alive with it.
pub async fn branch(policy: &str) -> (tempfile::TempDir, Branch) {
    let dir = tempfile::tempdir().unwrap();
    let b = station_branch::branch(dir.path(), policy, Default::default()).await;
    (dir, b)
}
