//! The counter flow: staff ask Pismo for a card for a customer; the station creates
//! it (idempotency key = the request id), waits until Pismo can add it to the next
//! embossing, adds it, and — where the environment allows — starts the run. The
//! run reaches this station through the hub as an ordinary INSTANT order whose
//! `cardId` is the Pismo card id. A spoiled card is sent again with "Make again".
//!
//! Waiting for ingress: the station retries add-to-embossing while it answers 404,
//! with backoff, up to a deadline. Pismo's events go to the issuer's own event
//! consumer, not to a branch workstation, which has no inbound path; the 404 is
//! exactly "not ready yet", and the PUT generates no event and changes nothing
//! until it succeeds, so repeating it is harmless. (An ingress *error* event is
//! therefore seen as a card that never becomes ready: the deadline's message.)
//!
//! Every step is journaled before the next call, so after a restart each request
//! resumes where it stood; one interrupted between create and add repeats the
//! create with the same idempotency key and gets the same card back (200).

use super::client::{AddOutcome, PismoClient, PismoClientConfig, PismoSecret};
use super::config::PismoSection;
use super::error::PismoError;
use super::model::{
    ConfigId, CreatePlasticCard, CustomerId, EmbossingGroup, PismoCardId, PrintedName, RequestId,
};
use super::store::{CounterRequest, RequestStep, RequestStore};
use crate::job::state::JobState;
use crate::journal::{Job, JournalThread};
use crate::link::Backoff;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How the counter flow behaves (from `[pismo]`).
#[derive(Debug, Clone)]
pub struct CounterSettings {
    /// Issuer id of the D1 orders made from Pismo embossing runs.
    pub issuer_id: String,
    /// The branch's embossing group.
    pub group: EmbossingGroup,
    /// The group's configuration, to start runs.
    pub config_id: Option<ConfigId>,
    /// Whether start embossing may be called here.
    pub start_embossing: bool,
    /// Longest wait for a card to become ready for embossing.
    pub ingress_deadline: Duration,
    /// First wait between add-to-embossing attempts.
    pub ingress_backoff: Duration,
    /// Products offered; the first is the default.
    pub products: Vec<String>,
    /// How long a queued card may wait for its embossing run before staff are told.
    pub run_deadline: Duration,
}

/// The Pismo counter desk: one per station.
pub struct PismoDesk {
    client: PismoClient,
    store: RequestStore,
    settings: CounterSettings,
    busy: Mutex<HashSet<String>>,
    /// Woken after every journaled step (the console refreshes on it).
    pub changed: tokio::sync::Notify,
}

/// Releases a request claimed by one driver.
struct Claim<'a> {
    desk: &'a PismoDesk,
    id: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.desk
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// Whether "Make again" applies: the request was sent for embossing and the newest
/// job for its card at this station was spoiled (CARD_PROD_EXCEPTION) or cancelled
/// after the request last moved (so a resend already under way is not offered twice).
pub fn may_make_again(request: &CounterRequest, latest_job: Option<&Job>) -> bool {
    let parse = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    };
    let Some(job) = latest_job else {
        return false;
    };
    matches!(request.step, RequestStep::Queued | RequestStep::RunStarted)
        && matches!(job.state, JobState::Spoiled | JobState::Cancelled)
        && match (parse(&job.updated_at), parse(&request.updated_at)) {
            (Some(j), Some(r)) => j >= r,
            _ => false,
        }
}

/// Whether `request` is what brought `job` to the station, so that Make again on the
/// job may resend the request's card: the job is for the request's card, arrived after
/// the request was made, and is the newest order for that card among `jobs` (an older,
/// superseded order is not resent). The words name what did not match.
pub fn order_of_request(request: &CounterRequest, job: &Job, jobs: &[Job]) -> Result<(), String> {
    let at = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    };
    if request.card_id.map(|c| c.to_string()).as_deref() != Some(job.card_id.as_str()) {
        return Err(format!(
            "order {} is for card {}, Pismo request {} for card {}",
            job.operation_id,
            job.card_id,
            request.request_id,
            request
                .card_id
                .map_or_else(|| "(none yet)".to_string(), |c| c.to_string())
        ));
    }
    if at(&job.created_at) < at(&request.created_at) {
        return Err(format!(
            "order {} arrived before Pismo request {} was made: it is not that request's card",
            job.operation_id, request.request_id
        ));
    }
    match latest_job(jobs, request, &job.issuer_id) {
        Some(latest) if latest.operation_id != job.operation_id => Err(format!(
            "order {} is not the newest order for Pismo card {} (order {} is): make the newest one again",
            job.operation_id, job.card_id, latest.operation_id
        )),
        _ => Ok(()),
    }
}

/// Whether the embossing run is overdue: the card has waited in the queue longer than
/// `deadline` and no order for it reached the station since.
pub fn run_overdue(
    request: &CounterRequest,
    latest_job: Option<&Job>,
    now: time::OffsetDateTime,
    deadline: Duration,
) -> bool {
    let parse = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    };
    let Some(queued_at) = parse(&request.updated_at) else {
        return false;
    };
    let arrived_since = latest_job
        .and_then(|j| parse(&j.created_at))
        .is_some_and(|t| t >= queued_at);
    matches!(request.step, RequestStep::Queued | RequestStep::RunStarted)
        && !arrived_since
        && now - queued_at > deadline
}

/// Staff words for an overdue run.
pub fn overdue_words(deadline: Duration) -> String {
    format!(
        "no embossing run has brought this card after {} min: call IT to check the Pismo embossing schedule of this branch's group; Retry starts a run where allowed",
        deadline.as_secs() / 60
    )
}

/// The newest order at this station that `request` brought: one of the desk's issuer
/// (`issuer_id`), for the request's card, that arrived after the request was made. An
/// order of another issuer that happens to carry the same card id, or an older order
/// for that card, is not the request's (Make again on it would emboss a second card).
pub fn latest_job<'a>(
    jobs: &'a [Job],
    request: &CounterRequest,
    issuer_id: &str,
) -> Option<&'a Job> {
    let at = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    };
    let card = request.card_id?.to_string();
    let made = at(&request.created_at)?;
    jobs.iter()
        .filter(|j| j.card_id == card && j.issuer_id == issuer_id)
        .filter(|j| at(&j.created_at).is_some_and(|t| t >= made))
        .max_by(|a, b| a.created_at.cmp(&b.created_at))
}

impl PismoDesk {
    /// A desk over `client` and the request tables of the journal.
    pub fn new(client: PismoClient, store: RequestStore, settings: CounterSettings) -> Self {
        PismoDesk {
            client,
            store,
            settings,
            busy: Mutex::new(HashSet::new()),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// The desk of a station configuration with a `[pismo]` section, journaling through
    /// the station's journal thread.
    pub fn from_section(
        section: &PismoSection,
        secret_path: &std::path::Path,
        journal: JournalThread,
    ) -> Result<Self, PismoError> {
        section.check()?;
        let secret = PismoSecret::from_file(secret_path)?;
        let client = PismoClient::new(PismoClientConfig::new(
            &section.api_url,
            &section.pci_url,
            &section.client_id,
            secret,
        ))?;
        let store = RequestStore::new(journal);
        let settings = CounterSettings {
            issuer_id: section.issuer_id.clone(),
            group: EmbossingGroup::parse(&section.embossing_group)?,
            config_id: section
                .config_id
                .as_deref()
                .map(ConfigId::parse)
                .transpose()?,
            start_embossing: section.start_embossing,
            ingress_deadline: Duration::from_secs(section.ingress_deadline_seconds),
            ingress_backoff: Duration::from_millis(500),
            products: section.products.clone(),
            run_deadline: Duration::from_secs(section.run_deadline_minutes * 60),
        };
        Ok(Self::new(client, store, settings))
    }

    /// The request tables.
    pub fn store(&self) -> &RequestStore {
        &self.store
    }

    /// Issuer id of the D1 orders made from Pismo embossing runs.
    pub fn issuer_id(&self) -> &str {
        &self.settings.issuer_id
    }

    /// How long a queued card may wait for its run.
    pub fn run_deadline(&self) -> Duration {
        self.settings.run_deadline
    }

    /// The products staff may choose.
    pub fn products(&self) -> &[String] {
        &self.settings.products
    }

    fn claim(&self, id: &str) -> Option<Claim<'_>> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        busy.insert(id.to_string()).then(|| Claim {
            desk: self,
            id: id.to_string(),
        })
    }

    /// Journal a new request from the counter (checked locally first); the caller
    /// then drives it ([`PismoDesk::drive`] or [`PismoDesk::spawn_drive`]).
    pub async fn request(
        &self,
        customer: &str,
        printed_name: &str,
        product: Option<&str>,
        by: &str,
    ) -> Result<CounterRequest, PismoError> {
        let customer = CustomerId::parse(customer)?;
        let name = PrintedName::parse(printed_name)?;
        let product = product
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .or_else(|| self.settings.products.first().cloned());
        if let Some(p) = &product {
            if !self.settings.products.is_empty() && !self.settings.products.contains(p) {
                return Err(super::model::FieldError {
                    field: "product",
                    message: format!(
                        "'{p}' is not offered here; choose one of {}",
                        self.settings.products.join(", ")
                    ),
                }
                .into());
            }
        }
        let r = self
            .store
            .insert(&RequestId::new(), customer, &name, product.as_deref(), by)
            .await?;
        self.changed.notify_waiters();
        tracing::info!(request_id = %r.request_id, "Pismo card requested at the counter");
        Ok(r)
    }

    /// Drive the request in the background.
    pub fn spawn_drive(self: &Arc<Self>, id: &str) {
        let desk = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            if let Err(e) = desk.drive(&id).await {
                tracing::warn!(request_id = %id, code = e.code(), error = %e, "Pismo request stopped");
            }
        });
    }

    async fn load(&self, id: &str) -> Result<CounterRequest, PismoError> {
        self.store
            .get(id)
            .await?
            .ok_or_else(|| PismoError::UnknownRequest(id.to_string()))
    }

    async fn advance(
        &self,
        id: &str,
        step: RequestStep,
        card: Option<PismoCardId>,
        outcome: String,
    ) -> Result<CounterRequest, PismoError> {
        let r = self
            .store
            .advance(id, step, card, &outcome, "agent")
            .await?;
        self.changed.notify_waiters();
        Ok(r)
    }

    /// Journal a failure: a retryable one leaves the step; any other refuses the request.
    async fn fail(&self, id: &str, e: PismoError) -> PismoError {
        let words = e.to_string();
        let _ = if e.is_retryable() {
            self.store.note(id, &words, "agent").await
        } else {
            self.store
                .advance(id, RequestStep::Refused, None, &words, "agent")
                .await
        };
        self.changed.notify_waiters();
        e
    }

    /// Take the request as far as it can go now: create, wait for ingress, add to
    /// the next embossing, start the run where allowed. Returns where it stands.
    pub async fn drive(&self, id: &str) -> Result<CounterRequest, PismoError> {
        let Some(_claim) = self.claim(id) else {
            // Another driver has it: report where it stands.
            return self.load(id).await;
        };
        loop {
            let r = self.load(id).await?;
            let card = r.card_id.map(PismoCardId);
            match (r.step, card) {
                (RequestStep::Requested, _) => {
                    let body = CreatePlasticCard::new(
                        PrintedName::parse(&r.printed_name)?,
                        self.settings.group.clone(),
                        r.product.as_deref(),
                    );
                    let key = RequestId::parse(&r.request_id)?;
                    match self
                        .client
                        .create_card(CustomerId(r.customer_id), &key, &body)
                        .await
                    {
                        Ok(out) => {
                            self.advance(
                                id,
                                RequestStep::Created,
                                Some(out.card().id),
                                out.staff_words(),
                            )
                            .await?;
                        }
                        Err(e) => return Err(self.fail(id, e).await),
                    }
                }
                (RequestStep::Created, Some(card)) => {
                    if let Err(e) = self.wait_and_add(id, card).await {
                        return Err(self.fail(id, e).await);
                    }
                }
                (RequestStep::Resending, Some(card)) => match self.client.resend(&[card]).await {
                    Ok(()) => {
                        self.advance(
                            id,
                            RequestStep::Queued,
                            None,
                            "sent again for embossing".into(),
                        )
                        .await?;
                    }
                    Err(e) => return Err(self.fail(id, e).await),
                },
                (RequestStep::Queued, Some(card)) if self.settings.start_embossing => {
                    let Some(config) = self.settings.config_id else {
                        return Err(PismoError::StartNotAllowed);
                    };
                    match self.client.start_embossing(config, &[card]).await {
                        Ok(()) => {
                            self.advance(
                                id,
                                RequestStep::RunStarted,
                                None,
                                "embossing run started".into(),
                            )
                            .await?;
                        }
                        Err(e) => return Err(self.fail(id, e).await),
                    }
                }
                (RequestStep::Created | RequestStep::Resending | RequestStep::Queued, None) => {
                    return Err(PismoError::Journal(format!(
                        "request {id} has no Pismo card id"
                    )));
                }
                _ => return Ok(r),
            }
        }
    }

    /// Retry add-to-embossing while Pismo answers 404, with backoff, until the deadline.
    async fn wait_and_add(&self, id: &str, card: PismoCardId) -> Result<(), PismoError> {
        let deadline = tokio::time::Instant::now() + self.settings.ingress_deadline;
        let mut backoff = Backoff::new(self.settings.ingress_backoff, Duration::from_secs(10));
        loop {
            match self.client.add_to_embossing(card).await? {
                outcome @ (AddOutcome::Accepted | AddOutcome::AlreadyEmbossed) => {
                    self.advance(id, RequestStep::Queued, None, outcome.staff_words().into())
                        .await?;
                    return Ok(());
                }
                AddOutcome::NotReady => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        return Err(PismoError::IngressTimeout {
                            card: card.0,
                            seconds: self.settings.ingress_deadline.as_secs(),
                        });
                    }
                    let wait = backoff.next_delay().min(deadline - now);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// "Make again" for a spoiled card: journal the resend; driving the request then
    /// resends it for embossing (and starts the run where allowed).
    /// The caller checks with [`may_make_again`] that the station's card failed.
    pub async fn make_again(&self, id: &str, by: &str) -> Result<CounterRequest, PismoError> {
        let r = self.load(id).await?;
        let Some(card) = r.card_id.map(PismoCardId) else {
            return Err(PismoError::NotNow(format!(
                "request {id} is '{}': only a card already sent for embossing can be made again",
                r.step.label()
            )));
        };
        let r = self.store.begin_resend(id, card, by).await?;
        self.changed.notify_waiters();
        Ok(r)
    }

    /// "Make again" as staff ask for it, wherever they ask (console, demo, a station-wide
    /// Make again for a spoiled order whose issuer is Pismo): refused unless the
    /// station's newest job for the card was spoiled or cancelled since the request last
    /// moved ([`may_make_again`]); then journaled and driven in the background (resend
    /// for embossing, then start the run where allowed).
    pub async fn make_again_spoiled(
        self: &Arc<Self>,
        journal: &JournalThread,
        id: &str,
        by: &str,
    ) -> Result<CounterRequest, PismoError> {
        let request = self.load(id).await?;
        let jobs = journal.call(|j| j.all_jobs(500)).await;
        let jobs = jobs.map_err(|e| PismoError::Journal(e.to_string()))?;
        if !may_make_again(
            &request,
            latest_job(&jobs, &request, &self.settings.issuer_id),
        ) {
            return Err(PismoError::NotNow(
                "only a card the station spoiled or cancelled can be made again".into(),
            ));
        }
        let r = self.make_again(id, by).await?;
        self.spawn_drive(id);
        Ok(r)
    }

    /// The newest counter request for a Pismo card (a D1 order's `cardId`), for callers
    /// that start from the station's job.
    pub async fn request_for_card(
        &self,
        card: PismoCardId,
    ) -> Result<Option<CounterRequest>, PismoError> {
        self.store.by_card(card).await
    }

    /// Resume every request with a Pismo call still to make (after a restart, or periodically).
    pub async fn resume_all(self: &Arc<Self>) -> Result<usize, PismoError> {
        let list = self.store.unfinished().await?;
        let mut n = 0;
        for r in list {
            if r.step.has_work() || (r.step == RequestStep::Queued && self.settings.start_embossing)
            {
                self.spawn_drive(&r.request_id);
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Resume unfinished requests now and every `every` until `stop` (Pismo unreachable
/// for a while is then retried without staff pressing anything).
pub async fn run_resumer(desk: Arc<PismoDesk>, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = desk.resume_all().await {
            tracing::warn!(code = e.code(), error = %e, "Pismo requests not resumed");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(step: RequestStep, updated_at: &str) -> CounterRequest {
        CounterRequest {
            request_id: "r".into(),
            customer_id: 1,
            printed_name: "JANE DOE".into(),
            product: None,
            card_id: Some(100001),
            step,
            message: None,
            resend_count: 0,
            requested_by: "anna".into(),
            created_at: updated_at.into(),
            updated_at: updated_at.into(),
        }
    }

    fn job(state: JobState, at: &str) -> Job {
        Job {
            operation_id: "op".into(),
            issuer_id: "PISMO".into(),
            card_id: "100001".into(),
            perso_station: "S".into(),
            state,
            order_json: serde_json::Value::Null,
            reason: None,
            masked_pan: None,
            apdu_count: 0,
            seconds: None,
            line: None,
            product: None,
            holder: None,
            attempt: 1,
            created_at: at.into(),
            updated_at: at.into(),
        }
    }

    const T0: &str = "2026-11-30T10:00:00Z";
    const T1: &str = "2026-11-30T10:05:00Z";

    #[test]
    fn make_again_is_offered_for_a_card_spoiled_after_the_request_was_sent() {
        let r = request(RequestStep::RunStarted, T0);
        assert!(may_make_again(&r, Some(&job(JobState::Spoiled, T1))));
        assert!(may_make_again(&r, Some(&job(JobState::Cancelled, T1))));
    }

    #[test]
    fn make_again_is_not_offered_twice_for_the_same_spoiled_card() {
        // The resend moved the request after the spoil: the new order is on its way.
        let r = request(RequestStep::RunStarted, T1);
        assert!(!may_make_again(&r, Some(&job(JobState::Spoiled, T0))));
    }

    #[test]
    fn make_again_is_not_offered_for_a_good_card_or_no_card() {
        let r = request(RequestStep::RunStarted, T0);
        assert!(!may_make_again(&r, Some(&job(JobState::Ejected, T1))));
        assert!(!may_make_again(&r, None));
    }

    #[test]
    fn the_newest_order_for_the_requests_card_is_the_requests() {
        let r = request(RequestStep::RunStarted, T0);
        let j = job(JobState::Rejected, T1);
        assert_eq!(order_of_request(&r, &j, std::slice::from_ref(&j)), Ok(()));
    }

    #[test]
    fn an_order_older_than_the_request_is_not_the_requests() {
        let r = request(RequestStep::RunStarted, T1);
        let j = job(JobState::Rejected, T0);
        let e = order_of_request(&r, &j, std::slice::from_ref(&j)).unwrap_err();
        assert!(e.contains("arrived before Pismo request r was made"), "{e}");
    }

    #[test]
    fn a_superseded_order_for_the_card_is_not_resent() {
        let r = request(RequestStep::RunStarted, T0);
        let old = job(JobState::Rejected, T1);
        let mut newer = job(JobState::WaitingForStaff, "2026-11-30T10:10:00Z");
        newer.operation_id = "op2".into();
        let e = order_of_request(&r, &old, &[old.clone(), newer]).unwrap_err();
        assert!(
            e.contains("not the newest order for Pismo card 100001 (order op2 is)"),
            "{e}"
        );
    }

    #[test]
    fn an_order_for_another_card_is_not_the_requests() {
        let r = request(RequestStep::RunStarted, T0);
        let mut j = job(JobState::Rejected, T1);
        j.card_id = "100002".into();
        let e = order_of_request(&r, &j, std::slice::from_ref(&j)).unwrap_err();
        assert!(e.contains("is for card 100002"), "{e}");
    }

    #[test]
    fn a_queued_card_with_no_order_after_the_deadline_is_overdue() {
        let r = request(RequestStep::Queued, T0);
        let now = time::OffsetDateTime::parse(T1, &time::format_description::well_known::Rfc3339)
            .unwrap();
        assert!(run_overdue(&r, None, now, Duration::from_secs(60)));
        assert!(!run_overdue(&r, None, now, Duration::from_secs(600)));
        assert!(!run_overdue(
            &r,
            Some(&job(JobState::Received, T1)),
            now,
            Duration::from_secs(60)
        ));
    }
}
