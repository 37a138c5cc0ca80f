//! The order long-poll loop: keeps a poll open at the hub and hands each order
//! to the station's intake (which de-duplicates on operationId, since the hub
//! repeats an order until its first status event arrives).

use super::backoff::Backoff;
use super::client::LinkClient;
use super::wire::StationOrder;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Where polled orders go (the journal-backed intake of the station).
pub trait OrderIntake: Send + Sync {
    /// Take one order; called again for the same order until it is acknowledged upstream.
    fn accept(&self, order: StationOrder);
}

/// Poll `client` with long polls of `wait` until `shutdown` turns true; errors back off.
pub async fn run_order_poller(
    client: Arc<LinkClient>,
    intake: Arc<dyn OrderIntake>,
    wait: Duration,
    mut backoff: Backoff,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let pause = tokio::select! {
            r = client.poll_orders(wait) => match r {
                Ok(orders) => {
                    backoff.reset();
                    let empty = orders.is_empty();
                    for o in orders {
                        intake.accept(o);
                    }
                    // A non-empty answer comes back at once; breathe before asking again
                    // so repeated (unacknowledged) orders do not spin the loop.
                    if empty { Duration::ZERO } else { Duration::from_secs(1) }
                }
                Err(e) => {
                    crate::admin::metrics::upstream_error(e.code());
                    let d = backoff.next_delay();
                    tracing::info!(code = e.code(), retry_in_ms = d.as_millis() as u64, "order poll failed: {e}");
                    d
                }
            },
            _ = shutdown.changed() => return,
        };
        if !pause.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
