//! Issuance with the issuer keys in a PKCS#11 token (SoftHSM2): the same orders give the
//! same card data as with the software store, and the cards pass the terminal's
//! read-back with the ARQC checked inside the token.

mod station;

use std::sync::{Arc, Mutex};

use station::{card_data, card_stock, dev, dev_hsm, order};
use station_sim::card::{AppState, InProcessTransport, SimCard};
use time::macros::date;

async fn issue_through_the_hsm(profile: &str) {
    let d = dev_hsm();
    let product = if profile.starts_with("mc") {
        "DEV-MC"
    } else {
        "DEV-VISA"
    };
    let o = order(&d, profile, "01", &card_data(11));
    let job = d.production.prepare(&o, date!(2026 - 11 - 22)).unwrap();
    let card = Arc::new(Mutex::new(SimCard::new(card_stock(&d, product))));
    let mut t = InProcessTransport::new(card.clone());
    d.production.personalize(&mut t, &job).await.unwrap();
    assert_eq!(card.lock().unwrap().state(), AppState::Personalized);
    d.production.verify(&mut t, &job).await.unwrap();
}

#[tokio::test]
async fn a_visa_card_issued_through_the_hsm_passes_the_read_back_arqc_check() {
    issue_through_the_hsm("visa_vsdc_cvn10").await;
}

#[tokio::test]
async fn a_visa_cvn18_card_issued_through_the_hsm_passes_the_read_back_arqc_check() {
    // EMV common session key, derived from the MK-AC inside the token.
    issue_through_the_hsm("visa_vsdc_cvn18").await;
}

#[tokio::test]
async fn a_mastercard_cvn16_card_issued_through_the_hsm_passes_the_read_back_arqc_check() {
    // Mastercard session key (ATC and unpredictable number), inside the token.
    issue_through_the_hsm("mc_mchip_cvn16").await;
}

#[tokio::test]
async fn a_mastercard_cvn17_card_issued_through_the_hsm_passes_the_read_back_arqc_check() {
    issue_through_the_hsm("mc_mchip_cvn17").await;
}

#[tokio::test]
async fn both_stores_write_the_same_dgis_into_the_same_card() {
    let soft = dev();
    let hsm = dev_hsm();
    for profile in [
        "visa_vsdc_cvn10",
        "visa_vsdc_cvn18",
        "mc_mchip_cvn16",
        "mc_mchip_cvn17",
    ] {
        let product = if profile.starts_with("mc") {
            "DEV-MC"
        } else {
            "DEV-VISA"
        };
        let a = soft
            .production
            .prepare(
                &order(&soft, profile, "01", &card_data(12)),
                date!(2026 - 11 - 22),
            )
            .unwrap();
        let b = hsm
            .production
            .prepare(
                &order(&hsm, profile, "01", &card_data(12)),
                date!(2026 - 11 - 22),
            )
            .unwrap();
        assert_eq!(a.card.dgis.len(), b.card.dgis.len(), "{profile}");
        for (x, y) in a.card.dgis.iter().zip(&b.card.dgis) {
            if y.sealed.is_some() {
                // The ICC master keys stay in the token until the secure channel is open.
                assert!(y.data.is_empty(), "{profile}: DGI {:04X} in clear", y.id);
                assert_eq!((x.id, x.len(), x.encryption), (y.id, y.len(), y.encryption));
            } else {
                assert!(
                    x == y,
                    "{profile}: DGI {:04X} differs between the stores",
                    x.id
                );
            }
        }
        assert!(
            b.card.dgis.iter().any(|d| d.sealed.is_some()),
            "{profile}: the HSM store handed the ICC keys out"
        );
        let mut written = Vec::new();
        for (d, job) in [(&soft, &a), (&hsm, &b)] {
            let card = Arc::new(Mutex::new(SimCard::new(card_stock(d, product))));
            d.production
                .personalize(&mut InProcessTransport::new(card.clone()), job)
                .await
                .unwrap();
            let c = card.lock().unwrap();
            let dgis: Vec<_> = job
                .card
                .dgis
                .iter()
                .map(|g| (g.id, c.dgi(g.id).map(<[u8]>::to_vec)))
                .collect();
            written.push(dgis);
        }
        let sealed_id = b.card.dgis.iter().find(|d| d.sealed.is_some()).unwrap().id;
        assert!(
            written[1]
                .iter()
                .any(|(id, v)| *id == sealed_id && v.as_ref().is_some_and(|v| !v.is_empty())),
            "{profile}: the card holds no ICC keys"
        );
        assert_eq!(written[0], written[1], "{profile}: the cards differ");
    }
}

#[tokio::test]
async fn a_card_whose_arqc_does_not_verify_in_the_hsm_is_refused() {
    // The card is written with IMK 02's keys; the read-back checks under IMK 01.
    let d = dev_hsm();
    let o = order(&d, "visa_vsdc_cvn10", "02", &card_data(13));
    let mut job = d.production.prepare(&o, date!(2026 - 11 - 22)).unwrap();
    job.derivation_index = station_emv::keys::KeyIndex(1);
    let card = Arc::new(Mutex::new(SimCard::new(card_stock(&d, "DEV-VISA"))));
    let mut t = InProcessTransport::new(card.clone());
    d.production.personalize(&mut t, &job).await.unwrap();
    let e = d.production.verify(&mut t, &job).await.unwrap_err();
    assert_eq!(e.code, "CARD_PROD_EXCEPTION");
    assert!(e.reason.contains("ARQC"), "{e}");
}
