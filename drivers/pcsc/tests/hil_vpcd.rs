//! Hardware-in-the-loop: the PC/SC encoder against a real pcscd with the vpcd driver and a
//! virtual card speaking the vpcd protocol (`station_sim::vpcd`).
//!
//! Run through `cargo xtask hil` (or `cargo xtask test`), which starts a private pcscd
//! with vpcd and passes these variables:
//! - `STATION_HIL_PCSC=1`: a private pcscd + vpcd is running for these tests;
//! - `PCSCLITE_CSOCK_NAME`: that pcscd's client socket (read by libpcsclite itself);
//! - `STATION_HIL_VPCD_PORT`: TCP port of reader "Virtual PCD 00 00" ("… 00 01" is the next port);
//! - `STATION_HIL_PCSCD_PIDFILE`: pid file of the running pcscd; the restart test stops
//!   that process and the harness starts a new one, as a service manager would.
//!
//! Without `STATION_HIL_PCSC` every test FAILS, unless `STATION_HIL=off` is set to opt out
//! explicitly (then they return without checking anything).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use station_hal::{ApduTransport, TransportError};
use station_pcsc::{PcscEncoder, ReaderConfig};
use station_sim::vpcd::{self, EchoCard, VirtualCard};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const READER: &str = "Virtual PCD 00 00";
const SELECT: [u8; 11] = [
    0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x00, 0x03, 0x00,
];
/// Generous bound for a card to show up; the tests never wait it out when things work.
const CARD_WAIT: Duration = Duration::from_secs(20);

/// Bound for pcscd to settle (reader empty, daemon restarted); never reached when healthy.
const SETTLE: Duration = Duration::from_secs(30);
/// The tests share one pcscd and one reader slot, and one of them restarts pcscd.
static SERIAL: Mutex<()> = Mutex::new(());

struct Hil {
    _serial: MutexGuard<'static, ()>,
    vpcd_addr: String,
    pidfile: PathBuf,
}

/// The harness environment, or `None` when the operator opted out with `STATION_HIL=off`.
fn hil() -> Option<Hil> {
    if std::env::var("STATION_HIL_PCSC").as_deref() != Ok("1") {
        if std::env::var("STATION_HIL").as_deref() == Ok("off") {
            eprintln!("STATION_HIL=off: PC/SC HIL tests not run");
            return None;
        }
        panic!(
            "STATION_HIL_PCSC is not set: run through cargo xtask test (starts a private pcscd+vpcd), \
             or set STATION_HIL=off to opt out explicitly"
        );
    }
    let port = std::env::var("STATION_HIL_VPCD_PORT")
        .expect("STATION_HIL_VPCD_PORT not set by the harness");
    let pidfile = std::env::var("STATION_HIL_PCSCD_PIDFILE")
        .expect("STATION_HIL_PCSCD_PIDFILE not set by the harness");
    let serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Some(Hil {
        _serial: serial,
        vpcd_addr: format!("127.0.0.1:{port}"),
        pidfile: PathBuf::from(pidfile),
    })
}

/// A virtual card sitting in the reader until pulled.
struct Inserted {
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Inserted {
    async fn pull(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap().unwrap();
    }
}

fn insert(hil: &Hil, card: Arc<Mutex<dyn VirtualCard>>) -> Inserted {
    insert_with(hil, card, watch::channel(false))
}

fn insert_with(
    hil: &Hil,
    card: Arc<Mutex<dyn VirtualCard>>,
    (stop, stop_rx): (watch::Sender<bool>, watch::Receiver<bool>),
) -> Inserted {
    let addr = hil.vpcd_addr.clone();
    let task = tokio::spawn(async move { vpcd::serve(&addr, card, stop_rx).await });
    Inserted { stop, task }
}

fn echo_card() -> Arc<Mutex<dyn VirtualCard>> {
    Arc::new(Mutex::new(EchoCard::new()))
}

/// Waits until pcscd reports the reader empty, so a previous test's card cannot be mistaken for ours.
async fn reader_empty() {
    tokio::task::spawn_blocking(|| {
        let ctx = pcsc::Context::establish(pcsc::Scope::User).expect("private pcscd reachable");
        let mut states = [pcsc::ReaderState::new(
            std::ffi::CString::new(READER).unwrap(),
            pcsc::State::UNAWARE,
        )];
        let deadline = std::time::Instant::now() + SETTLE;
        while std::time::Instant::now() < deadline {
            match ctx.get_status_change(Duration::from_millis(500), &mut states) {
                Ok(()) if states[0].event_state().contains(pcsc::State::EMPTY) => return,
                Ok(()) => states[0].sync_current_state(),
                Err(pcsc::Error::Timeout) => {}
                Err(e) => panic!("cannot read the state of {READER}: {e}"),
            }
        }
        panic!("{READER} still holds a card after {SETTLE:?}");
    })
    .await
    .unwrap();
}

async fn encoder() -> PcscEncoder {
    let mut config = ReaderConfig::new(READER).unwrap();
    config.card_wait_timeout = CARD_WAIT;
    PcscEncoder::open(config)
        .await
        .expect("encoder opens the vpcd reader")
}

/// A card that leaves the reader while processing INS EE, without answering.
struct PulledOnEe {
    inner: EchoCard,
    pull: watch::Sender<bool>,
}

impl VirtualCard for PulledOnEe {
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn power_on(&mut self) {
        self.inner.power_on()
    }
    fn power_off(&mut self) {
        self.inner.power_off()
    }
    fn reset(&mut self) {
        self.inner.reset()
    }
    fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        if apdu.get(1) == Some(&0xEE) {
            let _ = self.pull.send(true);
        }
        self.inner.process(apdu)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserted_card_is_connected_exclusively_and_answers_select() {
    let Some(hil) = hil() else { return };
    reader_empty().await;
    let card = insert(&hil, echo_card());
    let mut enc = encoder().await;
    assert_eq!(enc.reader_name(), READER);

    let session = enc.wait_for_card(CARD_WAIT).await.unwrap();
    assert_eq!(session.atr, EchoCard::ATR.to_vec());
    // vpcd does not declare SCARD_ATTR_MAXINPUT, so extended APDUs are not claimed.
    assert!(!enc.supports_extended_length());
    assert_eq!(enc.transmit(&SELECT).await.unwrap(), vec![0x90, 0x00]);
    assert_eq!(
        enc.exchange(&[0x80, 0xCA, 0x00, 0x00, 0x02, 0x12, 0x34, 0x00])
            .await
            .unwrap(),
        vec![0x12, 0x34, 0x90, 0x00]
    );

    let other = tokio::task::spawn_blocking(|| {
        let ctx = pcsc::Context::establish(pcsc::Scope::User).unwrap();
        let reader = std::ffi::CString::new(READER).unwrap();
        ctx.connect(&reader, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)
            .map(|_| ())
    })
    .await
    .unwrap();
    assert_eq!(other, Err(pcsc::Error::SharingViolation));

    enc.release().await.unwrap();
    card.pull().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_pulled_between_commands_is_card_removed() {
    let Some(hil) = hil() else { return };
    reader_empty().await;
    let card = insert(&hil, echo_card());
    let mut enc = encoder().await;
    enc.wait_for_card(CARD_WAIT).await.unwrap();
    assert_eq!(enc.transmit(&SELECT).await.unwrap(), vec![0x90, 0x00]);

    card.pull().await;
    let e = enc
        .transmit(&[0x80, 0xCA, 0x9F, 0x36, 0x00])
        .await
        .unwrap_err();
    assert_eq!(e, TransportError::CardRemoved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_pulled_during_a_command_is_card_removed() {
    let Some(hil) = hil() else { return };
    reader_empty().await;
    let (pull, pulled) = watch::channel(false);
    let card = Arc::new(Mutex::new(PulledOnEe {
        inner: EchoCard::new(),
        pull: pull.clone(),
    }));
    let inserted = insert_with(&hil, card, (pull, pulled));
    let mut enc = encoder().await;
    enc.wait_for_card(CARD_WAIT).await.unwrap();
    assert_eq!(enc.transmit(&SELECT).await.unwrap(), vec![0x90, 0x00]);

    let e = enc
        .transmit(&[0x80, 0xEE, 0x00, 0x00, 0x01, 0x00])
        .await
        .unwrap_err();
    assert_eq!(e, TransportError::CardRemoved);
    inserted.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_pcscd_restart_the_next_select_works_on_a_new_context() {
    let Some(hil) = hil() else { return };
    reader_empty().await;
    let card = insert(&hil, echo_card());
    let mut enc = encoder().await;
    enc.wait_for_card(CARD_WAIT).await.unwrap();
    assert_eq!(enc.transmit(&SELECT).await.unwrap(), vec![0x90, 0x00]);

    restart_pcscd(&hil).await;
    assert_eq!(enc.transmit(&SELECT).await.unwrap(), vec![0x90, 0x00]);
    enc.release().await.unwrap();
    card.pull().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_pcscd_restart_a_mid_session_command_is_refused_not_replayed() {
    let Some(hil) = hil() else { return };
    reader_empty().await;
    let card = Arc::new(Mutex::new(EchoCard::new()));
    let inserted = insert(&hil, card.clone());
    let mut enc = encoder().await;
    enc.wait_for_card(CARD_WAIT).await.unwrap();
    assert_eq!(enc.transmit(&SELECT).await.unwrap(), vec![0x90, 0x00]);

    restart_pcscd(&hil).await;
    let before = card.lock().unwrap().commands();
    let e = enc
        .transmit(&[0x80, 0xE2, 0x00, 0x00, 0x01, 0x00])
        .await
        .unwrap_err();
    assert!(matches!(e, TransportError::ServiceDown(_)), "{e:?}");
    assert_eq!(
        card.lock().unwrap().commands(),
        before,
        "command was replayed"
    );
    // The new session is in place: starting again with SELECT works.
    assert_eq!(enc.transmit(&SELECT).await.unwrap(), vec![0x90, 0x00]);
    enc.release().await.unwrap();
    inserted.pull().await;
}

/// Stops the running pcscd and waits until the harness has a new one listing the reader.
async fn restart_pcscd(hil: &Hil) {
    let old = read_pid(&hil.pidfile).expect("pcscd pid file");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &old])
        .status()
        .unwrap();
    assert!(status.success(), "could not stop pcscd {old}");
    let pidfile = hil.pidfile.clone();
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + SETTLE;
        while std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            match read_pid(&pidfile) {
                Some(pid) if pid != old => {}
                _ => continue,
            }
            let listed = pcsc::Context::establish(pcsc::Scope::User)
                .and_then(|c| c.list_readers_owned())
                .map(|r| r.iter().any(|n| n.to_string_lossy() == READER))
                .unwrap_or(false);
            if listed {
                return;
            }
        }
        panic!("the harness did not bring pcscd back within {SETTLE:?}");
    })
    .await
    .unwrap();
}

/// pcscd writes its pid NUL-terminated.
fn read_pid(pidfile: &std::path::Path) -> Option<String> {
    let raw = std::fs::read_to_string(pidfile).ok()?;
    let pid = raw.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!pid.is_empty()).then(|| pid.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reader_matching_the_pattern_is_no_reader_naming_it() {
    let Some(_hil) = hil() else { return };
    let config = ReaderConfig::new("Omnikey 5422").unwrap();
    match PcscEncoder::open(config).await {
        Err(TransportError::NoReader(m)) => {
            assert!(m.contains("Omnikey 5422"), "{m}");
            assert!(m.contains(READER), "readers present are listed: {m}");
        }
        Err(other) => panic!("expected NoReader, got {other:?}"),
        Ok(_) => panic!("expected NoReader, got an encoder"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_card_that_never_comes_times_out() {
    let Some(_hil) = hil() else { return };
    reader_empty().await;
    let mut enc = encoder().await;
    let e = enc
        .wait_for_card(Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(matches!(e, TransportError::Timeout(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_card_wait_cancels_it_and_frees_the_reader_thread() {
    let Some(hil) = hil() else { return };
    reader_empty().await;
    let mut enc = encoder().await;
    tokio::select! {
        r = enc.wait_for_card(Duration::from_secs(3600)) => panic!("no card yet, got {r:?}"),
        _ = tokio::time::sleep(Duration::from_millis(300)) => {}
    }
    // Were the cancelled wait still blocking the thread, this one would never be served.
    let card = insert(&hil, echo_card());
    let session = enc.wait_for_card(CARD_WAIT).await.unwrap();
    assert_eq!(session.atr, EchoCard::ATR.to_vec());
    enc.release().await.unwrap();
    card.pull().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transmit_before_any_card_session_is_no_card() {
    let Some(_hil) = hil() else { return };
    reader_empty().await;
    let mut enc = encoder().await;
    assert_eq!(
        enc.transmit(&SELECT).await.unwrap_err(),
        TransportError::NoCard(READER.into())
    );
}

/// A card that takes `delay` to answer INS EE, as a hung reader or chip does.
struct SlowOnEe {
    inner: EchoCard,
    delay: Duration,
}

impl VirtualCard for SlowOnEe {
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn power_on(&mut self) {
        self.inner.power_on()
    }
    fn power_off(&mut self) {
        self.inner.power_off()
    }
    fn reset(&mut self) {
        self.inner.reset()
    }
    fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        if apdu.get(1) == Some(&0xEE) {
            std::thread::sleep(self.delay);
        }
        self.inner.process(apdu)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_the_reader_never_answers_times_out_and_blocks_no_second_command() {
    let Some(hil) = hil() else { return };
    reader_empty().await;
    // The slow card blocks whatever runs it, so it gets a runtime of its own.
    let (stop, stop_rx) = watch::channel(false);
    let addr = hil.vpcd_addr.clone();
    let card_thread = std::thread::spawn(move || {
        let slow: Arc<Mutex<dyn VirtualCard>> = Arc::new(Mutex::new(SlowOnEe {
            inner: EchoCard::new(),
            delay: Duration::from_secs(4),
        }));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(vpcd::serve(&addr, slow, stop_rx))
    });
    let mut config = ReaderConfig::new(READER).unwrap();
    config.card_wait_timeout = CARD_WAIT;
    config.transmit_timeout = Duration::from_millis(800);
    let mut enc = PcscEncoder::open(config).await.unwrap();
    enc.wait_for_card(CARD_WAIT).await.unwrap();
    assert_eq!(enc.transmit(&SELECT).await.unwrap(), vec![0x90, 0x00]);

    let started = std::time::Instant::now();
    let e = enc
        .transmit(&[0x80, 0xEE, 0x00, 0x00, 0x01, 0x00])
        .await
        .unwrap_err();
    assert!(matches!(e, TransportError::Timeout(_)), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The reader thread is still inside the hung command: a second one is refused at once.
    let e = enc.transmit(&SELECT).await.unwrap_err();
    assert!(
        matches!(e, TransportError::Timeout(ref w) if w.contains("finish")),
        "{e:?}"
    );

    // Once the reader comes back, the encoder is usable again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(enc.transmit(&SELECT).await.unwrap(), vec![0x90, 0x00]);
    enc.release().await.unwrap();
    let _ = stop.send(true);
    card_thread.join().unwrap().unwrap();
}
