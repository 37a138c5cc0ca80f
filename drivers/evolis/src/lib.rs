//! Evolis escape-command printer driver over any byte stream.
//!
//! Frames are `ESC cmd;p1;p2 CR`; the printer answers one ASCII line per command:
//! `OK`, a value (for `R…` reads), or `ERR <code>` where the code is one of the
//! ACK/NACK codes (`1` command, `2` parameter, `T` mechanical timeout, `C` cover open,
//! `F` feeder, `R` ribbon, `K`/`D`/`W` magstripe) or `CDE` (unknown command).
//!
//! The stream (serial port, USB printer-class node, TCP) is blocking I/O, so it lives
//! on dedicated threads; async callers send commands and wait for each reply with a
//! tokio timeout chosen by the command's class. Replies are matched to commands by
//! position, so a lost or late reply puts the link out of step until it is
//! resynchronised (see [`link`]); the command whose reply was lost fails as "outcome
//! unknown". Only status reads (`R…`) are retried, once; actions (`Pr`, `Scs`, card moves)
//! never are. Card data (track contents) and bitmaps never appear
//! in errors or logs.
//!
//! A panel download into the printer's memory (staging, see [`CardPrinter::stage_panels`])
//! and the reset that clears it are the commands not awaited when sent: their replies
//! are collected before the next command goes out, so commands still reach the printer
//! whole and in order. The driver remembers what the printer holds only as a keyed
//! digest of the panels (never the bitmap, which shows the PAN), and forgets it on any
//! error, eject, reject or reset. Apart from that it remembers whether a download went out
//! since the memory was last emptied: a face forgotten after an error may still be there,
//! and is reset (`Srs`) at the next moment no card can be inside (before a feed, when
//! staged panels are discarded, as the line stops).

pub mod device;
pub mod link;
pub mod model;
pub mod protocol;

use std::hash::{BuildHasher, Hash, Hasher};
use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use station_hal::{
    CardPosition, CardPrinter, MagTracks, PanelImage, PrinterError, PrinterStatus, StagedCard,
};
use tokio::sync::mpsc::UnboundedSender;

pub use device::{open_device, open_halves, DeviceSpec, Halves};
use link::{is_read, Ahead, Line, Link, Sent};
pub use model::{ModelProfile, Timeouts};
pub use protocol::{error_for_reply, frame, CommandClass};

/// A byte stream to a printer.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// An Evolis printer on a byte stream.
pub struct EvolisPrinter {
    link: Link,
    model: ModelProfile,
    /// Ribbon type sent with `Pr` before printing.
    pub ribbon: String,
    /// What the printer's bitmap memory holds, as far as this driver knows.
    staged: Option<Staged>,
    /// The printer answered a download as an unknown command, or not the way a download
    /// is answered: no staging from now on.
    memory_unsupported: bool,
    /// A download went to the printer since its memory was last emptied (a reset
    /// answered, a card ejected or rejected): it may hold a face even when `staged` was
    /// forgotten, until the next reset.
    memory_used: bool,
    /// Key of the panel digests (per driver, random): a digest of a face showing a PAN
    /// is worth nothing outside this process.
    digest_key: std::collections::hash_map::RandomState,
}

/// Panels downloaded (or being downloaded) into the printer's memory.
struct Staged {
    card: StagedCard,
    digest: u64,
}

/// One thread for both directions: writes a command, reads its reply line, then the next.
fn io_worker(
    mut stream: Box<dyn Stream>,
    frames: mpsc::Receiver<Vec<u8>>,
    lines: UnboundedSender<Line>,
) {
    for f in frames {
        let r = stream
            .write_all(&f)
            .and_then(|_| stream.flush())
            .and_then(|_| read_line(&mut stream, &|| false));
        let end = r.is_err();
        if lines.send(r).is_err() || end {
            return;
        }
    }
}

/// Writes commands in order as they come, without waiting for replies: a command may
/// follow another before that one is answered.
fn writer_worker(
    mut w: Box<dyn Write + Send>,
    frames: mpsc::Receiver<Vec<u8>>,
    lines: UnboundedSender<Line>,
) {
    for f in frames {
        if let Err(e) = w.write_all(&f).and_then(|_| w.flush()) {
            let _ = lines.send(Err(e));
            return;
        }
    }
}

/// Reads the printer's reply lines as they come; the driver matches them to commands.
fn reader_worker(mut r: Box<dyn Read + Send>, lines: UnboundedSender<Line>) {
    loop {
        let l = read_line(&mut r, &|| lines.is_closed());
        let end = l.is_err();
        if lines.send(l).is_err() || end {
            return;
        }
    }
}

/// Reads one reply line (up to CR), skipping a leading LF left from a CR LF ending.
/// `gone` is asked on each read timeout: the driver went away.
fn read_line<R: Read + ?Sized>(stream: &mut R, gone: &dyn Fn() -> bool) -> std::io::Result<String> {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match stream.read(&mut b) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "printer closed the link",
                ))
            }
            Ok(_) => match b[0] {
                b'\r' => break,
                b'\n' if out.is_empty() => {}
                c => out.push(c),
            },
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                if gone() {
                    return Err(std::io::Error::other("printer driver closed"));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if out.len() > 64 * 1024 {
            return Err(std::io::Error::other("reply line too long"));
        }
    }
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

impl EvolisPrinter {
    /// Drives a printer of the given model over `stream` (its own thread), strictly one
    /// command at a time: each command goes out once the one before it is answered. A
    /// reply that never comes holds the thread until it does (the commands after it wait).
    pub fn new(stream: Box<dyn Stream>, model: ModelProfile) -> Self {
        let (tx, rx) = mpsc::channel();
        let (lines_tx, lines_rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("evolis".into())
            .spawn(move || io_worker(stream, rx, lines_tx))
            .expect("spawn printer thread");
        Self::with_link(Link::new(tx, lines_rx), model)
    }

    /// Drives a printer over the two ends of its link (a writer and a reader thread), so
    /// a panel download can follow a card move on the link before the move is answered.
    pub fn new_split(
        reader: Box<dyn Read + Send>,
        writer: Box<dyn Write + Send>,
        model: ModelProfile,
    ) -> Self {
        let (tx, rx) = mpsc::channel();
        let (lines_tx, lines_rx) = tokio::sync::mpsc::unbounded_channel();
        let to_reader = lines_tx.clone();
        std::thread::Builder::new()
            .name("evolis-write".into())
            .spawn(move || writer_worker(writer, rx, lines_tx))
            .expect("spawn printer thread");
        std::thread::Builder::new()
            .name("evolis-read".into())
            .spawn(move || reader_worker(reader, to_reader))
            .expect("spawn printer thread");
        Self::with_link(Link::new(tx, lines_rx), model)
    }

    fn with_link(link: Link, model: ModelProfile) -> Self {
        let ribbon = model.ribbons.first().cloned().unwrap_or_else(|| "k".into());
        EvolisPrinter {
            link,
            model,
            ribbon,
            staged: None,
            memory_unsupported: false,
            memory_used: false,
            digest_key: Default::default(),
        }
    }

    /// Opens a device (`/dev/ttyUSB0`, `/dev/usb/lp0`, `tcp://host:port`) and picks the
    /// model profile by name, or by asking the printer (`Rtp`) when none is given.
    pub async fn open(device: &str, model: Option<&str>) -> Result<Self, PrinterError> {
        let (reader, writer) = open_halves(&DeviceSpec::parse(device))?;
        let provisional = ModelProfile::builtin()
            .into_iter()
            .next()
            .expect("at least one built-in model");
        let mut p = EvolisPrinter::new_split(reader, writer, provisional);
        let profile = match model {
            Some(name) => {
                ModelProfile::find(name).ok_or_else(|| PrinterError::UnknownModel(name.into()))?
            }
            None => {
                let rtp = p.command("Rtp", CommandClass::Status).await?;
                ModelProfile::for_reported_model(&rtp)
            }
        };
        p.ribbon = profile
            .ribbons
            .first()
            .cloned()
            .unwrap_or_else(|| "k".into());
        p.model = profile;
        Ok(p)
    }

    /// The model profile in use.
    pub fn model(&self) -> &ModelProfile {
        &self.model
    }

    fn timeout(&self, class: CommandClass) -> Duration {
        self.model.timeouts_ms.for_class(class)
    }

    /// Makes the link ready for a command, resynchronising it if it is out of step.
    async fn ready(&mut self) -> Result<(), PrinterError> {
        let status = self.timeout(CommandClass::Status);
        self.link.check(status);
        if self.link.out_of_step() {
            // Whatever was on its way to the printer's memory is in doubt.
            self.staged = None;
        }
        self.link.ready(status).await
    }

    /// Sends one command and returns the printer's reply line; `ERR` replies become
    /// typed errors. `shown` is how the command appears in errors (no card data). Any
    /// error makes the driver forget what the printer's memory holds.
    async fn exchange(
        &mut self,
        cmd: &str,
        shown: &str,
        class: CommandClass,
    ) -> Result<String, PrinterError> {
        self.settle_ahead().await;
        let r = self.exchange_now(cmd, shown, class).await;
        if r.is_err() {
            self.staged = None;
        }
        r
    }

    async fn exchange_now(
        &mut self,
        cmd: &str,
        shown: &str,
        class: CommandClass,
    ) -> Result<String, PrinterError> {
        let attempts = if class == CommandClass::Status && is_read(cmd) {
            2
        } else {
            1
        };
        let mut last = None;
        for _ in 0..attempts {
            if let Err(e) = self.ready().await {
                return Err(last.unwrap_or(e));
            }
            self.link.send(cmd, shown, self.timeout(class), None)?;
            match self.link.reply().await {
                Ok(reply) => {
                    return match error_for_reply(shown, &reply) {
                        Some(e) => Err(e),
                        None => Ok(reply),
                    }
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| PrinterError::Offline("no answer".into())))
    }

    /// Collects the replies of commands sent ahead (a staging download, a reset). A
    /// refused or unanswered download is forgotten (the panels then go with the print);
    /// one the printer does not know, or does not answer the way a download is
    /// answered, turns staging off for this printer.
    async fn settle_ahead(&mut self) {
        while let Some(sent) = self.link.oldest().cloned() {
            let failed = match self.link.reply().await {
                Ok(line) => match error_for_reply(&sent.shown, &line) {
                    None => {
                        if sent.ahead == Some(Ahead::Reset) && !self.link.pending_download() {
                            self.memory_used = false;
                        }
                        continue;
                    }
                    Some(e) => e,
                },
                Err(e) => e,
            };
            self.ahead_failed(&sent, failed);
        }
        if self.link.out_of_step() {
            self.staged = None;
        }
    }

    fn ahead_failed(&mut self, sent: &Sent, e: PrinterError) {
        match sent.ahead {
            Some(Ahead::Download(digest)) => {
                let unknown = matches!(&e, PrinterError::Protocol { reply, .. } if reply == "command not understood");
                // A reply lost or late says nothing about the command: only one that
                // says "unknown command", or does not fit a download, turns staging off.
                if (unknown || self.link.misfit()) && !self.memory_unsupported {
                    tracing::warn!(
                        error = %e,
                        "the printer does not take panel downloads; staging turned off, \
                         panels go with the print"
                    );
                    self.memory_unsupported = true;
                }
                if let Some(s) = self.staged.take_if(|s| s.digest == digest) {
                    tracing::warn!(
                        operation_id = %s.card.operation_id,
                        error = %e,
                        "panels not staged in the printer; they go with the print"
                    );
                }
            }
            Some(Ahead::Reset) => {
                tracing::warn!(error = %e, "the printer's memory was not reset");
            }
            Some(Ahead::Ignored) | None => {}
        }
    }

    /// A digest of panels, keyed per driver (see `digest_key`).
    fn digest(&self, panels: &[PanelImage]) -> u64 {
        let mut h = self.digest_key.build_hasher();
        for p in panels {
            (p.side as u8, &p.panel, p.width, p.height, p.bits_per_dot).hash(&mut h);
            p.data.hash(&mut h);
        }
        h.finish()
    }

    /// Queues the ribbon and one `Dbm` per panel on the link without awaiting them, and
    /// records them as staged for `card`.
    fn queue_download(
        &mut self,
        card: &StagedCard,
        panels: &[PanelImage],
        digest: u64,
    ) -> Result<(), PrinterError> {
        let ahead = Some(Ahead::Download(digest));
        let pr = format!("Pr;{}", self.ribbon);
        self.link
            .send(&pr, &pr, self.timeout(CommandClass::Status), ahead)?;
        for p in panels {
            let data = base64::engine::general_purpose::STANDARD.encode(&p.data);
            let cmd = format!("Dbm;{};{};{}", p.panel, p.bits_per_dot, data);
            let shown = format!(
                "Dbm;{};{};<bitmap {} bytes>",
                p.panel,
                p.bits_per_dot,
                p.data.len()
            );
            self.link
                .send(&cmd, &shown, self.timeout(CommandClass::Print), ahead)?;
        }
        self.staged = Some(Staged {
            card: card.clone(),
            digest,
        });
        self.memory_used = true;
        Ok(())
    }

    /// Empties the printer's memory when it may hold a face the driver no longer
    /// accounts for (a download forgotten after an error). Sent only when no card is
    /// inside (before a feed, when the line discards or stops); a failure is logged and
    /// the reset tried again at the next such moment.
    async fn reset_forgotten_memory(&mut self) {
        if !self.memory_used || self.staged.is_some() {
            return;
        }
        match self.command("Srs", CommandClass::Move).await {
            Ok(_) => self.memory_used = false,
            Err(e) => tracing::warn!(error = %e, "the printer's memory was not reset"),
        }
    }

    /// Sends panels with the print: ribbon, then one `Db` per panel.
    async fn download_and_print(&mut self, panels: &[PanelImage]) -> Result<(), PrinterError> {
        let pr = format!("Pr;{}", self.ribbon);
        self.command(&pr, CommandClass::Status).await?;
        for p in panels {
            let data = base64::engine::general_purpose::STANDARD.encode(&p.data);
            let cmd = format!("Db;{};{};{}", p.panel, p.bits_per_dot, data);
            let shown = format!(
                "Db;{};{};<bitmap {} bytes>",
                p.panel,
                p.bits_per_dot,
                p.data.len()
            );
            self.exchange(&cmd, &shown, CommandClass::Print).await?;
        }
        Ok(())
    }

    /// Reads the park's reply and the position read sent behind it (see `park_and_stage`).
    async fn parked(&mut self) -> Result<(), PrinterError> {
        let sis = self.link.reply().await?;
        if let Some(e) = error_for_reply("Sis", &sis) {
            // Nobody needs the position read behind the failed park any more.
            self.link.set_ahead(0, Ahead::Ignored);
            return Err(e);
        }
        let at = self.link.reply().await?;
        if position(&at) != CardPosition::AtChipStation {
            // An `OK` that was not the park's (its reply lost, another taken in its place)
            // or a card elsewhere: either way nobody knows where the card is.
            self.link.lose_step(self.timeout(CommandClass::Move));
            return Err(PrinterError::Offline(
                "Sis: the printer does not report the card at the chip station after the \
                 park; outcome unknown"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Sends a command that carries no card data.
    pub async fn command(
        &mut self,
        cmd: &str,
        class: CommandClass,
    ) -> Result<String, PrinterError> {
        let shown = cmd.to_string();
        self.exchange(cmd, &shown, class).await
    }
}

fn position(reply: &str) -> CardPosition {
    match reply.trim().to_ascii_uppercase().as_str() {
        "SMART CARD" => CardPosition::AtChipStation,
        "CONTACTLESS CARD" => CardPosition::AtContactlessStation,
        "CARD" => CardPosition::InPrinter,
        _ => CardPosition::NoCard,
    }
}

#[async_trait]
impl CardPrinter for EvolisPrinter {
    async fn status(&mut self) -> Result<PrinterStatus, PrinterError> {
        let model = self.command("Rtp", CommandClass::Status).await?;
        let firmware = self.command("Rfv", CommandClass::Status).await?;
        let serial_number = self.command("Rsn", CommandClass::Status).await?;
        let pos = self.command("Rlr;p", CommandClass::Status).await?;
        let sensors = self.command("Rse;f", CommandClass::Status).await?;
        let faults = protocol::faults_from_sensors(&sensors);
        let ribbon = self
            .command("Rse;r", CommandClass::Status)
            .await
            .ok()
            .and_then(|r| r.trim().parse().ok());
        let feeder = self
            .command("Rse;k", CommandClass::Status)
            .await
            .ok()
            .and_then(|r| r.trim().parse().ok());
        Ok(PrinterStatus {
            model,
            firmware,
            serial_number,
            position: position(&pos),
            ready: faults.iter().all(|f| *f == PrinterError::RibbonNearEnd),
            faults,
            ribbon_remaining: ribbon,
            feeder_cards: feeder,
        })
    }

    async fn feed(&mut self) -> Result<(), PrinterError> {
        self.settle_ahead().await;
        self.reset_forgotten_memory().await;
        self.command("Ss", CommandClass::Move).await.map(|_| ())
    }

    async fn park_at_chip_station(&mut self) -> Result<(), PrinterError> {
        if !self.model.chip_station {
            return Err(PrinterError::Protocol {
                command: "Sis".into(),
                reply: format!("{} has no contact chip station", self.model.name),
            });
        }
        self.command("Sis", CommandClass::Move).await.map(|_| ())
    }

    async fn stage_panels(
        &mut self,
        card: &StagedCard,
        panels: &[PanelImage],
    ) -> Result<(), PrinterError> {
        if !self.model.download_ahead || self.memory_unsupported {
            return Ok(());
        }
        let digest = self.digest(panels);
        if let Some(s) = self.staged.as_mut().filter(|s| s.digest == digest) {
            // The printer holds (or is receiving) exactly these panels already.
            s.card = card.clone();
            return Ok(());
        }
        // A download of other panels still on the link finishes first (nothing can be
        // taken back from a serial line); its reply no longer matters.
        self.staged = None;
        self.link.check(self.timeout(CommandClass::Status));
        if self.link.out_of_step() {
            // Staging only saves time: the next command resynchronises the link and the
            // panels go with the print.
            return Ok(());
        }
        self.queue_download(card, panels, digest)
    }

    async fn park_and_stage(
        &mut self,
        card: &StagedCard,
        panels: &[PanelImage],
    ) -> Result<(), PrinterError> {
        let digest = self.digest(panels);
        let already = self.staged.as_ref().is_some_and(|s| s.digest == digest);
        if !self.model.chip_station
            || !self.model.download_ahead
            || self.memory_unsupported
            || already
        {
            self.park_at_chip_station().await?;
            return self.stage_panels(card, panels).await;
        }
        self.settle_ahead().await;
        self.staged = None;
        self.ready().await?;
        // The park goes first; the download follows it on the link at once and crosses
        // while the card moves. Between them a position read: replies carry nothing that
        // names their command, so if the park's reply were lost the download's `OK` would
        // pass for it; the position read's answer cannot.
        let (moving, reading) = (
            self.timeout(CommandClass::Move),
            self.timeout(CommandClass::Status),
        );
        self.link.send("Sis", "Sis", moving, None)?;
        self.link.send("Rlr;p", "Rlr;p", reading, None)?;
        self.queue_download(card, panels, digest)?;
        let parked = self.parked().await;
        if parked.is_err() {
            // The card fails; whatever the download did is never used.
            self.staged = None;
        }
        parked
    }

    fn staged(&self) -> Option<&StagedCard> {
        self.staged.as_ref().map(|s| &s.card)
    }

    async fn discard_staged(&mut self) -> Result<(), PrinterError> {
        self.staged = None;
        if !self.memory_used || self.link.pending(Ahead::Reset) {
            return Ok(());
        }
        self.link.check(self.timeout(CommandClass::Status));
        if self.link.out_of_step() {
            tracing::warn!(
                "printer link out of step: staged panels forgotten; the printer is reset once \
                 the link is back in step (before the next feed, or as the line stops)"
            );
            return Ok(());
        }
        // A reset empties the bitmap memory; only ever sent with no card inside. Queued
        // behind the download, not awaited: the line stays free to answer Start, and the
        // next command collects the reply.
        self.link.send(
            "Srs",
            "Srs",
            self.timeout(CommandClass::Move),
            Some(Ahead::Reset),
        )
    }

    async fn settle(&mut self) -> Result<(), PrinterError> {
        self.settle_ahead().await;
        // A reset that could not be queued (the link out of step) or that failed.
        self.reset_forgotten_memory().await;
        Ok(())
    }

    async fn print(&mut self, panels: &[PanelImage]) -> Result<(), PrinterError> {
        self.settle_ahead().await;
        let digest = self.digest(panels);
        let from_memory = self.staged.take().is_some_and(|s| s.digest == digest);
        if from_memory {
            for (i, p) in panels.iter().enumerate() {
                match self
                    .command(&format!("Spp;{}", p.panel), CommandClass::Print)
                    .await
                {
                    Ok(_) => {}
                    // The memory was lost since the download (the printer was switched off
                    // and on): nothing was printed by this command, so the rest is sent.
                    Err(PrinterError::Protocol { .. }) => {
                        tracing::warn!(
                            panel = %p.panel,
                            "staged panel no longer in the printer's memory; sending it with the print"
                        );
                        return self.download_and_print(&panels[i..]).await;
                    }
                    Err(e) => return Err(e),
                }
            }
            return Ok(());
        }
        self.download_and_print(panels).await
    }

    async fn write_magstripe(&mut self, tracks: &MagTracks) -> Result<(), PrinterError> {
        if !self.model.magstripe {
            return Err(PrinterError::Protocol {
                command: "Smw".into(),
                reply: format!("{} has no magstripe encoder", self.model.name),
            });
        }
        self.command("Pmc;h", CommandClass::Status).await?;
        let list = [
            (1, &tracks.track1),
            (2, &tracks.track2),
            (3, &tracks.track3),
        ];
        for (n, t) in list {
            if let Some(t) = t {
                let cmd = zeroize::Zeroizing::new(format!("Dm;{n};{t}"));
                self.exchange(&cmd, &format!("Dm;{n};<redacted>"), CommandClass::Mag)
                    .await?;
            }
        }
        self.command("Smw", CommandClass::Mag).await?;
        for (n, t) in list {
            if let Some(t) = t {
                let back = zeroize::Zeroizing::new(
                    self.exchange(&format!("Smr;{n}"), &format!("Smr;{n}"), CommandClass::Mag)
                        .await?,
                );
                if back.as_str() != t.as_str() {
                    return Err(PrinterError::MagVerify(format!(
                        "track {n} read back differs from what was written"
                    )));
                }
            }
        }
        Ok(())
    }

    async fn eject(&mut self) -> Result<(), PrinterError> {
        let r = self.command("Se", CommandClass::Print).await.map(|_| ());
        // The printer's memory belongs to the card that left, and leaves with it.
        self.staged = None;
        if r.is_ok() {
            self.memory_used = false;
        }
        r
    }

    async fn reject(&mut self) -> Result<(), PrinterError> {
        let r = self.command("Ser", CommandClass::Move).await.map(|_| ());
        self.staged = None;
        if r.is_ok() {
            self.memory_used = false;
        }
        r
    }

    async fn clear_fault(&mut self) -> Result<(), PrinterError> {
        let r = self.command("Scs", CommandClass::Status).await.map(|_| ());
        self.staged = None;
        r
    }
}

/// Field diagnostics for an engineer installing a station.
pub mod diagnostics {
    use super::*;

    /// Model, firmware, serial number, card position and faults, in words.
    pub async fn status_report(device: &str, model: Option<&str>) -> Result<String, PrinterError> {
        let mut p = EvolisPrinter::open(device, model).await?;
        let s = p.status().await?;
        let faults = if s.faults.is_empty() {
            "none".to_string()
        } else {
            s.faults
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        Ok(format!(
            "model: {}\nprofile: {}\nfirmware: {}\nserial number: {}\ncard position: {}\nready: {}\nfaults: {}\nribbon remaining: {}\nfeeder: {}\n",
            s.model,
            p.model().name,
            s.firmware,
            s.serial_number,
            match s.position {
                CardPosition::NoCard => "no card",
                CardPosition::InPrinter => "card in the printer",
                CardPosition::AtChipStation => "card at the contact chip station",
                CardPosition::AtContactlessStation => "card at the contactless station",
            },
            if s.ready { "yes" } else { "no" },
            faults,
            s.ribbon_remaining.map(|r| r.to_string()).unwrap_or("unknown".into()),
            s.feeder_cards.map(|r| format!("{r} cards")).unwrap_or("unknown".into()),
        ))
    }

    /// Feeds a card, parks it at the chip station, then ejects it (or rejects it).
    pub async fn test_card(
        device: &str,
        model: Option<&str>,
        reject: bool,
    ) -> Result<(), PrinterError> {
        let mut p = EvolisPrinter::open(device, model).await?;
        p.feed().await?;
        if let Err(e) = p.park_at_chip_station().await {
            let _ = p.reject().await;
            return Err(e);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if reject {
            p.reject().await
        } else {
            p.eject().await
        }
    }
}
