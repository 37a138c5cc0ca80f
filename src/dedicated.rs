//! A blocking resource (an SQLite connection) owned by one thread of its own: async
//! code hands it work through a channel and awaits the answer, so an fsync never
//! blocks a tokio worker. Requests queue in order; each answer comes back on a oneshot.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

use tokio::sync::oneshot;

type Work<T> = Box<dyn FnOnce(&T) + Send>;

/// An async handle on a `T` served by one dedicated thread.
///
/// Cheap to clone; the thread ends when the last handle is dropped.
pub struct DedicatedThread<T> {
    served: Arc<T>,
    work: mpsc::Sender<Work<T>>,
}

impl<T> Clone for DedicatedThread<T> {
    fn clone(&self) -> Self {
        DedicatedThread {
            served: self.served.clone(),
            work: self.work.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> DedicatedThread<T> {
    /// Starts the thread, named `name`, that serves `served`.
    pub fn start(name: &str, served: Arc<T>) -> Self {
        let (work, queue) = mpsc::channel::<Work<T>>();
        let owned = served.clone();
        thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for job in queue {
                    job(&owned);
                }
            })
            .unwrap_or_else(|e| panic!("the {name} thread could not be started: {e}"));
        DedicatedThread { served, work }
    }

    /// Runs `f` on the thread and returns its result.
    pub async fn call<R, F>(&self, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(&T) -> R + Send + 'static,
    {
        let (answer, reply) = oneshot::channel();
        self.send(move |t| {
            let _ = answer.send(f(t));
        });
        match reply.await {
            Ok(r) => r,
            // `f` panicked on the thread: surface the panic here, where the caller is,
            // rather than hang.
            Err(_) => panic!("a call panicked on its dedicated thread"),
        }
    }

    /// Queues `f` on the thread without waiting for it: calls queued from one caller
    /// run in the order they were queued.
    pub fn send(&self, f: impl FnOnce(&T) + Send + 'static) {
        if self.work.send(Box::new(f)).is_err() {
            // The thread only ends when every handle is gone; this one is alive.
            unreachable!("a dedicated thread ended while a handle was alive");
        }
    }

    /// The served value itself, for synchronous callers outside the async workers
    /// (start-up, command-line tools, work already on the blocking pool, tests).
    pub fn blocking(&self) -> &Arc<T> {
        &self.served
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test(flavor = "current_thread")]
    async fn a_call_runs_on_the_named_thread_and_answers() {
        let served = DedicatedThread::start("served-test", Arc::new(41));
        let (name, answer) = served
            .call(|n| (thread::current().name().map(String::from), n + 1))
            .await;
        assert_eq!(name.as_deref(), Some("served-test"));
        assert_eq!(answer, 42);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn calls_sent_without_waiting_run_in_order_before_a_later_call() {
        let served = DedicatedThread::start("served-order", Arc::new(Mutex::new(Vec::new())));
        for i in 0..5 {
            served.send(move |v| v.lock().unwrap().push(i));
        }
        let seen = served.call(|v| v.lock().unwrap().clone()).await;
        assert_eq!(seen, [0, 1, 2, 3, 4]);
    }
}
