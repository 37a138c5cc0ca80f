//! The journal's own thread: async code hands it work through a channel and awaits
//! the answer, so an fsync (`synchronous=FULL`) never blocks a tokio worker.
//!
//! The same pattern as the device drivers: one thread owns the blocking resource,
//! requests queue in order, each answer comes back on a oneshot.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

use tokio::sync::oneshot;

use super::Journal;

type Work = Box<dyn FnOnce(&Journal) + Send>;

/// An async handle on the journal, served by one dedicated thread.
///
/// Cheap to clone; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct JournalThread {
    journal: Arc<Journal>,
    work: mpsc::Sender<Work>,
}

impl JournalThread {
    /// Starts the thread that serves `journal`.
    pub fn start(journal: Arc<Journal>) -> Self {
        let (work, queue) = mpsc::channel::<Work>();
        let served = journal.clone();
        thread::Builder::new()
            .name("journal".into())
            .spawn(move || {
                for job in queue {
                    job(&served);
                }
            })
            .expect("the journal thread could not be started");
        JournalThread { journal, work }
    }

    /// Runs `f` on the journal thread and returns its result.
    pub async fn call<R, F>(&self, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(&Journal) -> R + Send + 'static,
    {
        let (answer, reply) = oneshot::channel();
        let work: Work = Box::new(move |j| {
            let _ = answer.send(f(j));
        });
        if self.work.send(work).is_err() {
            // The thread only ends when every handle is gone; this one is alive.
            unreachable!("the journal thread ended while a handle was alive");
        }
        match reply.await {
            Ok(r) => r,
            // `f` panicked on the journal thread: surface the panic here, where the
            // caller is, rather than hang.
            Err(_) => panic!("a journal call panicked on the journal thread"),
        }
    }

    /// Queues `f` on the journal thread without waiting for it: calls queued from
    /// one caller run in the order they were queued.
    pub fn send(&self, f: impl FnOnce(&Journal) + Send + 'static) {
        if self.work.send(Box::new(f)).is_err() {
            unreachable!("the journal thread ended while a handle was alive");
        }
    }

    /// The journal itself, for synchronous callers outside the async workers
    /// (start-up recovery, command-line tools, tests).
    pub fn blocking(&self) -> &Arc<Journal> {
        &self.journal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::NewJob;

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
