//! Journal upkeep on a schedule: card data of ended jobs is purged once its retention
//! has passed, and the write-ahead log is checkpointed and emptied so the purged
//! ciphertext does not outlive it there. Runs at start and then every
//! [`UPKEEP_EVERY`], on the journal thread like every other journal write.

use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;

use super::{Journal, JournalError, JournalThread};

/// How often the journal is purged and checkpointed.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(3600);

/// What one upkeep pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upkept {
    /// Jobs whose card data was purged.
    pub purged: usize,
    /// Whether the write-ahead log was emptied.
    pub wal_emptied: bool,
}

/// One pass: purge (when a retention is configured; with none, ending a job purges at
/// once) and checkpoint.
pub fn upkeep(j: &Journal, now: OffsetDateTime) -> Result<Upkept, JournalError> {
    let purged = if j.retention().is_zero() {
        0
    } else {
        j.purge_card_data(now)?
    };
    let wal_emptied = j.checkpoint()?;
    Ok(Upkept {
        purged,
        wal_emptied,
    })
}

/// Runs [`upkeep`] now and every `every` until `stop`. A failed pass is logged and
/// tried again next time: the journal's own writes report their failures.
pub async fn run_upkeep(
    desk: JournalThread,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<(), JournalError> {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {},
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
        match desk.call(|j| upkeep(j, OffsetDateTime::now_utc())).await {
            Ok(u) if u.purged > 0 => {
                tracing::info!(purged = u.purged, "card data of ended jobs purged")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(code = e.code(), error = %e, "journal upkeep failed; tried again later")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::journal::state::JobState;
    use crate::journal::{JournalOptions, NewJob};

    fn cancelled(j: &Journal, op: &str) {
        j.insert_order(&NewJob {
            operation_id: op.into(),
            issuer_id: "ISS".into(),
            card_id: format!("card-{op}"),
            perso_station: "BR-1".into(),
            order_json: serde_json::json!({"encryptedData": "eyJ.jwe"}),
        })
        .unwrap();
        j.transition(op, JobState::Cancelled, None).unwrap();
    }

    fn purged(j: &Journal, op: &str) -> bool {
        j.job(op).unwrap().unwrap().order_json["encryptedData"].is_null()
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn card_data_is_purged_at_start_and_again_every_period() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(
            Journal::open_with(
                &dir.path().join("j.db"),
                JournalOptions {
                    retention: Duration::from_millis(1),
                },
            )
            .unwrap(),
        );
        cancelled(&journal, "before-start");
        std::thread::sleep(Duration::from_millis(5));
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(run_upkeep(
            JournalThread::start(journal.clone()),
            UPKEEP_EVERY,
            rx,
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !purged(&journal, "before-start") {
            assert!(std::time::Instant::now() < deadline, "purged at start");
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(5));
        }
        cancelled(&journal, "later");
        std::thread::sleep(Duration::from_millis(5));
        tokio::time::sleep(UPKEEP_EVERY / 2).await;
        assert!(!purged(&journal, "later"), "not before the period");
        tokio::time::sleep(UPKEEP_EVERY / 2).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !purged(&journal, "later") {
            assert!(
                std::time::Instant::now() < deadline,
                "purged after a period"
            );
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
    }
}
