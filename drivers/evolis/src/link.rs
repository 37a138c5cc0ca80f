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
//! acts on commands in order, so every late reply comes before that answer. Since that
//! `Rsn` is the last command sent, a serial number followed by silence (as long as the
//! commands given up could take) also means the link is in step: the other `Rsn` answers
//! counted were lost. When the serial number is not known yet, the link waits until the
//! printer has been silent for as long as the commands given up could take (a printer
//! that keeps sending lines for twice that and a status read's time is offline), then reads
//! it. A serial number is learnt only from two `Rsn` answers that agree, never from
//! `OK`, `ERR …` or an empty line.

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
    /// A plausible answer to `Rsn` read once: it becomes `serial` when the next agrees.
    serial_seen: Option<String>,
    /// `Rsn` commands on the link whose answer has not been seen (given up, or markers).
    serials_due: u32,
    /// The last [`Link::reply`] failed because the reply did not fit its command.
    misfit: bool,
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
            serial_seen: None,
            serials_due: 0,
            misfit: false,
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

    /// Whether the last reply read did not fit its command (a value answering an action,
    /// `OK` answering the serial number read), as against lost or late.
    pub fn misfit(&self) -> bool {
        self.misfit
    }

    /// Whether a command sent ahead for `what` is still waiting for its reply.
    pub fn pending(&self, what: Ahead) -> bool {
        self.unanswered.iter().any(|s| s.ahead == Some(what))
    }

    /// Whether a download sent ahead is still waiting for its reply.
    pub fn pending_download(&self) -> bool {
        self.unanswered
            .iter()
            .any(|s| matches!(s.ahead, Some(Ahead::Download(_))))
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
        let read = is_read(cmd);
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
        self.misfit = false;
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
                let fits = if sent.action {
                    line == "OK" || line.starts_with("ERR")
                } else {
                    // A serial number is never blank, nor an action's answer.
                    !sent.serial_read || !(line.is_empty() || line == "OK")
                };
                if !fits {
                    self.lose_step(sent.timeout);
                    self.misfit = true;
                    return Err(PrinterError::Offline(format!(
                        "{shown}: the reply does not fit the command (the printer link was out \
                         of step); outcome unknown"
                    )));
                }
                if sent.serial_read && !line.starts_with("ERR") {
                    self.learn_serial(&line);
                }
                Ok(line)
            }
        }
    }

    /// Learns the serial number once two answers to `Rsn` agree: one answer alone could
    /// be a late reply to another read.
    fn learn_serial(&mut self, line: &str) {
        if self.serial.is_some() {
            return;
        }
        if self.serial_seen.as_deref() == Some(line) {
            self.serial = Some(line.to_string());
        } else {
            self.serial_seen = Some(line.to_string());
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
        let deadline = tokio::time::Instant::now() + wait + status_timeout;
        let Some(serial) = self.serial.clone() else {
            // Nothing recognisable to wait for: wait until the printer is silent for as
            // long as the commands given up could take, then learn its serial number. A
            // late reply may come as late as that, and a full silence must still fit.
            let deadline = deadline + wait;
            loop {
                let quiet = (tokio::time::Instant::now() + wait).min(deadline);
                match tokio::time::timeout_at(quiet, self.lines.recv()).await {
                    Err(_) if quiet < deadline => break,
                    Err(_) => {
                        return Err(PrinterError::Offline(format!(
                            "the printer link is out of step and the printer kept sending \
                             lines for {} s",
                            (wait + wait + status_timeout).as_secs_f64()
                        )))
                    }
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
            // Two reads: the serial number is learnt when their answers agree.
            self.send("Rsn", "Rsn", status_timeout, None)?;
            self.send("Rsn", "Rsn", status_timeout, None)?;
            self.reply().await?;
            self.reply().await?;
            tracing::warn!("printer link resynchronised after a lost or late reply");
            return Ok(());
        };
        self.frames
            .send(frame("Rsn"))
            .map_err(|_| PrinterError::Offline("printer thread stopped".into()))?;
        self.serials_due += 1;
        // When the last line heard was a serial number, and when it came.
        let mut serial_last: Option<tokio::time::Instant> = None;
        while self.serials_due > 0 {
            let until = serial_last.map_or(deadline, |at| (at + wait).min(deadline));
            match tokio::time::timeout_at(until, self.lines.recv()).await {
                Err(_) => {
                    // Whatever happens the count starts afresh: answers counted and not
                    // heard by now were lost.
                    self.serials_due = 0;
                    if serial_last.is_some() {
                        // Our `Rsn` went last: its answer followed by silence is the end.
                        break;
                    }
                    return Err(PrinterError::Offline(format!(
                        "the printer link is out of step and the printer did not answer the \
                         resynchronisation within {} s",
                        (wait + status_timeout).as_secs_f64()
                    )));
                }
                Ok(Some(Ok(line))) => {
                    if line == serial {
                        self.serials_due -= 1;
                        serial_last = Some(tokio::time::Instant::now());
                    } else {
                        serial_last = None;
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

/// Whether a command only reads (`R…`, the magstripe read-back `Smr`): answered by a
/// value, and safe to send again.
pub(crate) fn is_read(cmd: &str) -> bool {
    let name = cmd.split(';').next().unwrap_or_default();
    name.starts_with('R') || name == "Smr"
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::UnboundedSender;

    /// A link whose printer is the test: it reads the frames written and sends lines.
    fn link() -> (Link, mpsc::Receiver<Vec<u8>>, UnboundedSender<Line>) {
        let (frames, written) = mpsc::channel();
        let (lines, received) = tokio::sync::mpsc::unbounded_channel();
        (Link::new(frames, received), written, lines)
    }

    const QUICK: Duration = Duration::from_millis(200);

    async fn read_serial(link: &mut Link, printer: &UnboundedSender<Line>, answer: &str) {
        link.send("Rsn", "Rsn", QUICK, None).unwrap();
        printer.send(Ok(answer.into())).unwrap();
        let _ = link.reply().await;
    }

    #[tokio::test]
    async fn an_ok_answering_the_serial_number_read_is_no_serial_number() {
        let (mut link, _written, printer) = link();
        for _ in 0..2 {
            read_serial(&mut link, &printer, "OK").await;
            assert!(link.misfit(), "an action's answer does not fit a read");
            assert!(link.out_of_step());
            link.out_of_step = false;
        }
        assert_eq!(link.serial, None);
    }

    #[tokio::test]
    async fn an_error_or_empty_answer_is_no_serial_number() {
        let (mut link, _written, printer) = link();
        for answer in ["ERR CDE", "ERR CDE", "", ""] {
            read_serial(&mut link, &printer, answer).await;
            link.out_of_step = false;
        }
        assert_eq!(link.serial, None);
    }

    #[tokio::test]
    async fn the_serial_number_is_learnt_once_two_answers_agree() {
        let (mut link, _written, printer) = link();
        read_serial(&mut link, &printer, "CARD").await;
        assert_eq!(link.serial, None, "one answer could be another read's");
        read_serial(&mut link, &printer, "A123").await;
        assert_eq!(link.serial, None, "it does not agree with the one before");
        read_serial(&mut link, &printer, "A123").await;
        assert_eq!(link.serial.as_deref(), Some("A123"));
    }

    #[tokio::test]
    async fn a_value_answering_an_action_is_a_misfit_and_a_silence_is_not() {
        let (mut link, _written, printer) = link();
        link.send("Dbm;k;1;AAAA", "Dbm", QUICK, None).unwrap();
        printer.send(Ok("CARD".into())).unwrap();
        assert!(link.reply().await.is_err());
        assert!(
            link.misfit(),
            "an action is answered OK or ERR, nothing else"
        );
        link.out_of_step = false;
        link.send("Dbm;k;1;AAAA", "Dbm", QUICK, None).unwrap();
        assert!(link.reply().await.is_err());
        assert!(
            !link.misfit(),
            "a reply not come says nothing of the command"
        );
    }
}
