//! A simulated station: the printer and the chips of the cards it feeds. Each card the
//! printer parks at its chip station carries a fresh blank chip, reachable either
//! in-process ([`SimEncoder`]) or through pcscd's vpcd reader ([`serve_chips_on_vpcd`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use station_hal::{ApduTransport, ChipEncoder, TransportError};
use tokio::sync::watch;

use crate::card::{Faults, SimCard, SimCardConfig};
use crate::printer::{Position, SimPrinter};
use crate::vpcd::{serve, SharedCard};

/// The chip of the card at the chip station, if any, and every chip made so far.
#[derive(Clone, Default)]
pub struct Chips {
    current: Arc<Mutex<Option<Arc<Mutex<SimCard>>>>>,
    all: Arc<Mutex<Vec<Arc<Mutex<SimCard>>>>>,
    faults: Arc<Mutex<Vec<Faults>>>,
}

impl Chips {
    /// The chip at the station now.
    pub fn current(&self) -> Option<Arc<Mutex<SimCard>>> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every chip that was at the station, in order.
    pub fn all(&self) -> Vec<Arc<Mutex<SimCard>>> {
        self.all.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Fault switches for the next chips, one entry per card, in order.
    pub fn queue_faults(&self, f: Faults) {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(f);
    }
}

/// Starts the task that puts a fresh chip at the station whenever the printer parks a
/// card there, and takes it away when the card moves on.
pub fn track_chips(printer: &SimPrinter, config: SimCardConfig) -> Chips {
    let chips = Chips::default();
    let c = chips.clone();
    let mut rx = printer.watch_position();
    tokio::spawn(async move {
        loop {
            let pos = *rx.borrow_and_update();
            {
                let mut cur = c.current.lock().unwrap_or_else(|p| p.into_inner());
                match pos {
                    Position::AtChipStation if cur.is_none() => {
                        let mut card = SimCard::new(config.clone());
                        let mut queued = c.faults.lock().unwrap_or_else(|p| p.into_inner());
                        if !queued.is_empty() {
                            card.faults = queued.remove(0);
                        }
                        let card = Arc::new(Mutex::new(card));
                        c.all
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(card.clone());
                        *cur = Some(card);
                    }
                    Position::AtChipStation => {}
                    _ => *cur = None,
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    });
    chips
}

/// An in-process chip encoder over the station's chips.
pub struct SimEncoder {
    chips: Chips,
    connected: Option<Arc<Mutex<SimCard>>>,
}

impl SimEncoder {
    /// An encoder reading the chip at the station.
    pub fn new(chips: Chips) -> Self {
        SimEncoder {
            chips,
            connected: None,
        }
    }
}

#[async_trait]
impl ApduTransport for SimEncoder {
    async fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError> {
        let Some(card) = &self.connected else {
            return Err(TransportError::NoCard("simulated encoder".into()));
        };
        let still_there = self
            .chips
            .current()
            .map(|c| Arc::ptr_eq(&c, card))
            .unwrap_or(false);
        if !still_there {
            return Err(TransportError::CardRemoved);
        }
        let mut t = crate::card::InProcessTransport::new(card.clone());
        t.transmit(command).await
    }
}

#[async_trait]
impl ChipEncoder for SimEncoder {
    async fn wait_for_card(&mut self, timeout: Duration) -> Result<(), TransportError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(c) = self.chips.current() {
                // Like pcscd, the encoder finds a mute chip when it powers it up.
                if c.lock().unwrap_or_else(|p| p.into_inner()).faults.mute {
                    return Err(TransportError::CardMute);
                }
                self.connected = Some(c);
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(TransportError::Timeout(
                    "a card in the simulated encoder".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn release(&mut self) {
        self.connected = None;
    }
}

/// Inserts each chip into pcscd's vpcd reader at `addr` while its card is at the chip
/// station, and pulls it out when the card moves on. Runs until `stop` turns true.
pub async fn serve_chips_on_vpcd(
    printer: SimPrinter,
    config: SimCardConfig,
    addr: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut rx = printer.watch_position();
    let mut inserted: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)> = None;
    loop {
        let pos = *rx.borrow_and_update();
        match (pos, inserted.is_some()) {
            (Position::AtChipStation, false) => {
                let card: SharedCard = Arc::new(Mutex::new(SimCard::new(config.clone())));
                let (tx, card_stop) = watch::channel(false);
                let a = addr.clone();
                inserted = Some((
                    tx,
                    tokio::spawn(async move {
                        let _ = serve(&a, card, card_stop).await;
                    }),
                ));
            }
            (Position::AtChipStation, true) => {}
            (_, true) => {
                if let Some((tx, task)) = inserted.take() {
                    let _ = tx.send(true);
                    let _ = task.await;
                }
            }
            (_, false) => {}
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
