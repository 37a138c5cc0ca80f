//! What producing one card takes beyond moving it: validate and decrypt the order,
//! prepare the chip data from its profile, lay out the face and the stripe, then
//! personalize and verify the chip. Card data lives only in memory here.

use std::path::PathBuf;
use std::sync::Arc;

use station_hal::{ApduTransport, MagTracks, PanelImage};
use time::Date;
use zeroize::Zeroizing;

use crate::order::{accept_for_station, CardData, D1ErrorCode, StationKeyring};
use crate::plastic::face::{render_front, to_k_panel, FaceInput, Layout};
use crate::plastic::magstripe;
use station_emv::cps::{personalize, CpsError, PersoReport, PersoTarget};
use station_emv::data::prep::{prepare, KeyIndexes, Model2Data, PrepInput, PreparedCard};
use station_emv::data::profile::ProfileSet;
use station_emv::dgi::Dgi;
use station_emv::gp::scp::{ScpParams, SecurityLevel};
use station_emv::keys::{KeyIndex, KeyStore, TransportKeySet};
use station_emv::terminal::verify::{verify_card, CardExpectations};
use station_emv::terminal::{read_card, TerminalParams};

/// Why an order cannot be produced, as reported upstream: a D1 code and a reason
/// that carries no card data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {reason}")]
pub struct Refusal {
    /// D1 code (`FIELD_INVALID_FORMAT`, `CRYPTO_ERROR`, `DATA_EXCEPTION`, `CARD_PROD_EXCEPTION`…).
    pub code: D1ErrorCode,
    /// What is wrong, for staff and the issuer.
    pub reason: String,
}

impl Refusal {
    /// A refusal with a code and reason.
    pub fn new(code: D1ErrorCode, reason: impl Into<String>) -> Self {
        Refusal {
            code,
            reason: reason.into(),
        }
    }

    fn data(reason: impl Into<String>) -> Self {
        Refusal::new(D1ErrorCode::DataException, reason)
    }
}

/// A card ready to be produced. Holds card data: never logged, dropped after the card.
pub struct PreparedJob {
    /// PAN masked by `Pan::masked` (at most first 6 and last 4, at least 6 hidden).
    pub masked_pan: String,
    /// Card product (whose blank stock the card is made from).
    pub product: String,
    /// Cardholder name as it will be printed.
    pub holder: String,
    /// Chip data.
    pub card: PreparedCard,
    /// What the read-back must find.
    pub expectations: CardExpectations,
    /// Issuer master key index the ARQC is checked with.
    pub derivation_index: KeyIndex,
    /// Transport keys of the card stock.
    pub transport: TransportKeySet,
    /// Stripe contents.
    pub tracks: MagTracks,
    /// Printed panels.
    pub panels: Vec<PanelImage>,
}

impl std::fmt::Debug for PreparedJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PreparedJob({})", self.masked_pan)
    }
}

/// The station's production set-up: keys, profiles, layout.
pub struct Production {
    /// This station's persoStation id.
    pub station_id: String,
    /// JWE keys the card data is addressed to.
    pub keyring: StationKeyring,
    /// Issuer and transport keys.
    pub keystore: Arc<dyn KeyStore>,
    /// EMV profiles by name.
    pub profiles: ProfileSet,
    /// Card face design.
    pub layout: Layout,
    /// Folder of artwork PNGs.
    pub artwork_dir: Option<PathBuf>,
    /// Card product used when the order names none.
    pub default_card_product: String,
    /// Secure messaging for personalization.
    pub level: SecurityLevel,
}

fn index(field: &str, v: Option<&String>) -> Result<Option<KeyIndex>, Refusal> {
    v.map(|s| {
        KeyIndex::parse(s).ok_or_else(|| {
            Refusal::new(
                D1ErrorCode::FieldInvalidFormat,
                format!("paymentApplication.{field}"),
            )
        })
    })
    .transpose()
}

fn prep_input(card: &CardData) -> PrepInput {
    PrepInput {
        pan: Zeroizing::new(card.pan.digits().to_string()),
        exp_yymm: card.exp.to_yymm(),
        psn: card.pan_sequence_number.clone(),
        encoded_name: card.encoded_name.clone(),
        effective_yymm: card.effective_date.as_ref().map(|d| d.to_yymm()),
        service_code: None,
        cvv1: card.cvv1.clone().map(Zeroizing::new),
        pvv: card.pvv.clone().map(Zeroizing::new),
        track2_override: card
            .track_data
            .as_ref()
            .and_then(|t| t.track2.clone())
            .map(Zeroizing::new),
        chip_data: card.chip_data.as_ref().map(|c| Model2Data {
            aid: c.aid.clone(),
            dgis: c.dgis.clone(),
        }),
    }
}

/// Track 1 built to agree with track 2 (same PAN, expiry, service code and
/// discretionary data), unless the order overrides it.
fn tracks(card: &CardData, track2: &str) -> Result<MagTracks, Refusal> {
    let overrides = card.track_data.as_ref();
    let track1 = match overrides.and_then(|t| t.track1.clone()) {
        Some(t1) => Some(t1),
        None => match &card.encoded_name {
            Some(name) => {
                let pan = card.pan.digits();
                let after = track2
                    .split_once('=')
                    .map(|(_, r)| r)
                    .ok_or_else(|| Refusal::data("track 2 has no field separator"))?;
                if after.len() < 7 {
                    return Err(Refusal::data(
                        "track 2 too short for expiry and service code",
                    ));
                }
                let t1 = magstripe::track1(&magstripe::TrackInput {
                    pan,
                    exp_yymm: &after[..4],
                    name,
                    service_code: &after[4..7],
                    discretionary: &after[7..],
                })
                .map_err(|e| Refusal::data(format!("track 1: {e}")))?;
                Some(t1.to_string())
            }
            None => None,
        },
    };
    magstripe::validate(2, track2).map_err(|e| Refusal::data(format!("track 2: {e}")))?;
    Ok(MagTracks {
        track1,
        track2: Some(track2.to_string()),
        track3: overrides.and_then(|t| t.track3.clone()),
    })
}

impl Production {
    /// Validates the order for this station, decrypts its card data and prepares
    /// chip, stripe and face. No device is touched.
    pub fn prepare(&self, order: &serde_json::Value, today: Date) -> Result<PreparedJob, Refusal> {
        let instant = accept_for_station(order, &self.station_id)
            .map_err(|e| Refusal::new(e.error_code, e.error.clone()))?;
        let card = self
            .keyring
            .decrypt_card_data(&instant.encrypted_data, today)
            .map_err(|e| Refusal::new(e.error_code, e.error.clone()))?;
        let pa = &instant.payment_application;
        let profile = self.profiles.get(&pa.config).map_err(|e| {
            Refusal::data(format!("paymentApplication.config '{}': {e}", pa.config))
        })?;
        let derivation = index("derivationKeyIndex", pa.derivation_key_index.as_ref())?;
        let keys = KeyIndexes {
            derivation: derivation.unwrap_or(KeyIndex(1)),
            cv: index("cvKeyIndex", pa.cv_key_index.as_ref())?,
            pv: index("pvKeyIndex", pa.pv_key_index.as_ref())?,
            oda: index("odaKeyIndex", pa.oda_key_index.as_ref())?,
        };
        if derivation.is_none() && card.chip_data.is_none() {
            return Err(Refusal::new(
                D1ErrorCode::FieldInvalidFormat,
                "paymentApplication.derivationKeyIndex",
            ));
        }
        let input = prep_input(&card);
        let prepared = prepare(&input, profile, &keys, self.keystore.as_ref())
            .map_err(|e| Refusal::data(e.to_string()))?;
        // SDA, DDA and CDA cards are checked with the CA keys a terminal would hold.
        let expectations = CardExpectations::new(&input, &prepared, profile)
            .map_err(|e| Refusal::data(e.to_string()))?
            .with_ca_keys(self.keystore.ca_public_keys());
        let product = instant
            .card_product_id
            .clone()
            .unwrap_or_else(|| self.default_card_product.clone());
        let transport = self
            .keystore
            .transport_keys(&product)
            .map_err(|e| Refusal::data(format!("card product '{product}': {e}")))?;
        let track2 = prepared
            .magstripe_track2
            .clone()
            .ok_or_else(|| Refusal::data("no track 2 for the stripe"))?;
        let tracks = tracks(&card, &track2)?;
        let design = instant.card_design.as_ref();
        let face = FaceInput {
            name: card.encoded_name.clone().unwrap_or_default(),
            pan: Some(Zeroizing::new(card.pan.digits().to_string())),
            exp_yymm: card.exp.to_yymm(),
            custom_lines: design.map(|d| d.custom_lines.clone()).unwrap_or_default(),
            member_id: design.and_then(|d| d.member_id.clone()),
            artwork_id: design.and_then(|d| d.artwork_id.clone()),
        };
        let panels = vec![to_k_panel(&render_front(
            &face,
            &self.layout,
            self.artwork_dir.as_deref(),
        ))];
        Ok(PreparedJob {
            masked_pan: card.pan.masked(),
            holder: crate::plastic::face::printed_name(&face.name),
            product,
            card: prepared,
            expectations,
            derivation_index: keys.derivation,
            transport,
            tracks,
            panels,
        })
    }

    /// Writes the chip; returns the APDU count.
    pub async fn personalize(
        &self,
        enc: &mut dyn ApduTransport,
        job: &PreparedJob,
    ) -> Result<u32, CpsError> {
        let report = self
            .write_chip(enc, &job.card.aid, &job.card.dgis, &job.transport)
            .await?;
        Ok(report.apdu_count)
    }

    /// Writes a DGI set into the application `aid` of the card under the card stock's
    /// transport keys: the one personalization session the pipeline and the engineers'
    /// `card perso` share.
    pub async fn write_chip(
        &self,
        enc: &mut dyn ApduTransport,
        aid: &[u8],
        dgis: &[Dgi],
        transport: &TransportKeySet,
    ) -> Result<PersoReport, CpsError> {
        personalize(
            enc,
            &PersoTarget {
                aid: aid.to_vec(),
                via_isd: transport.isd.clone(),
            },
            &transport.key_source(),
            ScpParams {
                protocol: transport.protocol,
                kvn: transport.kvn,
                level: self.level,
            },
            dgis,
            rand::random(),
        )
        .await
    }

    /// Reads the chip as a terminal and checks it against the order, ARQC included.
    pub async fn verify(
        &self,
        enc: &mut dyn ApduTransport,
        job: &PreparedJob,
    ) -> Result<(), Refusal> {
        let read = read_card(enc, &job.card.aid, &TerminalParams::default())
            .await
            .map_err(|e| Refusal::new(D1ErrorCode::CardProdException, format!("read-back: {e}")))?;
        // The ARQC check may call the HSM, which blocks: off the async workers.
        let (keystore, expectations, index) = (
            self.keystore.clone(),
            job.expectations.clone(),
            job.derivation_index,
        );
        tokio::task::spawn_blocking(move || {
            verify_card(&read, &expectations, keystore.as_ref(), index)
        })
        .await
        .map_err(|e| Refusal::new(D1ErrorCode::CardProdException, format!("read-back: {e}")))?
        .map_err(|e| Refusal::new(D1ErrorCode::CardProdException, e.to_string()))
    }
}
