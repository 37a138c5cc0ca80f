//! A mute chip through the real PC/SC stack (pcscd + vpcd): pcscd sees a card in the
//! encoder but cannot power it up. The encoder reports the staff cause "card mute", and
//! the reader stays usable: the next, healthy card on it is personalized.

mod hil;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hil::{serial, vpcd_port, Inserted, SLOT0};
use station_emv::cps::{personalize, PersoTarget};
use station_emv::dgi::{Dgi, DgiEncryption};
use station_emv::gp::scp::{KeySource, ScpParams, SecurityLevel};
use station_hal::{StaffFacing, TransportError};
use station_pcsc::{PcscEncoder, ReaderConfig};
use station_sim::card::{AppState, KeyFile, SimCard, SimCardConfig};
use station_sim::vpcd::SharedCard;

const KEYS: &str = r#"
scp = "02"
i = 0x55
kvn = 0x20
kdd = "00010203040506070809"
kmc = "404142434445464748494A4B4C4D4E4F"
diversification = "emv_cpg202"
"#;

/// Bound for pcscd to show the card; never waited out when things work.
const CARD_WAIT: Duration = Duration::from_secs(10);

fn config() -> SimCardConfig {
    KeyFile::parse(KEYS).unwrap().to_config().unwrap()
}

fn insert(port: u16, card: SimCard) -> (Arc<Mutex<SimCard>>, Inserted) {
    let card = Arc::new(Mutex::new(card));
    let link: SharedCard = card.clone();
    (card, Inserted::new(port, link))
}

fn mute_card() -> SimCard {
    let mut card = SimCard::new(config());
    card.faults.mute = true;
    card
}

async fn encoder() -> PcscEncoder {
    PcscEncoder::open(ReaderConfig::new(SLOT0).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_that_cannot_be_powered_up_is_reported_as_card_mute() {
    let Some(port) = vpcd_port() else { return };
    let _g = serial().await;
    let (card, inserted) = insert(port, mute_card());
    let mut enc = encoder().await;

    let e = enc.wait_for_card(CARD_WAIT).await.unwrap_err();
    assert_eq!(e, TransportError::CardMute);
    assert_eq!(e.code(), "ENC_CARD_MUTE");
    assert_eq!(
        e.staff_message(),
        "The chip does not answer: the card is faulty or badly placed."
    );
    assert_eq!(card.lock().unwrap().command_count(), 0);
    inserted.remove().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_mute_card_the_next_card_on_the_same_reader_is_personalized() {
    let Some(port) = vpcd_port() else { return };
    let _g = serial().await;
    let (_mute, inserted) = insert(port, mute_card());
    let mut enc = encoder().await;
    assert_eq!(
        enc.wait_for_card(CARD_WAIT).await.unwrap_err(),
        TransportError::CardMute
    );
    inserted.remove().await;

    let config = config();
    let keys: KeySource = config.keys.clone();
    let protocol = config.protocol;
    let (card, inserted) = insert(port, SimCard::new(config));
    enc.wait_for_card(CARD_WAIT).await.unwrap();
    let dgis = [
        Dgi::new(
            0x9104,
            hex::decode("82021800940408010100").unwrap(),
            DgiEncryption::None,
        ),
        Dgi::new(0x9010, vec![0x03, 0x03], DgiEncryption::None),
    ];
    personalize(
        &mut enc,
        &PersoTarget {
            aid: hex::decode("A0000000031010").unwrap(),
            via_isd: None,
        },
        &keys,
        ScpParams {
            protocol,
            kvn: 0x20,
            level: SecurityLevel::CDEC_CMAC,
        },
        &dgis,
        rand::random(),
    )
    .await
    .unwrap();
    assert_eq!(card.lock().unwrap().state(), AppState::Personalized);
    enc.release().await.unwrap();
    inserted.remove().await;
}
