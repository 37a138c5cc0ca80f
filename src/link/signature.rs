//! Orders signed by the hub: a station acts only on an order whose signature verifies.
//!
//! Transport security (TLS, the bearer token) says who the station talks to, not that the
//! order body came from the hub's order book: a compromised proxy or a misrouted response could
//! hand the station an order to personalize. The hub therefore signs each order it hands out
//! (compact JWS, ES256, `kid` naming the hub's order-signing key, published like its JWE key),
//! and the station takes the order *from the verified payload*, so no unsigned byte is used.

use std::collections::HashMap;

use josekit::jwk::Jwk;
use josekit::jws::alg::ecdsa::EcdsaJwsVerifier;
use josekit::jws::{self, JwsHeader, ES256};
use zeroize::Zeroizing;

use super::error::LinkError;
use super::wire::StationOrder;

/// JWS `typ` of a signed station order.
pub const ORDER_JWS_TYPE: &str = "station-order+jws";

/// The hub's side: signs orders with its order-signing key.
pub struct OrderSigner {
    kid: String,
    private_jwk: Zeroizing<String>,
}

impl std::fmt::Debug for OrderSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl OrderSigner {
    /// A signer from a private ES256 JWK carrying its `kid`.
    pub fn from_private_jwk(private_jwk_json: &str) -> Result<Self, LinkError> {
        let jwk = Jwk::from_bytes(private_jwk_json.as_bytes())
            .map_err(|_| LinkError::Credential("order-signing key is not a JWK".into()))?;
        let kid = jwk
            .key_id()
            .ok_or_else(|| LinkError::Credential("order-signing JWK has no kid".into()))?
            .to_string();
        ES256
            .signer_from_jwk(&jwk)
            .map_err(|_| LinkError::Credential("order-signing JWK is not an ES256 key".into()))?;
        Ok(OrderSigner {
            kid,
            private_jwk: Zeroizing::new(private_jwk_json.to_string()),
        })
    }

    /// The order with its `signature` set over everything else in it.
    pub fn sign(&self, order: &StationOrder) -> Result<StationOrder, LinkError> {
        let unsigned = StationOrder {
            signature: None,
            ..order.clone()
        };
        let payload =
            serde_json::to_vec(&unsigned).map_err(|e| LinkError::Protocol(e.to_string()))?;
        let jwk = Jwk::from_bytes(self.private_jwk.as_bytes())
            .map_err(|_| LinkError::Credential("order-signing key is not a JWK".into()))?;
        let signer = ES256
            .signer_from_jwk(&jwk)
            .map_err(|_| LinkError::Credential("order-signing JWK is not an ES256 key".into()))?;
        let mut header = JwsHeader::new();
        header.set_token_type(ORDER_JWS_TYPE);
        header.set_key_id(self.kid.clone());
        let jws = jws::serialize_compact(&payload, &header, &signer)
            .map_err(|e| LinkError::Credential(format!("signing the order failed: {e}")))?;
        Ok(StationOrder {
            signature: Some(jws),
            ..unsigned
        })
    }
}

/// The station's side: the hub's public order-signing keys, by `kid` (several during rotation).
#[derive(Debug, Clone)]
pub struct OrderVerifier {
    keys: HashMap<String, EcdsaJwsVerifier>,
}

impl OrderVerifier {
    /// A verifier from public ES256 JWKs (JSON), each with its `kid`.
    pub fn from_public_jwks<S: AsRef<str>>(jwks: &[S]) -> Result<Self, LinkError> {
        let mut keys = HashMap::new();
        for text in jwks {
            let jwk = Jwk::from_bytes(text.as_ref().as_bytes())
                .map_err(|_| LinkError::Config("an order-signing key is not a JWK".into()))?;
            let kid = jwk
                .key_id()
                .ok_or_else(|| LinkError::Config("an order-signing JWK has no kid".into()))?
                .to_string();
            let verifier = ES256.verifier_from_jwk(&jwk).map_err(|_| {
                LinkError::Config(format!(
                    "order-signing key {kid} is not an ES256 public key"
                ))
            })?;
            keys.insert(kid, verifier);
        }
        if keys.is_empty() {
            return Err(LinkError::Config(
                "no order-signing key of the hub is configured (upstream.order_keys)".into(),
            ));
        }
        Ok(OrderVerifier { keys })
    }

    /// The order as the hub signed it, or why it must not be used.
    pub fn verify(&self, order: &StationOrder) -> Result<StationOrder, OrderRefused> {
        let jws = order.signature.as_deref().ok_or(OrderRefused::Unsigned)?;
        let header = jws::deserialize_compact_with_selector(jws, |h| {
            let kid = h.key_id().unwrap_or_default();
            Ok(self
                .keys
                .get(kid)
                .map(|v| v as &dyn josekit::jws::JwsVerifier))
        });
        let (payload, header) = header.map_err(|_| OrderRefused::BadSignature)?;
        if header.token_type() != Some(ORDER_JWS_TYPE) {
            return Err(OrderRefused::BadSignature);
        }
        let signed: StationOrder =
            serde_json::from_slice(&payload).map_err(|_| OrderRefused::BadSignature)?;
        if signed.operation_id != order.operation_id || signed.signature.is_some() {
            return Err(OrderRefused::Mismatch);
        }
        Ok(signed)
    }
}

/// Why an order from the hub was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OrderRefused {
    /// The hub sent no signature.
    #[error("the order carries no hub signature")]
    Unsigned,
    /// The signature does not verify under any configured hub key.
    #[error("the order's signature does not verify under the hub's order-signing keys")]
    BadSignature,
    /// The signed order is another operation than the one it was delivered as.
    #[error("the signed order names another operation than the one delivered")]
    Mismatch,
}

impl OrderRefused {
    /// Stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            OrderRefused::Unsigned => "ORDER_UNSIGNED",
            OrderRefused::BadSignature => "ORDER_BAD_SIGNATURE",
            OrderRefused::Mismatch => "ORDER_SIGNATURE_MISMATCH",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};

    fn keypair(kid: &str) -> (String, String) {
        let mut pair = EcKeyPair::generate(EcCurve::P256).unwrap();
        pair.set_key_id(Some(kid));
        (
            pair.to_jwk_key_pair().to_string(),
            pair.to_jwk_public_key().to_string(),
        )
    }

    fn order() -> StationOrder {
        StationOrder {
            operation_id: "op-1".into(),
            issuer_id: "ISSUER".into(),
            card_id: "card-1".into(),
            received_at: "2026-11-30T10:00:00Z".into(),
            order: serde_json::json!({"persoStation": "BR-1", "encryptedData": "x.y.z"}),
            signature: None,
        }
    }

    #[test]
    fn a_signed_order_verifies_and_is_taken_from_the_signed_payload() {
        let (private, public) = keypair("orders-1");
        let signed = OrderSigner::from_private_jwk(&private)
            .unwrap()
            .sign(&order())
            .unwrap();
        let v = OrderVerifier::from_public_jwks(&[public]).unwrap();
        assert_eq!(v.verify(&signed).unwrap(), order());
    }

    #[test]
    fn an_unsigned_order_is_refused() {
        let (_, public) = keypair("orders-1");
        let v = OrderVerifier::from_public_jwks(&[public]).unwrap();
        assert_eq!(v.verify(&order()), Err(OrderRefused::Unsigned));
    }

    #[test]
    fn an_order_signed_by_another_key_under_the_same_kid_is_refused() {
        let (other, _) = keypair("orders-1");
        let (_, public) = keypair("orders-1");
        let signed = OrderSigner::from_private_jwk(&other)
            .unwrap()
            .sign(&order())
            .unwrap();
        let v = OrderVerifier::from_public_jwks(&[public]).unwrap();
        assert_eq!(v.verify(&signed), Err(OrderRefused::BadSignature));
    }

    #[test]
    fn a_signature_moved_to_another_operation_is_refused() {
        let (private, public) = keypair("orders-1");
        let signed = OrderSigner::from_private_jwk(&private)
            .unwrap()
            .sign(&order())
            .unwrap();
        let moved = StationOrder {
            operation_id: "op-2".into(),
            ..signed
        };
        let v = OrderVerifier::from_public_jwks(&[public]).unwrap();
        assert_eq!(v.verify(&moved), Err(OrderRefused::Mismatch));
    }

    #[test]
    fn unsigned_fields_changed_in_transit_are_not_used() {
        let (private, public) = keypair("orders-1");
        let mut signed = OrderSigner::from_private_jwk(&private)
            .unwrap()
            .sign(&order())
            .unwrap();
        signed.order = serde_json::json!({"persoStation": "BR-EVIL"});
        let v = OrderVerifier::from_public_jwks(&[public]).unwrap();
        assert_eq!(v.verify(&signed).unwrap().order, order().order);
    }

    #[test]
    fn no_configured_key_is_a_configuration_error() {
        let none: [&str; 0] = [];
        assert!(matches!(
            OrderVerifier::from_public_jwks(&none),
            Err(LinkError::Config(_))
        ));
    }
}
