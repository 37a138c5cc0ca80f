//! A simulated Evolis printer speaking the escape-command protocol over a pty pair
//! or an in-memory stream: feeder, card position, ribbon, cover and jams, a
//! mechanical timing model with a serial link that receives while the mechanics move,
//! fault injection at a chosen step, and records of every
//! printed panel (PNG) and written track for assertions.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use tokio::sync::watch;

/// Where the simulated card is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// No card in the printer.
    Empty,
    /// A card in the transport path.
    InPrinter,
    /// A card held at the contact chip station.
    AtChipStation,
}

/// The mechanical steps a fault can be injected at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// `Ss`: taking a card from the feeder.
    Feed,
    /// `Sis`: moving to the chip station.
    Park,
    /// `Dbm`: a panel downloaded into the bitmap memory (an armed fault answers that
    /// download only, as a transfer the printer refused would: nothing is stored and no
    /// standing fault is raised).
    Download,
    /// `Db`: printing panels.
    Print,
    /// `Smw`: writing the magstripe.
    Mag,
    /// `Se`: ejecting.
    Eject,
    /// `Ser`: sending the card to the reject box (only an armed fault fires here: a
    /// standing fault does not stop the reject path).
    Reject,
}

/// A fault the simulator can raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Card jam (`T`).
    Jam,
    /// Feeder empty (`F`).
    FeederEmpty,
    /// Ribbon out (`R`).
    RibbonOut,
    /// Cover open (`C`).
    CoverOpen,
    /// Magstripe write error (`W`).
    MagWrite,
}

impl Fault {
    fn code(self) -> &'static str {
        match self {
            Fault::Jam => "T",
            Fault::FeederEmpty => "F",
            Fault::RibbonOut => "R",
            Fault::CoverOpen => "C",
            Fault::MagWrite => "W",
        }
    }
}

/// Seconds each mechanical step takes on the real printer, before scaling.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Feed from the hopper.
    pub feed: f64,
    /// Move to the chip station.
    pub park: f64,
    /// Print one panel.
    pub print_panel: f64,
    /// Write and verify the stripe.
    pub mag: f64,
    /// Eject.
    pub eject: f64,
    /// Reject.
    pub reject: f64,
    /// Multiplier applied to all of the above (0 = instant).
    pub scale: f64,
    /// Serial link speed (8N1: ten bits a byte), or `None` for a link that takes no
    /// time (USB, network): each command's bytes cross the line before the printer
    /// acts on it, scaled like the mechanics.
    pub baud: Option<u32>,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            feed: 2.0,
            park: 1.0,
            print_panel: 4.0,
            mag: 2.0,
            eject: 1.0,
            reject: 1.0,
            scale: 0.0,
            baud: None,
        }
    }
}

impl Timing {
    /// Mechanical seconds of one complete card (`panels` printed), unscaled.
    pub fn card_seconds(&self, panels: u32) -> f64 {
        self.feed + self.park + self.print_panel * panels as f64 + self.mag + self.eject
    }

    /// Seconds a command line of `bytes` (with its ESC and CR) takes on the link, unscaled.
    pub fn link_seconds(&self, bytes: usize) -> f64 {
        self.baud
            .map_or(0.0, |b| (bytes + 2) as f64 * 10.0 / b as f64)
    }
}

/// Start-up settings of the simulated printer.
#[derive(Debug, Clone)]
pub struct SimPrinterConfig {
    /// Model name answered to `Rtp`.
    pub model: String,
    /// Blank cards in the feeder.
    pub feeder: u32,
    /// Ribbon panels left.
    pub ribbon: u32,
    /// Timing model.
    pub timing: Timing,
    /// Folder for printed panels (PNG), if any.
    pub out_dir: Option<PathBuf>,
}

impl Default for SimPrinterConfig {
    fn default() -> Self {
        SimPrinterConfig {
            model: "Primacy 2".into(),
            feeder: 100,
            ribbon: 500,
            timing: Timing::default(),
            out_dir: None,
        }
    }
}

/// One finished card as the simulator saw it.
#[derive(Debug, Clone, Default)]
pub struct CardRecord {
    /// Printed panel files (PNG).
    pub panels: Vec<PathBuf>,
    /// Panels printed (ribbon panel names).
    pub panel_names: Vec<String>,
    /// A digest of each printed panel's bitmap, to tell which card's face was printed.
    pub panel_digests: Vec<u64>,
    /// Whether each panel was printed from the bitmap memory (`Spp`) rather than sent
    /// with the print (`Db`).
    pub from_memory: Vec<bool>,
    /// Tracks as encoded (test assertions only; never logged).
    pub tracks: BTreeMap<u8, String>,
    /// Whether it went to the reject box.
    pub rejected: bool,
}

#[derive(Debug)]
struct State {
    config: SimPrinterConfig,
    feeder: u32,
    ribbon: u32,
    position: Position,
    fault: Option<Fault>,
    armed: BTreeMap<Step, Fault>,
    current: CardRecord,
    mag_buffer: BTreeMap<u8, String>,
    encoded: BTreeMap<u8, String>,
    finished: Vec<CardRecord>,
    cards_started: u32,
    /// Panels downloaded ahead, by ribbon panel name.
    memory: BTreeMap<String, Vec<u8>>,
    /// Digests of every bitmap downloaded into the memory, in order.
    downloads: Vec<u64>,
    /// When each command arrived and was answered (split link only), in order.
    exchanges: Vec<Exchange>,
    /// Replies to hold back, by command name, each for its next reply only.
    held: Vec<(String, Held)>,
}

/// What happens to a reply held back (see [`SimPrinter::lose_reply`]).
#[derive(Debug, Clone, Copy)]
enum Held {
    /// Never sent.
    Lost,
    /// Sent this long after the printer answered.
    Late(Duration),
    /// Sent this many times, this far apart.
    Repeated(u32, Duration),
}

/// One command as the printer saw it on a split link: when its last byte arrived and
/// when it answered. Only the command's name is kept (no card data).
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Command name (`Sis`, `Dbm`, ...).
    pub command: String,
    /// Its last byte arrived in the receive buffer.
    pub arrived: Instant,
    /// The printer answered it.
    pub answered: Instant,
}

/// The digest the simulator records for a bitmap (not keyed: test data only).
pub fn bitmap_digest(bits: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bits.hash(&mut h);
    h.finish()
}

/// A simulated printer; cheap to clone (shared state).
#[derive(Clone)]
pub struct SimPrinter {
    state: Arc<Mutex<State>>,
    position: Arc<watch::Sender<Position>>,
}

impl SimPrinter {
    /// A printer with the given settings.
    pub fn new(config: SimPrinterConfig) -> Self {
        let (tx, _) = watch::channel(Position::Empty);
        SimPrinter {
            state: Arc::new(Mutex::new(State {
                feeder: config.feeder,
                ribbon: config.ribbon,
                config,
                position: Position::Empty,
                fault: None,
                armed: BTreeMap::new(),
                current: CardRecord::default(),
                mag_buffer: BTreeMap::new(),
                encoded: BTreeMap::new(),
                finished: Vec::new(),
                cards_started: 0,
                memory: BTreeMap::new(),
                downloads: Vec::new(),
                exchanges: Vec::new(),
                held: Vec::new(),
            })),
            position: Arc::new(tx),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Raises `fault` the next time the printer reaches `step`.
    pub fn arm_fault(&self, step: Step, fault: Fault) {
        self.lock().armed.insert(step, fault);
    }

    /// The next reply to `command` (its name: `Sis`, `Pr`, `Dbm`, ...) never leaves the
    /// printer, as a reply lost to line noise or a command a firmware ignores silently:
    /// the printer still acts on the command.
    pub fn lose_reply(&self, command: &str) {
        self.lock().held.push((command.to_string(), Held::Lost));
    }

    /// The next reply to `command` leaves the printer `by` late, as a slow mechanism's
    /// would: the printer acts on nothing after it meanwhile.
    pub fn delay_reply(&self, command: &str, by: Duration) {
        self.lock().held.push((command.to_string(), Held::Late(by)));
    }

    /// The next reply to `command` goes out `times` times, `every` apart, as a line
    /// echoed by a faulty firmware or a chattering link would: the lines after the first
    /// answer nothing. The printer acts on nothing after it meanwhile.
    pub fn repeat_reply(&self, command: &str, times: u32, every: Duration) {
        self.lock()
            .held
            .push((command.to_string(), Held::Repeated(times, every)));
    }

    /// Whether a reply held back with [`SimPrinter::lose_reply`] or
    /// [`SimPrinter::delay_reply`] is still waiting for its command.
    pub fn holds_reply(&self) -> bool {
        !self.lock().held.is_empty()
    }

    /// Sends `answer` to `cmd` on `w`, unless it is held back; false when the host has gone.
    fn answer<W: Write>(&self, w: &mut W, cmd: &str, answer: &str) -> bool {
        let name = cmd.split(';').next().unwrap_or_default();
        let held = {
            let mut st = self.lock();
            let at = st.held.iter().position(|(c, _)| c == name);
            at.map(|i| st.held.remove(i).1)
        };
        match held {
            Some(Held::Lost) => true,
            Some(Held::Late(by)) => {
                std::thread::sleep(by);
                reply(w, answer)
            }
            Some(Held::Repeated(times, every)) => (0..times).all(|i| {
                if i > 0 {
                    std::thread::sleep(every);
                }
                reply(w, answer)
            }),
            None => reply(w, answer),
        }
    }

    /// Whether a fault armed at `step` is still waiting to fire.
    pub fn is_armed(&self, step: Step) -> bool {
        self.lock().armed.contains_key(&step)
    }

    /// Ribbon panel names whose bitmaps the printer's memory holds now.
    pub fn memory(&self) -> Vec<String> {
        self.lock().memory.keys().cloned().collect()
    }

    /// Clears a raised fault, as staff fixing the printer would.
    pub fn clear_fault(&self) {
        self.lock().fault = None;
    }

    /// Refills the feeder.
    pub fn load_cards(&self, n: u32) {
        self.lock().feeder += n;
    }

    /// Current card position.
    pub fn position(&self) -> Position {
        self.lock().position
    }

    /// Watches the card position (e.g. to insert a simulated chip at the chip station).
    pub fn watch_position(&self) -> watch::Receiver<Position> {
        self.position.subscribe()
    }

    /// Cards that left the printer, in order.
    pub fn finished(&self) -> Vec<CardRecord> {
        self.lock().finished.clone()
    }

    /// Digests of the bitmaps downloaded into the printer's memory (`Dbm`), in order.
    pub fn downloads(&self) -> Vec<u64> {
        self.lock().downloads.clone()
    }

    /// Commands served on a split link with when they arrived and were answered.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.lock().exchanges.clone()
    }

    /// Switches the printer off and on: its bitmap memory and any raised fault are
    /// gone (a card inside stays where it is).
    pub fn power_cycle(&self) {
        let mut st = self.lock();
        st.memory.clear();
        st.mag_buffer.clear();
        st.fault = None;
    }

    /// Blank cards left.
    pub fn feeder(&self) -> u32 {
        self.lock().feeder
    }

    fn set_position(&self, st: &mut State, p: Position) {
        st.position = p;
        self.position.send_replace(p);
    }

    /// Holds the reply until the step's mechanical time has passed since the command
    /// arrived: the simulator's own bookkeeping (recording a panel as PNG) runs inside
    /// that time, as a real controller's work does, so it never counts as printer time.
    fn wait(&self, received: Instant, seconds: f64) {
        let scale = self.lock().config.timing.scale;
        if seconds * scale > 0.0 {
            let left = Duration::from_secs_f64(seconds * scale).saturating_sub(received.elapsed());
            std::thread::sleep(left);
        }
    }

    /// Checks an armed or standing fault for a step; `Some(reply)` when it fires.
    fn fault_at(&self, st: &mut State, step: Step) -> Option<String> {
        if let Some(f) = st.fault {
            return Some(format!("ERR {}", f.code()));
        }
        if let Some(f) = st.armed.remove(&step) {
            st.fault = Some(f);
            return Some(format!("ERR {}", f.code()));
        }
        None
    }

    fn end_card(&self, st: &mut State, rejected: bool) {
        let mut rec = std::mem::take(&mut st.current);
        rec.rejected = rejected;
        rec.tracks = std::mem::take(&mut st.encoded);
        st.mag_buffer.clear();
        st.memory.clear();
        st.finished.push(rec);
        self.set_position(st, Position::Empty);
    }

    /// Handles one command (without ESC/CR) and returns the reply line.
    pub fn handle(&self, cmd: &str) -> String {
        // The command's bytes cross the serial line before the printer can act on it.
        let timing = self.lock().config.timing.clone();
        let link = timing.link_seconds(cmd.len()) * timing.scale;
        if link > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(link));
        }
        self.execute(cmd)
    }

    /// Acts on one command whose bytes have all arrived; returns the reply line.
    fn execute(&self, cmd: &str) -> String {
        let timing = self.lock().config.timing.clone();
        let received = Instant::now();
        let mut parts = cmd.splitn(4, ';');
        let name = parts.next().unwrap_or_default();
        let args: Vec<&str> = parts.collect();
        match name {
            "Rtp" => self.lock().config.model.clone(),
            "Rfv" => "SIM-1.0".into(),
            "Rsn" => "SIM0000001".into(),
            "Rlr" => match self.lock().position {
                Position::Empty => "OK".into(),
                Position::InPrinter => "CARD".into(),
                Position::AtChipStation => "SMART CARD".into(),
            },
            "Rse" => {
                let st = self.lock();
                match args.first().copied() {
                    Some("r") => st.ribbon.to_string(),
                    Some("k") => st.feeder.to_string(),
                    _ => st
                        .fault
                        .map(|f| f.code().to_string())
                        .unwrap_or("OK".into()),
                }
            }
            "Pr" | "Pmc" | "Pmt" | "Pem" | "Pcom" => "OK".into(),
            "Scs" => {
                self.lock().fault = None;
                "OK".into()
            }
            "Srs" => {
                // A reset: faults cleared, bitmap memory emptied, a card inside rejected.
                let mut st = self.lock();
                st.fault = None;
                st.memory.clear();
                if st.position != Position::Empty {
                    self.end_card(&mut st, true);
                }
                "OK".into()
            }
            "Ss" => {
                let mut st = self.lock();
                if let Some(r) = self.fault_at(&mut st, Step::Feed) {
                    return r;
                }
                if st.position != Position::Empty {
                    return "ERR B".into();
                }
                if st.feeder == 0 {
                    st.fault = Some(Fault::FeederEmpty);
                    return "ERR F".into();
                }
                st.feeder -= 1;
                st.cards_started += 1;
                self.set_position(&mut st, Position::InPrinter);
                drop(st);
                self.wait(received, timing.feed);
                "OK".into()
            }
            "Sis" => {
                let mut st = self.lock();
                if let Some(r) = self.fault_at(&mut st, Step::Park) {
                    return r;
                }
                if st.position == Position::Empty {
                    return "ERR 2".into();
                }
                drop(st);
                self.wait(received, timing.park);
                let mut st = self.lock();
                self.set_position(&mut st, Position::AtChipStation);
                "OK".into()
            }
            "Dbm" => {
                // Downloaded ahead into the bitmap memory (the card may be at the chip
                // station meanwhile): printed by `Spp` later.
                if args.len() < 3 {
                    return "ERR 2".into();
                }
                let Ok(bits) = base64::engine::general_purpose::STANDARD.decode(args[2]) else {
                    return "ERR 2".into();
                };
                let mut st = self.lock();
                if let Some(f) = st.armed.remove(&Step::Download) {
                    st.memory.remove(args[0]);
                    return format!("ERR {}", f.code());
                }
                st.downloads.push(bitmap_digest(&bits));
                st.memory.insert(args[0].to_string(), bits);
                "OK".into()
            }
            "Db" | "Spp" => {
                let mut st = self.lock();
                if let Some(r) = self.fault_at(&mut st, Step::Print) {
                    return r;
                }
                let bits = if name == "Spp" {
                    match args.first().and_then(|p| st.memory.remove(*p)) {
                        Some(bits) => bits,
                        None => return "ERR 2".into(),
                    }
                } else {
                    if args.len() < 3 {
                        return "ERR 2".into();
                    }
                    match base64::engine::general_purpose::STANDARD.decode(args[2]) {
                        Ok(bits) => bits,
                        Err(_) => return "ERR 2".into(),
                    }
                };
                if st.position == Position::Empty {
                    return "ERR 2".into();
                }
                if st.ribbon == 0 {
                    st.fault = Some(Fault::RibbonOut);
                    return "ERR R".into();
                }
                st.ribbon -= 1;
                let panel = args[0].to_string();
                let n = st.cards_started;
                if let Some(dir) = st.config.out_dir.clone() {
                    let path = dir.join(format!("card-{n:03}-{panel}.png"));
                    if save_panel(&path, &bits).is_ok() {
                        st.current.panels.push(path);
                    }
                }
                st.current.panel_names.push(panel);
                st.current.panel_digests.push(bitmap_digest(&bits));
                st.current.from_memory.push(name == "Spp");
                self.set_position(&mut st, Position::InPrinter);
                drop(st);
                self.wait(received, timing.print_panel);
                "OK".into()
            }
            "Dm" => {
                let mut st = self.lock();
                match (args.first().and_then(|t| t.parse::<u8>().ok()), args.get(1)) {
                    (Some(t @ 1..=3), Some(data)) => {
                        st.mag_buffer.insert(t, data.to_string());
                        "OK".into()
                    }
                    _ => "ERR 2".into(),
                }
            }
            "Smw" => {
                let mut st = self.lock();
                if let Some(r) = self.fault_at(&mut st, Step::Mag) {
                    return r;
                }
                if st.position == Position::Empty {
                    return "ERR 2".into();
                }
                st.encoded = st.mag_buffer.clone();
                drop(st);
                self.wait(received, timing.mag);
                "OK".into()
            }
            "Smr" => {
                let st = self.lock();
                match args.first().and_then(|t| t.parse::<u8>().ok()) {
                    Some(t) => st.encoded.get(&t).cloned().unwrap_or_default(),
                    None => "ERR 2".into(),
                }
            }
            "Se" => {
                let mut st = self.lock();
                if let Some(r) = self.fault_at(&mut st, Step::Eject) {
                    return r;
                }
                if st.position == Position::Empty {
                    return "ERR 2".into();
                }
                drop(st);
                self.wait(received, timing.eject);
                let mut st = self.lock();
                self.end_card(&mut st, false);
                "OK".into()
            }
            "Ser" => {
                // The reject path works with a fault raised: that is what it is for.
                let mut st = self.lock();
                if let Some(f) = st.armed.remove(&Step::Reject) {
                    st.fault = Some(f);
                    return format!("ERR {}", f.code());
                }
                if st.position == Position::Empty {
                    return "ERR 2".into();
                }
                drop(st);
                self.wait(received, timing.reject);
                let mut st = self.lock();
                self.end_card(&mut st, true);
                "OK".into()
            }
            _ => "ERR CDE".into(),
        }
    }

    /// Serves the protocol on a stream until it closes, one command at a time: the next
    /// command's bytes cross the link only once the previous one is answered.
    pub fn serve<S: Read + Write>(&self, mut stream: S) {
        let mut lines = Lines::default();
        let mut b = [0u8; 4096];
        loop {
            let n = match stream.read(&mut b) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            for cmd in lines.push(&b[..n]) {
                let answer = self.handle(&cmd);
                if !self.answer(&mut stream, &cmd, &answer) {
                    return;
                }
            }
        }
    }

    /// Serves the protocol with the link modelled as a UART: bytes arrive at the baud
    /// rate into the printer's receive buffer whether or not the mechanics are busy, so
    /// a command sent behind another (a download behind a park) crosses the link while
    /// the first one moves the card. Commands are acted on in order, each once all its
    /// bytes have arrived and the one before it is done.
    pub fn serve_split<R: Read + Send + 'static, W: Write>(&self, mut reader: R, mut writer: W) {
        let timing = self.lock().config.timing.clone();
        let (tx, rx) = std::sync::mpsc::channel::<(String, Instant)>();
        let receiver = std::thread::Builder::new()
            .name("sim-printer-uart".into())
            .spawn(move || {
                let mut lines = Lines::default();
                // When the link has finished carrying the bytes received so far.
                let mut link_free = Instant::now();
                let mut b = [0u8; 4096];
                loop {
                    let n = match reader.read(&mut b) {
                        Ok(0) => return,
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => return,
                    };
                    let now = Instant::now();
                    for cmd in lines.push(&b[..n]) {
                        let link = timing.link_seconds(cmd.len()) * timing.scale;
                        link_free = link_free.max(now) + Duration::from_secs_f64(link);
                        if tx.send((cmd, link_free)).is_err() {
                            return;
                        }
                    }
                }
            });
        if receiver.is_err() {
            return;
        }
        for (cmd, arrived) in rx {
            std::thread::sleep(arrived.saturating_duration_since(Instant::now()));
            let answer = self.execute(&cmd);
            let command = cmd.split(';').next().unwrap_or_default().to_string();
            self.lock().exchanges.push(Exchange {
                command,
                arrived,
                answered: Instant::now(),
            });
            if !self.answer(&mut writer, &cmd, &answer) {
                return;
            }
        }
    }

    /// Serves over a new pty pair; returns the device path the driver opens.
    #[cfg(unix)]
    pub fn spawn_pty(&self) -> std::io::Result<PtyLink> {
        let (master, slave) =
            serialport::TTYPort::pair().map_err(|e| std::io::Error::other(e.to_string()))?;
        let path = serialport::SerialPort::name(&slave)
            .ok_or_else(|| std::io::Error::other("pty has no name"))?;
        let me = self.clone();
        let mut master = master;
        let _ = serialport::SerialPort::set_timeout(&mut master, Duration::from_millis(200));
        let reader = master
            .try_clone_native()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        std::thread::Builder::new()
            .name("sim-printer".into())
            .spawn(move || me.serve_split(reader, master))?;
        Ok(PtyLink {
            path: PathBuf::from(path),
            _device_end: slave,
        })
    }

    /// Serves over an in-memory stream; returns the host end for the driver.
    #[cfg(unix)]
    pub fn spawn_in_memory(&self) -> std::io::Result<std::os::unix::net::UnixStream> {
        let (host, printer) = std::os::unix::net::UnixStream::pair()?;
        let me = self.clone();
        let reader = printer.try_clone()?;
        std::thread::Builder::new()
            .name("sim-printer".into())
            .spawn(move || me.serve_split(reader, printer))?;
        Ok(host)
    }

    /// Serves over a loopback TCP connection (Windows has no socket pair); returns the
    /// host end for the driver.
    #[cfg(not(unix))]
    pub fn spawn_in_memory(&self) -> std::io::Result<std::net::TcpStream> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        let host = std::net::TcpStream::connect(listener.local_addr()?)?;
        let (printer, _) = listener.accept()?;
        host.set_nodelay(true)?;
        printer.set_nodelay(true)?;
        let me = self.clone();
        let reader = printer.try_clone()?;
        std::thread::Builder::new()
            .name("sim-printer".into())
            .spawn(move || me.serve_split(reader, printer))?;
        Ok(host)
    }
}

/// Splits the bytes from the host into command lines (ESC … CR), without the framing.
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
}

impl Lines {
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        if !bytes.contains(&b'\r') {
            // Only a new CR can end a line: a long download is not rescanned per chunk.
            return out;
        }
        while let Some(end) = self.buf.iter().position(|&c| c == b'\r') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            let start = line
                .iter()
                .position(|&c| c == 0x1B)
                .map(|p| p + 1)
                .unwrap_or(0);
            out.push(String::from_utf8_lossy(&line[start..line.len() - 1]).into_owned());
        }
        out
    }
}

/// Writes one reply line; false when the host has gone.
fn reply<W: Write>(w: &mut W, line: &str) -> bool {
    let mut bytes = line.as_bytes().to_vec();
    bytes.push(b'\r');
    w.write_all(&bytes).and_then(|_| w.flush()).is_ok()
}

/// The pty the simulated printer serves on; keep it alive while the driver uses it.
#[cfg(unix)]
pub struct PtyLink {
    /// Device path to open as a serial port.
    pub path: PathBuf,
    _device_end: serialport::TTYPort,
}

/// Writes a 1-bit 1016 × 648 panel (MSB first, 1 = ink) as a PNG.
fn save_panel(path: &std::path::Path, bits: &[u8]) -> Result<(), image::ImageError> {
    let (w, h) = (1016u32, 648u32);
    let img = image::GrayImage::from_fn(w, h, |x, y| {
        let i = (y * w + x) as usize;
        let on = bits
            .get(i / 8)
            .map(|b| b & (0x80 >> (i % 8)) != 0)
            .unwrap_or(false);
        image::Luma([if on { 0 } else { 255 }])
    });
    img.save(path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// Sends `commands` on a fresh in-memory link and reads `n` reply lines.
    fn replies(sim: &SimPrinter, commands: &[&str], n: usize) -> Vec<String> {
        let mut host = sim.spawn_in_memory().unwrap();
        for c in commands {
            host.write_all(format!("\x1b{c}\r").as_bytes()).unwrap();
        }
        let mut got = Vec::new();
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while got.len() < n {
            host.read_exact(&mut b).unwrap();
            if b[0] == b'\r' {
                got.push(String::from_utf8(std::mem::take(&mut line)).unwrap());
            } else {
                line.push(b[0]);
            }
        }
        got
    }

    #[test]
    fn a_lost_reply_is_never_sent_and_the_next_command_is_answered() {
        let sim = SimPrinter::new(SimPrinterConfig::default());
        sim.lose_reply("Rtp");
        assert_eq!(
            replies(&sim, &["Rtp", "Rfv", "Rtp"], 2),
            ["SIM-1.0", "Primacy 2"]
        );
        assert!(!sim.holds_reply(), "only the next reply is lost");
    }

    #[test]
    fn a_lost_reply_to_a_card_move_still_moves_the_card() {
        let sim = SimPrinter::new(SimPrinterConfig::default());
        sim.lose_reply("Sis");
        assert_eq!(
            replies(&sim, &["Ss", "Sis", "Rlr;p"], 2),
            ["OK", "SMART CARD"]
        );
        assert_eq!(sim.position(), Position::AtChipStation);
    }

    #[test]
    fn a_late_reply_comes_in_order_after_the_delay() {
        let sim = SimPrinter::new(SimPrinterConfig::default());
        sim.delay_reply("Rtp", Duration::from_millis(200));
        let t0 = Instant::now();
        assert_eq!(replies(&sim, &["Rtp", "Rfv"], 2), ["Primacy 2", "SIM-1.0"]);
        assert!(t0.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn a_repeated_reply_comes_that_many_times_before_the_next_answer() {
        let sim = SimPrinter::new(SimPrinterConfig::default());
        sim.repeat_reply("Ss", 3, Duration::from_millis(10));
        assert_eq!(
            replies(&sim, &["Ss", "Rlr;p"], 4),
            ["OK", "OK", "OK", "CARD"]
        );
    }
}
