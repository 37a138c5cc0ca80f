//! The vpcd protocol from the card's side: a virtual card connects as a TCP client
//! to the port pcscd's vpcd driver listens on, and answers its requests.
//!
//! Frames are a 2-byte big-endian length and a payload. A 1-byte payload is a control
//! (`00` power off, `01` power on, `02` reset, `04` send the ATR); a longer one is a
//! command APDU, answered with the response APDU. Closing the socket removes the card.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// A card as the vpcd driver sees it.
pub trait VirtualCard: Send {
    /// Answer to reset.
    fn atr(&self) -> Vec<u8>;
    /// The reader powered the card.
    fn power_on(&mut self);
    /// The reader cut the power.
    fn power_off(&mut self);
    /// Warm reset.
    fn reset(&mut self);
    /// Processes one command APDU and returns data ‖ SW1 SW2.
    fn process(&mut self, apdu: &[u8]) -> Vec<u8>;
}

/// Shared handle to a card that the vpcd link and the test can both reach.
pub type SharedCard = Arc<Mutex<dyn VirtualCard>>;

async fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame(s: &mut TcpStream, payload: &[u8]) -> std::io::Result<()> {
    let mut out = (payload.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    s.write_all(&out).await
}

/// Serves one connection until pcscd closes it or `stop` turns true (the card is removed).
pub async fn serve_connection(
    mut stream: TcpStream,
    card: SharedCard,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    loop {
        let frame = tokio::select! {
            f = read_frame(&mut stream) => f?,
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let reply = {
            let mut c = card.lock().unwrap_or_else(|p| p.into_inner());
            match frame.as_slice() {
                [0x00] => {
                    c.power_off();
                    None
                }
                [0x01] => {
                    c.power_on();
                    None
                }
                [0x02] => {
                    c.reset();
                    None
                }
                [0x04] => Some(c.atr()),
                [_] => None,
                apdu => Some(c.process(apdu)),
            }
        };
        if let Some(r) = reply {
            write_frame(&mut stream, &r).await?;
        }
    }
}

/// Keeps the card inserted at `addr` (connecting again whenever pcscd is not there yet or
/// restarted) until `stop` turns true.
pub async fn serve(addr: &str, card: SharedCard, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                if let Err(e) = serve_connection(stream, card.clone(), stop.clone()).await {
                    tracing::debug!("vpcd link closed: {e}");
                }
            }
            Err(e) => tracing::debug!("vpcd at {addr} not reachable yet: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {},
            _ = stop.wait_for(|s| *s) => {},
        }
    }
}

/// A minimal card for transport tests: SELECT answers `9000`, any other command
/// echoes its data followed by `9000`.
#[derive(Debug, Default)]
pub struct EchoCard {
    /// Whether the reader has powered the card.
    pub powered: bool,
    /// Commands received.
    pub commands: usize,
}

impl VirtualCard for EchoCard {
    fn atr(&self) -> Vec<u8> {
        vec![0x3B, 0x80, 0x80, 0x01, 0x01]
    }
    fn power_on(&mut self) {
        self.powered = true;
    }
    fn power_off(&mut self) {
        self.powered = false;
    }
    fn reset(&mut self) {}
    fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        self.commands += 1;
        if apdu.get(1) == Some(&0xA4) {
            return vec![0x90, 0x00];
        }
        let mut out = if apdu.len() > 5 {
            apdu[5..5 + (apdu[4] as usize).min(apdu.len() - 5)].to_vec()
        } else {
            vec![]
        };
        out.extend_from_slice(&[0x90, 0x00]);
        out
    }
}
