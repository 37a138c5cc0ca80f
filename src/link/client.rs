//! HTTP client of the station link: long poll for orders, status events, heartbeat.

use super::auth::{ClientCredential, TokenSource};
use super::error::LinkError;
use super::signature::OrderVerifier;
use super::wire::{ErrorBody, Heartbeat, StationOrder, StationOrders, StatusEvent};
use reqwest::{Method, StatusCode};
use std::path::PathBuf;
use std::time::Duration;
use zeroize::Zeroizing;

/// Optional mutual TLS material, all PEM files.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// Client certificate chain presented to the hub.
    pub client_cert: Option<PathBuf>,
    /// Private key of the client certificate.
    pub client_key: Option<PathBuf>,
    /// CA bundle trusted for the hub instead of the built-in roots.
    pub ca_bundle: Option<PathBuf>,
}

/// Where and as whom the station talks to its hub.
#[derive(Debug)]
pub struct LinkConfig {
    /// Base URL of the hub, e.g. `https://hub.example/` (station paths are appended).
    pub base_url: String,
    /// Token endpoint URL.
    pub token_url: String,
    /// This station's persoStation id.
    pub station_id: String,
    /// Signing credential of the station (client id, kid, private key).
    pub credential: ClientCredential,
    /// mTLS settings.
    pub tls: TlsFiles,
    /// Timeout of ordinary requests (long polls get their wait on top).
    pub request_timeout: Duration,
    /// The hub's order-signing keys: only orders that verify are handed on.
    pub order_keys: OrderVerifier,
}

impl LinkConfig {
    /// Link settings from the station configuration (`[station]`, `[upstream]`).
    pub fn from_station_config(config: &crate::config::StationConfig) -> Result<Self, LinkError> {
        let up = &config.upstream;
        let key_path = config.resolve(&up.signing_key);
        let jwk =
            Zeroizing::new(std::fs::read_to_string(&key_path).map_err(|e| {
                LinkError::Config(format!("cannot read {}: {e}", key_path.display()))
            })?);
        let order_keys = up
            .order_keys
            .iter()
            .map(|p| {
                let path = config.resolve(p);
                std::fs::read_to_string(&path)
                    .map_err(|e| LinkError::Config(format!("cannot read {}: {e}", path.display())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let order_keys = OrderVerifier::from_public_jwks(&order_keys)?;
        let base = up.url.trim_end_matches('/').to_string();
        let credential = ClientCredential::with_kid(up.client_id.clone(), &up.kid, &jwk, None)?;
        Ok(LinkConfig {
            token_url: format!("{base}/oauth2/token"),
            base_url: base,
            station_id: config.station.perso_station.clone(),
            credential,
            tls: TlsFiles {
                client_cert: up.client_certificate.as_ref().map(|p| config.resolve(p)),
                client_key: up.client_key.as_ref().map(|p| config.resolve(p)),
                ca_bundle: up.ca_bundle.as_ref().map(|p| config.resolve(p)),
            },
            request_timeout: Duration::from_secs(30),
            order_keys,
        })
    }
}

/// The station's client to its upstream hub.
pub struct LinkClient {
    http: reqwest::Client,
    base_url: String,
    station_id: String,
    request_timeout: Duration,
    order_keys: OrderVerifier,
    tokens: TokenSource,
}

fn read_pem(path: &PathBuf, what: &str) -> Result<Zeroizing<Vec<u8>>, LinkError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| LinkError::Config(format!("cannot read {what} {}: {e}", path.display())))
}

/// Build a rustls reqwest client with the optional mTLS identity and CA bundle.
pub fn http_client(tls: &TlsFiles, timeout: Duration) -> Result<reqwest::Client, LinkError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(timeout)
        .timeout(timeout);
    match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let mut pem = read_pem(cert, "client certificate")?;
            pem.extend_from_slice(b"\n");
            pem.extend_from_slice(&read_pem(key, "client key")?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|_| {
                LinkError::Config("client certificate or key is not valid PEM".into())
            })?;
            builder = builder.identity(identity);
        }
        (None, None) => {}
        _ => {
            return Err(LinkError::Config(
                "mTLS needs both a client certificate and its key".into(),
            ))
        }
    }
    if let Some(ca) = &tls.ca_bundle {
        let pem = read_pem(ca, "CA bundle")?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|_| LinkError::Config("CA bundle is not valid PEM".into()))?;
        if certs.is_empty() {
            return Err(LinkError::Config("CA bundle holds no certificate".into()));
        }
        builder = builder.tls_built_in_root_certs(false);
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    builder
        .build()
        .map_err(|e| LinkError::Config(format!("HTTP client: {e}")))
}

impl LinkClient {
    /// A client for `config`; no network traffic happens until the first call.
    pub fn new(config: LinkConfig) -> Result<Self, LinkError> {
        let http = http_client(&config.tls, config.request_timeout)?;
        let tokens = TokenSource::new(http.clone(), config.token_url, config.credential);
        Ok(LinkClient {
            http,
            base_url: config.base_url.trim_end_matches('/').to_string(),
            station_id: config.station_id,
            request_timeout: config.request_timeout,
            order_keys: config.order_keys,
            tokens,
        })
    }

    /// This station's id.
    pub fn station_id(&self) -> &str {
        &self.station_id
    }

    /// Long poll: pending orders for this station, waiting up to `wait` for one to arrive.
    pub async fn poll_orders(&self, wait: Duration) -> Result<Vec<StationOrder>, LinkError> {
        let url = format!(
            "{}/stations/{}/orders?wait={}",
            self.base_url,
            self.station_id,
            wait.as_secs()
        );
        let resp = self
            .send(Method::GET, &url, None, self.request_timeout + wait)
            .await?;
        let body: StationOrders = resp
            .json()
            .await
            .map_err(|e| LinkError::Protocol(format!("orders: {}", e.without_url())))?;
        Ok(body
            .orders
            .iter()
            .filter_map(|o| match self.order_keys.verify(o) {
                Ok(signed) => Some(signed),
                Err(refused) => {
                    // Not acknowledged: the hub keeps offering it, and the log says so each time.
                    tracing::error!(
                        operation_id = %o.operation_id,
                        code = refused.code(),
                        "order from the hub not accepted: {refused}; check upstream.order_keys"
                    );
                    None
                }
            })
            .collect())
    }

    /// Report one status event of an operation (idempotent at the hub on operation id + sequence).
    pub async fn send_event(
        &self,
        operation_id: &str,
        event: &StatusEvent,
    ) -> Result<(), LinkError> {
        let url = format!(
            "{}/stations/{}/orders/{}/events",
            self.base_url, self.station_id, operation_id
        );
        let body = serde_json::to_vec(event).map_err(|e| LinkError::Protocol(e.to_string()))?;
        self.send(Method::POST, &url, Some(body), self.request_timeout)
            .await
            .map(drop)
    }

    /// Report station health.
    pub async fn send_heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), LinkError> {
        let url = format!("{}/stations/{}/heartbeat", self.base_url, self.station_id);
        let body = serde_json::to_vec(heartbeat).map_err(|e| LinkError::Protocol(e.to_string()))?;
        self.send(Method::POST, &url, Some(body), self.request_timeout)
            .await
            .map(drop)
    }

    /// One authenticated request; on 401 the token is renewed once and the request repeated.
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<reqwest::Response, LinkError> {
        let mut refreshed = false;
        loop {
            let token = self.tokens.token().await?;
            let mut req = self
                .http
                .request(method.clone(), url)
                .bearer_auth(token.secret())
                .timeout(timeout);
            if let Some(b) = &body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            let resp = req.send().await.map_err(LinkError::transport)?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                refreshed = true;
                self.tokens.invalidate().await;
                continue;
            }
            return classify(resp).await;
        }
    }
}

async fn classify(resp: reqwest::Response) -> Result<reqwest::Response, LinkError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let code = status.as_u16();
    if status == StatusCode::UNAUTHORIZED {
        return Err(LinkError::Unauthorized { status: code });
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Err(LinkError::Unavailable { status: code });
    }
    // Only the D1 error code is kept: bodies are never logged verbatim. A body that is
    // not JSON carries no code; a JSON body whose errorCode the contract does not define
    // is an answer this agent cannot read (retried, never parked on a guess).
    let body = resp.bytes().await.unwrap_or_default();
    let error_code = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(b) => b.error_code,
        Err(e) if e.is_data() => {
            return Err(LinkError::Protocol(format!("HTTP {code}: {e}")));
        }
        Err(_) => None,
    };
    Err(LinkError::Rejected {
        status: code,
        code: error_code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::D1ErrorCode;

    fn answer(status: u16, body: &'static str) -> reqwest::Response {
        let resp = axum::http::Response::builder()
            .status(status)
            .body(body)
            .unwrap();
        reqwest::Response::from(resp)
    }

    #[tokio::test]
    async fn a_rejection_keeps_the_d1_error_code_of_its_body() {
        let body = r#"{"errorCode":"FIELD_INVALID_VALUE","error":"sequence"}"#;
        match classify(answer(400, body)).await {
            Err(LinkError::Rejected { status, code }) => {
                assert_eq!((status, code), (400, Some(D1ErrorCode::FieldInvalidValue)))
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_rejection_whose_error_code_is_unknown_is_refused_naming_the_field() {
        let e = classify(answer(400, r#"{"errorCode":"NOT_A_CODE"}"#))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "LINK_PROTOCOL");
        let words = e.to_string();
        assert!(words.contains("errorCode"), "{words}");
        assert!(words.contains("NOT_A_CODE"), "{words}");
    }

    #[tokio::test]
    async fn a_rejection_without_a_json_body_has_no_code() {
        match classify(answer(404, "not found")).await {
            Err(LinkError::Rejected { status, code }) => assert_eq!((status, code), (404, None)),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }
}
