//! Encrypted card data: JWE envelope (ECDH-ES / A256GCM / P-256) and field checks.

use josekit::jwe::{self, JweHeader, ECDH_ES};
use josekit::jwk::Jwk;
use serde_json::{json, Value};
use station_agent::order::jwe::{encrypt_json, generate_p256_keypair, KeyringError};
use station_agent::order::{CardData, D1Error, D1ErrorCode, StationKeyring};
use station_emv::card_data::Pan;
use station_emv::dgi::DgiEncryption;
use time::macros::date;
use time::Date;

const PAN: &str = "4761739001010010";
const TODAY: Date = date!(2026 - 11 - 23);

fn card_json() -> Value {
    json!({
        "pan": PAN,
        "exp": "2911",
        "encodedName": "DUPONT/ZOE",
        "cvv1": "123",
        "pvv": "4821",
        "effectiveDate": "2611",
        "paymentAccountReference": "V0010013819230741234567890123"
    })
}

fn parse(v: &Value) -> Result<CardData, D1Error> {
    CardData::from_json(v.to_string().as_bytes(), TODAY)
}

fn with(field: &str, v: Value) -> Value {
    let mut c = card_json();
    c[field] = v;
    c
}

fn fmt_err(field: &str) -> D1Error {
    D1Error::new(D1ErrorCode::FieldInvalidFormat, field)
}

fn value_err(field: &str) -> D1Error {
    D1Error::new(D1ErrorCode::FieldInvalidValue, field)
}

fn crypto_err() -> D1Error {
    D1Error::new(D1ErrorCode::CryptoError, "encryptedData")
}

fn keyring(kid: &str) -> (StationKeyring, String) {
    let (private, public) = generate_p256_keypair(kid);
    let ring = StationKeyring::from_jwks(vec![private.to_string()]).unwrap();
    (ring, public)
}

#[test]
fn jwe_round_trip_yields_the_card_data() {
    let (ring, public) = keyring("station-2026-11");
    let token = encrypt_json(&public, card_json().to_string().as_bytes()).unwrap();
    let card = ring.decrypt_card_data(&token, TODAY).unwrap();
    assert_eq!(card.pan.digits(), PAN);
    assert_eq!(card.exp.to_yymm(), "2911");
    assert_eq!(card.encoded_name.as_deref(), Some("DUPONT/ZOE"));
    assert_eq!(card.cvv1.as_deref(), Some("123"));
    assert_eq!(card.pvv.as_deref(), Some("4821"));
    assert_eq!(
        card.effective_date.map(|d| d.to_yymm()),
        Some("2611".into())
    );
}

#[test]
fn jwe_header_carries_the_recipient_kid_and_the_d1_algorithms() {
    let (_, public) = keyring("station-2026-11");
    let token = encrypt_json(&public, b"{}").unwrap();
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&base64url(header)).unwrap();
    assert_eq!(header["alg"], "ECDH-ES");
    assert_eq!(header["enc"], "A256GCM");
    assert_eq!(header["kid"], "station-2026-11");
}

#[test]
fn keyring_decrypts_with_any_live_key_during_rotation() {
    let (old_private, old_public) = generate_p256_keypair("k-old");
    let (new_private, new_public) = generate_p256_keypair("k-new");
    let ring =
        StationKeyring::from_jwks(vec![old_private.to_string(), new_private.to_string()]).unwrap();
    assert_eq!(ring.kids(), vec!["k-new", "k-old"]);
    for public in [old_public, new_public] {
        let token = encrypt_json(&public, b"{\"x\":1}").unwrap();
        assert_eq!(&ring.decrypt_json(&token).unwrap()[..], b"{\"x\":1}");
    }
}

#[test]
fn keyring_loads_jwk_files() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = generate_p256_keypair("from-file");
    let path = dir.path().join("station.jwk");
    std::fs::write(&path, private.as_bytes()).unwrap();
    let ring = StationKeyring::from_jwk_files(&[path]).unwrap();
    let token = encrypt_json(&public, b"{}").unwrap();
    assert!(ring.decrypt_json(&token).is_ok());
}

#[test]
fn keyring_refuses_a_public_key() {
    let (_, public) = generate_p256_keypair("pub-only");
    assert!(matches!(
        StationKeyring::from_jwks(vec![public]),
        Err(KeyringError::BadKey { index: 0, .. })
    ));
}

#[test]
fn keyring_refuses_two_keys_with_the_same_kid() {
    let (a, _) = generate_p256_keypair("same");
    let (b, _) = generate_p256_keypair("same");
    assert!(matches!(
        StationKeyring::from_jwks(vec![a.to_string(), b.to_string()]),
        Err(KeyringError::DuplicateKid(k)) if k == "same"
    ));
}

#[test]
fn unknown_kid_is_crypto_error() {
    let (ring, _) = keyring("station-a");
    let (_, other_public) = generate_p256_keypair("station-b");
    let token = encrypt_json(&other_public, card_json().to_string().as_bytes()).unwrap();
    assert_eq!(
        ring.decrypt_card_data(&token, TODAY).unwrap_err(),
        crypto_err()
    );
}

#[test]
fn same_kid_but_other_key_is_crypto_error() {
    let (ring, _) = keyring("station-a");
    let (_, impostor) = generate_p256_keypair("station-a");
    let token = encrypt_json(&impostor, b"{}").unwrap();
    assert_eq!(ring.decrypt_json(&token).unwrap_err(), crypto_err());
}

#[test]
fn tampered_ciphertext_is_crypto_error() {
    let (ring, public) = keyring("station-a");
    let token = encrypt_json(&public, card_json().to_string().as_bytes()).unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let flipped = if parts[3].starts_with('A') { "B" } else { "A" };
    parts[3].replace_range(0..1, flipped);
    assert_eq!(
        ring.decrypt_json(&parts.join(".")).unwrap_err(),
        crypto_err()
    );
}

#[test]
fn enc_other_than_a256gcm_is_crypto_error() {
    let (ring, public) = keyring("station-a");
    let jwk = Jwk::from_bytes(public.as_bytes()).unwrap();
    let encrypter = ECDH_ES.encrypter_from_jwk(&jwk).unwrap();
    let mut header = JweHeader::new();
    header.set_content_encryption("A128GCM");
    header.set_key_id("station-a");
    let token = jwe::serialize_compact(b"{}", &header, &encrypter).unwrap();
    assert_eq!(ring.decrypt_json(&token).unwrap_err(), crypto_err());
}

#[test]
fn malformed_token_is_crypto_error() {
    let (ring, _) = keyring("station-a");
    assert_eq!(ring.decrypt_json("not.a.jwe").unwrap_err(), crypto_err());
}

#[test]
fn payload_that_is_not_json_is_parsing_error() {
    let (ring, public) = keyring("station-a");
    let token = encrypt_json(&public, b"pan=4761739001010010").unwrap();
    assert_eq!(
        ring.decrypt_card_data(&token, TODAY).unwrap_err(),
        D1Error::new(D1ErrorCode::ParsingError, "encryptedData")
    );
}

#[test]
fn encrypting_for_a_jwk_without_kid_is_crypto_error() {
    let (_, public) = generate_p256_keypair("x");
    let mut jwk: Value = serde_json::from_str(&public).unwrap();
    jwk.as_object_mut().unwrap().remove("kid");
    assert_eq!(
        encrypt_json(&jwk.to_string(), b"{}").unwrap_err(),
        D1Error::new(D1ErrorCode::CryptoError, "publicJwk")
    );
}

#[test]
fn pan_failing_luhn_is_invalid_value() {
    assert_eq!(
        parse(&with("pan", json!("4761739001010011"))).unwrap_err(),
        value_err("encryptedData.pan")
    );
}

#[test]
fn pan_with_eleven_digits_is_invalid_format() {
    assert_eq!(
        parse(&with("pan", json!("47617390010"))).unwrap_err(),
        fmt_err("encryptedData.pan")
    );
}

#[test]
fn missing_pan_is_invalid_format() {
    let mut c = card_json();
    c.as_object_mut().unwrap().remove("pan");
    assert_eq!(parse(&c).unwrap_err(), fmt_err("encryptedData.pan"));
}

#[test]
fn pan_given_as_a_number_is_invalid_format() {
    assert_eq!(
        parse(&with("pan", json!(4761739001010010u64))).unwrap_err(),
        fmt_err("encryptedData.pan")
    );
}

#[test]
fn expired_card_is_invalid_value() {
    assert_eq!(
        parse(&with("exp", json!("2610"))).unwrap_err(),
        value_err("encryptedData.exp")
    );
}

#[test]
fn card_expiring_this_month_is_accepted() {
    assert!(parse(&with("exp", json!("2611"))).is_ok());
}

#[test]
fn expiry_month_13_is_invalid_value() {
    assert_eq!(
        parse(&with("exp", json!("2913"))).unwrap_err(),
        value_err("encryptedData.exp")
    );
}

#[test]
fn expiry_as_mmyy_text_is_invalid_format() {
    assert_eq!(
        parse(&with("exp", json!("11/29"))).unwrap_err(),
        fmt_err("encryptedData.exp")
    );
}

#[test]
fn effective_date_after_expiry_is_invalid_value() {
    assert_eq!(
        parse(&with("effectiveDate", json!("2912"))).unwrap_err(),
        value_err("encryptedData.effectiveDate")
    );
}

#[test]
fn pan_sequence_number_defaults_to_00() {
    assert_eq!(parse(&card_json()).unwrap().pan_sequence_number, "00");
    assert_eq!(
        parse(&with("panSequenceNumber", json!("01")))
            .unwrap()
            .pan_sequence_number,
        "01"
    );
}

#[test]
fn cvv1_of_two_digits_is_invalid_format() {
    assert_eq!(
        parse(&with("cvv1", json!("12"))).unwrap_err(),
        fmt_err("encryptedData.cvv1")
    );
}

#[test]
fn pvv_of_letters_is_invalid_format() {
    assert_eq!(
        parse(&with("pvv", json!("12AB"))).unwrap_err(),
        fmt_err("encryptedData.pvv")
    );
}

#[test]
fn lower_case_encoded_name_is_invalid_format() {
    assert_eq!(
        parse(&with("encodedName", json!("dupont/zoe"))).unwrap_err(),
        fmt_err("encryptedData.encodedName")
    );
}

#[test]
fn payment_account_reference_of_28_characters_is_invalid_format() {
    assert_eq!(
        parse(&with(
            "paymentAccountReference",
            json!("V001001381923074123456789012")
        ))
        .unwrap_err(),
        fmt_err("encryptedData.paymentAccountReference")
    );
}

#[test]
fn track_overrides_are_kept_as_given() {
    let t1 = "%B4761739001010010^DUPONT/ZOE^29111010000000000000?";
    let t2 = ";4761739001010010=29111010000000000000?";
    let c = parse(&with("trackData", json!({"track1": t1, "track2": t2}))).unwrap();
    let tracks = c.track_data.as_ref().unwrap();
    assert_eq!(tracks.track1.as_deref(), Some(t1));
    assert_eq!(tracks.track2.as_deref(), Some(t2));
    assert_eq!(tracks.track3, None);
}

#[test]
fn track2_with_a_letter_is_invalid_format() {
    assert_eq!(
        parse(&with(
            "trackData",
            json!({"track2": ";4761739001010010D2911?"})
        ))
        .unwrap_err(),
        fmt_err("encryptedData.trackData.track2")
    );
}

#[test]
fn track1_longer_than_79_is_invalid_format() {
    assert_eq!(
        parse(&with("trackData", json!({"track1": "A".repeat(80)}))).unwrap_err(),
        fmt_err("encryptedData.trackData.track1")
    );
}

#[test]
fn chip_data_becomes_dgis() {
    let c = parse(&with(
        "chipData",
        json!({
            "aid": "A0000000031010",
            "dgis": [
                {"dgi": "0101", "data": "700A5A0847617390010100105F24032911", "encryption": "none"},
                {"dgi": "8000", "data": "00112233445566778899AABBCCDDEEFF", "encryption": "nopad"}
            ]
        }),
    ))
    .unwrap();
    let chip = c.chip_data.as_ref().unwrap();
    assert_eq!(chip.aid, hex::decode("A0000000031010").unwrap());
    assert_eq!(chip.dgis.len(), 2);
    assert_eq!(chip.dgis[1].id, 0x8000);
    assert_eq!(chip.dgis[1].encryption, DgiEncryption::Nopad);
    assert_eq!(chip.dgis[1].data.len(), 16);
}

#[test]
fn chip_data_unknown_encryption_is_invalid_value() {
    let err = parse(&with(
        "chipData",
        json!({
            "aid": "A0000000031010",
            "dgis": [
                {"dgi": "0101", "data": "7000", "encryption": "none"},
                {"dgi": "8000", "data": "0011", "encryption": "xor"}
            ]
        }),
    ))
    .unwrap_err();
    assert_eq!(err, value_err("encryptedData.chipData.dgis[1].encryption"));
}

#[test]
fn chip_data_aid_of_four_bytes_is_invalid_format() {
    let err = parse(&with(
        "chipData",
        json!({"aid": "A0000000", "dgis": [{"dgi": "0101", "data": "7000", "encryption": "none"}]}),
    ))
    .unwrap_err();
    assert_eq!(err, fmt_err("encryptedData.chipData.aid"));
}

#[test]
fn pan_display_and_debug_show_only_the_mask() {
    let pan = Pan::parse(PAN).unwrap();
    assert_eq!(pan.to_string(), "476173******0010");
    assert_eq!(pan.masked(), "476173******0010");
    assert!(!format!("{pan:?}").contains(PAN));
    assert!(format!("{pan:?}").contains("476173******0010"));
}

#[test]
fn card_data_debug_hides_pan_cvv_pvv_and_tracks() {
    let t2 = ";4761739001010010=29111010000000000000?";
    let c = parse(&with("trackData", json!({"track2": t2}))).unwrap();
    let shown = format!("{c:?} {c:#?}");
    for secret in [PAN, "123", "4821", "29111010000000000000", "DUPONT"] {
        assert!(!shown.contains(secret), "Debug leaks {secret:?}: {shown}");
    }
    assert!(shown.contains("476173******0010"));
}

#[test]
fn errors_never_carry_the_card_data() {
    let err = parse(&with("pan", json!("4761739001010011"))).unwrap_err();
    let text = format!("{err} {err:?} {}", serde_json::to_string(&err).unwrap());
    assert!(!text.contains("4761739001010011"), "{text}");
}

fn base64url(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[test]
fn chip_data_duplicate_dgi_is_invalid_value() {
    let err = parse(&with(
        "chipData",
        json!({
            "aid": "A0000000031010",
            "dgis": [
                {"dgi": "0101", "data": "7000", "encryption": "none"},
                {"dgi": "0101", "data": "7000", "encryption": "none"}
            ]
        }),
    ))
    .unwrap_err();
    assert_eq!(err, value_err("encryptedData.chipData.dgis[1].dgi"));
}

#[test]
fn chip_data_dgi_id_with_sign_is_invalid_format() {
    let err = parse(&with(
        "chipData",
        json!({"aid": "A0000000031010", "dgis": [{"dgi": "+101", "data": "7000", "encryption": "none"}]}),
    ))
    .unwrap_err();
    assert_eq!(err, fmt_err("encryptedData.chipData.dgis[0].dgi"));
}

#[test]
fn keyring_reports_an_unreadable_key_file() {
    let missing = std::path::PathBuf::from("/nonexistent/station.jwk");
    assert!(matches!(
        StationKeyring::from_jwk_files(&[missing]),
        Err(KeyringError::Read { .. })
    ));
}
