//! One way to ask the agent to stop, whoever asks: a Unix signal, Ctrl-C, or the
//! Windows service manager's STOP/SHUTDOWN control.
//!
//! The request latches: a stop asked for before anyone awaits it (for example while
//! the agent is still probing its devices) is not lost.

use std::sync::OnceLock;

use tokio::sync::watch;

/// A latching stop request that any thread may raise and any task may await.
#[derive(Debug)]
pub struct StopSignal {
    requested: watch::Sender<bool>,
}

impl Default for StopSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl StopSignal {
    /// A signal nobody has raised yet.
    pub fn new() -> Self {
        StopSignal {
            requested: watch::Sender::new(false),
        }
    }

    /// Raises the request; safe from any thread, including the service manager's handler thread.
    pub fn request(&self) {
        // send_replace stores the value even when nobody is subscribed yet.
        self.requested.send_replace(true);
    }

    /// Whether a stop has been requested.
    pub fn is_requested(&self) -> bool {
        *self.requested.borrow()
    }

    /// Resolves once a stop has been requested (at once if it already was).
    pub async fn requested(&self) {
        let mut rx = self.requested.subscribe();
        // The sender lives as long as `self`, so wait_for cannot fail while we borrow it.
        let _ = rx.wait_for(|r| *r).await;
    }
}

/// The process-wide stop signal that [`super::shutdown_signal`] awaits.
pub fn process_stop() -> &'static StopSignal {
    static STOP: OnceLock<StopSignal> = OnceLock::new();
    STOP.get_or_init(StopSignal::new)
}

/// Asks the running agent to stop after the card in progress.
pub fn request_stop() {
    process_stop().request();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_stop_requested_before_anyone_waits_is_not_lost() {
        let stop = StopSignal::new();
        stop.request();
        stop.requested().await;
        assert!(stop.is_requested());
    }

    #[tokio::test]
    async fn a_stop_from_another_thread_wakes_the_waiting_task() {
        let stop = Arc::new(StopSignal::new());
        let waiter = {
            let stop = stop.clone();
            tokio::spawn(async move { stop.requested().await })
        };
        let raiser = stop.clone();
        std::thread::spawn(move || raiser.request()).join().unwrap();
        waiter.await.unwrap();
        assert!(stop.is_requested());
    }

    #[tokio::test]
    async fn an_unraised_signal_keeps_the_agent_running() {
        let stop = StopSignal::new();
        let waited = tokio::time::timeout(std::time::Duration::ZERO, stop.requested()).await;
        assert!(waited.is_err());
        assert!(!stop.is_requested());
    }
}
