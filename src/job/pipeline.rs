//! The issuance pipeline: one producer per printer/encoder pair (a line), one card at
//! a time on each.
//!
//! The preparer validates and decrypts received orders and prepares their chip, stripe
//! and face once, ahead of time, so the printer never waits on software; a prepared
//! card stays on the shelf ([`PreparedCards`]) until it is produced or cancelled, and
//! at most [`PREPARED_PER_LINE`] per line are held (the rest wait, still `Received`).
//! The producer moves one card through feed → chip station → personalize → verify →
//! print and stripe → eject. Every state is written to the journal before the device
//! step it authorizes — on the journal's own thread, never on a tokio worker; any
//! failure once a card is fed sends it to the reject box and reports
//! `CARD_PROD_EXCEPTION` with the reason; data problems report `DATA_EXCEPTION`
//! before any card moves.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use station_hal::{CardPrinter, ChipEncoder, PrinterError, StaffFacing, StagedCard};
use time::{Date, OffsetDateTime};
use tokio::sync::{broadcast, watch, Notify};

pub use super::prepared::PREPARED_PER_LINE;

use super::claims::{LineClaims, StaffStarts};
use super::line_health::LineBoard;
use super::prepared::PreparedCards;
use super::production::{PreparedJob, Production, Refusal};
use crate::config::StartPolicy;
use crate::journal::state::JobState;
use crate::journal::{
    InsertOutcome, Job, Journal, JournalError, JournalThread, NewJob, Resolution,
};
use crate::order::D1ErrorCode;

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
    /// A bug stopped the line in the middle of a card.
    #[error("the line stopped on an internal error during card {operation_id}: {message}")]
    Panicked {
        /// The card being made.
        operation_id: String,
        /// The panic message.
        message: String,
    },
}

impl PipelineError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            PipelineError::Journal(e) => e.code(),
            PipelineError::Panicked { .. } => "PIPELINE_PANIC",
        }
    }

    /// Whether the journal itself failed (the agent must restart to recover).
    pub fn is_journal(&self) -> bool {
        matches!(self, PipelineError::Journal(_))
    }
}

/// How often a line whose feeder was empty asks the printer whether cards are back.
pub const FEEDER_POLL: Duration = Duration::from_secs(2);

/// What staff can do to a card from the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffAction {
    /// Start a card waiting for staff.
    Start,
    /// The card was handed to the customer.
    HandOver,
    /// Cancel a card that has not started.
    Cancel,
    /// Decide on a card left in doubt by a restart.
    Resolve(Resolution),
    /// Staff took out by hand a spoiled card the reject box did not take.
    CardRemoved,
    /// A card in the reject box: make it again (a new blank, a new attempt).
    MakeAgain,
    /// A card in the reject box: give up; the order is reported as failed.
    GiveUp,
}

impl StaffAction {
    /// Stable name (as in the console's URLs).
    pub fn as_str(self) -> &'static str {
        match self {
            StaffAction::Start => "start",
            StaffAction::HandOver => "handover",
            StaffAction::Cancel => "cancel",
            StaffAction::Resolve(Resolution::Confirm) => "confirm",
            StaffAction::Resolve(Resolution::Spoil) => "spoil",
            StaffAction::MakeAgain => "make-again",
            StaffAction::GiveUp => "give-up",
            StaffAction::CardRemoved => "removed",
        }
    }
}

/// A console action name that is not one of [`StaffAction`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown action '{0}'")]
pub struct UnknownAction(pub String);

impl FromStr for StaffAction {
    type Err = UnknownAction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "start" => StaffAction::Start,
            "handover" => StaffAction::HandOver,
            "cancel" => StaffAction::Cancel,
            "confirm" => StaffAction::Resolve(Resolution::Confirm),
            "spoil" => StaffAction::Resolve(Resolution::Spoil),
            "removed" => StaffAction::CardRemoved,
            "make-again" => StaffAction::MakeAgain,
            "give-up" => StaffAction::GiveUp,
            other => return Err(UnknownAction(other.to_string())),
        })
    }
}

/// Why a staff action was refused, in words for the console.
#[derive(Debug, thiserror::Error)]
pub enum ActionRefused {
    /// No job has this operationId.
    #[error("No such card.")]
    NoSuchCard,
    /// The card is not waiting for staff.
    #[error("This card cannot be started now ({0}).")]
    NotStartable(&'static str),
    /// The card is not in the reject box.
    #[error("This card is not in the reject box ({0}).")]
    NotRejected(&'static str),
    /// Every attempt allowed at this card was made.
    #[error("This card was tried {0} times, the most allowed: give up and report it.")]
    NoAttemptLeft(u32),
    /// No blanks of the card's product remain as recorded.
    #[error(transparent)]
    Stock(#[from] crate::stock::StockError),
    /// The journal refused the move (or failed).
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// What a staff action did (a sentence for the console), or why it was refused.
pub type ActionResult = Result<&'static str, ActionRefused>;

/// The counter's rules: attempts at one card and blank-card stock.
#[derive(Debug, Clone)]
pub struct CounterRules {
    /// Attempts at one card, the first included.
    pub attempts: u32,
    /// Stock rules.
    pub stock: crate::stock::StockPolicy,
}

impl Default for CounterRules {
    fn default() -> Self {
        CounterRules {
            attempts: 3,
            stock: Default::default(),
        }
    }
}

/// Shared state of a station: the journal and the pieces the pipeline and the console
/// share, each behind its own lock.
pub struct Station {
    /// The journal, for synchronous callers (start-up, tools, tests); async code goes
    /// through the journal thread.
    pub journal: Arc<Journal>,
    desk: JournalThread,
    /// Production set-up.
    pub production: Arc<Production>,
    /// Who starts cards.
    pub policy: StartPolicy,
    /// Attempts and stock rules.
    pub counter: CounterRules,
    starts: StaffStarts,
    prepared: PreparedCards,
    claims: LineClaims,
    lines: LineBoard,
    wake: Notify,
    progress: broadcast::Sender<Progress>,
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
        Self::with_rules(journal, production, policy, CounterRules::default())
    }

    /// A station with the counter's rules from the configuration.
    pub fn with_rules(
        journal: Arc<Journal>,
        production: Arc<Production>,
        policy: StartPolicy,
        counter: CounterRules,
    ) -> Arc<Self> {
        let (progress, _) = broadcast::channel(1024);
        Arc::new(Station {
            desk: JournalThread::start(journal.clone()),
            journal,
            production,
            policy,
            counter,
            starts: StaffStarts::default(),
            prepared: PreparedCards::default(),
            claims: LineClaims::default(),
            lines: LineBoard::default(),
            wake: Notify::new(),
            progress,
            today: utc_today,
        })
    }

    /// The journal thread, for async callers.
    pub fn journal_thread(&self) -> &JournalThread {
        &self.desk
    }

    /// Progress events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Card preparations since the station started (one per card when nothing is
    /// prepared twice).
    pub fn preparations(&self) -> u64 {
        self.prepared.preparations()
    }

    /// Each line with the printer problem staff must fix, if any.
    pub fn lines(&self) -> Vec<(String, Option<String>)> {
        self.lines.lines()
    }

    /// Number of lines whose producer stopped (until the agent restarts).
    pub fn lines_down(&self) -> usize {
        self.lines.down_count()
    }

    /// Agent tasks other than the lines that stopped, with why.
    pub fn tasks_down(&self) -> Vec<(String, String)> {
        self.lines.tasks_down()
    }

    /// Records that the producer of `line` stopped for `why` (the supervisor calls this).
    pub fn mark_line_down(&self, line: &str, why: String) {
        self.lines.set_down(line, why);
    }

    /// Records that the agent task `task` stopped for `why` (the supervisor calls this).
    pub fn mark_task_down(&self, task: &str, why: String) {
        self.lines.set_task_down(task, why);
    }

    /// The first printer problem staff must fix on any line, if any.
    pub fn printer_problem(&self) -> Option<String> {
        self.lines().into_iter().find_map(|(_, p)| p)
    }

    fn capacity(&self) -> usize {
        PREPARED_PER_LINE * self.lines.count().max(1)
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

    async fn transition(
        &self,
        op: &str,
        to: JobState,
        reason: Option<&str>,
    ) -> Result<(), JournalError> {
        let (o, r) = (op.to_string(), reason.map(str::to_string));
        let job = self
            .desk
            .call(move |j| j.transition(&o, to, r.as_deref()))
            .await?;
        self.emit(op, to, job.masked_pan, reason.map(str::to_string));
        Ok(())
    }

    /// Journals an order from the hub (idempotent on operationId) and wakes the
    /// pipeline. Blocking: for synchronous callers; the link uses [`Station::intake_queued`].
    pub fn intake(&self, job: NewJob) -> Result<InsertOutcome, JournalError> {
        let op = job.operation_id.clone();
        let outcome = self.journal.insert_order(&job)?;
        self.intake_done(&op, &outcome);
        Ok(outcome)
    }

    fn intake_done(&self, op: &str, outcome: &InsertOutcome) {
        if *outcome == InsertOutcome::Created {
            self.emit(op, JobState::Received, None, None);
            self.wake.notify_waiters();
        }
    }

    /// Queues an order from the hub on the journal thread, in arrival order, without
    /// waiting for the write (the hub offers an order again until it is journaled).
    pub fn intake_queued(self: &Arc<Self>, job: NewJob) {
        let station = self.clone();
        self.desk.send(move |j| {
            let op = job.operation_id.clone();
            match j.insert_order(&job) {
                Ok(outcome) => station.intake_done(&op, &outcome),
                Err(e) => {
                    tracing::error!(operation_id = %op, error = %e, "order not journaled; the hub will offer it again")
                }
            }
        });
    }

    /// Performs a staff action on a card, journaled under `staff`. Blocking (one
    /// journal write): the console calls it on the blocking pool.
    pub fn act(&self, op: &str, action: StaffAction, staff: &str) -> ActionResult {
        self.act_approved(op, action, staff, None)
    }

    /// Whether acting on this card destroys a chip that may hold live card data: a
    /// card rejected or left in doubt once its chip was being written. Such a spoil
    /// needs a second supervisor's approval (dual control).
    pub fn chip_written(&self, op: &str) -> Result<bool, JournalError> {
        self.journal.chip_written(op)
    }

    /// Performs a staff action on a card, journaled under `staff` and, under dual
    /// control, `approver`. Blocking (journal writes): the console calls it on the
    /// blocking pool. Roles and the need for an approver are the console's to check.
    pub fn act_approved(
        &self,
        op: &str,
        action: StaffAction,
        staff: &str,
        approver: Option<&str>,
    ) -> ActionResult {
        match action {
            StaffAction::Start => match self.journal.job(op)? {
                Some(j) if j.state == JobState::WaitingForStaff => {
                    crate::stock::check_can_start(
                        &self.journal,
                        &self.counter.stock,
                        j.product.as_deref(),
                    )?;
                    self.starts.record(op, staff);
                    self.wake.notify_waiters();
                    Ok("Card started.")
                }
                Some(j) => Err(ActionRefused::NotStartable(j.state.label())),
                None => Err(ActionRefused::NoSuchCard),
            },
            StaffAction::HandOver => {
                self.staff_transition(
                    op,
                    JobState::HandedOver,
                    "handed over at the counter",
                    staff,
                )?;
                Ok("Handed over.")
            }
            StaffAction::Cancel => {
                self.prepared.discard(op);
                self.starts.take(op);
                self.staff_transition(op, JobState::Cancelled, "cancelled by staff", staff)?;
                self.wake.notify_waiters();
                Ok("Cancelled.")
            }
            StaffAction::CardRemoved => {
                let j = self.journal.card_removed(op, staff, approver)?;
                self.emit(op, j.state, j.masked_pan, j.reason);
                // Its line re-checks and goes on when nothing else stops it.
                self.wake.notify_waiters();
                Ok("Card recorded as removed and spoiled; the line goes on.")
            }
            StaffAction::MakeAgain => {
                let j = self.rejected(op)?;
                self.attempt_left(j.attempt)?;
                crate::stock::check_can_start(
                    &self.journal,
                    &self.counter.stock,
                    j.product.as_deref(),
                )?;
                let reason = format!(
                    "made again (attempt {} of {}) after: {}",
                    j.attempt + 1,
                    self.counter.attempts,
                    j.reason.as_deref().unwrap_or("a spoiled card")
                );
                let again = self.journal.make_again(op, &reason, staff, approver)?;
                // The customer is still at the counter: the new attempt starts at once.
                self.starts.record(op, staff);
                self.emit(op, again.state, again.masked_pan, Some(reason));
                self.wake.notify_waiters();
                Ok("Card is being made again.")
            }
            StaffAction::GiveUp => {
                self.give_up_with(op, staff, approver, |_| Ok::<_, ActionRefused>(()))?;
                Ok("Given up: the order is reported as not produced.")
            }
            StaffAction::Resolve(resolution) => {
                let j = self
                    .journal
                    .resolve_in_doubt_approved(op, resolution, staff, approver)?;
                self.emit(op, j.state, j.masked_pan, j.reason);
                // Its line re-checks for cards in doubt and goes on when none is left.
                self.wake.notify_waiters();
                Ok(match resolution {
                    Resolution::Confirm => "Card confirmed as good.",
                    Resolution::Spoil => "Card recorded as spoiled.",
                })
            }
        }
    }

    /// The counter's one attempt rule: after `made` attempts at a card, may another be
    /// made? (Make again at this station, or a Pismo resend of the card.)
    pub fn attempt_left(&self, made: u32) -> Result<(), ActionRefused> {
        if made >= self.counter.attempts {
            return Err(ActionRefused::NoAttemptLeft(made));
        }
        Ok(())
    }

    /// Gives up on a rejected card (reported as not produced), journaled under `staff`
    /// and `approver`; `also` writes in the same journal transaction, so that what
    /// replaces the card (a Pismo resend) is recorded with the give-up or not at all.
    /// Blocking (journal write).
    pub fn give_up_with<R, E>(
        &self,
        op: &str,
        staff: &str,
        approver: Option<&str>,
        also: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<R, E>,
    ) -> Result<R, E>
    where
        E: From<ActionRefused> + From<JournalError>,
    {
        let j = self.rejected(op)?;
        let reason = format!(
            "{} (given up after {} attempt(s))",
            j.reason.as_deref().unwrap_or("card spoiled"),
            j.attempt
        );
        let (done, r) = self.journal.transition_approved_with(
            op,
            JobState::Spoiled,
            Some(&reason),
            staff,
            approver,
            also,
        )?;
        self.emit(op, done.state, done.masked_pan, Some(reason));
        Ok(r)
    }

    fn rejected(&self, op: &str) -> Result<Job, ActionRefused> {
        match self.journal.job(op)? {
            Some(j) if j.state == JobState::Rejected => Ok(j),
            Some(j) => Err(ActionRefused::NotRejected(j.state.label())),
            None => Err(ActionRefused::NoSuchCard),
        }
    }

    fn staff_transition(
        &self,
        op: &str,
        to: JobState,
        reason: &str,
        staff: &str,
    ) -> Result<(), JournalError> {
        let job = self.journal.transition_by(op, to, Some(reason), staff)?;
        self.emit(op, to, job.masked_pan, Some(reason.to_string()));
        Ok(())
    }

    /// Staff start a card waiting for them; the feed is journaled as theirs.
    pub fn start(&self, op: &str, staff: &str) -> ActionResult {
        self.act(op, StaffAction::Start, staff)
    }

    /// Staff handed the card over to the customer.
    pub fn hand_over(&self, op: &str, staff: &str) -> ActionResult {
        self.act(op, StaffAction::HandOver, staff)
    }

    /// Staff cancel a card that has not started.
    pub fn cancel(&self, op: &str, staff: &str) -> ActionResult {
        self.act(op, StaffAction::Cancel, staff)
    }

    /// Staff decide on a card left in doubt by a restart.
    pub fn resolve(&self, op: &str, resolution: Resolution, staff: &str) -> ActionResult {
        self.act(op, StaffAction::Resolve(resolution), staff)
    }

    async fn prepare_job(&self, order: serde_json::Value) -> Result<PreparedJob, Refusal> {
        let production = self.production.clone();
        let today = (self.today)();
        tokio::task::spawn_blocking(move || production.prepare(&order, today))
            .await
            .unwrap_or_else(|e| {
                Err(Refusal::new(
                    D1ErrorCode::InternalError,
                    format!("preparation task: {e}"),
                ))
            })
    }

    /// Whether a validated job may be fed now (automatic, or started by staff).
    fn may_run(&self, job: &Job) -> bool {
        match self.policy {
            // A card sent back by an empty feeder waits in WaitingForStaff; with no staff
            // start, the line takes it again once the feeder has cards.
            StartPolicy::Automatic => {
                matches!(job.state, JobState::Validated | JobState::WaitingForStaff)
            }
            StartPolicy::Staff => {
                job.state == JobState::WaitingForStaff && self.starts.contains(&job.operation_id)
            }
        }
    }

    /// One pass of the preparer: prepares, once each and while the shelf has room,
    /// first the validated cards that have none (after a restart; those staff started
    /// first), then received orders (validating them). Returns whether it did anything.
    async fn prepare_pass(&self) -> Result<bool, PipelineError> {
        let capacity = self.capacity();
        let mut did = false;
        let pending = self
            .desk
            .call(|j| {
                j.jobs(&[
                    JobState::Validated,
                    JobState::WaitingForStaff,
                    JobState::Feeding,
                ])
            })
            .await?;
        // A card cancelled while it was being prepared leaves the shelf here (one being
        // fed stays: an empty feeder sends it back to staff, prepared).
        let keep: HashSet<&str> = pending.iter().map(|j| j.operation_id.as_str()).collect();
        self.prepared.keep_only(&keep);
        let (first, then): (Vec<Job>, Vec<Job>) = pending
            .into_iter()
            .filter(|j| j.state != JobState::Feeding)
            .partition(|j| self.may_run(j));
        for job in first.into_iter().chain(then) {
            if !self.prepared.has_room(capacity) {
                return Ok(did);
            }
            if !self.prepared.reserve(&job.operation_id, capacity) {
                continue;
            }
            did = true;
            match self.prepare_job(job.order_json.clone()).await {
                Ok(p) => {
                    self.prepared.put(&job.operation_id, p);
                    self.wake.notify_waiters();
                }
                Err(r) => {
                    self.prepared.abandon(&job.operation_id);
                    self.refuse(&job.operation_id, &r).await?;
                }
            }
        }
        for job in self.desk.call(|j| j.jobs(&[JobState::Received])).await? {
            if !self.prepared.reserve(&job.operation_id, capacity) {
                if !self.prepared.has_room(capacity) {
                    break;
                }
                continue;
            }
            did = true;
            let op = job.operation_id.clone();
            match self.prepare_job(job.order_json.clone()).await {
                Ok(p) => {
                    let facts = (p.masked_pan.clone(), p.product.clone(), p.holder.clone());
                    self.prepared.put(&op, p);
                    match self.validate(&op, facts).await {
                        Ok(()) => self.wake.notify_waiters(),
                        // Cancelled while it was being prepared: not a pipeline stop.
                        Err(JournalError::IllegalTransition { .. }) => self.prepared.discard(&op),
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(r) => {
                    self.prepared.abandon(&op);
                    self.refuse(&op, &r).await?;
                }
            }
        }
        Ok(did)
    }

    async fn validate(
        &self,
        op: &str,
        (masked_pan, product, holder): (String, String, String),
    ) -> Result<(), JournalError> {
        let o = op.to_string();
        self.desk
            .call(move |j| j.set_card_facts(&o, &masked_pan, &product, &holder))
            .await?;
        self.transition(op, JobState::Validated, None).await?;
        if self.policy == StartPolicy::Staff {
            self.transition(op, JobState::WaitingForStaff, None).await?;
        }
        Ok(())
    }

    async fn refuse(&self, op: &str, r: &Refusal) -> Result<(), JournalError> {
        tracing::warn!(operation_id = %op, code = %r.code, "order refused");
        match self
            .transition(op, JobState::Failed, Some(&r.to_string()))
            .await
        {
            // Cancelled meanwhile: nothing left to refuse.
            Err(JournalError::IllegalTransition { .. }) => Ok(()),
            other => other,
        }
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

    /// The next job for a line: the oldest runnable, prepared one no other line has taken.
    async fn claim_next(&self) -> Result<Option<Job>, JournalError> {
        // The list is read under the claim lock: a line releases its claim only after
        // the journal shows the job past the feed, so no line can act on a stale list.
        let mut claimed = self.claims.lock().await;
        let states: &'static [JobState] = match self.policy {
            StartPolicy::Automatic => &[JobState::Validated, JobState::WaitingForStaff],
            StartPolicy::Staff => &[JobState::WaitingForStaff],
        };
        let next = self
            .desk
            .call(move |j| j.jobs(states))
            .await?
            .into_iter()
            .find(|j| {
                self.may_run(j)
                    && !claimed.contains(&j.operation_id)
                    && self.prepared.has(&j.operation_id)
            });
        // Staff starts are checked against the stock when pressed; an automatic line checks
        // here, so `stock.require_loaded` holds under either policy.
        if let (Some(j), StartPolicy::Automatic) = (&next, self.policy) {
            let (stock, product) = (self.counter.stock.clone(), j.product.clone());
            let refused = self
                .desk
                .call(move |jr| {
                    Ok::<_, JournalError>(
                        crate::stock::check_can_start(jr, &stock, product.as_deref()).err(),
                    )
                })
                .await?;
            if let Some(e) = refused {
                tracing::warn!(operation_id = %j.operation_id, error = %e, "card not started: no blank cards recorded for its product");
                return Ok(None);
            }
        }
        if let Some(j) = &next {
            claimed.insert(j.operation_id.clone());
        }
        Ok(next)
    }

    /// Runs the producer of one line until `stop`.
    pub async fn run_producer(
        self: Arc<Self>,
        mut devices: Devices,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        let line = devices.line.clone();
        self.lines.register(&line);
        loop {
            let wake = self.wake.notified();
            // A card left in doubt by a restart, or one the reject box did not take, may
            // still be in this line's printer: no new card is fed here until staff have
            // dealt with it. A card from before lines were recorded may be in any printer.
            let blocked = self
                .desk
                .call(|j| j.jobs(&[JobState::InDoubt, JobState::AwaitingRemoval]))
                .await?
                .into_iter()
                .find(|j| j.line.as_deref().map_or(true, |l| l == line))
                .map(|j| j.state);
            self.lines.set_blocked(&line, blocked);
            let waiting_for_cards =
                self.lines.feeder_empty(&line) && !self.feeder_refilled(&mut devices).await;
            let next = if blocked.is_some() || waiting_for_cards {
                None
            } else {
                self.claim_next().await?
            };
            match next {
                Some(job) => {
                    let op = job.operation_id;
                    let Some(prepared) = self.prepared.get(&op) else {
                        // Cancelled since the claim.
                        self.claims.release(&op).await;
                        continue;
                    };
                    let starter = self.starts.take(&op);
                    let actor = starter.as_deref().unwrap_or("agent");
                    let made =
                        CatchPanic::new(self.produce(&mut devices, &op, &prepared, actor)).await;
                    self.claims.release(&op).await;
                    // Room on the shelf, or a card back for staff: the preparer looks again.
                    self.wake.notify_waiters();
                    let failure = match made {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e),
                        Err(message) => Some(PipelineError::Panicked {
                            operation_id: op.clone(),
                            message,
                        }),
                    };
                    if let Some(e) = failure {
                        self.line_failed(&mut devices, &op, &e).await;
                        return Err(e);
                    }
                }
                None if waiting_for_cards => {
                    let stopped = tokio::select! {
                        _ = tokio::time::sleep(FEEDER_POLL) => false,
                        _ = stop.wait_for(|s| *s) => true,
                    };
                    if stopped {
                        self.clear_staged(&mut devices).await;
                        return Ok(());
                    }
                }
                None => {
                    if blocked.is_none() && self.policy == StartPolicy::Staff {
                        self.stage_next(&mut devices).await?;
                    }
                    let stopped = tokio::select! {
                        _ = wake => false,
                        _ = tokio::time::sleep(Duration::from_secs(2)) => false,
                        _ = stop.wait_for(|s| *s) => true,
                    };
                    if stopped {
                        self.clear_staged(&mut devices).await;
                        return Ok(());
                    }
                }
            }
            if *stop.borrow() {
                self.clear_staged(&mut devices).await;
                return Ok(());
            }
        }
    }

    /// While the line is idle and staff are with the customer, puts the panels of the
    /// card the line will make next (the oldest prepared card waiting for staff) into
    /// the printer's memory, so Start goes straight to the feed; clears them when that
    /// card is no longer waiting (cancelled, given up, taken by another line). Queues
    /// the download and returns: the line still answers Start at once (the feed follows
    /// the download on the link, never inside it).
    async fn stage_next(&self, d: &mut Devices) -> Result<(), JournalError> {
        let waiting = self
            .desk
            .call(|j| j.jobs(&[JobState::WaitingForStaff]))
            .await?;
        let claimed = self.claims.lock().await.clone();
        let next = waiting.into_iter().find_map(|j| {
            if claimed.contains(&j.operation_id) {
                return None;
            }
            let prepared = self.prepared.get(&j.operation_id)?;
            Some((
                StagedCard {
                    operation_id: j.operation_id,
                    attempt: j.attempt,
                },
                prepared,
            ))
        });
        match next {
            Some((card, _)) if d.printer.staged() == Some(&card) => {}
            Some((card, prepared)) => {
                tracing::debug!(line = %d.line, operation_id = %card.operation_id, "staging the next card's panels in the printer");
                if let Err(e) = d.printer.stage_panels(&card, &prepared.panels).await {
                    tracing::warn!(line = %d.line, operation_id = %card.operation_id, error = %e, "panels not staged; they go with the print");
                }
            }
            None if d.printer.staged().is_some() => {
                if let Err(e) = d.printer.discard_staged().await {
                    tracing::warn!(line = %d.line, error = %e, "staged panels not cleared from the printer");
                }
            }
            None => {}
        }
        Ok(())
    }

    /// The line stops in order: a face staged for a card not started (its name, its PAN
    /// as printed) does not stay in the printer's memory. Asked even when nothing is
    /// staged: a download forgotten after an error may still be in the printer's memory,
    /// and only the driver knows. Not while a card may still be inside (in doubt, or
    /// waiting to be taken out by hand): clearing resets the printer, which would move
    /// that card; the reset before the line's next feed clears the memory instead.
    async fn clear_staged(&self, d: &mut Devices) {
        let line = d.line.clone();
        let card_inside = self
            .desk
            .call(|j| j.jobs(&[JobState::InDoubt, JobState::AwaitingRemoval]))
            .await
            .map(|jobs| {
                jobs.iter()
                    .any(|j| j.line.as_deref().map_or(true, |l| l == line))
            });
        match card_inside {
            Ok(false) => {}
            Ok(true) => {
                tracing::info!(line = %d.line, "a card may be in the printer: its memory is cleared before the next feed, not now");
                return;
            }
            Err(e) => {
                tracing::warn!(line = %d.line, error = %e, "journal not read; the printer is not reset as the line stops");
                return;
            }
        }
        let cleared = match d.printer.discard_staged().await {
            Ok(()) => d.printer.settle().await,
            Err(e) => Err(e),
        };
        if let Err(e) = cleared {
            tracing::warn!(line = %d.line, error = %e, "staged panels not cleared from the printer as the line stopped");
        }
    }

    /// Produces one card. Card problems end the job (spoiled, reported); only a
    /// journal failure stops the pipeline. The prepared card leaves the shelf when the
    /// job ends (ejected, spoiled, or no longer waiting); it stays when the feeder was
    /// empty, for the next try.
    /// `actor` is who set the card going: the staff member who pressed Start, or the agent.
    pub async fn produce(
        &self,
        d: &mut Devices,
        op: &str,
        job: &PreparedJob,
        actor: &str,
    ) -> Result<(), PipelineError> {
        let started = Instant::now();
        let (o, line, a) = (op.to_string(), d.line.clone(), actor.to_string());
        let fed = match self.desk.call(move |j| j.feed(&o, &line, &a)).await {
            Ok(job) => job,
            // Staff cancelled it between the pick and the feed: no card moved.
            Err(JournalError::IllegalTransition { from, .. }) => {
                tracing::info!(operation_id = %op, state = ?from, "order no longer waiting; not fed");
                self.prepared.discard(op);
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        self.emit(op, JobState::Feeding, fed.masked_pan.clone(), None);
        if let Err(e) = d.printer.feed().await {
            if e == PrinterError::FeederEmpty {
                // No card left the feeder: the order goes back to waiting (for staff, or
                // for the line once cards are loaded), nothing is spoiled.
                self.lines.set_problem(&d.line, Some(e.staff_message()));
                self.lines.set_feeder_empty(&d.line, true);
                self.transition(op, JobState::WaitingForStaff, Some(&e.staff_message()))
                    .await?;
                return Ok(());
            }
            return self
                .spoil(d, op, &format!("{}: {}", e.code(), e.staff_message()))
                .await;
        }
        self.lines.set_problem(&d.line, None);
        self.transition(op, JobState::AtChipStation, None).await?;
        // Panels not staged before Start follow the park on the printer link at once and
        // cross while the card moves and the chip is written (the print collects them).
        let me = StagedCard {
            operation_id: op.to_string(),
            attempt: fed.attempt,
        };
        let parked = if d.printer.staged() == Some(&me) {
            d.printer.park_at_chip_station().await
        } else {
            d.printer.park_and_stage(&me, &job.panels).await
        };
        if let Err(e) = parked {
            return self
                .spoil(d, op, &format!("{}: {}", e.code(), e.staff_message()))
                .await;
        }
        if let Err(e) = d.encoder.wait_for_card(d.chip_wait).await {
            return self
                .spoil(d, op, &format!("{}: {}", e.code(), e.staff_message()))
                .await;
        }
        self.transition(op, JobState::Personalizing, None).await?;
        let chip = async {
            let apdus = match self.production.personalize(d.encoder.as_mut(), job).await {
                Ok(n) => n,
                Err(e) => return Err(ChipOutcome::Spoil(format!("{}: {e}", e.code()))),
            };
            self.transition(op, JobState::Verifying, None)
                .await
                .map_err(ChipOutcome::Journal)?;
            self.production
                .verify(d.encoder.as_mut(), job)
                .await
                .map_err(|r| ChipOutcome::Spoil(r.to_string()))?;
            Ok(apdus)
        }
        .await;
        let apdus = match chip {
            Ok(n) => n,
            Err(ChipOutcome::Spoil(reason)) => return self.spoil(d, op, &reason).await,
            Err(ChipOutcome::Journal(e)) => return Err(e.into()),
        };
        d.encoder.release().await;
        self.transition(op, JobState::Printing, None).await?;
        if let Err(e) = d.printer.print(&job.panels).await {
            return self
                .spoil(d, op, &format!("{}: {}", e.code(), e.staff_message()))
                .await;
        }
        self.transition(op, JobState::EncodingStripe, None).await?;
        // The driver reads the stripe back and compares: Ok means the stripe is good.
        if let Err(e) = d.printer.write_magstripe(&job.tracks).await {
            return self
                .spoil(d, op, &format!("{}: {}", e.code(), e.staff_message()))
                .await;
        }
        self.transition(op, JobState::Ejecting, None).await?;
        if let Err(e) = d.printer.eject().await {
            return self
                .spoil(d, op, &format!("{}: {}", e.code(), e.staff_message()))
                .await;
        }
        self.prepared.discard(op);
        let (o, seconds) = (op.to_string(), started.elapsed().as_secs_f64());
        let ejected = self.desk.call(move |j| j.eject(&o, apdus, seconds)).await?;
        self.emit(op, JobState::Ejected, ejected.masked_pan, None);
        Ok(())
    }

    async fn spoil(&self, d: &mut Devices, op: &str, reason: &str) -> Result<(), PipelineError> {
        self.prepared.discard(op);
        d.encoder.release().await;
        let (to, reason) = match d.printer.reject().await {
            Ok(()) => (JobState::Spoiled, reason.to_string()),
            Err(e) => {
                // The card may still be inside, personalized: the line stops until staff
                // confirm they took it out.
                self.lines.set_problem(&d.line, Some(e.staff_message()));
                self.lines
                    .set_blocked(&d.line, Some(JobState::AwaitingRemoval));
                (
                    JobState::AwaitingRemoval,
                    format!("{reason}; the card could not be sent to the reject box ({e}): remove it by hand, put it in the spoiled box and press Card removed"),
                )
            }
        };
        tracing::warn!(operation_id = %op, reason = %reason, "card spoiled");
        // With staff at the counter a card in the reject box waits for them to make it
        // again or give up; nothing is reported upstream until they give up.
        let to = match to {
            JobState::Spoiled => self.in_reject_box(),
            to => to,
        };
        self.transition(op, to, Some(&reason)).await?;
        Ok(())
    }

    /// Where a card that went to the reject box lands: with staff at the counter it
    /// waits for them (make again or give up, nothing reported yet); otherwise it is
    /// spoiled and reported.
    fn in_reject_box(&self) -> JobState {
        match self.policy {
            StartPolicy::Staff => JobState::Rejected,
            StartPolicy::Automatic => JobState::Spoiled,
        }
    }

    /// Whether the empty feeder of this line has cards again (the printer says so).
    async fn feeder_refilled(&self, d: &mut Devices) -> bool {
        let refilled = match d.printer.status().await {
            Ok(s) => !s.faults.contains(&PrinterError::FeederEmpty) && s.feeder_cards != Some(0),
            Err(_) => false,
        };
        if refilled {
            self.lines.set_feeder_empty(&d.line, false);
            self.lines.set_problem(&d.line, None);
        }
        refilled
    }

    /// The line's producer is about to stop on `e` in the middle of card `op`: the card
    /// goes to the reject box if the printer still obeys, the line is marked down, and
    /// the journal (if it still works) records where the card is — in the reject box
    /// like any other spoil (for staff to make again or give up under the staff policy),
    /// or stuck in the printer.
    async fn line_failed(&self, d: &mut Devices, op: &str, e: &PipelineError) {
        tracing::error!(line = %d.line, operation_id = %op, code = e.code(), error = %e, "production line stopped");
        self.lines.set_down(&d.line, format!("{}: {e}", e.code()));
        self.prepared.discard(op);
        d.encoder.release().await;
        let rejected = d.printer.reject().await;
        if e.is_journal() {
            // Nothing can be recorded: after the restart the journal still shows the
            // card in the printer, and recovery surfaces it in doubt.
            return;
        }
        let o = op.to_string();
        let Ok(Some(job)) = self.desk.call(move |j| j.job(&o)).await else {
            return;
        };
        if !job.state.is_hardware() {
            return;
        }
        let (to, reason) = match rejected {
            Ok(()) => (
                self.in_reject_box(),
                format!("{}: {e}; the card was sent to the reject box", e.code()),
            ),
            Err(r) => (
                JobState::AwaitingRemoval,
                format!("{}: {e}; the card could not be sent to the reject box ({r}): remove it by hand, put it in the spoiled box and press Card removed", e.code()),
            ),
        };
        // A panic message may quote anything, card data included: the reason goes to the
        // journal, the hub and the console only through the scrubber.
        let reason = station_emv::card_data::scrub_pans_text(&reason);
        if let Err(je) = self.transition(op, to, Some(&reason)).await {
            tracing::error!(operation_id = %op, error = %je, "the stopped card could not be journaled");
        }
    }
}

/// Runs a future and turns a panic inside it into an `Err` with the panic message, so
/// the line that owns the devices can still send the card to the reject box.
struct CatchPanic<F> {
    inner: std::pin::Pin<Box<F>>,
}

impl<F: std::future::Future> CatchPanic<F> {
    fn new(f: F) -> Self {
        CatchPanic { inner: Box::pin(f) }
    }
}

impl<F: std::future::Future> std::future::Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = self.inner.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Err(panic) => {
                std::task::Poll::Ready(Err(crate::logging::panic_message(panic.as_ref())))
            }
        }
    }
}

/// Why the chip step did not give a verified card.
enum ChipOutcome {
    /// The card is spoiled, for this reason.
    Spoil(String),
    /// The journal failed: the pipeline stops.
    Journal(JournalError),
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
