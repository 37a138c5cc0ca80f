//! An issuer backend in a box: builds sample INSTANT orders with realistic test
//! card data, encrypts them to the hub key and posts them like an issuer would.

use super::error::SandboxError;
use super::state::StateFiles;
use crate::link::{ClientCredential, TokenSource};
use rand::Rng;
use serde_json::{json, Value};
use station_emv::card_data::luhn_check_digit;
use std::path::Path;
use zeroize::Zeroizing;

/// A card product sample orders are made for: a test BIN (never a live one), the
/// card product of the development key set, the EMV profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleProduct {
    /// First six PAN digits.
    pub bin: &'static str,
    /// `cardProductId` (transport keys of the development key set).
    pub card_product_id: &'static str,
    /// `paymentApplication.config`.
    pub profile: &'static str,
}

/// The mixed batch sample orders cycle through: Visa CVN 18, Mastercard CVN 16 and 17.
pub const SAMPLE_PRODUCTS: &[SampleProduct] = &[
    SampleProduct {
        bin: "476173",
        card_product_id: "DEV-VISA",
        profile: "visa_vsdc_cvn18",
    },
    SampleProduct {
        bin: "541333",
        card_product_id: "DEV-MC",
        profile: "mc_mchip_cvn16",
    },
    SampleProduct {
        bin: "541333",
        card_product_id: "DEV-MC",
        profile: "mc_mchip_cvn17",
    },
];

/// Visa test BIN (the first sample product's).
pub const SAMPLE_BIN: &str = "476173";

const GIVEN: &[&str] = &[
    "JANE", "JOHN", "AMELIE", "KOFI", "MEI", "LUCAS", "SOFIA", "OMAR",
];
const FAMILY: &[&str] = &[
    "DOE", "MARTIN", "MENSAH", "CHEN", "SILVA", "NOWAK", "HASSAN",
];

/// Sample card data JSON: 16-digit Luhn-valid PAN on the test `bin`, expiry three
/// years ahead (YYMM), effective this month, ISO 7813 name.
pub fn sample_card_data<R: Rng>(rng: &mut R, today: time::Date, bin: &str) -> Zeroizing<String> {
    let mut body = String::from(bin);
    while body.len() < 15 {
        body.push(char::from(b'0' + rng.gen_range(0..10u8)));
    }
    let check = luhn_check_digit(&body);
    body.push(check);
    let yymm = |y: i32, m: u8| format!("{:02}{:02}", y.rem_euclid(100), m);
    let month = today.month() as u8;
    let given = GIVEN[rng.gen_range(0..GIVEN.len())];
    let family = FAMILY[rng.gen_range(0..FAMILY.len())];
    let data = json!({
        "pan": body,
        "exp": yymm(today.year() + 3, month),
        "effectiveDate": yymm(today.year(), month),
        "encodedName": format!("{family}/{given}"),
        "panSequenceNumber": "00",
    });
    Zeroizing::new(data.to_string())
}

/// A D1 INSTANT card request for `product` around already encrypted card data.
pub fn sample_instant_order(
    product: &SampleProduct,
    encrypted: &str,
    station: &str,
    request_id: &str,
) -> Value {
    json!({
        "distributionChannel": "INSTANT",
        "services": { "issuance": "CREATION" },
        "encryptedData": encrypted,
        "cardProductId": product.card_product_id,
        "cardDesign": { "customLines": ["DEMO BANK"], "memberId": "M-0001" },
        "paymentApplication": {
            "config": product.profile,
            "derivationKeyIndex": "01",
            "cvKeyIndex": "01",
            "pvKeyIndex": "01"
        },
        "persoStation": station,
        "issuerRequestId": request_id,
    })
}

/// Encrypts card data JSON to a recipient public JWK (the order module's JWE).
pub type SealFn = dyn Fn(&str, &[u8]) -> Result<String, String> + Send + Sync;

/// Post `count` sample INSTANT orders for `station` to the hub at `base_url`,
/// authenticated with the development issuer credential of `state_dir`, card
/// data encrypted by `seal` to the key served at `/sandbox/v1/keys`. Order `i` is for
/// `SAMPLE_PRODUCTS[i % len]`, so a batch mixes Visa and Mastercard.
/// Returns (cardId, operationId) per order.
pub async fn post_sample_orders_with(
    base_url: &str,
    state_dir: &Path,
    station: &str,
    count: usize,
    seal: &SealFn,
) -> Result<Vec<(String, String)>, SandboxError> {
    let base = base_url.trim_end_matches('/');
    let files = StateFiles::in_dir(state_dir);
    let dev = files.load_dev_issuer()?;
    let credential =
        ClientCredential::from_private_jwk(dev.issuer_id.clone(), &dev.private_jwk, None)
            .map_err(|e| SandboxError::Keys(e.to_string()))?;
    let http = reqwest::Client::new();
    let tokens = TokenSource::new(http.clone(), format!("{base}/oauth2/token"), credential);
    let up = |e: reqwest::Error| SandboxError::Upstream(e.without_url().to_string());
    let keys: Value = http
        .get(format!("{base}/sandbox/v1/keys"))
        .send()
        .await
        .map_err(up)?
        .json()
        .await
        .map_err(up)?;
    let hub_key = keys["keys"][0].to_string();
    let today = time::OffsetDateTime::now_utc().date();
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let product = &SAMPLE_PRODUCTS[i % SAMPLE_PRODUCTS.len()];
        let card = {
            let mut rng = rand::thread_rng();
            sample_card_data(&mut rng, today, product.bin)
        };
        let encrypted = seal(&hub_key, card.as_bytes()).map_err(SandboxError::Keys)?;
        drop(card);
        let card_id = format!("card-{}", uuid::Uuid::new_v4().simple());
        let request_id = format!("req-{}", &card_id[5..21]);
        let token = tokens
            .token()
            .await
            .map_err(|e| SandboxError::Upstream(e.to_string()))?;
        let resp = http
            .post(format!(
                "{base}/banking/v1/issuers/{}/physicalCards/{card_id}/operations:production",
                dev.issuer_id
            ))
            .bearer_auth(token.secret())
            .json(&sample_instant_order(
                product,
                &encrypted,
                station,
                &request_id,
            ))
            .send()
            .await
            .map_err(up)?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.as_u16() != 202 {
            return Err(SandboxError::Upstream(format!(
                "order refused: HTTP {} {} {}",
                status.as_u16(),
                body["errorCode"].as_str().unwrap_or("-"),
                body["error"].as_str().unwrap_or("")
            )));
        }
        let op = body["operationId"]
            .as_str()
            .ok_or_else(|| SandboxError::Upstream("202 without operationId".into()))?;
        out.push((card_id, op.to_string()));
    }
    Ok(out)
}

/// Post `count` sample INSTANT orders for `station`, card data encrypted with the
/// order module's JWE, as an issuer backend would. Returns (cardId, operationId) per order.
pub async fn post_sample_orders(
    base_url: &str,
    state_dir: &Path,
    station: &str,
    count: usize,
) -> Result<Vec<(String, String)>, SandboxError> {
    let seal = |jwk: &str, card: &[u8]| {
        crate::order::jwe::encrypt_json(jwk, card).map_err(|e| e.to_string())
    };
    post_sample_orders_with(base_url, state_dir, station, count, &seal).await
}

/// The hub's `productionStatus` of a card, asked with the development issuer credential.
pub async fn production_status(
    base_url: &str,
    state_dir: &Path,
    card_id: &str,
) -> Result<Value, SandboxError> {
    let base = base_url.trim_end_matches('/');
    let dev = StateFiles::in_dir(state_dir).load_dev_issuer()?;
    let credential =
        ClientCredential::from_private_jwk(dev.issuer_id.clone(), &dev.private_jwk, None)
            .map_err(|e| SandboxError::Keys(e.to_string()))?;
    let http = reqwest::Client::new();
    let tokens = TokenSource::new(http.clone(), format!("{base}/oauth2/token"), credential);
    let token = tokens
        .token()
        .await
        .map_err(|e| SandboxError::Upstream(e.to_string()))?;
    let up = |e: reqwest::Error| SandboxError::Upstream(e.without_url().to_string());
    http.get(format!(
        "{base}/banking/v1/issuers/{}/physicalCards/{card_id}/productionStatus",
        dev.issuer_id
    ))
    .bearer_auth(token.secret())
    .send()
    .await
    .map_err(up)?
    .json()
    .await
    .map_err(up)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use station_emv::card_data::luhn_valid;

    #[test]
    fn sample_card_data_is_luhn_valid_on_the_test_bin_and_not_expired() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let today = time::macros::date!(2026 - 11 - 23);
        for _ in 0..50 {
            let data: Value =
                serde_json::from_str(&sample_card_data(&mut rng, today, SAMPLE_BIN)).unwrap();
            let pan = data["pan"].as_str().unwrap();
            assert_eq!(pan.len(), 16);
            assert!(pan.starts_with(SAMPLE_BIN));
            assert!(luhn_valid(pan));
            assert_eq!(data["exp"], "2911");
            assert_eq!(data["effectiveDate"], "2611");
            assert!(data["encodedName"].as_str().unwrap().contains('/'));
        }
    }

    #[test]
    fn sample_products_name_shipped_profiles_and_mix_visa_and_mastercard() {
        let profiles = station_emv::data::profile::ProfileSet::builtin().unwrap();
        for p in SAMPLE_PRODUCTS {
            let profile = profiles.get(p.profile).unwrap();
            let rid = &profile.aid[..5];
            let want: &[u8] = if p.bin.starts_with('4') {
                &[0xA0, 0, 0, 0, 0x03]
            } else {
                &[0xA0, 0, 0, 0, 0x04]
            };
            assert_eq!(rid, want, "{}", p.profile);
        }
        let products: std::collections::BTreeSet<_> =
            SAMPLE_PRODUCTS.iter().map(|p| p.card_product_id).collect();
        assert_eq!(products.len(), 2);
    }
}
