//! A virtual card seen by pcscd through the `vsmartcard-vpcd` reader driver.
//!
//! The vpcd driver inside pcscd listens on a TCP port per reader slot; the card is the
//! TCP client. Every message in both directions is a 2-byte big-endian length followed
//! by the payload. A 1-byte payload from pcscd is a control (power off, power on, reset,
//! "send your ATR"); anything longer is a command APDU that gets the response APDU back.
//! Closing the socket is how a card leaves the reader.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// vpcd control byte: remove power from the card.
pub const CTRL_POWER_OFF: u8 = 0x00;
/// vpcd control byte: power the card up.
pub const CTRL_POWER_ON: u8 = 0x01;
/// vpcd control byte: warm reset.
pub const CTRL_RESET: u8 = 0x02;
/// vpcd control byte: the card must answer with its ATR.
pub const CTRL_GET_ATR: u8 = 0x04;

/// Longest answer-to-reset ISO 7816-3 allows, and the size of pcscd's ATR buffer.
pub const MAX_ATR_LEN: usize = 33;

/// What a chip that cannot be powered up sends instead of an ATR: one byte more than
/// any ATR may have, as an I/O line stuck high reads (`FF`).
///
/// vpcd asks for the ATR both to see whether a card is present (any answer will do)
/// and to power it up (copied into pcscd's 33-byte buffer). This answer passes the
/// first and fails the second, without closing the link: pcscd then sees a card that
/// is present but unpowered (mute) and keeps serving the reader. Answering nothing
/// would block pcscd's reader thread, and an empty answer means "no card".
pub fn unreadable_atr() -> Vec<u8> {
    vec![0xFF; MAX_ATR_LEN + 1]
}

/// How long to wait before trying pcscd again when its vpcd port is not (yet) listening.
const RECONNECT_DELAY: Duration = Duration::from_millis(100);

/// A smart card that can sit in a vpcd reader slot.
pub trait VirtualCard: Send {
    /// Answer-to-reset the card presents when powered.
    fn atr(&self) -> Vec<u8>;
    /// Cold power-up: volatile state starts afresh.
    fn power_on(&mut self);
    /// Power removed: volatile state is lost.
    fn power_off(&mut self);
    /// Warm reset: volatile state is lost, the card stays powered.
    fn reset(&mut self);
    /// Processes one command APDU and returns the response (data ‖ SW1 SW2).
    fn process(&mut self, apdu: &[u8]) -> Vec<u8>;
}

/// Shared handle to a card that the vpcd link and its owner can both reach.
pub type SharedCard = std::sync::Arc<std::sync::Mutex<dyn VirtualCard>>;

/// Frames one payload for the vpcd link: 2-byte big-endian length ‖ payload.
pub fn frame(payload: &[u8]) -> io::Result<Vec<u8>> {
    let len = u16::try_from(payload.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("vpcd payload of {} bytes exceeds 65535", payload.len()),
        )
    })?;
    let mut out = Vec::with_capacity(2 + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Applies one payload received from pcscd to the card; `Some` is the payload to send back.
///
/// Power and reset controls are silent in the vpcd protocol; only "get ATR" and APDUs
/// are answered. An unknown 1-byte control is ignored rather than treated as an APDU.
pub fn handle_payload(card: &mut dyn VirtualCard, payload: &[u8]) -> Option<Vec<u8>> {
    match payload {
        [] => None,
        [CTRL_POWER_OFF] => {
            card.power_off();
            None
        }
        [CTRL_POWER_ON] => {
            card.power_on();
            None
        }
        [CTRL_RESET] => {
            card.reset();
            None
        }
        [CTRL_GET_ATR] => Some(card.atr()),
        [other] => {
            tracing::warn!(control = other, "unknown vpcd control byte ignored");
            None
        }
        apdu => Some(card.process(apdu)),
    }
}

/// Keeps `card` inserted in the vpcd reader at `addr` until `stop` becomes true.
///
/// pcscd may start after the card or restart under it, so a refused or dropped
/// connection is retried until stopped. Stopping closes the socket, which the reader
/// sees as the card being pulled out; a stop raised while a command is being
/// processed leaves that command unanswered, like a card pulled mid-command.
pub async fn serve(
    addr: &str,
    card: Arc<Mutex<dyn VirtualCard>>,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let targets: Vec<SocketAddr> = tokio::net::lookup_host(addr).await?.collect();
    if targets.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("vpcd address '{addr}' resolves to nothing"),
        ));
    }
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let connected = tokio::select! {
            c = TcpStream::connect(&targets[..]) => c,
            _ = stop.changed() => return Ok(()),
        };
        match connected {
            Ok(stream) => {
                tracing::debug!(%addr, "virtual card inserted in vpcd reader");
                match session(stream, &card, &mut stop).await {
                    Ok(Ended::Stopped) => return Ok(()),
                    Ok(Ended::ReaderClosed) => {
                        tracing::debug!(%addr, "vpcd reader closed the link")
                    }
                    Err(e) => tracing::debug!(%addr, error = %e, "vpcd link failed"),
                }
            }
            Err(e) => tracing::trace!(%addr, error = %e, "vpcd reader not listening yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(RECONNECT_DELAY) => {}
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// Why one connection to the reader ended.
enum Ended {
    Stopped,
    ReaderClosed,
}

/// Asks Linux to acknowledge received data immediately (re-armed before each read).
fn quickack(stream: &TcpStream) {
    #[cfg(target_os = "linux")]
    {
        let _ = socket2::SockRef::from(stream).set_tcp_quickack(true);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = stream;
}

async fn session(
    mut stream: TcpStream,
    card: &Arc<Mutex<dyn VirtualCard>>,
    stop: &mut watch::Receiver<bool>,
) -> io::Result<Ended> {
    stream.set_nodelay(true)?;
    loop {
        // pcscd's vpcd driver sends length and payload in two writes without
        // TCP_NODELAY: acknowledging at once spares each APDU a delayed-ACK wait (~40 ms).
        quickack(&stream);
        let mut len = [0u8; 2];
        tokio::select! {
            r = stream.read_exact(&mut len) => match r {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Ended::ReaderClosed),
                Err(e) => return Err(e),
            },
            _ = stop.changed() => return Ok(Ended::Stopped),
        }
        quickack(&stream);
        let mut payload = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tokio::select! {
            r = stream.read_exact(&mut payload) => { r?; }
            _ = stop.changed() => return Ok(Ended::Stopped),
        }
        let answer = {
            let mut card = card
                .lock()
                .map_err(|_| io::Error::other("virtual card state poisoned by a panic"))?;
            handle_payload(&mut *card, &payload)
        };
        if *stop.borrow() {
            return Ok(Ended::Stopped);
        }
        if let Some(answer) = answer {
            stream.write_all(&frame(&answer)?).await?;
        }
    }
}

/// A test card: SELECT answers `90 00`, any other command echoes its data field with `90 00`.
#[derive(Debug, Clone)]
pub struct EchoCard {
    powered: bool,
    commands: usize,
}

impl EchoCard {
    /// ATR announcing T=0 and T=1, no historical bytes (TCK = 01).
    pub const ATR: [u8; 5] = [0x3B, 0x80, 0x80, 0x01, 0x01];

    /// A fresh, unpowered echo card.
    pub fn new() -> Self {
        Self {
            powered: false,
            commands: 0,
        }
    }

    /// Whether pcscd has powered the card.
    pub fn powered(&self) -> bool {
        self.powered
    }

    /// Command APDUs processed since creation.
    pub fn commands(&self) -> usize {
        self.commands
    }
}

impl Default for EchoCard {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtualCard for EchoCard {
    fn atr(&self) -> Vec<u8> {
        Self::ATR.to_vec()
    }

    fn power_on(&mut self) {
        self.powered = true;
    }

    fn power_off(&mut self) {
        self.powered = false;
    }

    fn reset(&mut self) {
        self.powered = true;
    }

    fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        self.commands += 1;
        if apdu.len() < 4 {
            return vec![0x67, 0x00];
        }
        if apdu[1] == 0xA4 {
            return vec![0x90, 0x00];
        }
        // Case 3/4 short APDU: header ‖ Lc ‖ data [‖ Le]; cases 1/2 carry no data.
        let data: &[u8] = match apdu.get(4) {
            Some(&lc) if lc > 0 && apdu.len() >= 5 + usize::from(lc) => {
                &apdu[5..5 + usize::from(lc)]
            }
            _ => &[],
        };
        let mut out = data.to_vec();
        out.extend_from_slice(&[0x90, 0x00]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn echo() -> Arc<Mutex<dyn VirtualCard>> {
        Arc::new(Mutex::new(EchoCard::new()))
    }

    async fn read_frame(s: &mut TcpStream) -> io::Result<Vec<u8>> {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await?;
        let mut p = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut p).await?;
        Ok(p)
    }

    #[test]
    fn frame_is_big_endian_length_then_payload() {
        assert_eq!(
            frame(&[0xAA; 3]).unwrap(),
            vec![0x00, 0x03, 0xAA, 0xAA, 0xAA]
        );
        let long = vec![0u8; 0x0102];
        assert_eq!(&frame(&long).unwrap()[..2], &[0x01, 0x02]);
    }

    #[test]
    fn payload_over_65535_bytes_cannot_be_framed() {
        assert!(frame(&vec![0u8; 65536]).is_err());
    }

    #[test]
    fn power_controls_are_applied_and_not_answered() {
        let mut card = EchoCard::new();
        assert_eq!(handle_payload(&mut card, &[CTRL_POWER_ON]), None);
        assert!(card.powered());
        assert_eq!(handle_payload(&mut card, &[CTRL_POWER_OFF]), None);
        assert!(!card.powered());
        assert_eq!(handle_payload(&mut card, &[CTRL_RESET]), None);
        assert!(card.powered());
    }

    #[test]
    fn get_atr_control_is_answered_with_the_atr() {
        let mut card = EchoCard::new();
        assert_eq!(
            handle_payload(&mut card, &[CTRL_GET_ATR]),
            Some(EchoCard::ATR.to_vec())
        );
    }

    #[test]
    fn unknown_control_byte_is_ignored() {
        let mut card = EchoCard::new();
        assert_eq!(handle_payload(&mut card, &[0x07]), None);
        assert_eq!(card.commands(), 0);
    }

    #[test]
    fn echo_card_answers_select_with_9000() {
        let mut card = EchoCard::new();
        let select = [0x00, 0xA4, 0x04, 0x00, 0x02, 0xA0, 0x00, 0x00];
        assert_eq!(card.process(&select), vec![0x90, 0x00]);
    }

    #[test]
    fn echo_card_echoes_the_data_field() {
        let mut card = EchoCard::new();
        let cmd = [0x80, 0xE2, 0x00, 0x00, 0x03, 1, 2, 3, 0x00];
        assert_eq!(card.process(&cmd), vec![1, 2, 3, 0x90, 0x00]);
    }

    #[tokio::test]
    async fn card_answers_atr_and_apdus_over_the_framed_link() {
        let reader = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = reader.local_addr().unwrap().to_string();
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move { serve(&addr, echo(), stop_rx).await });
        let (mut link, _) = reader.accept().await.unwrap();

        link.write_all(&frame(&[CTRL_POWER_ON]).unwrap())
            .await
            .unwrap();
        link.write_all(&frame(&[CTRL_GET_ATR]).unwrap())
            .await
            .unwrap();
        assert_eq!(read_frame(&mut link).await.unwrap(), EchoCard::ATR.to_vec());
        link.write_all(&frame(&[0x00, 0xB0, 0x00, 0x00, 0x01, 0x42]).unwrap())
            .await
            .unwrap();
        assert_eq!(read_frame(&mut link).await.unwrap(), vec![0x42, 0x90, 0x00]);

        stop_tx.send(true).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn stopping_closes_the_socket_like_a_pulled_card() {
        let reader = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = reader.local_addr().unwrap().to_string();
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move { serve(&addr, echo(), stop_rx).await });
        let (mut link, _) = reader.accept().await.unwrap();
        stop_tx.send(true).unwrap();
        task.await.unwrap().unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(link.read(&mut buf).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn card_reconnects_when_the_reader_drops_the_link() {
        let reader = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = reader.local_addr().unwrap().to_string();
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move { serve(&addr, echo(), stop_rx).await });
        let (first, _) = reader.accept().await.unwrap();
        drop(first);
        let (mut second, _) = reader.accept().await.unwrap();
        second
            .write_all(&frame(&[CTRL_GET_ATR]).unwrap())
            .await
            .unwrap();
        assert_eq!(
            read_frame(&mut second).await.unwrap(),
            EchoCard::ATR.to_vec()
        );
        stop_tx.send(true).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn card_waits_for_a_reader_that_starts_later() {
        // Reserve a port, free it, and only listen on it after the card started trying.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let (stop_tx, stop_rx) = watch::channel(false);
        let target = addr.to_string();
        let task = tokio::spawn(async move { serve(&target, echo(), stop_rx).await });
        tokio::time::sleep(RECONNECT_DELAY * 3).await;
        let reader = TcpListener::bind(addr).await.unwrap();
        let (mut link, _) = reader.accept().await.unwrap();
        link.write_all(&frame(&[CTRL_GET_ATR]).unwrap())
            .await
            .unwrap();
        assert_eq!(read_frame(&mut link).await.unwrap(), EchoCard::ATR.to_vec());
        stop_tx.send(true).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn stop_before_any_reader_exists_returns() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap().to_string();
        drop(probe);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move { serve(&addr, echo(), stop_rx).await });
        stop_tx.send(true).unwrap();
        task.await.unwrap().unwrap();
    }
}
