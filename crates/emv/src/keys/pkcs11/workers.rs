//! The session threads: one queue per session, pinned personalizations, answers as futures.

use super::*;

/// A pending answer from a worker thread, awaited without blocking the executor.
pub(super) struct Reply<T> {
    pub(super) value: Option<T>,
    pub(super) closed: bool,
    pub(super) waker: Option<std::task::Waker>,
}

/// The worker's end: sends once; dropped unsent (the store shut down), it wakes the
/// waiting task with nothing.
pub(super) struct ReplyTx<T>(Arc<Mutex<Reply<T>>>);

impl<T> ReplyTx<T> {
    fn send(self, v: T) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).value = Some(v);
    }
}

impl<T> Drop for ReplyTx<T> {
    fn drop(&mut self) {
        let mut r = self.0.lock().unwrap_or_else(|p| p.into_inner());
        r.closed = true;
        if let Some(w) = r.waker.take() {
            w.wake();
        }
    }
}

/// The caller's end: a future of the worker's answer (`None` when it never came).
pub(super) struct ReplyRx<T>(Arc<Mutex<Reply<T>>>);

impl<T> std::future::Future for ReplyRx<T> {
    type Output = Option<T>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        let mut r = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = r.value.take() {
            std::task::Poll::Ready(Some(v))
        } else if r.closed {
            std::task::Poll::Ready(None)
        } else {
            r.waker = Some(cx.waker().clone());
            std::task::Poll::Pending
        }
    }
}

pub(super) fn reply<T>() -> (ReplyTx<T>, ReplyRx<T>) {
    let r = Arc::new(Mutex::new(Reply {
        value: None,
        closed: false,
        waker: None,
    }));
    (ReplyTx(r.clone()), ReplyRx(r))
}

/// One session's thread: its own queue, so a line pinned to it never waits behind
/// another line's HSM traffic.
pub(super) struct Worker {
    pub(super) jobs: mpsc::Sender<Job>,
    /// Jobs queued or running.
    pub(super) busy: Arc<AtomicUsize>,
}

/// The session threads.
pub(super) struct Workers {
    pub(super) workers: Mutex<Option<Vec<Worker>>>,
    /// Personalizations pinned to each session.
    pub(super) leases: Mutex<Vec<usize>>,
    pub(super) threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    pub(super) token: String,
    /// Whether ICC keys may be read out of a token that cannot wrap them.
    pub(super) development: bool,
    /// The [`DesWrap`] way this token takes, learnt at the first card.
    pub(super) des_wrap: AtomicU8,
}

impl Workers {
    pub(super) fn gone(&self) -> KeyStoreError {
        KeyStoreError::Token {
            token: self.token.clone(),
            reason: "the key store is shut down".into(),
        }
    }

    /// Queues `op` on session `pin`, or on the least busy session (fewest jobs, then
    /// fewest personalizations pinned to it); `done` receives the result there.
    pub(super) fn submit<T: Send + 'static>(
        &self,
        pin: Option<usize>,
        op: impl Fn(&Ops) -> Result<T, KeyStoreError> + Send + 'static,
        done: impl FnOnce(Result<T, KeyStoreError>) + Send + 'static,
    ) -> Result<(), KeyStoreError> {
        let guard = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let workers = guard.as_ref().ok_or_else(|| self.gone())?;
        let n = match pin {
            Some(n) => n.min(workers.len() - 1),
            None => {
                let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
                (0..workers.len())
                    .min_by_key(|&i| (workers[i].busy.load(Ordering::Relaxed), leases[i], i))
                    .unwrap_or(0)
            }
        };
        let w = &workers[n];
        let busy = w.busy.clone();
        busy.fetch_add(1, Ordering::Relaxed);
        let job: Job = Box::new(move |c: &mut Connection| {
            done(c.run(&op));
            busy.fetch_sub(1, Ordering::Relaxed);
        });
        w.jobs.send(job).map_err(|_| self.gone())
    }

    /// Runs `op` on any session and waits for it (callers on blocking threads).
    pub(super) fn call<T: Send + 'static>(
        &self,
        op: impl Fn(&Ops) -> Result<T, KeyStoreError> + Send + 'static,
    ) -> Result<T, KeyStoreError> {
        let (tx, rx) = mpsc::channel();
        self.submit(None, op, move |r| {
            let _ = tx.send(r);
        })?;
        rx.recv().map_err(|_| self.gone())?
    }

    /// Runs `op` on session `pin` (or any) and answers through a future: async code
    /// awaits the HSM instead of blocking its executor thread.
    pub(super) fn call_async<T: Send + 'static>(
        &self,
        pin: Option<usize>,
        op: impl Fn(&Ops) -> Result<T, KeyStoreError> + Send + 'static,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, KeyStoreError>> + Send>> {
        let (tx, rx) = reply();
        let gone = self.gone();
        let submitted = self.submit(pin, op, move |r| tx.send(r));
        Box::pin(async move {
            submitted?;
            rx.await.unwrap_or(Err(gone))
        })
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        for t in self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = t.join();
        }
    }
}

/// One card's personalization pinned to one session: the one with the fewest pins.
pub(super) struct Lease {
    pub(super) workers: Arc<Workers>,
    pub(super) n: usize,
}

impl Lease {
    pub(super) fn take(workers: &Arc<Workers>) -> Lease {
        let mut leases = workers.leases.lock().unwrap_or_else(|p| p.into_inner());
        let n = (0..leases.len())
            .min_by_key(|&i| (leases[i], i))
            .unwrap_or(0);
        leases[n] += 1;
        Lease {
            workers: workers.clone(),
            n,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut leases = self
            .workers
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        leases[self.n] = leases[self.n].saturating_sub(1);
    }
}
