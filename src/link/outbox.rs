//! Delivery of status events from the journal's outbox to the hub: at least
//! once, in order per operation, parked on permanent rejection, retried with
//! backoff while the hub is away. Card production never waits for this loop.

use super::backoff::Backoff;
use super::client::LinkClient;
use super::error::LinkError;
use super::wire::{Heartbeat, StatusEvent};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// One undelivered status event as kept by the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// Operation the event belongs to.
    pub operation_id: String,
    /// The event itself (its `sequence` orders events of one operation).
    pub event: StatusEvent,
}

/// Outbox storage failure.
#[derive(Debug, thiserror::Error)]
#[error("event outbox unavailable: {0}")]
pub struct OutboxError(pub String);

/// The journal's outbox as seen by the sender.
pub trait Outbox: Send + Sync {
    /// Up to `limit` undelivered, unparked events, oldest first.
    fn pending_events(&self, limit: usize) -> Result<Vec<OutboxEvent>, OutboxError>;
    /// The hub acknowledged this event.
    fn mark_delivered(&self, operation_id: &str, sequence: u64) -> Result<(), OutboxError>;
    /// The hub refused this event for good; keep it, and the operation's later
    /// events, for a supervisor (they are no longer returned as pending).
    fn mark_parked(
        &self,
        operation_id: &str,
        sequence: u64,
        error: &str,
    ) -> Result<(), OutboxError>;
}

/// What one pass over the outbox achieved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Events acknowledged by the hub.
    pub delivered: usize,
    /// Events refused for good and parked.
    pub parked: usize,
    /// Events left for a later pass because the hub is unreachable or failing.
    pub deferred: usize,
    /// Events behind a parked event of the same operation (wait for a supervisor).
    pub held: usize,
}

/// Tuning of the event sender.
#[derive(Debug, Clone)]
pub struct SenderOptions {
    /// Events read from the outbox per pass.
    pub batch: usize,
    /// Retry delays while the hub fails.
    pub backoff: Backoff,
    /// How long to sleep when the outbox is empty and nobody wakes the sender.
    pub idle: Duration,
}

impl Default for SenderOptions {
    fn default() -> Self {
        SenderOptions {
            batch: 100,
            backoff: Backoff::default(),
            idle: Duration::from_secs(5),
        }
    }
}

/// Sends the outbox to the hub.
pub struct EventSender {
    client: Arc<LinkClient>,
    outbox: Arc<dyn Outbox>,
    options: SenderOptions,
}

impl EventSender {
    /// A sender of `outbox` through `client`.
    pub fn new(client: Arc<LinkClient>, outbox: Arc<dyn Outbox>, options: SenderOptions) -> Self {
        EventSender {
            client,
            outbox,
            options,
        }
    }

    /// Runs one outbox call on the blocking pool: the journal's outbox fsyncs, and no
    /// fsync may hold a tokio worker.
    async fn on_outbox<R: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Outbox) -> Result<R, OutboxError> + Send + 'static,
    ) -> Result<R, OutboxError> {
        let outbox = self.outbox.clone();
        tokio::task::spawn_blocking(move || f(outbox.as_ref()))
            .await
            .unwrap_or_else(|e| Err(OutboxError(format!("outbox call did not complete: {e}"))))
    }

    /// One pass: send what is pending, keeping per-operation order. An operation
    /// whose event could not be delivered is skipped for the rest of the pass so
    /// that its later events never overtake it.
    pub async fn send_pending(&self) -> Result<PassReport, OutboxError> {
        let batch = self.options.batch;
        let events = self.on_outbox(move |o| o.pending_events(batch)).await?;
        let mut report = PassReport::default();
        let mut blocked: HashSet<String> = HashSet::new();
        let mut held: HashSet<String> = HashSet::new();
        // Operations in the journal's (oldest first) order, each operation's events by sequence.
        let mut order: Vec<String> = Vec::new();
        let mut by_op: std::collections::HashMap<String, Vec<OutboxEvent>> = Default::default();
        for e in events {
            if !by_op.contains_key(&e.operation_id) {
                order.push(e.operation_id.clone());
            }
            by_op.entry(e.operation_id.clone()).or_default().push(e);
        }
        let mut sorted = Vec::new();
        for op in order {
            let mut evs = by_op.remove(&op).unwrap_or_default();
            evs.sort_by_key(|e| e.event.sequence);
            sorted.extend(evs);
        }
        for item in sorted {
            if held.contains(&item.operation_id) {
                report.held += 1;
                continue;
            }
            if blocked.contains(&item.operation_id) {
                report.deferred += 1;
                continue;
            }
            match self
                .client
                .send_event(&item.operation_id, &item.event)
                .await
            {
                Ok(()) => {
                    let (op, seq) = (item.operation_id.clone(), item.event.sequence);
                    self.on_outbox(move |o| o.mark_delivered(&op, seq)).await?;
                    report.delivered += 1;
                }
                Err(e) if e.is_retryable() => {
                    crate::admin::metrics::upstream_error(e.code());
                    if matches!(e, LinkError::Unauthorized { .. } | LinkError::Credential(_)) {
                        tracing::warn!(
                            operation_id = %item.operation_id,
                            code = e.code(),
                            alert = true,
                            "station credentials refused; events wait: {e}"
                        );
                    }
                    // An answer this agent cannot read (the hub speaks a newer contract?)
                    // will not change by waiting: IT must hear of it, not a debug line.
                    if matches!(e, LinkError::Protocol(_)) {
                        tracing::warn!(
                            operation_id = %item.operation_id,
                            code = e.code(),
                            alert = true,
                            "hub answer not understood; the event waits and is tried again: {e}"
                        );
                    }
                    tracing::debug!(
                        operation_id = %item.operation_id,
                        sequence = item.event.sequence,
                        code = e.code(),
                        "status event not delivered yet: {e}"
                    );
                    blocked.insert(item.operation_id.clone());
                    report.deferred += 1;
                }
                Err(e) => {
                    crate::admin::metrics::upstream_error(e.code());
                    tracing::warn!(
                        operation_id = %item.operation_id,
                        sequence = item.event.sequence,
                        code = e.code(),
                        alert = true,
                        "status event refused by the hub and parked: {e}"
                    );
                    let (op, seq) = (item.operation_id.clone(), item.event.sequence);
                    let why = format!("{}: {e}", e.code());
                    self.on_outbox(move |o| o.mark_parked(&op, seq, &why))
                        .await?;
                    report.parked += 1;
                    // Later events of a parked operation wait for a supervisor too:
                    // the hub must never see them out of order.
                    held.insert(item.operation_id.clone());
                }
            }
        }
        Ok(report)
    }

    /// Run until `shutdown` turns true. `wake` is notified by the journal when
    /// new events are written so they go out without waiting for the idle timer.
    pub async fn run(mut self, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let pause = match self.send_pending().await {
                Ok(r) if r.deferred > 0 => self.options.backoff.next_delay(),
                Ok(r) if r.delivered + r.parked > 0 => {
                    self.options.backoff.reset();
                    Duration::ZERO
                }
                Ok(_) => {
                    self.options.backoff.reset();
                    self.options.idle
                }
                Err(e) => {
                    tracing::error!(code = "LINK_OUTBOX", "{e}");
                    self.options.backoff.next_delay()
                }
            };
            if pause.is_zero() {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = wake.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// Builds the current heartbeat (device health and card stock).
pub trait HealthSource: Send + Sync {
    /// The heartbeat to send now.
    fn heartbeat(&self) -> Heartbeat;
}

/// Send a heartbeat every `every` until `shutdown` turns true; failures are logged, never fatal.
pub async fn run_heartbeat(
    client: Arc<LinkClient>,
    source: Arc<dyn HealthSource>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = client.send_heartbeat(&source.heartbeat()).await {
            log_heartbeat_failure(&e);
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
    }
}

fn log_heartbeat_failure(e: &LinkError) {
    tracing::info!(code = e.code(), "heartbeat not delivered: {e}");
}
