//! The station's client assertion carries what D1's token endpoint checks.

use josekit::jwk::Jwk;
use josekit::jws::ES256;
use josekit::jwt;
use station_agent::link::auth::MAX_ASSERTION_LIFETIME;
use station_agent::link::ClientCredential;
use station_agent::sandbox::keys::generate_es256_jwk;
use std::time::{Duration, SystemTime};

#[test]
fn assertion_is_es256_with_kid_and_iss_equal_sub() {
    let (private, public) = generate_es256_jwk("kid-7").unwrap();
    let cred =
        ClientCredential::from_private_jwk("ISSUER-1", &private, Some("https://hub/".into()))
            .unwrap();
    let now = SystemTime::now();

    let assertion = cred.assertion(now, Duration::from_secs(300)).unwrap();

    let verifier = ES256
        .verifier_from_jwk(&Jwk::from_bytes(public.as_bytes()).unwrap())
        .unwrap();
    let (claims, header) =
        jwt::decode_with_verifier(&assertion, &verifier).expect("valid ES256 signature");
    assert_eq!(header.key_id(), Some("kid-7"));
    assert_eq!(header.algorithm(), Some("ES256"));
    assert_eq!(claims.issuer(), Some("ISSUER-1"));
    assert_eq!(claims.subject(), Some("ISSUER-1"));
    assert_eq!(claims.audience(), Some(vec!["https://hub/"]));
    assert!(claims.jwt_id().is_some_and(|j| !j.is_empty()));
    assert!(claims.issued_at().is_some());
}

#[test]
fn assertion_lifetime_is_clamped_to_fifteen_minutes() {
    let (private, public) = generate_es256_jwk("kid-8").unwrap();
    let cred = ClientCredential::from_private_jwk("ISSUER-1", &private, None).unwrap();
    let now = SystemTime::now();

    let assertion = cred.assertion(now, Duration::from_secs(3600)).unwrap();

    let verifier = ES256
        .verifier_from_jwk(&Jwk::from_bytes(public.as_bytes()).unwrap())
        .unwrap();
    let (claims, _) = jwt::decode_with_verifier(&assertion, &verifier).unwrap();
    let exp = claims.expires_at().unwrap();
    let iat = claims.issued_at().unwrap();
    assert!(exp.duration_since(iat).unwrap() <= MAX_ASSERTION_LIFETIME);
}

#[test]
fn credential_debug_hides_the_private_key() {
    let (private, _) = generate_es256_jwk("kid-9").unwrap();
    let cred = ClientCredential::from_private_jwk("ISSUER-1", &private, None).unwrap();
    let d: serde_json::Value = serde_json::from_str(&private).unwrap();
    let secret = d["d"].as_str().unwrap();
    assert!(!format!("{cred:?}").contains(secret));
}

#[test]
fn a_configured_kid_goes_into_the_header() {
    let (private, public) = generate_es256_jwk("link-BR-1").unwrap();
    let cred = ClientCredential::with_kid("station-BR-1", "link-BR-1", &private, None).unwrap();

    let assertion = cred
        .assertion(SystemTime::now(), Duration::from_secs(60))
        .unwrap();

    let verifier = ES256
        .verifier_from_jwk(&Jwk::from_bytes(public.as_bytes()).unwrap())
        .unwrap();
    let (_, header) = jwt::decode_with_verifier(&assertion, &verifier).unwrap();
    assert_eq!(header.key_id(), Some("link-BR-1"));
}

#[test]
fn a_key_file_naming_another_kid_than_configured_is_refused() {
    let (private, _) = generate_es256_jwk("kid-in-file").unwrap();
    let err =
        ClientCredential::with_kid("station-BR-1", "kid-in-config", &private, None).unwrap_err();
    assert_eq!(err.code(), "LINK_CREDENTIAL");
}
