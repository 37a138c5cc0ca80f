//! PC/SC chip encoder transport.
//!
//! The `pcsc` API blocks, so each reader gets a dedicated OS thread that owns the
//! PC/SC context and card handle; async callers talk to it over a channel. The
//! thread re-establishes its context when the smart card service went away (after a
//! pcscd restart an old context stays dead), and maps every PC/SC error to a
//! [`TransportError`] that names a cause staff can act on.
//!
//! Logs carry command headers and status words only, never APDU data.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pcsc::{Context, Disposition, Protocols, ReaderState, Scope, ShareMode, State};
use station_hal::{ApduTransport, TransportError};
use tokio::sync::oneshot;

/// Which reader to use and how long to wait for a card.
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    /// Case-insensitive substring of the reader name (e.g. `Virtual PCD 00 00`, `Evolis`).
    pub name_pattern: String,
}

/// Maps a PC/SC error to the transport error staff see.
pub fn map_error(e: pcsc::Error, reader: &str) -> TransportError {
    use pcsc::Error as E;
    match e {
        E::NoReadersAvailable | E::UnknownReader | E::ReaderUnavailable => {
            TransportError::NoReader(reader.to_string())
        }
        E::NoSmartcard => TransportError::NoCard(reader.to_string()),
        E::RemovedCard | E::ResetCard => TransportError::CardRemoved,
        E::UnresponsiveCard | E::UnpoweredCard | E::InvalidAtr => TransportError::CardMute,
        E::NoService | E::ServiceStopped | E::InvalidHandle | E::CommDataLost | E::Shutdown => {
            TransportError::ServiceDown(e.to_string())
        }
        E::Timeout => TransportError::Timeout("a card in the encoder".into()),
        E::Cancelled | E::SystemCancelled => TransportError::Timeout("cancelled".into()),
        E::SharingViolation => {
            TransportError::Other("the reader is in use by another program".into())
        }
        other => TransportError::Other(other.to_string()),
    }
}

/// Whether an error means the PC/SC context itself is dead and must be re-established.
fn context_lost(e: &TransportError) -> bool {
    matches!(e, TransportError::ServiceDown(_))
}

/// Whether a reader name matches the configured pattern.
pub fn reader_matches(name: &str, pattern: &str) -> bool {
    name.to_lowercase().contains(&pattern.to_lowercase())
}

enum Request {
    WaitForCard {
        timeout: Duration,
        cancel: Arc<AtomicBool>,
        reply: oneshot::Sender<Result<String, TransportError>>,
    },
    Transmit {
        apdu: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, TransportError>>,
    },
    Release {
        reply: oneshot::Sender<()>,
    },
}

/// A PC/SC reader used as the chip encoder.
pub struct PcscEncoder {
    pattern: String,
    requests: mpsc::Sender<Request>,
}

/// Sets the cancel flag when the waiting future is dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl PcscEncoder {
    /// Starts the reader's thread. The reader itself is looked up when a card is awaited,
    /// so an encoder plugged in later is found then.
    pub fn open(config: ReaderConfig) -> Result<Self, TransportError> {
        let (tx, rx) = mpsc::channel();
        let pattern = config.name_pattern.clone();
        std::thread::Builder::new()
            .name(format!("pcsc:{pattern}"))
            .spawn(move || Worker::new(config).run(rx))
            .map_err(|e| TransportError::Other(format!("cannot start reader thread: {e}")))?;
        Ok(PcscEncoder {
            pattern,
            requests: tx,
        })
    }

    fn send(&self, r: Request) -> Result<(), TransportError> {
        self.requests
            .send(r)
            .map_err(|_| TransportError::Other("reader thread stopped".into()))
    }

    /// Waits until a card is PRESENT in the reader and connects to it exclusively.
    /// Dropping the future cancels the wait. Returns the reader's full name.
    pub async fn wait_for_card(&self, timeout: Duration) -> Result<String, TransportError> {
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        let (reply, rx) = oneshot::channel();
        self.send(Request::WaitForCard {
            timeout,
            cancel,
            reply,
        })?;
        rx.await
            .map_err(|_| TransportError::Other("reader thread stopped".into()))?
    }

    /// Lets go of the card (reset), so the next card can be connected.
    pub async fn release(&self) {
        let (reply, rx) = oneshot::channel();
        if self.send(Request::Release { reply }).is_ok() {
            let _ = rx.await;
        }
    }

    /// Names of the readers PC/SC knows now (for diagnostics).
    pub fn list_readers() -> Result<Vec<String>, TransportError> {
        let ctx = Context::establish(Scope::User).map_err(|e| map_error(e, ""))?;
        list(&ctx, "")
    }
}

#[async_trait]
impl ApduTransport for PcscEncoder {
    async fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Transmit {
            apdu: command.to_vec(),
            reply,
        })?;
        rx.await.map_err(|_| {
            TransportError::Other(format!("reader thread for '{}' stopped", self.pattern))
        })?
    }
}

fn list(ctx: &Context, pattern: &str) -> Result<Vec<String>, TransportError> {
    match ctx.list_readers_owned() {
        Ok(r) => Ok(r
            .into_iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect()),
        Err(pcsc::Error::NoReadersAvailable) => Ok(vec![]),
        Err(e) => Err(map_error(e, pattern)),
    }
}

struct Worker {
    config: ReaderConfig,
    ctx: Option<Context>,
    card: Option<pcsc::Card>,
}

impl Worker {
    fn new(config: ReaderConfig) -> Self {
        Worker {
            config,
            ctx: None,
            card: None,
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Request>) {
        for req in rx {
            match req {
                Request::WaitForCard {
                    timeout,
                    cancel,
                    reply,
                } => {
                    let mut r = self.wait_for_card(timeout, &cancel);
                    if matches!(&r, Err(e) if context_lost(e)) {
                        tracing::warn!("smart card service restarted; new PC/SC context");
                        self.reset_context();
                        r = self.wait_for_card(timeout, &cancel);
                    }
                    let _ = reply.send(r);
                }
                Request::Transmit { apdu, reply } => {
                    let _ = reply.send(self.transmit(&apdu));
                }
                Request::Release { reply } => {
                    if let Some(card) = self.card.take() {
                        let _ = card.disconnect(Disposition::ResetCard);
                    }
                    let _ = reply.send(());
                }
            }
        }
    }

    fn reset_context(&mut self) {
        self.card = None;
        self.ctx = None;
    }

    fn context(&mut self) -> Result<&Context, TransportError> {
        if let Some(ctx) = &self.ctx {
            if ctx.is_valid().is_err() {
                self.reset_context();
            }
        }
        if self.ctx.is_none() {
            self.ctx = Some(
                Context::establish(Scope::User)
                    .map_err(|e| map_error(e, &self.config.name_pattern))?,
            );
        }
        Ok(self.ctx.as_ref().expect("just set"))
    }

    fn find_reader(&mut self) -> Result<CString, TransportError> {
        let pattern = self.config.name_pattern.clone();
        let names = list(self.context()?, &pattern)?;
        names
            .iter()
            .find(|n| reader_matches(n, &pattern))
            .map(|n| CString::new(n.as_str()).expect("reader names have no NUL"))
            .ok_or_else(|| {
                TransportError::NoReader(format!(
                    "{pattern} (readers present: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ))
            })
    }

    fn wait_for_card(
        &mut self,
        timeout: Duration,
        cancel: &AtomicBool,
    ) -> Result<String, TransportError> {
        if let Some(card) = self.card.take() {
            let _ = card.disconnect(Disposition::ResetCard);
        }
        let reader = self.find_reader()?;
        let deadline = Instant::now() + timeout;
        let mut states = [ReaderState::new(reader.clone(), State::UNAWARE)];
        loop {
            if cancel.load(Ordering::SeqCst) {
                return Err(TransportError::Timeout("cancelled".into()));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(TransportError::Timeout(format!(
                    "a card in '{}'",
                    reader.to_string_lossy()
                )));
            }
            // Short slices so a cancel is seen promptly without SCardCancel plumbing.
            let slice = (deadline - now).min(Duration::from_millis(200));
            match self.context()?.get_status_change(slice, &mut states) {
                Ok(()) | Err(pcsc::Error::Timeout) => {}
                Err(e) => return Err(map_error(e, &self.config.name_pattern)),
            }
            let ev = states[0].event_state();
            if ev.contains(State::UNKNOWN) || ev.contains(State::IGNORE) {
                return Err(TransportError::NoReader(
                    reader.to_string_lossy().into_owned(),
                ));
            }
            if ev.contains(State::PRESENT) && !ev.contains(State::MUTE) {
                break;
            }
            if ev.contains(State::PRESENT) && ev.contains(State::MUTE) {
                return Err(TransportError::CardMute);
            }
            states[0].sync_current_state();
        }
        let card = self
            .context()?
            .connect(&reader, ShareMode::Exclusive, Protocols::ANY)
            .map_err(|e| map_error(e, &self.config.name_pattern))?;
        self.card = Some(card);
        Ok(reader.to_string_lossy().into_owned())
    }

    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let card = self
            .card
            .as_ref()
            .ok_or_else(|| TransportError::NoCard(self.config.name_pattern.clone()))?;
        let mut buf = vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        let header = apdu.get(..4).map(hex::encode_upper).unwrap_or_default();
        let r = card.transmit(apdu, &mut buf);
        match r {
            Ok(resp) => {
                if resp.len() < 2 {
                    // A card pulled mid-command can make SCardTransmit "succeed" empty.
                    tracing::warn!(header, len = resp.len(), "short response");
                    return Err(TransportError::CardRemoved);
                }
                tracing::trace!(
                    header,
                    lc = apdu.len().saturating_sub(5),
                    sw = hex::encode_upper(&resp[resp.len() - 2..]),
                    "apdu"
                );
                Ok(resp.to_vec())
            }
            Err(e) => {
                let mapped = map_error(e, &self.config.name_pattern);
                tracing::warn!(header, error = %mapped, "transmit failed");
                if context_lost(&mapped) {
                    self.reset_context();
                }
                Err(mapped)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_or_reset_card_is_card_removed() {
        assert_eq!(
            map_error(pcsc::Error::RemovedCard, "x"),
            TransportError::CardRemoved
        );
        assert_eq!(
            map_error(pcsc::Error::ResetCard, "x"),
            TransportError::CardRemoved
        );
    }

    #[test]
    fn a_stopped_service_is_service_down_and_resets_the_context() {
        let e = map_error(pcsc::Error::NoService, "x");
        assert!(matches!(e, TransportError::ServiceDown(_)));
        assert!(context_lost(&e));
        assert!(context_lost(&map_error(pcsc::Error::InvalidHandle, "x")));
    }

    #[test]
    fn no_reader_names_the_pattern() {
        assert_eq!(
            map_error(pcsc::Error::NoReadersAvailable, "Evolis"),
            TransportError::NoReader("Evolis".into())
        );
    }

    #[test]
    fn an_unresponsive_card_is_mute() {
        assert_eq!(
            map_error(pcsc::Error::UnresponsiveCard, "x"),
            TransportError::CardMute
        );
    }

    #[test]
    fn reader_pattern_is_a_case_insensitive_substring() {
        assert!(reader_matches("Virtual PCD 00 00", "virtual pcd 00"));
        assert!(!reader_matches("Virtual PCD 00 01", "Virtual PCD 00 00"));
    }
}
