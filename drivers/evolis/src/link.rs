//! The command/reply link to the printer, and keeping it in step.
//!
//! Replies carry nothing that names their command: the only way to match a reply line to
//! a command is by position (the printer answers in order, one line per command). A reply
//! that never comes (serial noise, a firmware that ignores a command silently) or comes
//! after its command was given up would shift every later reply onto the wrong command.
//! So any reply not read in time, any reply whose form does not fit its command (an `OK`
//! command answered by a value), and any line nobody asked for puts the link *out of
//! step*: the commands still waiting are dropped with an error that says their outcome is
//! unknown, and before the next command goes out the link is resynchronised — a serial
//! number read (`Rsn`) is sent and every line is discarded until its answer, the printer's
//! serial number, has come back as many times as `Rsn` was sent unanswered. The printer
//! acts on commands in order, so every late reply comes before that answer. When the
//! serial number is not known yet, the link waits until the printer has been silent for
//! as long as the commands given up could take, then reads it.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::Duration;

use station_hal::PrinterError;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::protocol::frame;

/// A reply line from the printer, or the link's I/O error.
pub(crate) type Line = std::io::Result<String>;

/// What a command sent ahead (not awaited by its sender) was for, so its reply can be
/// dealt with when it is collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ahead {
    /// Part of a panel download (ribbon or bitmap) of the panels with this digest.
    Download(u64),
    /// A reset emptying the printer's memory.
    Reset,
    /// A command whose reply nobody needs any more (a position read behind a park that
    /// failed).
    Ignored,
}

/// A command on the link whose reply has not been read.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    /// How the command appears in errors (no card data).
    pub shown: String,
    /// An action answered `OK` or `ERR …` (any other reply means the link is out of step),
    /// rather than a read answered by a value.
    action: bool,
    /// The serial number read (its answer is the resynchronisation marker).
    serial_read: bool,
    /// How long the printer may take with it.
    timeout: Duration,
    /// Sent ahead: whose reply it is, when nobody awaits it.
    pub ahead: Option<Ahead>,
}

/// The command/reply link: frames go to the writer thread, reply lines come from the
/// reader thread, and this matches them.
pub(crate) struct Link {
    frames: mpsc::Sender<Vec<u8>>,
    lines: UnboundedReceiver<Line>,
    /// Commands written whose reply has not been read, oldest first.
    unanswered: VecDeque<Sent>,
    /// A reply was lost, late, or did not fit: resynchronise before the next command.
    out_of_step: bool,
    /// The printer's answer to `Rsn`, once read while the link was in step.
    serial: Option<String>,
    /// `Rsn` commands on the link whose answer has not been seen (given up, or markers).
    serials_due: u32,
    /// How long the commands given up when the link went out of step could still take.
    given_up_for: Duration,
}

impl Link {
    /// A link over the writer's frame queue and the reader's line queue.
    pub fn new(frames: mpsc::Sender<Vec<u8>>, lines: UnboundedReceiver<Line>) -> Self {
        Link {
            frames,
            lines,
            unanswered: VecDeque::new(),
            out_of_step: false,
            serial: None,
            serials_due: 0,
            given_up_for: Duration::ZERO,
        }
    }

    /// The oldest command still waiting for its reply.
    pub fn oldest(&self) -> Option<&Sent> {
        self.unanswered.front()
    }

    /// Whether the link must be resynchronised before the next command.
    pub fn out_of_step(&self) -> bool {
        self.out_of_step
    }

    /// Looks for a line nobody asked for (a reply that came after its command was given
    /// up, noise): it puts the link out of step.
    pub fn check(&mut self, status_timeout: Duration) {
        if !self.unanswered.is_empty() {
            return;
        }
        while let Ok(line) = self.lines.try_recv() {
            tracing::warn!(
                io_error = line.is_err(),
                "printer sent a reply no command was waiting for; resynchronising the link"
            );
            self.lose_step(status_timeout);
        }
    }

    /// Makes the link ready for a new command: a link out of step is resynchronised
    /// (waiting for the printer).
    pub async fn ready(&mut self, status_timeout: Duration) -> Result<(), PrinterError> {
        if self.out_of_step {
            self.resync(status_timeout).await?;
        }
        Ok(())
    }

    /// Writes one command; its reply is read by [`Link::reply`] in order. The caller has
    /// made the link [`Link::ready`].
    pub fn send(
        &mut self,
        cmd: &str,
        shown: &str,
        timeout: Duration,
        ahead: Option<Ahead>,
    ) -> Result<(), PrinterError> {
        if self.out_of_step {
            return Err(PrinterError::Offline(format!(
                "{shown}: not sent, the printer link is out of step"
            )));
        }
        let name = cmd.split(';').next().unwrap_or_default();
        let read = name.starts_with('R') || name == "Smr";
        self.frames
            .send(frame(cmd))
            .map_err(|_| PrinterError::Offline("printer thread stopped".into()))?;
        self.unanswered.push_back(Sent {
            shown: shown.to_string(),
            action: !read,
            serial_read: name == "Rsn",
            timeout,
            ahead,
        });
        Ok(())
    }

    /// Marks what the oldest unanswered command is for (its sender no longer awaits it).
    pub fn set_ahead(&mut self, index: usize, ahead: Ahead) {
        if let Some(s) = self.unanswered.get_mut(index) {
            s.ahead = Some(ahead);
        }
    }

    /// Reads the reply of the oldest unanswered command, within its timeout. A reply not
    /// read in time, an I/O error, or a reply that does not fit its command puts the link
    /// out of step and answers "outcome unknown": the command may have been done.
    pub async fn reply(&mut self) -> Result<String, PrinterError> {
        let Some(sent) = self.unanswered.front().cloned() else {
            return Err(PrinterError::Offline(
                "no command waiting for a reply".into(),
            ));
        };
        let shown = &sent.shown;
        match tokio::time::timeout(sent.timeout, self.lines.recv()).await {
            Err(_) => {
                self.lose_step(sent.timeout);
                Err(PrinterError::Offline(format!(
                    "{shown}: no answer within {} s; outcome unknown",
                    sent.timeout.as_secs_f64()
                )))
            }
            Ok(None) => {
                self.lose_step(sent.timeout);
                Err(PrinterError::Offline("printer thread stopped".into()))
            }
            Ok(Some(Err(io))) => {
                self.lose_step(sent.timeout);
                Err(PrinterError::Offline(format!(
                    "{shown}: {io}; outcome unknown"
                )))
            }
            Ok(Some(Ok(line))) => {
                self.unanswered.pop_front();
                if sent.action && line != "OK" && !line.starts_with("ERR") {
                    self.lose_step(sent.timeout);
                    return Err(PrinterError::Offline(format!(
                        "{shown}: the reply does not fit the command (the printer link was out \
                         of step); outcome unknown"
                    )));
                }
                if sent.serial_read && self.serial.is_none() {
                    self.serial = Some(line.clone());
                }
                Ok(line)
            }
        }
    }

    /// Gives up every command still waiting: their replies, if they come, are discarded
    /// by the next resynchronisation.
    pub fn lose_step(&mut self, at_least: Duration) {
        self.out_of_step = true;
        let longest = self.unanswered.iter().map(|s| s.timeout).max();
        self.given_up_for = self
            .given_up_for
            .max(at_least)
            .max(longest.unwrap_or_default());
        self.serials_due += self.unanswered.iter().filter(|s| s.serial_read).count() as u32;
        self.unanswered.clear();
    }

    /// Brings the link back in step (see the module documentation).
    async fn resync(&mut self, status_timeout: Duration) -> Result<(), PrinterError> {
        let wait = self.given_up_for.max(status_timeout);
        let Some(serial) = self.serial.clone() else {
            // Nothing recognisable to wait for: wait until the printer is silent for as
            // long as the commands given up could take, then learn its serial number.
            loop {
                match tokio::time::timeout(wait, self.lines.recv()).await {
                    Err(_) => break,
                    Ok(Some(Ok(_))) => continue,
                    Ok(Some(Err(io))) => {
                        return Err(PrinterError::Offline(format!("printer link: {io}")))
                    }
                    Ok(None) => return Err(PrinterError::Offline("printer thread stopped".into())),
                }
            }
            self.serials_due = 0;
            self.out_of_step = false;
            self.given_up_for = Duration::ZERO;
            self.send("Rsn", "Rsn", status_timeout, None)?;
            self.reply().await?;
            tracing::warn!("printer link resynchronised after a lost or late reply");
            return Ok(());
        };
        self.frames
            .send(frame("Rsn"))
            .map_err(|_| PrinterError::Offline("printer thread stopped".into()))?;
        self.serials_due += 1;
        let deadline = tokio::time::Instant::now() + wait + status_timeout;
        let mut heard = false;
        while self.serials_due > 0 {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Err(_) => {
                    if !heard {
                        // Not a line in all that time: nothing is still on its way, the
                        // answers counted were lost. The next try starts afresh.
                        self.serials_due = 0;
                    }
                    return Err(PrinterError::Offline(format!(
                        "the printer link is out of step and the printer did not answer the \
                         resynchronisation within {} s",
                        (wait + status_timeout).as_secs_f64()
                    )));
                }
                Ok(Some(Ok(line))) => {
                    heard = true;
                    if line == serial {
                        self.serials_due -= 1;
                    }
                }
                Ok(Some(Err(io))) => {
                    return Err(PrinterError::Offline(format!("printer link: {io}")))
                }
                Ok(None) => return Err(PrinterError::Offline("printer thread stopped".into())),
            }
        }
        self.out_of_step = false;
        self.given_up_for = Duration::ZERO;
        tracing::warn!("printer link resynchronised after a lost or late reply");
        Ok(())
    }
}
