//! The hub's OAuth 2.0 token endpoint logic (RFC 7523 JWT bearer) and bearer checks.

use super::error::HubError;
use crate::link::wire::TokenResponse;
use josekit::jwk::Jwk;
use josekit::jws::ES256;
use josekit::jwt;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Lifetime of access tokens issued by the hub.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Longest accepted distance between now and an assertion's `exp`.
pub const MAX_ASSERTION_AHEAD: Duration = Duration::from_secs(15 * 60);
/// Tolerated clock difference between the caller and the hub.
pub const CLOCK_SKEW: Duration = Duration::from_secs(30);

/// Who a token was issued to; tokens are scoped to one principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An issuer backend, by issuerId.
    Issuer(String),
    /// A branch station, by persoStation.
    Station(String),
}

struct Registered {
    principal: Principal,
    client_id: String,
    jwk: Jwk,
}

/// Registered client keys, issued tokens and seen assertion ids.
pub struct AuthBook {
    keys: HashMap<String, Registered>,
    tokens: Mutex<HashMap<String, (Principal, SystemTime)>>,
    seen_jti: Mutex<HashMap<String, SystemTime>>,
}

impl AuthBook {
    /// An empty book.
    pub fn new() -> Self {
        AuthBook {
            keys: HashMap::new(),
            tokens: Mutex::new(HashMap::new()),
            seen_jti: Mutex::new(HashMap::new()),
        }
    }

    /// Register a public ES256 JWK (JSON with `kid`) for `principal`, whose
    /// assertions must carry `iss` = `sub` = `client_id`.
    pub fn register(
        &mut self,
        principal: Principal,
        client_id: &str,
        public_jwk_json: &str,
    ) -> Result<(), String> {
        let jwk = Jwk::from_bytes(public_jwk_json.as_bytes()).map_err(|e| e.to_string())?;
        let kid = jwk
            .key_id()
            .ok_or_else(|| "client JWK has no kid".to_string())?
            .to_string();
        ES256.verifier_from_jwk(&jwk).map_err(|e| e.to_string())?;
        if self.keys.contains_key(&kid) {
            return Err(format!("kid {kid} registered twice"));
        }
        self.keys.insert(
            kid,
            Registered {
                principal,
                client_id: client_id.to_string(),
                jwk,
            },
        );
        Ok(())
    }

    /// Check a client assertion and issue an access token for its principal.
    ///
    /// `host` is the authority the caller reached the hub at (its `Host` header): the
    /// assertion's `aud` must name this hub's token endpoint there, so an assertion made for
    /// another server cannot be replayed here.
    pub fn exchange(
        &self,
        assertion: &str,
        host: &str,
        now: SystemTime,
    ) -> Result<TokenResponse, HubError> {
        let header =
            jwt::decode_header(assertion).map_err(|_| HubError::unauthorized("assertion"))?;
        let kid = header
            .claim("kid")
            .and_then(|v| v.as_str())
            .ok_or_else(|| HubError::unauthorized("kid"))?;
        let reg = self
            .keys
            .get(kid)
            .ok_or_else(|| HubError::unauthorized("kid"))?;
        let verifier = ES256
            .verifier_from_jwk(&reg.jwk)
            .map_err(HubError::internal)?;
        let (claims, _) = jwt::decode_with_verifier(assertion, &verifier)
            .map_err(|_| HubError::unauthorized("signature"))?;
        if claims.issuer() != Some(reg.client_id.as_str())
            || claims.subject() != Some(reg.client_id.as_str())
        {
            return Err(HubError::unauthorized("iss"));
        }
        let exp = claims
            .expires_at()
            .ok_or_else(|| HubError::unauthorized("exp"))?;
        if exp + CLOCK_SKEW <= now || exp > now + MAX_ASSERTION_AHEAD + CLOCK_SKEW {
            return Err(HubError::unauthorized("exp"));
        }
        if let Some(iat) = claims.issued_at() {
            if iat > now + CLOCK_SKEW {
                return Err(HubError::unauthorized("iat"));
            }
        }
        let audience = claims.audience().unwrap_or_default();
        if !audience.iter().any(|a| names_token_endpoint(a, host)) {
            return Err(HubError::unauthorized("aud"));
        }
        let jti = claims
            .jwt_id()
            .filter(|j| !j.is_empty())
            .ok_or_else(|| HubError::unauthorized("jti"))?;
        {
            let mut seen = self.seen_jti.lock().unwrap_or_else(|p| p.into_inner());
            seen.retain(|_, until| *until + CLOCK_SKEW > now);
            if seen.insert(jti.to_string(), exp).is_some() {
                return Err(HubError::unauthorized("jti"));
            }
        }
        let token = super::state::random_token();
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.retain(|_, (_, until)| *until > now);
        tokens.insert(token.clone(), (reg.principal.clone(), now + TOKEN_LIFETIME));
        Ok(TokenResponse {
            access_token: token,
            token_type: "Bearer".into(),
            expires_in: TOKEN_LIFETIME.as_secs(),
        })
    }

    /// The principal of a live bearer token.
    pub fn principal(&self, token: &str, now: SystemTime) -> Option<Principal> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(token)
            .filter(|(_, until)| *until > now)
            .map(|(p, _)| p.clone())
    }

    /// Drop every issued token (clients must fetch new ones).
    pub fn revoke_all(&self) {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// Whether `aud` is `http(s)://<host>/oauth2/token` (the scheme depends on whether the hub
/// runs behind TLS, which it cannot tell; the authority and path are what identify it).
fn names_token_endpoint(aud: &str, host: &str) -> bool {
    let rest = aud
        .strip_prefix("https://")
        .or_else(|| aud.strip_prefix("http://"));
    rest.is_some_and(|r| r.eq_ignore_ascii_case(&format!("{host}/oauth2/token")))
}

impl Default for AuthBook {
    fn default() -> Self {
        Self::new()
    }
}
