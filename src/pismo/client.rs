//! The Pismo HTTP client: OAuth 2.0 client credentials with a cached token, the
//! API host (card creation) and the PCI gateway host (embossing) kept apart, and
//! the four seed calls with every documented status mapped to a typed outcome.
//!
//! Only network errors and 5xx are retried (with backoff): a 4xx answer is the
//! same however often it is asked, and a create is safe to repeat only because
//! it carries the idempotency key.

use super::error::PismoError;
use super::model::{
    CardCreated, ConfigId, CreatePlasticCard, CustomerId, PismoCardId, PismoErrorBody, RequestId,
};
use crate::link::Backoff;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;
use zeroize::Zeroizing;

pub use super::secret::PismoSecret;

/// Token endpoint path on the API host.
pub const TOKEN_PATH: &str = "/passport/v2/oauth/token";
/// Create card path on the API host.
pub const CREATE_CARD_PATH: &str = "/wallet/v2/cards";
/// Start card embossing path on the PCI gateway host.
pub const START_EMBOSSING_PATH: &str = "/embossing/v1/triggers/embossing";
/// Resend cards for embossing path on the PCI gateway host.
pub const RESEND_PATH: &str = "/embossing/v1/cards/reembossing";

/// Add card to next scheduled embossing path on the PCI gateway host.
pub fn add_to_embossing_path(card: PismoCardId) -> String {
    format!("/embossing/v1/cards/{card}/embossing")
}

/// Where and as whom the station talks to Pismo.
pub struct PismoClientConfig {
    /// API host (token, card creation), e.g. `https://sandbox.pismolabs.io`.
    pub api_url: String,
    /// PCI gateway host (embossing), e.g. `https://gw-pci.pismolabs.io`.
    pub pci_url: String,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret (wiped on drop, never printed).
    pub client_secret: PismoSecret,
    /// Attempts per call on network errors and 5xx (at least 1).
    pub attempts: u32,
    /// First retry delay; doubles up to `backoff_cap`.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_cap: Duration,
    /// Timeout of one HTTP exchange.
    pub request_timeout: Duration,
}

impl std::fmt::Debug for PismoClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PismoClientConfig")
            .field("api_url", &self.api_url)
            .field("pci_url", &self.pci_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .finish_non_exhaustive()
    }
}

impl PismoClientConfig {
    /// Settings with the default retry policy (4 attempts, 200 ms doubling to 5 s, 15 s timeout).
    pub fn new(api_url: &str, pci_url: &str, client_id: &str, secret: PismoSecret) -> Self {
        PismoClientConfig {
            api_url: api_url.trim_end_matches('/').to_string(),
            pci_url: pci_url.trim_end_matches('/').to_string(),
            client_id: client_id.to_string(),
            client_secret: secret,
            attempts: 4,
            backoff_base: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
        }
    }
}

/// What create card did (201 or 200); a 409 is [`PismoError::Duplicate`].
#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome {
    /// 201: a new card.
    Created(CardCreated),
    /// 200: the same idempotency key was seen before; this is the card it made.
    Replayed(CardCreated),
}

impl CreateOutcome {
    /// The card, new or replayed.
    pub fn card(&self) -> &CardCreated {
        match self {
            CreateOutcome::Created(c) | CreateOutcome::Replayed(c) => c,
        }
    }

    /// Words for staff.
    pub fn staff_words(&self) -> String {
        match self {
            CreateOutcome::Created(c) => format!("card {} created at Pismo", c.id),
            CreateOutcome::Replayed(c) => {
                format!(
                    "card {} was already created at Pismo for this request",
                    c.id
                )
            }
        }
    }
}

/// What add card to next scheduled embossing answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    /// 202: the card goes out in the next embossing run.
    Accepted,
    /// 404: not found — before the ingress event this means "not ready yet".
    NotReady,
    /// 406: the card was embossed already and not resent.
    AlreadyEmbossed,
}

impl AddOutcome {
    /// Words for staff.
    pub fn staff_words(&self) -> &'static str {
        match self {
            AddOutcome::Accepted => "card added to the next embossing run",
            AddOutcome::NotReady => "Pismo is still preparing the card",
            AddOutcome::AlreadyEmbossed => {
                "card already embossed; use Make again to have it sent again"
            }
        }
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

struct CachedToken {
    secret: PismoSecret,
    renew_at: Instant,
}

/// A Pismo client; share it behind an `Arc` (the token is cached inside).
pub struct PismoClient {
    http: reqwest::Client,
    cfg: PismoClientConfig,
    token: Mutex<Option<CachedToken>>,
}

/// One HTTP answer: status and body bytes.
struct Answer {
    status: StatusCode,
    /// Wiped on drop: the token endpoint's answer carries the bearer token.
    body: Zeroizing<String>,
}

fn error_message(body: &str) -> String {
    serde_json::from_str::<PismoErrorBody>(body)
        .ok()
        .and_then(|b| b.message)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "no reason given".into())
}

impl PismoClient {
    /// A client for `cfg`.
    pub fn new(cfg: PismoClientConfig) -> Result<Self, PismoError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .build()
            .map_err(|e| PismoError::Config(e.to_string()))?;
        Ok(PismoClient {
            http,
            cfg,
            token: Mutex::new(None),
        })
    }

    /// A bearer token, from the cache while it has more than 30 s to live.
    pub async fn token(&self) -> Result<PismoSecret, PismoError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref() {
            if Instant::now() < t.renew_at {
                return Ok(t.secret.clone());
            }
        }
        let url = format!("{}{TOKEN_PATH}", self.cfg.api_url);
        let answer = self
            .with_retries("token", || {
                self.http
                    .post(&url)
                    .basic_auth(&self.cfg.client_id, Some(self.cfg.client_secret.expose()))
                    .form(&[("grant_type", "client_credentials")])
            })
            .await?;
        match answer.status.as_u16() {
            200 => {
                let t: TokenAnswer =
                    serde_json::from_str(&answer.body).map_err(|_| PismoError::Unexpected {
                        call: "token",
                        status: 200,
                    })?;
                let secret = PismoSecret::new(t.access_token);
                let life = Duration::from_secs(t.expires_in.unwrap_or(300));
                *cached = Some(CachedToken {
                    secret: secret.clone(),
                    renew_at: Instant::now() + life.saturating_sub(Duration::from_secs(30)),
                });
                Ok(secret)
            }
            400 | 401 | 403 => Err(PismoError::Unauthorized),
            status => Err(PismoError::Unexpected {
                call: "token",
                status,
            }),
        }
    }

    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    /// Send with retries on network errors and 5xx only.
    async fn with_retries<F>(&self, call: &'static str, build: F) -> Result<Answer, PismoError>
    where
        F: Fn() -> reqwest::RequestBuilder,
    {
        let mut backoff = Backoff::new(self.cfg.backoff_base, self.cfg.backoff_cap);
        let attempts = self.cfg.attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            match build().send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let body = Zeroizing::new(resp.text().await.unwrap_or_default());
                    if status.is_server_error() {
                        last = format!("HTTP {}", status.as_u16());
                    } else {
                        return Ok(Answer { status, body });
                    }
                }
                Err(e) => last = e.without_url().to_string(),
            }
            if attempt < attempts {
                tracing::warn!(call, attempt, detail = %last, "Pismo call failed; trying again");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
        Err(PismoError::Unreachable { detail: last })
    }

    /// An authenticated call; a 401 drops the cached token and tries once more.
    async fn call(
        &self,
        call: &'static str,
        method: Method,
        url: String,
        headers: &[(&'static str, String)],
        body: Option<serde_json::Value>,
    ) -> Result<Answer, PismoError> {
        for fresh in [false, true] {
            if fresh {
                self.forget_token().await;
            }
            let token = self.token().await?;
            let answer = self
                .with_retries(call, || {
                    let mut rb = self
                        .http
                        .request(method.clone(), &url)
                        .bearer_auth(token.expose());
                    for (k, v) in headers {
                        rb = rb.header(*k, v);
                    }
                    if let Some(b) = &body {
                        rb = rb.json(b);
                    }
                    rb
                })
                .await?;
            if answer.status != StatusCode::UNAUTHORIZED {
                return Ok(answer);
            }
        }
        Err(PismoError::Unauthorized)
    }

    /// Create a plastic card (`POST /wallet/v2/cards` on the API host) with the
    /// request id as the idempotency key.
    pub async fn create_card(
        &self,
        customer: CustomerId,
        request: &RequestId,
        body: &CreatePlasticCard,
    ) -> Result<CreateOutcome, PismoError> {
        let json = serde_json::to_value(body).map_err(|e| PismoError::Config(e.to_string()))?;
        let a = self
            .call(
                "create card",
                Method::POST,
                format!("{}{CREATE_CARD_PATH}", self.cfg.api_url),
                &[
                    ("x-customer-id", customer.0.to_string()),
                    ("x-idempotency-key", request.as_str().to_string()),
                ],
                Some(json),
            )
            .await?;
        let card = || {
            serde_json::from_str::<CardCreated>(&a.body).map_err(|_| PismoError::Unexpected {
                call: "create card",
                status: a.status.as_u16(),
            })
        };
        match a.status.as_u16() {
            201 => Ok(CreateOutcome::Created(card()?)),
            200 => Ok(CreateOutcome::Replayed(card()?)),
            409 => Err(PismoError::Duplicate),
            403 => Err(PismoError::UnknownCustomer {
                customer: customer.0,
            }),
            400 => Err(PismoError::BadRequest {
                message: error_message(&a.body),
            }),
            status => Err(PismoError::Unexpected {
                call: "create card",
                status,
            }),
        }
    }

    /// Add a card to the next scheduled embossing (`PUT …/embossing` on the PCI host).
    pub async fn add_to_embossing(&self, card: PismoCardId) -> Result<AddOutcome, PismoError> {
        let a = self
            .call(
                "add to embossing",
                Method::PUT,
                format!("{}{}", self.cfg.pci_url, add_to_embossing_path(card)),
                &[],
                None,
            )
            .await?;
        match a.status.as_u16() {
            202 => Ok(AddOutcome::Accepted),
            404 => Ok(AddOutcome::NotReady),
            406 => Ok(AddOutcome::AlreadyEmbossed),
            400 => Err(PismoError::BadRequest {
                message: error_message(&a.body),
            }),
            status => Err(PismoError::Unexpected {
                call: "add to embossing",
                status,
            }),
        }
    }

    /// Start an embossing run for `config` (`POST /embossing/v1/triggers/embossing`),
    /// limited to `cards` when given. EXT (test) environments only: the caller checks.
    pub async fn start_embossing(
        &self,
        config: ConfigId,
        cards: &[PismoCardId],
    ) -> Result<(), PismoError> {
        let mut body = serde_json::json!({ "config_id": config.to_string() });
        if !cards.is_empty() {
            body["cards"] = cards.iter().map(|c| c.0).collect();
        }
        let a = self
            .call(
                "start embossing",
                Method::POST,
                format!("{}{START_EMBOSSING_PATH}", self.cfg.pci_url),
                &[],
                Some(body),
            )
            .await?;
        match a.status.as_u16() {
            202 => Ok(()),
            400 => Err(PismoError::BadRequest {
                message: error_message(&a.body),
            }),
            status => Err(PismoError::Unexpected {
                call: "start embossing",
                status,
            }),
        }
    }

    /// Resend cards for embossing (`POST /embossing/v1/cards/reembossing`).
    pub async fn resend(&self, cards: &[PismoCardId]) -> Result<(), PismoError> {
        let body = serde_json::json!({ "cards": cards.iter().map(|c| c.0).collect::<Vec<_>>() });
        let a = self
            .call(
                "resend for embossing",
                Method::POST,
                format!("{}{RESEND_PATH}", self.cfg.pci_url),
                &[],
                Some(body),
            )
            .await?;
        match a.status.as_u16() {
            202 => Ok(()),
            400 => Err(PismoError::BadRequest {
                message: error_message(&a.body),
            }),
            status => Err(PismoError::Unexpected {
                call: "resend for embossing",
                status,
            }),
        }
    }
}
