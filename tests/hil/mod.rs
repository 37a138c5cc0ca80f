//! Shared set-up of hardware-in-the-loop tests: the private pcscd + vpcd that
//! `cargo xtask test` starts, found through the environment it sets.
//!
//! - `STATION_HIL_PCSC=1`: a private pcscd is running;
//! - `PCSCLITE_CSOCK_NAME`: its socket (read by libpcsclite itself);
//! - `STATION_VPCD_PORT`: its vpcd port for slot 0 (`Virtual PCD 00 00`); slot 1 is port + 1.
//!
//! Without them these tests fail with instructions, unless `STATION_HIL=off` is set
//! explicitly (for a quick `cargo test` on a machine without pcscd).

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use station_sim::vpcd::{serve, SharedCard};
use tokio::sync::watch;

/// Reader name of vpcd slot 0.
pub const SLOT0: &str = "Virtual PCD 00 00";
/// Reader name of vpcd slot 1.
pub const SLOT1: &str = "Virtual PCD 00 01";

/// The vpcd port of slot 0, or `None` when HIL is explicitly off.
pub fn vpcd_port() -> Option<u16> {
    if std::env::var("STATION_HIL_PCSC").as_deref() != Ok("1") {
        if std::env::var("STATION_HIL").as_deref() == Ok("off") {
            eprintln!("STATION_HIL=off: hardware-in-the-loop test not run");
            return None;
        }
        panic!(
            "no private pcscd: run through `cargo xtask test` (it starts pcscd + vpcd), \
             or set STATION_HIL=off to leave the hardware-in-the-loop tests out on purpose"
        );
    }
    Some(
        std::env::var("STATION_VPCD_PORT")
            .expect("STATION_VPCD_PORT")
            .parse()
            .expect("STATION_VPCD_PORT is a port"),
    )
}

/// One vpcd slot per test at a time: tests in a binary take this lock.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A virtual card inserted in a vpcd slot; removed when dropped or on `remove`.
pub struct Inserted {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Inserted {
    /// Connects `card` to vpcd at `port`.
    pub fn new(port: u16, card: SharedCard) -> Self {
        let (stop, rx) = watch::channel(false);
        let addr = format!("127.0.0.1:{port}");
        let task = tokio::spawn(async move { serve(&addr, card, rx).await });
        Inserted { stop, task }
    }

    /// Pulls the card out (closes the vpcd connection) and waits until it is gone.
    pub async fn remove(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        // pcscd polls vpcd for card presence; let it notice.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
}

/// Wraps a card for sharing with the vpcd link.
pub fn shared<C: station_sim::vpcd::VirtualCard + 'static>(card: C) -> (Arc<Mutex<C>>, SharedCard) {
    let a = Arc::new(Mutex::new(card));
    let s: SharedCard = a.clone();
    (a, s)
}
