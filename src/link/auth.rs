//! OAuth 2.0 JWT bearer (RFC 7523) client side: ES256 client assertion and a
//! cached access token refreshed ahead of its expiry.

use super::error::LinkError;
use super::wire::{TokenResponse, JWT_BEARER_GRANT};
use josekit::jwk::Jwk;
use josekit::jws::{JwsHeader, ES256};
use josekit::jwt::{self, JwtPayload};
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;
use tokio::time::Instant;
use zeroize::Zeroizing;

/// Longest client assertion lifetime D1 accepts.
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// A principal's ES256 signing credential (issuer backend or station).
pub struct ClientCredential {
    client_id: String,
    kid: String,
    private_jwk: Zeroizing<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredential")
            .field("client_id", &self.client_id)
            .field("kid", &self.kid)
            .field("private_jwk", &"<redacted>")
            .finish()
    }
}

impl ClientCredential {
    /// Credential from a private EC P-256 JWK; `kid` is taken from the JWK.
    pub fn from_private_jwk(
        client_id: impl Into<String>,
        private_jwk_json: &str,
        audience: Option<String>,
    ) -> Result<Self, LinkError> {
        let jwk = Jwk::from_bytes(private_jwk_json.as_bytes())
            .map_err(|_| LinkError::Credential("private key is not a JWK".into()))?;
        let kid = jwk
            .key_id()
            .ok_or_else(|| LinkError::Credential("private JWK has no kid".into()))?
            .to_string();
        ES256
            .signer_from_jwk(&jwk)
            .map_err(|_| LinkError::Credential("private JWK is not an ES256 key".into()))?;
        Ok(ClientCredential {
            client_id: client_id.into(),
            kid,
            private_jwk: Zeroizing::new(private_jwk_json.to_string()),
            audience,
        })
    }

    /// Credential with an explicit `kid` (from configuration); a JWK naming another kid is refused.
    pub fn with_kid(
        client_id: impl Into<String>,
        kid: &str,
        private_jwk_json: &str,
        audience: Option<String>,
    ) -> Result<Self, LinkError> {
        let jwk = Jwk::from_bytes(private_jwk_json.as_bytes())
            .map_err(|_| LinkError::Credential("private key is not a JWK".into()))?;
        if jwk.key_id().is_some_and(|k| k != kid) {
            return Err(LinkError::Credential(format!(
                "signing key JWK names another kid than the configured {kid}"
            )));
        }
        ES256
            .signer_from_jwk(&jwk)
            .map_err(|_| LinkError::Credential("private JWK is not an ES256 key".into()))?;
        Ok(ClientCredential {
            client_id: client_id.into(),
            kid: kid.to_string(),
            private_jwk: Zeroizing::new(private_jwk_json.to_string()),
            audience,
        })
    }

    /// The `iss`/`sub` of this credential's assertions.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The key id named in the assertion header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A signed client assertion issued at `now`, valid for `lifetime` (clamped to 15 min).
    pub fn assertion(&self, now: SystemTime, lifetime: Duration) -> Result<String, LinkError> {
        self.assertion_with_audience(now, lifetime, self.audience.as_deref())
    }

    /// An assertion for the token endpoint at `token_url`: `aud` is the configured audience,
    /// or that endpoint (RFC 7523 §3), so the assertion is good at this server only.
    pub fn assertion_for(
        &self,
        token_url: &str,
        now: SystemTime,
        lifetime: Duration,
    ) -> Result<String, LinkError> {
        self.assertion_with_audience(
            now,
            lifetime,
            Some(self.audience.as_deref().unwrap_or(token_url)),
        )
    }

    fn assertion_with_audience(
        &self,
        now: SystemTime,
        lifetime: Duration,
        audience: Option<&str>,
    ) -> Result<String, LinkError> {
        let jwk = Jwk::from_bytes(self.private_jwk.as_bytes())
            .map_err(|_| LinkError::Credential("private key is not a JWK".into()))?;
        let mut signer = ES256
            .signer_from_jwk(&jwk)
            .map_err(|_| LinkError::Credential("private JWK is not an ES256 key".into()))?;
        // josekit copies the signer's kid into the header: make it the configured one.
        signer.set_key_id(self.kid.clone());
        let mut header = JwsHeader::new();
        header.set_token_type("JWT");
        header.set_key_id(self.kid.clone());
        let mut claims = JwtPayload::new();
        claims.set_issuer(self.client_id.clone());
        claims.set_subject(self.client_id.clone());
        claims.set_issued_at(&now);
        claims.set_expires_at(&(now + lifetime.min(MAX_ASSERTION_LIFETIME)));
        claims.set_jwt_id(uuid::Uuid::new_v4().to_string());
        if let Some(aud) = audience {
            claims.set_audience(vec![aud.to_string()]);
        }
        jwt::encode_with_signer(&claims, &header, &signer)
            .map_err(|e| LinkError::Credential(format!("signing failed: {e}")))
    }
}

/// A bearer access token; its value never appears in `Debug`.
#[derive(Clone)]
pub struct AccessToken(Zeroizing<String>);

impl AccessToken {
    /// The token value for the `Authorization` header.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

struct Cached {
    token: AccessToken,
    expires_at: Instant,
}

/// Fetches access tokens from the token endpoint and reuses them until shortly before expiry.
pub struct TokenSource {
    http: reqwest::Client,
    token_url: String,
    credential: ClientCredential,
    refresh_margin: Duration,
    cached: Mutex<Option<Cached>>,
}

impl TokenSource {
    /// A token source posting assertions of `credential` to `token_url`.
    pub fn new(http: reqwest::Client, token_url: String, credential: ClientCredential) -> Self {
        TokenSource {
            http,
            token_url,
            credential,
            refresh_margin: Duration::from_secs(60),
            cached: Mutex::new(None),
        }
    }

    /// How long before expiry the token is renewed (default 60 s).
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// A valid access token, from cache when it has more than the margin left.
    pub async fn token(&self) -> Result<AccessToken, LinkError> {
        let mut guard = self.cached.lock().await;
        if let Some(c) = guard.as_ref() {
            if Instant::now() + self.refresh_margin < c.expires_at {
                return Ok(c.token.clone());
            }
        }
        let fresh = self.fetch().await?;
        let token = fresh.token.clone();
        *guard = Some(fresh);
        Ok(token)
    }

    /// Forget the cached token, e.g. after the hub answered 401.
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn fetch(&self) -> Result<Cached, LinkError> {
        let assertion = self.credential.assertion_for(
            &self.token_url,
            SystemTime::now(),
            Duration::from_secs(5 * 60),
        )?;
        let resp = self
            .http
            .post(&self.token_url)
            .form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", &assertion)])
            .send()
            .await
            .map_err(LinkError::transport)?;
        let status = resp.status();
        if status.is_server_error() {
            return Err(LinkError::Unavailable {
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            return Err(LinkError::Unauthorized {
                status: status.as_u16(),
            });
        }
        let body: TokenResponse = resp
            .json()
            .await
            .map_err(|e| LinkError::Protocol(format!("token answer: {}", e.without_url())))?;
        Ok(Cached {
            token: AccessToken(Zeroizing::new(body.access_token)),
            expires_at: token_expiry(Instant::now(), body.expires_in),
        })
    }
}

/// Longest lifetime believed from a token answer: D1 tokens live 15 minutes, and a hub
/// claiming more (or a huge `expires_in` that would overflow the clock) is asked again sooner.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// When a token answered at `now` with `expires_in` seconds stops being used.
fn token_expiry(now: Instant, expires_in: u64) -> Instant {
    let lifetime = Duration::from_secs(expires_in).min(MAX_TOKEN_LIFETIME);
    now.checked_add(lifetime).unwrap_or(now)
}

#[cfg(test)]
mod expiry_tests {
    use super::*;

    #[test]
    fn a_huge_expires_in_is_capped_not_an_overflow() {
        let now = Instant::now();
        assert_eq!(token_expiry(now, u64::MAX), now + MAX_TOKEN_LIFETIME);
    }

    #[test]
    fn a_fifteen_minute_token_is_believed() {
        let now = Instant::now();
        assert_eq!(token_expiry(now, 900), now + Duration::from_secs(900));
    }

    #[test]
    fn a_token_that_expired_already_is_not_reused() {
        let now = Instant::now();
        assert_eq!(token_expiry(now, 0), now);
    }
}
