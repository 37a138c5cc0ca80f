//! The issuance pipeline: one producer per printer/encoder pair (a line), one card at
//! a time on each.
//!
//! Two tasks share the journal: the preparer validates and decrypts received orders
//! and prepares their chip, stripe and face ahead of time (at most [`READY_AHEAD`]
//! held in memory), so the printer never waits on software; the producer moves one
//! card through feed → chip station → personalize → verify → print and stripe →
//! eject. Every state is written to the journal before the device step it
//! authorizes; any failure once a card is fed sends it to the reject box and reports
//! `CARD_PROD_EXCEPTION` with the reason; data problems report `DATA_EXCEPTION`
//! before any card moves.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use station_hal::{CardPrinter, ChipEncoder, PrinterError, StaffFacing};
use time::{Date, OffsetDateTime};
use tokio::sync::{broadcast, watch, Notify};

use super::production::{PreparedJob, Production, Refusal};
use super::state::JobState;
use crate::config::StartPolicy;
use crate::journal::{InsertOutcome, Journal, JournalError, NewJob, Resolution};

/// Prepared cards held in memory ahead of each printer.
pub const READY_AHEAD: usize = 2;

/// Printer problem staff see while a card of the line is in doubt.
const IN_DOUBT: &str =
    "A card is in doubt after a restart: check the printer, then confirm or spoil it.";

/// What staff must know about one line.
#[derive(Debug, Clone, Default)]
struct LineHealth {
    /// Last device problem, cleared by the next good feed.
    problem: Option<String>,
    /// A card of this line is in doubt.
    in_doubt: bool,
}

/// One step of one job, for the console and the demo's progress display.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Job.
    pub operation_id: String,
    /// State just entered.
    pub state: JobState,
    /// Masked PAN once known.
    pub masked_pan: Option<String>,
    /// Reason on exceptions.
    pub reason: Option<String>,
}

/// Why the pipeline could not go on (not a card problem: those end the job).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The journal failed: nothing may move without it.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// What a staff action did, in words for the console.
pub type ActionResult = Result<String, String>;

/// Shared state of a station: journal, queue wake-ups, staff starts, progress.
pub struct Station {
    /// The journal.
    pub journal: Arc<Journal>,
    /// Production set-up.
    pub production: Arc<Production>,
    /// Who starts cards.
    pub policy: StartPolicy,
    /// Orders staff have started, with who started them.
    started: Mutex<HashMap<String, String>>,
    ready: Mutex<HashMap<String, Arc<PreparedJob>>>,
    /// Jobs a line has taken and not finished (so no other line takes them).
    claimed: Mutex<HashSet<String>>,
    wake: Notify,
    progress: broadcast::Sender<Progress>,
    health: Mutex<BTreeMap<String, LineHealth>>,
    today: fn() -> Date,
}

fn utc_today() -> Date {
    OffsetDateTime::now_utc().date()
}

impl Station {
    /// A station over a journal and a production set-up.
    pub fn new(
        journal: Arc<Journal>,
        production: Arc<Production>,
        policy: StartPolicy,
    ) -> Arc<Self> {
        let (progress, _) = broadcast::channel(1024);
        Arc::new(Station {
            journal,
            production,
            policy,
            started: Mutex::new(HashMap::new()),
            ready: Mutex::new(HashMap::new()),
            claimed: Mutex::new(HashSet::new()),
            wake: Notify::new(),
            progress,
            health: Mutex::new(BTreeMap::new()),
            today: utc_today,
        })
    }

    /// Progress events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Each line with the printer problem staff must fix, if any.
    pub fn lines(&self) -> Vec<(String, Option<String>)> {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, h)| {
                let problem = if h.in_doubt {
                    Some(IN_DOUBT.to_string())
                } else {
                    h.problem.clone()
                };
                (name.clone(), problem)
            })
            .collect()
    }

    /// The first printer problem staff must fix on any line, if any.
    pub fn printer_problem(&self) -> Option<String> {
        self.lines().into_iter().find_map(|(_, p)| p)
    }

    fn with_health(&self, line: &str, f: impl FnOnce(&mut LineHealth)) {
        f(self
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(line.to_string())
            .or_default());
    }

    fn set_printer_problem(&self, line: &str, p: Option<String>) {
        self.with_health(line, |h| h.problem = p);
    }

    fn emit(
        &self,
        operation_id: &str,
        state: JobState,
        masked_pan: Option<String>,
        reason: Option<String>,
    ) {
        let _ = self.progress.send(Progress {
            operation_id: operation_id.to_string(),
            state,
            masked_pan,
            reason,
        });
    }

    fn transition(&self, op: &str, to: JobState, reason: Option<&str>) -> Result<(), JournalError> {
        self.transition_by(op, to, reason, "agent")
    }

    fn transition_by(
        &self,
        op: &str,
        to: JobState,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<(), JournalError> {
        let job = self.journal.transition_by(op, to, reason, actor)?;
        self.emit(op, to, job.masked_pan, reason.map(str::to_string));
        Ok(())
    }

    /// Journals an order from the hub (idempotent on operationId) and wakes the pipeline.
    pub fn intake(&self, job: NewJob) -> Result<InsertOutcome, JournalError> {
        let op = job.operation_id.clone();
        let outcome = self.journal.insert_order(&job)?;
        if outcome == InsertOutcome::Created {
            self.emit(&op, JobState::Received, None, None);
            self.wake.notify_waiters();
        }
        Ok(outcome)
    }

    /// Staff start a card waiting for them; the feed is journaled as theirs.
    pub fn start(&self, op: &str, staff: &str) -> ActionResult {
        match self.journal.job(op) {
            Ok(Some(j)) if j.state == JobState::WaitingForStaff => {
                self.started
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(op.to_string(), staff.to_string());
                self.wake.notify_waiters();
                Ok("Card started.".into())
            }
            Ok(Some(j)) => Err(format!(
                "This card cannot be started now ({}).",
                j.state.label()
            )),
            _ => Err("No such card.".into()),
        }
    }

    /// Staff handed the card over to the customer.
    pub fn hand_over(&self, op: &str, staff: &str) -> ActionResult {
        self.transition_by(
            op,
            JobState::HandedOver,
            Some("handed over at the counter"),
            staff,
        )
        .map(|_| "Handed over.".to_string())
        .map_err(|e| e.to_string())
    }

    /// Staff cancel a card that has not started.
    pub fn cancel(&self, op: &str, staff: &str) -> ActionResult {
        self.ready_remove(op);
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(op);
        self.transition_by(op, JobState::Cancelled, Some("cancelled by staff"), staff)
            .map(|_| "Cancelled.".to_string())
            .map_err(|e| e.to_string())
    }

    /// Staff decide on a card left in doubt by a restart.
    pub fn resolve(&self, op: &str, resolution: Resolution, staff: &str) -> ActionResult {
        let j = self
            .journal
            .resolve_in_doubt(op, resolution, staff)
            .map_err(|e| e.to_string())?;
        self.emit(op, j.state, j.masked_pan, j.reason);
        // Its line re-checks for cards in doubt and goes on when none is left.
        self.wake.notify_waiters();
        Ok(match resolution {
            Resolution::Confirm => "Card confirmed as good.".into(),
            Resolution::Spoil => "Card recorded as spoiled.".into(),
        })
    }

    fn ready_remove(&self, op: &str) -> Option<Arc<PreparedJob>> {
        self.ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(op)
    }

    fn ready_len(&self) -> usize {
        self.ready.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    async fn prepare_job(&self, order: serde_json::Value) -> Result<PreparedJob, Refusal> {
        let production = self.production.clone();
        let today = (self.today)();
        tokio::task::spawn_blocking(move || production.prepare(&order, today))
            .await
            .unwrap_or_else(|e| {
                Err(Refusal::new(
                    "INTERNAL_ERROR",
                    format!("preparation task: {e}"),
                ))
            })
    }

    /// One pass of the preparer: validates every received order and keeps the first
    /// few prepared. Returns whether it did anything.
    async fn prepare_pass(&self) -> Result<bool, PipelineError> {
        let mut did = false;
        for job in self.journal.jobs(&[JobState::Received])? {
            did = true;
            match self.prepare_job(job.order_json.clone()).await {
                Ok(p) => {
                    self.journal
                        .set_masked_pan(&job.operation_id, &p.masked_pan)?;
                    self.transition(&job.operation_id, JobState::Validated, None)?;
                    if self.policy == StartPolicy::Staff {
                        self.transition(&job.operation_id, JobState::WaitingForStaff, None)?;
                    }
                    if self.ready_len() < READY_AHEAD {
                        self.ready
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(job.operation_id.clone(), Arc::new(p));
                    }
                }
                Err(r) => {
                    tracing::warn!(operation_id = %job.operation_id, code = %r.code, "order refused");
                    self.transition(&job.operation_id, JobState::Failed, Some(&r.to_string()))?;
                }
            }
        }
        // Top up the prepared cards of jobs next in line.
        let next = self.runnable()?;
        for job in next.into_iter().take(READY_AHEAD) {
            if self.ready_len() >= READY_AHEAD {
                break;
            }
            let has = self
                .ready
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&job.operation_id);
            if !has {
                if let Ok(p) = self.prepare_job(job.order_json.clone()).await {
                    self.ready
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(job.operation_id.clone(), Arc::new(p));
                    did = true;
                }
            }
        }
        Ok(did)
    }

    /// Jobs the producer may take, oldest first.
    fn runnable(&self) -> Result<Vec<crate::journal::Job>, JournalError> {
        Ok(match self.policy {
            StartPolicy::Automatic => self.journal.jobs(&[JobState::Validated])?,
            StartPolicy::Staff => {
                let started = self
                    .started
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                self.journal
                    .jobs(&[JobState::WaitingForStaff])?
                    .into_iter()
                    .filter(|j| started.contains_key(&j.operation_id))
                    .collect()
            }
        })
    }

    /// Runs the preparer until `stop`.
    pub async fn run_preparer(
        self: Arc<Self>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        loop {
            let wake = self.wake.notified();
            if !self.prepare_pass().await? {
                tokio::select! {
                    _ = wake => {},
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {},
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                }
            }
            if *stop.borrow() {
                return Ok(());
            }
        }
    }

    /// The next job for a line: the oldest runnable one no other line has taken.
    fn claim_next(&self) -> Result<Option<crate::journal::Job>, JournalError> {
        // The list is read under the claim lock: a line releases its claim only after
        // the journal shows the job past the feed, so no line can act on a stale list.
        let mut claimed = self.claimed.lock().unwrap_or_else(|p| p.into_inner());
        let runnable = self.runnable()?;
        let next = runnable
            .into_iter()
            .find(|j| !claimed.contains(&j.operation_id));
        if let Some(j) = &next {
            claimed.insert(j.operation_id.clone());
        }
        Ok(next)
    }

    fn release_claim(&self, op: &str) {
        self.claimed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(op);
    }

    /// Runs the producer of one line until `stop`.
    pub async fn run_producer(
        self: Arc<Self>,
        mut devices: Devices,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        let line = devices.line.clone();
        self.with_health(&line, |_| {});
        loop {
            let wake = self.wake.notified();
            // A card left in doubt by a restart may still be in this line's printer: no
            // new card is fed here until staff have looked and confirmed or spoiled it.
            // A card from before lines were recorded may be in any printer.
            let in_doubt = self
                .journal
                .jobs(&[JobState::InDoubt])?
                .iter()
                .any(|j| j.line.as_deref().map_or(true, |l| l == line));
            self.with_health(&line, |h| h.in_doubt = in_doubt);
            let next = if in_doubt { None } else { self.claim_next()? };
            match next {
                Some(job) => {
                    let prepared = match self.ready_remove(&job.operation_id) {
                        Some(p) => p,
                        None => match self.prepare_job(job.order_json.clone()).await {
                            Ok(p) => Arc::new(p),
                            Err(r) => {
                                self.release_claim(&job.operation_id);
                                self.transition(
                                    &job.operation_id,
                                    JobState::Failed,
                                    Some(&r.to_string()),
                                )?;
                                continue;
                            }
                        },
                    };
                    self.wake.notify_waiters();
                    let starter = self
                        .started
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&job.operation_id);
                    let actor = starter.as_deref().unwrap_or("agent");
                    let made = self
                        .produce(&mut devices, &job.operation_id, &prepared, actor)
                        .await;
                    self.release_claim(&job.operation_id);
                    made?;
                }
                None => {
                    tokio::select! {
                        _ = wake => {},
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {},
                        _ = stop.wait_for(|s| *s) => return Ok(()),
                    }
                }
            }
            if *stop.borrow() {
                return Ok(());
            }
        }
    }

    /// Produces one card. Card problems end the job (spoiled, reported); only a
    /// journal failure stops the pipeline.
    /// `actor` is who set the card going: the staff member who pressed Start, or the agent.
    pub async fn produce(
        &self,
        d: &mut Devices,
        op: &str,
        job: &PreparedJob,
        actor: &str,
    ) -> Result<(), PipelineError> {
        let started = Instant::now();
        let fed = match self.journal.feed(op, &d.line, actor) {
            Ok(job) => job,
            // Staff cancelled it between the pick and the feed: no card moved.
            Err(JournalError::IllegalTransition { from, .. }) => {
                tracing::info!(operation_id = %op, state = ?from, "order no longer waiting; not fed");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        self.emit(op, JobState::Feeding, fed.masked_pan, None);
        if let Err(e) = d.printer.feed().await {
            if e == PrinterError::FeederEmpty {
                // No card left the feeder: the order goes back to staff, nothing is spoiled.
                self.set_printer_problem(&d.line, Some(e.staff_message()));
                self.transition(op, JobState::WaitingForStaff, Some(&e.staff_message()))?;
                return Ok(());
            }
            return self
                .spoil(d, op, &format!("{}: {}", e.code(), e.staff_message()))
                .await;
        }
        self.set_printer_problem(&d.line, None);
        self.transition(op, JobState::AtChipStation, None)?;
        if let Err(e) = d.printer.park_at_chip_station().await {
            return self
                .spoil(d, op, &format!("{}: {}", e.code(), e.staff_message()))
                .await;
        }
        if let Err(e) = d.encoder.wait_for_card(d.chip_wait).await {
            return self
                .spoil(d, op, &format!("{}: {}", e.code(), e.staff_message()))
                .await;
        }
        self.transition(op, JobState::Personalizing, None)?;
        let apdus = match self.production.personalize(d.encoder.as_mut(), job).await {
            Ok(n) => n,
            Err(e) => return self.spoil(d, op, &format!("{}: {e}", e.code())).await,
        };
        self.transition(op, JobState::Verifying, None)?;
        if let Err(r) = self.production.verify(d.encoder.as_mut(), job).await {
            return self.spoil(d, op, &r.to_string()).await;
        }
        d.encoder.release().await;
        self.transition(op, JobState::Printing, None)?;
        if let Err(e) = d.printer.print(&job.panels).await {
            return self
                .spoil(d, op, &format!("{}: {}", e.code(), e.staff_message()))
                .await;
        }
        if let Err(e) = d.printer.write_magstripe(&job.tracks).await {
            return self
                .spoil(d, op, &format!("{}: {}", e.code(), e.staff_message()))
                .await;
        }
        if let Err(e) = d.printer.eject().await {
            return self
                .spoil(d, op, &format!("{}: {}", e.code(), e.staff_message()))
                .await;
        }
        let ejected = self
            .journal
            .eject(op, apdus, started.elapsed().as_secs_f64())?;
        self.emit(op, JobState::Ejected, ejected.masked_pan, None);
        Ok(())
    }

    async fn spoil(&self, d: &mut Devices, op: &str, reason: &str) -> Result<(), PipelineError> {
        d.encoder.release().await;
        let reason = match d.printer.reject().await {
            Ok(()) => reason.to_string(),
            Err(e) => {
                self.set_printer_problem(&d.line, Some(e.staff_message()));
                format!("{reason}; the card could not be sent to the reject box ({e}): remove it by hand and put it in the spoiled box")
            }
        };
        tracing::warn!(operation_id = %op, reason = %reason, "card spoiled");
        self.transition(op, JobState::Spoiled, Some(&reason))?;
        Ok(())
    }
}

/// The devices of one production line.
pub struct Devices {
    /// Line name (`devices.line.name`), recorded with each card it takes.
    pub line: String,
    /// Card printer.
    pub printer: Box<dyn CardPrinter>,
    /// Chip encoder at the printer's chip station.
    pub encoder: Box<dyn ChipEncoder>,
    /// How long to wait for the chip after parking the card.
    pub chip_wait: Duration,
}
