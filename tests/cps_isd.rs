//! Personalization through the Issuer Security Domain (GlobalPlatform Card Specification
//! 2.3, INSTALL [for personalization]) on the simulated card, in-process: SELECT the ISD,
//! open its secure channel, INSTALL [for personalization] naming the application, then
//! STORE DATA, which the ISD hands to the application. The card product's transport-key
//! entry (`isd = "…"`) chooses this path; without it the application is selected directly.

mod station;

use std::sync::{Arc, Mutex};

use station::{card_data, card_stock, dev_with_keys, order, Dev};
use station_agent::job::production::PreparedJob;
use station_emv::cps::{personalize, CpsError, PersoTarget};
use station_emv::dgi::{Dgi, DgiEncryption};
use station_emv::gp::host::HostChannel;
use station_emv::gp::scp::{ScError, ScpParams, SecurityLevel};
use station_emv::gp::{self, Command};
use station_emv::keys::{write_dev_keystore, SoftwareKeyStore};
use station_hal::ApduTransport;
use station_sim::card::{AppState, InProcessTransport, SimCard, DEFAULT_ISD_AID};
use time::macros::date;

/// Card products added to the development key file: the dev KMC behind an ISD, with
/// SCP02 (i = 55) and with SCP03 (i = 70, static AES keys).
const ISD_PRODUCTS: &str = r#"
[transport.ISD-SCP02]
kmc = "404142434445464748494A4B4C4D4E4F"
diversification = "emv-cpg202"
scp = "scp02"
i = "55"
kvn = "20"
isd = "A000000151000000"

[transport.ISD-SCP03]
kmc = "404142434445464748494A4B4C4D4E4F"
diversification = "none"
scp = "scp03"
i = "70"
kvn = "30"
isd = "A000000151000000"
"#;

/// A Visa order for card product `product`, prepared by the station.
fn job(d: &Dev, product: &str, n: u32) -> PreparedJob {
    let mut o = order(d, "visa_vsdc_cvn10", "01", &card_data(n));
    o["cardProductId"] = product.into();
    d.production.prepare(&o, date!(2026 - 11 - 22)).unwrap()
}

/// Blank card stock of `product` whose applications can only be personalized through the ISD.
fn isd_only_card(d: &Dev, product: &str) -> Arc<Mutex<SimCard>> {
    Arc::new(Mutex::new(
        SimCard::new(card_stock(d, product)).personalized_only_through_isd(),
    ))
}

async fn issue_through_isd(product: &str) {
    let d = dev_with_keys(ISD_PRODUCTS);
    let job = job(&d, product, 21);
    assert_eq!(job.transport.isd.as_deref(), Some(&DEFAULT_ISD_AID[..]));
    let card = isd_only_card(&d, product);
    let mut t = InProcessTransport::new(card.clone());
    d.production.personalize(&mut t, &job).await.unwrap();
    assert_eq!(card.lock().unwrap().state(), AppState::Personalized);
    d.production.verify(&mut t, &job).await.unwrap();
}

#[tokio::test]
async fn scp02_personalization_through_the_isd_passes_the_read_back_and_arqc_check() {
    issue_through_isd("ISD-SCP02").await;
}

#[tokio::test]
async fn scp03_personalization_through_the_isd_passes_the_read_back_and_arqc_check() {
    issue_through_isd("ISD-SCP03").await;
}

#[tokio::test]
async fn a_product_without_an_isd_entry_selects_the_application_directly() {
    // Same card stock, same keys; only the key file's `isd` field differs. A card that
    // refuses a secure channel on its application shows which path was taken.
    let d = dev_with_keys(ISD_PRODUCTS);
    let job = job(&d, "DEV-VISA", 22);
    assert_eq!(job.transport.isd, None);
    let card = isd_only_card(&d, "DEV-VISA");
    let mut t = InProcessTransport::new(card.clone());
    match d.production.personalize(&mut t, &job).await.unwrap_err() {
        CpsError::SecureChannel(ScError::Refused { command, sw, .. }) => {
            assert_eq!((command, sw), ("INITIALIZE UPDATE", 0x6D00))
        }
        other => panic!("{other}"),
    }
    assert_eq!(card.lock().unwrap().state(), AppState::Selectable);
}

#[tokio::test]
async fn the_isd_path_leaves_the_card_as_the_direct_path_does() {
    let d = dev_with_keys(ISD_PRODUCTS);
    let mut job = job(&d, "DEV-VISA", 23);
    let direct = Arc::new(Mutex::new(SimCard::new(card_stock(&d, "DEV-VISA"))));
    let via_isd = Arc::new(Mutex::new(SimCard::new(card_stock(&d, "DEV-VISA"))));
    d.production
        .personalize(&mut InProcessTransport::new(direct.clone()), &job)
        .await
        .unwrap();
    job.transport.isd = Some(DEFAULT_ISD_AID.to_vec());
    d.production
        .personalize(&mut InProcessTransport::new(via_isd.clone()), &job)
        .await
        .unwrap();
    let (a, b) = (direct.lock().unwrap(), via_isd.lock().unwrap());
    assert_eq!(a.state(), b.state());
    for dgi in &job.card.dgis {
        assert_eq!(a.dgi(dgi.id), b.dgi(dgi.id), "DGI {:04X}", dgi.id);
    }
}

/// The ISD-SCP02 product's keys and C-MAC-only parameters.
fn scp02(d: &Dev) -> (station_emv::gp::scp::KeySource, ScpParams) {
    let t = d.keystore.transport_keys("ISD-SCP02").unwrap();
    let params = ScpParams {
        protocol: t.protocol,
        kvn: t.kvn,
        level: SecurityLevel::CMAC,
    };
    (t.key_source(), params)
}

#[tokio::test]
async fn install_for_an_application_the_card_does_not_hold_is_refused_with_6a88() {
    let d = dev_with_keys(ISD_PRODUCTS);
    let card = isd_only_card(&d, "ISD-SCP02");
    let (keys, params) = scp02(&d);
    let target = PersoTarget {
        aid: hex::decode("A0000000999999").unwrap(),
        via_isd: Some(DEFAULT_ISD_AID.to_vec()),
    };
    let dgis = [Dgi::new(0x9010, vec![3, 3], DgiEncryption::None)];
    let mut t = InProcessTransport::new(card.clone());
    let e = personalize(&mut t, &target, &keys, params, &dgis, [5; 8])
        .await
        .unwrap_err();
    match &e {
        CpsError::Refused { command, sw, .. } => {
            assert_eq!(
                (command.as_str(), *sw),
                ("INSTALL [for personalization]", 0x6A88)
            )
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        e.to_string(),
        "INSTALL [for personalization] refused by the card: SW 6A88 (referenced data not found)"
    );
    assert_eq!(card.lock().unwrap().state(), AppState::Selectable);
}

/// SELECT the ISD and open its secure channel at `level`.
async fn isd_session(
    d: &Dev,
    card: &Arc<Mutex<SimCard>>,
    level: SecurityLevel,
) -> (InProcessTransport, HostChannel) {
    let (keys, mut params) = scp02(d);
    params.level = level;
    let mut t = InProcessTransport::new(card.clone());
    let r = t
        .exchange(&gp::select(&DEFAULT_ISD_AID).to_bytes())
        .await
        .unwrap();
    assert_eq!(gp::status_word(&r), 0x9000);
    let (ch, _) = HostChannel::open(&mut t, &keys, params, [9; 8])
        .await
        .unwrap();
    (t, ch)
}

#[tokio::test]
async fn store_data_through_the_isd_without_install_is_refused_with_6985() {
    let d = dev_with_keys(ISD_PRODUCTS);
    let card = isd_only_card(&d, "ISD-SCP02");
    let (mut t, mut ch) = isd_session(&d, &card, SecurityLevel::CMAC).await;
    let store = ch
        .wrap(&Command::new(
            0x80,
            0xE2,
            0x80,
            0x00,
            hex::decode("9010020303").unwrap(),
        ))
        .unwrap();
    let r = t.exchange(&store).await.unwrap();
    assert_eq!(gp::status_word(&r), 0x6985);
    assert_eq!(card.lock().unwrap().state(), AppState::Selectable);
}

#[tokio::test]
async fn install_without_the_c_mac_the_session_requires_is_refused_with_6982() {
    let d = dev_with_keys(ISD_PRODUCTS);
    let card = isd_only_card(&d, "ISD-SCP02");
    let (mut t, _ch) = isd_session(&d, &card, SecurityLevel::CMAC).await;
    let install = gp::install_for_personalization(&hex::decode("A0000000031010").unwrap());
    let r = t.exchange(&install.to_bytes()).await.unwrap();
    assert_eq!(gp::status_word(&r), 0x6982);
}

#[tokio::test]
async fn install_before_the_secure_channel_is_open_is_refused_with_6982() {
    let d = dev_with_keys(ISD_PRODUCTS);
    let card = isd_only_card(&d, "ISD-SCP02");
    let mut t = InProcessTransport::new(card.clone());
    t.exchange(&gp::select(&DEFAULT_ISD_AID).to_bytes())
        .await
        .unwrap();
    let install = gp::install_for_personalization(&hex::decode("A0000000031010").unwrap());
    let r = t.exchange(&install.to_bytes()).await.unwrap();
    assert_eq!(gp::status_word(&r), 0x6982);
}

#[tokio::test]
async fn the_isd_will_not_install_an_already_personalized_application_again() {
    let d = dev_with_keys(ISD_PRODUCTS);
    let job = job(&d, "ISD-SCP02", 24);
    let card = isd_only_card(&d, "ISD-SCP02");
    let mut t = InProcessTransport::new(card.clone());
    d.production.personalize(&mut t, &job).await.unwrap();
    match d.production.personalize(&mut t, &job).await.unwrap_err() {
        CpsError::Refused { command, sw, .. } => {
            assert_eq!(
                (command.as_str(), sw),
                ("INSTALL [for personalization]", 0x6985)
            )
        }
        other => panic!("{other}"),
    }
}

#[test]
fn an_isd_that_is_not_a_5_to_16_byte_aid_is_refused_naming_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_dev_keystore(dir.path()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let bad = ISD_PRODUCTS.replacen("isd = \"A000000151000000\"", "isd = \"A00000\"", 1);
    std::fs::write(&path, format!("{text}\n{bad}")).unwrap();
    let e = SoftwareKeyStore::load(&path).expect_err("refused");
    assert!(e.to_string().contains("transport.ISD-SCP02.isd"), "{e}");
}

#[tokio::test]
async fn an_isd_at_another_aid_is_reached_by_that_aid_only() {
    let d = dev_with_keys(ISD_PRODUCTS);
    let (keys, params) = scp02(&d);
    let op_aid = hex::decode("A000000003000000").unwrap();
    let card = Arc::new(Mutex::new(
        SimCard::new(card_stock(&d, "ISD-SCP02")).with_isd_aid(op_aid.clone()),
    ));
    let dgis = [Dgi::new(0x9010, vec![3, 3], DgiEncryption::None)];
    let target = |isd: &[u8]| PersoTarget {
        aid: hex::decode("A0000000031010").unwrap(),
        via_isd: Some(isd.to_vec()),
    };
    let mut t = InProcessTransport::new(card.clone());
    match personalize(
        &mut t,
        &target(&DEFAULT_ISD_AID),
        &keys,
        params,
        &dgis,
        [1; 8],
    )
    .await
    .unwrap_err()
    {
        CpsError::Refused { command, sw, .. } => {
            assert_eq!((command.as_str(), sw), ("SELECT ISD", 0x6A82))
        }
        other => panic!("{other}"),
    }
    personalize(&mut t, &target(&op_aid), &keys, params, &dgis, [2; 8])
        .await
        .unwrap();
    assert_eq!(card.lock().unwrap().state(), AppState::Personalized);
}
