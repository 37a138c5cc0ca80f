//! The chip encoder handle: async front, one OS thread per reader doing the blocking PC/SC calls.
//!
//! PC/SC calls block (a status-change wait, a slow card), so they never run on the async
//! runtime. Each [`PcscEncoder`] owns a thread holding the PC/SC context and card handle;
//! requests reach it over a tokio channel and answers come back on oneshot channels.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pcsc::{Attribute, Card, Context, Disposition, Protocols, ReaderState, Scope, State};
use station_hal::{ApduTransport, TransportError};
use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroize;

use crate::pattern::{PatternError, ReaderPattern};
use crate::pcsc_errors::{is_service_loss, map_error};

/// How long one status-change wait blocks before the thread looks at its cancel flag.
const STATUS_POLL: Duration = Duration::from_millis(200);
/// How long a failed exchange waits for the reader to report the card gone.
const REMOVAL_GRACE: Duration = Duration::from_millis(1500);
/// Longest short APDU command: header ‖ Lc ‖ 255 data bytes ‖ Le.
const SHORT_COMMAND_MAX: u32 = 261;

/// Whether other programs may use the reader while the encoder holds the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// No other program may talk to the card during personalization (the default).
    Exclusive,
    /// Other programs may send commands too; only for diagnostics.
    Shared,
}

/// Which transmission protocol the encoder accepts from the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolChoice {
    /// Character protocol T=0 only.
    T0,
    /// Block protocol T=1 only.
    T1,
    /// Whichever the card and reader agree on.
    Any,
}

impl ProtocolChoice {
    fn protocols(self) -> Protocols {
        match self {
            ProtocolChoice::T0 => Protocols::T0,
            ProtocolChoice::T1 => Protocols::T1,
            ProtocolChoice::Any => Protocols::ANY,
        }
    }
}

/// Station configuration of the chip encoder reader.
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    /// Which reader is the encoder (see [`ReaderPattern::parse`]).
    pub name_pattern: ReaderPattern,
    /// Sharing mode for the card connection.
    pub sharing: Sharing,
    /// Accepted transmission protocol.
    pub protocol: ProtocolChoice,
    /// How long [`PcscEncoder::await_card`] and recovery wait for a card.
    pub card_wait_timeout: Duration,
    /// Deadline of one command exchange: a reader that hangs inside `SCardTransmit` must not
    /// stall the line (on-card RSA key generation, the slowest command, takes a few seconds).
    pub transmit_timeout: Duration,
}

impl ReaderConfig {
    /// Exclusive, any protocol, 30 s card wait, for the reader named by `pattern`.
    pub fn new(pattern: &str) -> Result<Self, PatternError> {
        Ok(Self {
            name_pattern: ReaderPattern::parse(pattern)?,
            sharing: Sharing::Exclusive,
            protocol: ProtocolChoice::Any,
            card_wait_timeout: Duration::from_secs(30),
            transmit_timeout: Duration::from_secs(20),
        })
    }
}

/// What the reader reported about the card once connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardSession {
    /// Answer to reset (not secret: it identifies the chip model, not the cardholder).
    pub atr: Vec<u8>,
    /// Whether the reader declared it accepts commands longer than a short APDU.
    pub extended_length: bool,
}

enum Request {
    WaitForCard {
        cancel: Arc<AtomicBool>,
        reply: oneshot::Sender<Result<CardSession, TransportError>>,
    },
    Transmit {
        command: Vec<u8>,
        /// Lowered by the reader thread when `SCardTransmit` has returned.
        in_flight: Arc<AtomicBool>,
        reply: oneshot::Sender<Result<Vec<u8>, TransportError>>,
    },
    Reestablish {
        reply: oneshot::Sender<Result<String, TransportError>>,
    },
    Release {
        reply: oneshot::Sender<Result<(), TransportError>>,
    },
}

/// The PC/SC chip encoder; implements [`ApduTransport`].
pub struct PcscEncoder {
    requests: mpsc::Sender<Request>,
    reader: String,
    config: ReaderConfig,
    extended_length: bool,
    /// Raised while the reader thread is inside `SCardTransmit`; still raised after a deadline
    /// passed means the reader hung, and no new command is queued behind it.
    in_flight: Arc<AtomicBool>,
}

/// Raises the cancel flag when the waiting future ends for any reason (answer, timeout, drop).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl PcscEncoder {
    /// Finds the reader named by the configured pattern and starts its PC/SC thread.
    ///
    /// Fails with [`TransportError::NoReader`] (naming the pattern and the readers that
    /// do exist) or [`TransportError::ServiceDown`] when pcscd is not reachable.
    pub async fn open(config: ReaderConfig) -> Result<Self, TransportError> {
        let (requests, inbox) = mpsc::channel(8);
        let (ready_tx, ready_rx) = oneshot::channel();
        let worker_config = config.clone();
        std::thread::Builder::new()
            .name(format!("pcsc:{}", config.name_pattern.as_str()))
            .spawn(move || match Worker::start(worker_config) {
                Ok(worker) => {
                    let _ = ready_tx.send(Ok(worker.reader_name.clone()));
                    worker.run(inbox);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| TransportError::Other(format!("cannot start the reader thread: {e}")))?;
        let reader = ready_rx.await.map_err(|_| thread_gone())??;
        tracing::info!(reader = %reader, "chip encoder reader selected");
        Ok(Self {
            requests,
            reader,
            config,
            extended_length: false,
            in_flight: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Name of the PC/SC reader in use.
    pub fn reader_name(&self) -> &str {
        &self.reader
    }

    /// Waits up to `timeout` for a card to be PRESENT, then connects to it.
    ///
    /// Dropping the returned future (e.g. in a `select!` with a cancel signal) stops the
    /// wait: the reader thread checks the cancel flag between short status-change polls.
    pub async fn wait_for_card(
        &mut self,
        timeout: Duration,
    ) -> Result<CardSession, TransportError> {
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        let (reply, answer) = oneshot::channel();
        self.send(Request::WaitForCard { cancel, reply }).await?;
        let session = match tokio::time::timeout(timeout, answer).await {
            Ok(answer) => answer.map_err(|_| thread_gone())??,
            Err(_) => {
                return Err(TransportError::Timeout(format!(
                    "a card in reader '{}'",
                    self.reader
                )))
            }
        };
        self.extended_length = session.extended_length;
        Ok(session)
    }

    /// [`Self::wait_for_card`] with the configured card wait timeout.
    pub async fn await_card(&mut self) -> Result<CardSession, TransportError> {
        self.wait_for_card(self.config.card_wait_timeout).await
    }

    /// Ends the card session and resets the card so no application stays selected.
    pub async fn release(&mut self) -> Result<(), TransportError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Release { reply }).await?;
        answer.await.map_err(|_| thread_gone())?
    }

    async fn send(&self, request: Request) -> Result<(), TransportError> {
        self.requests.send(request).await.map_err(|_| thread_gone())
    }

    async fn transmit_once(&self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        if self.in_flight.load(Ordering::SeqCst) {
            return Err(TransportError::Timeout(format!(
                "reader '{}' to finish a command that passed its deadline",
                self.reader
            )));
        }
        let (reply, answer) = oneshot::channel();
        self.in_flight.store(true, Ordering::SeqCst);
        self.send(Request::Transmit {
            command: command.to_vec(),
            in_flight: self.in_flight.clone(),
            reply,
        })
        .await?;
        match tokio::time::timeout(self.config.transmit_timeout, answer).await {
            Ok(answer) => answer.map_err(|_| thread_gone())?,
            Err(_) => {
                tracing::error!(
                    reader = %self.reader,
                    deadline = ?self.config.transmit_timeout,
                    "the reader did not answer a command before its deadline"
                );
                Err(TransportError::Timeout(format!(
                    "an answer from reader '{}' within {:?}",
                    self.reader, self.config.transmit_timeout
                )))
            }
        }
    }

    /// After pcscd died the old context never works again: build a new one, reconnect once.
    async fn recover(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        tracing::warn!(reader = %self.reader, "smart card service lost; establishing a new PC/SC context");
        let (reply, answer) = oneshot::channel();
        self.send(Request::Reestablish { reply }).await?;
        self.reader = answer.await.map_err(|_| thread_gone())??;
        self.await_card().await?;
        if starts_card_session(command) {
            self.transmit_once(command).await
        } else {
            // The restart power-cycled the card: a mid-session command (secure channel,
            // STORE DATA) must not run in a fresh session as if nothing happened.
            Err(TransportError::ServiceDown(
                "the smart card service restarted and reset the card; start the card session again"
                    .into(),
            ))
        }
    }
}

#[async_trait]
impl ApduTransport for PcscEncoder {
    async fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        match self.transmit_once(command).await {
            Err(e) if is_service_loss(&e) => self.recover(command).await,
            other => other,
        }
    }

    fn supports_extended_length(&self) -> bool {
        self.extended_length
    }
}

/// A SELECT opens a new card session, so it is safe to send again on a fresh connection.
fn starts_card_session(command: &[u8]) -> bool {
    command.len() >= 4 && command[0] & 0x80 == 0 && command[1] == 0xA4
}

fn thread_gone() -> TransportError {
    TransportError::Other("the reader thread stopped unexpectedly".into())
}

/// The reader thread's state: one context, one reader, at most one card.
struct Worker {
    pattern: ReaderPattern,
    sharing: pcsc::ShareMode,
    protocols: Protocols,
    context: Option<Context>,
    reader: CString,
    reader_name: String,
    card: Option<Card>,
    buffer: Vec<u8>,
}

impl Worker {
    fn start(config: ReaderConfig) -> Result<Self, TransportError> {
        let mut worker = Worker {
            pattern: config.name_pattern,
            sharing: match config.sharing {
                Sharing::Exclusive => pcsc::ShareMode::Exclusive,
                Sharing::Shared => pcsc::ShareMode::Shared,
            },
            protocols: config.protocol.protocols(),
            context: None,
            reader: CString::default(),
            reader_name: String::new(),
            card: None,
            buffer: vec![0; pcsc::MAX_BUFFER_SIZE_EXTENDED],
        };
        worker.establish()?;
        Ok(worker)
    }

    /// Establishes a fresh context and looks the reader up again (its name may change).
    fn establish(&mut self) -> Result<(), TransportError> {
        self.card = None;
        self.context = None;
        let pattern = self.pattern.as_str().to_string();
        let context = Context::establish(Scope::User).map_err(|e| map_error(e, &pattern))?;
        let readers: Vec<String> = match context.list_readers_owned() {
            Ok(names) => names
                .iter()
                .map(|n| n.to_string_lossy().into_owned())
                .collect(),
            Err(pcsc::Error::NoReadersAvailable) => Vec::new(),
            Err(e) => return Err(map_error(e, &pattern)),
        };
        let Some(name) = self.pattern.select(&readers) else {
            let present = if readers.is_empty() {
                "no readers present".to_string()
            } else {
                format!("readers present: {}", readers.join(", "))
            };
            return Err(TransportError::NoReader(format!("{pattern} ({present})")));
        };
        self.reader = CString::new(name)
            .map_err(|_| TransportError::Other("reader name contains a NUL byte".into()))?;
        self.reader_name = name.to_string();
        self.context = Some(context);
        Ok(())
    }

    fn run(mut self, mut inbox: mpsc::Receiver<Request>) {
        while let Some(request) = inbox.blocking_recv() {
            match request {
                Request::WaitForCard { cancel, reply } => {
                    let _ = reply.send(self.wait_for_card(&cancel));
                }
                Request::Transmit {
                    mut command,
                    in_flight,
                    reply,
                } => {
                    let outcome = self.transmit(&command);
                    in_flight.store(false, Ordering::SeqCst);
                    // Record DGIs and READ RECORD answers carry the PAN in clear.
                    command.zeroize();
                    let _ = reply.send(outcome);
                }
                Request::Reestablish { reply } => {
                    let _ = reply.send(self.establish().map(|()| self.reader_name.clone()));
                }
                Request::Release { reply } => {
                    let _ = reply.send(self.release());
                }
            }
        }
        // The handle is gone: leave the card reset, not in a half-personalized session.
        let _ = self.release();
    }

    fn context(&self) -> Result<&Context, TransportError> {
        self.context.as_ref().ok_or_else(|| {
            TransportError::ServiceDown("no PC/SC context (service was lost)".into())
        })
    }

    fn wait_for_card(&mut self, cancel: &AtomicBool) -> Result<CardSession, TransportError> {
        if let Some(card) = &self.card {
            if let Ok(status) = card.status2_owned() {
                return Ok(CardSession {
                    atr: status.atr().to_vec(),
                    extended_length: extended_length(card),
                });
            }
            self.card = None;
        }
        let context = self.context()?;
        let mut states = [ReaderState::new(self.reader.clone(), State::UNAWARE)];
        loop {
            if cancel.load(Ordering::SeqCst) {
                return Err(TransportError::Timeout(format!(
                    "a card in reader '{}' (wait cancelled)",
                    self.reader_name
                )));
            }
            match context.get_status_change(STATUS_POLL, &mut states) {
                Ok(()) => {
                    let state = states[0].event_state();
                    if state.intersects(State::UNKNOWN | State::IGNORE) {
                        return Err(TransportError::NoReader(self.reader_name.clone()));
                    }
                    if state.contains(State::PRESENT) {
                        if state.contains(State::MUTE) {
                            return Err(TransportError::CardMute);
                        }
                        break;
                    }
                    states[0].sync_current_state();
                }
                Err(pcsc::Error::Timeout) => {}
                Err(e) => return Err(map_error(e, &self.reader_name)),
            }
        }
        let card = context
            .connect(&self.reader, self.sharing, self.protocols)
            .map_err(|e| map_error(e, &self.reader_name))?;
        if cancel.load(Ordering::SeqCst) {
            // Nobody is waiting for this session any more: do not keep the card open.
            let _ = card.disconnect(Disposition::LeaveCard);
            return Err(TransportError::Timeout(format!(
                "a card in reader '{}' (wait cancelled)",
                self.reader_name
            )));
        }
        let atr = card
            .status2_owned()
            .map_err(|e| map_error(e, &self.reader_name))?
            .atr()
            .to_vec();
        let session = CardSession {
            atr,
            extended_length: extended_length(&card),
        };
        tracing::info!(reader = %self.reader_name, atr = %hex::encode_upper(&session.atr), "card connected");
        self.card = Some(card);
        Ok(session)
    }

    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        if self.context.is_none() {
            return Err(TransportError::ServiceDown(
                "no PC/SC context (service was lost)".into(),
            ));
        }
        let Some(card) = &self.card else {
            return Err(TransportError::NoCard(self.reader_name.clone()));
        };
        let header = CommandHeader::of(command);
        let outcome = match card.transmit(command, &mut self.buffer) {
            Ok(response) if response.len() >= 2 => Ok(response.to_vec()),
            Ok(response) => {
                let len = response.len();
                Err(if self.card_left() {
                    TransportError::CardRemoved
                } else {
                    TransportError::ShortResponse(len)
                })
            }
            Err(e @ (pcsc::Error::NotTransacted | pcsc::Error::CommError)) => {
                Err(if self.card_left() {
                    TransportError::CardRemoved
                } else if e == pcsc::Error::NotTransacted {
                    TransportError::CardMute
                } else {
                    map_error(e, &self.reader_name)
                })
            }
            Err(e) => Err(map_error(e, &self.reader_name)),
        };
        let used = outcome.as_ref().map_or(0, Vec::len);
        self.buffer[..used].zeroize();
        match &outcome {
            Ok(response) => {
                let sw = &response[response.len() - 2..];
                tracing::debug!(
                    reader = %self.reader_name, %header, response_len = response.len(),
                    sw = %hex::encode_upper(sw), "apdu"
                );
            }
            Err(e) => {
                tracing::warn!(reader = %self.reader_name, %header, error = %e, "apdu failed");
                if matches!(
                    e,
                    TransportError::CardRemoved
                        | TransportError::ShortResponse(_)
                        | TransportError::ServiceDown(_)
                ) {
                    // The session cannot continue; a new one starts with wait_for_card.
                    if let Some(card) = self.card.take() {
                        let _ = card.disconnect(Disposition::LeaveCard);
                    }
                }
            }
        }
        if matches!(outcome, Err(TransportError::ServiceDown(_))) {
            self.context = None;
        }
        outcome
    }

    /// Whether the card left the reader after a failed exchange.
    ///
    /// The reader driver notices a pulled card at its next presence poll (pcscd polls
    /// every few hundred milliseconds), so the failure itself can precede the EMPTY state.
    fn card_left(&self) -> bool {
        let Some(context) = &self.context else {
            return false;
        };
        let mut states = [ReaderState::new(self.reader.clone(), State::UNAWARE)];
        let deadline = std::time::Instant::now() + REMOVAL_GRACE;
        while std::time::Instant::now() < deadline {
            match context.get_status_change(STATUS_POLL, &mut states) {
                Ok(()) => {
                    let state = states[0].event_state();
                    if state.contains(State::EMPTY) {
                        return true;
                    }
                    states[0].sync_current_state();
                }
                Err(pcsc::Error::Timeout) => {}
                Err(_) => return false,
            }
        }
        false
    }

    fn release(&mut self) -> Result<(), TransportError> {
        match self.card.take() {
            Some(card) => card
                .disconnect(Disposition::ResetCard)
                .map_err(|(_, e)| map_error(e, &self.reader_name)),
            None => Ok(()),
        }
    }
}

/// The reader declares extended APDUs through SCARD_ATTR_MAXINPUT; silence means no.
fn extended_length(card: &Card) -> bool {
    card.get_attribute_owned(Attribute::Maxinput)
        .ok()
        .and_then(|v| {
            v.get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        })
        .is_some_and(|max| max > SHORT_COMMAND_MAX)
}

/// The loggable part of a command: CLA INS P1 P2 and the length, never the data.
struct CommandHeader {
    head: [u8; 4],
    len: usize,
}

impl CommandHeader {
    fn of(command: &[u8]) -> Self {
        let mut head = [0u8; 4];
        let n = command.len().min(4);
        head[..n].copy_from_slice(&command[..n]);
        Self {
            head,
            len: command.len(),
        }
    }
}

impl std::fmt::Display for CommandHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [cla, ins, p1, p2] = self.head;
        write!(
            f,
            "{cla:02X} {ins:02X} {p1:02X} {p2:02X} (len {})",
            self.len
        )
    }
}

#[async_trait]
impl station_hal::ChipEncoder for PcscEncoder {
    async fn wait_for_card(&mut self, timeout: Duration) -> Result<(), TransportError> {
        PcscEncoder::wait_for_card(self, timeout).await.map(|_| ())
    }

    async fn release(&mut self) {
        if let Err(e) = PcscEncoder::release(self).await {
            tracing::warn!(error = %e, "releasing the card");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_header_has_cla_ins_p1_p2_and_length_only() {
        let store_data = [0x80, 0xE2, 0x80, 0x01, 0x03, 0x5A, 0x08, 0x47];
        assert_eq!(
            CommandHeader::of(&store_data).to_string(),
            "80 E2 80 01 (len 8)"
        );
    }

    #[test]
    fn only_an_interindustry_select_is_replayed_after_a_service_restart() {
        assert!(starts_card_session(&[0x00, 0xA4, 0x04, 0x00, 0x01, 0xA0]));
        assert!(!starts_card_session(&[0x80, 0xE2, 0x00, 0x00, 0x01, 0x00]));
        assert!(!starts_card_session(&[0x84, 0xA4, 0x00, 0x00]));
        assert!(!starts_card_session(&[0x00]));
    }

    #[test]
    fn default_config_is_exclusive_any_protocol() {
        let c = ReaderConfig::new("Virtual PCD").unwrap();
        assert_eq!(c.sharing, Sharing::Exclusive);
        assert_eq!(c.protocol, ProtocolChoice::Any);
    }
}
