//! The journal's own thread: async code hands it work through a channel and awaits
//! the answer, so an fsync (`synchronous=FULL`) never blocks a tokio worker.
//!
//! The same pattern as the device drivers: one thread owns the blocking resource,
//! requests queue in order, each answer comes back on a oneshot.

use std::sync::Arc;

use super::Journal;
use crate::dedicated::DedicatedThread;

/// An async handle on the journal, served by one dedicated thread.
///
/// Cheap to clone; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct JournalThread(DedicatedThread<Journal>);

impl JournalThread {
    /// Starts the thread that serves `journal`.
    pub fn start(journal: Arc<Journal>) -> Self {
        JournalThread(DedicatedThread::start("journal", journal))
    }

    /// Runs `f` on the journal thread and returns its result.
    pub async fn call<R, F>(&self, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(&Journal) -> R + Send + 'static,
    {
        self.0.call(f).await
    }

    /// Queues `f` on the journal thread without waiting for it: calls queued from
    /// one caller run in the order they were queued.
    pub fn send(&self, f: impl FnOnce(&Journal) + Send + 'static) {
        self.0.send(f)
    }

    /// The journal itself, for synchronous callers outside the async workers
    /// (start-up recovery, command-line tools, tests).
    pub fn blocking(&self) -> &Arc<Journal> {
        self.0.blocking()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::NewJob;
    use std::thread;

    #[tokio::test(flavor = "current_thread")]
    async fn a_journal_call_runs_off_the_async_worker_and_answers() {
        let journal = Arc::new(Journal::open_in_memory().unwrap());
        let thread = JournalThread::start(journal);
        let worker = thread::current().id();
        let (ran_on, outcome) = thread
            .call(move |j| {
                let outcome = j.insert_order(&NewJob {
                    operation_id: "op-1".into(),
                    issuer_id: "iss".into(),
                    card_id: "card".into(),
                    perso_station: "st".into(),
                    order_json: serde_json::json!({}),
                });
                (thread::current().id(), outcome)
            })
            .await;
        assert_ne!(ran_on, worker);
        assert_eq!(outcome.unwrap(), crate::journal::InsertOutcome::Created);
    }
}
