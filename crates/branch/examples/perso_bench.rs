//! Personalization benchmark (run by `cargo xtask bench`, release build).
//!
//! One CPS session (SELECT, INITIALIZE UPDATE, EXTERNAL AUTHENTICATE, STORE DATA…)
//! for the reference DGI set of the shipped Visa profile, against its floor: the
//! identical APDUs, recorded from a session and replayed straight through the same
//! link to a card that answers 9000 to everything. Through pcscd + vpcd when
//! `STATION_HIL_VPCD_PORT` is set (the private pcscd `cargo xtask bench` starts),
//! else in-process. Also prints the STORE DATA count against one DGI per command.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use station_emv::cps::{one_dgi_per_command_count, personalize, PersoReport, PersoTarget, WireDgi};
use station_emv::data::prep::{prepare, KeyIndexes, PrepInput};
use station_emv::data::profile::ProfileSet;
use station_emv::dgi::{Dgi, DgiEncryption};
use station_emv::gp::scp::{max_plain_data, ScpParams, SecurityLevel};
use station_emv::keys::{write_dev_keystore, KeyIndex, KeyStore, SoftwareKeyStore};
use station_hal::{ApduTransport, TransportError};
use station_sim::card::{default_instances, InProcessTransport, SimCard, SimCardConfig};
use station_sim::vpcd::{serve, SharedCard, VirtualCard};
use tokio::sync::watch;
use zeroize::Zeroizing;

const RUNS: usize = 30;

/// Records every command it passes on.
struct Recorder<'a> {
    inner: &'a mut dyn ApduTransport,
    sent: Vec<Vec<u8>>,
}

#[async_trait]
impl ApduTransport for Recorder<'_> {
    async fn transmit(&mut self, c: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.sent.push(c.to_vec());
        self.inner.transmit(c).await
    }
}

/// The floor's card: accepts everything.
struct Nine000;

impl VirtualCard for Nine000 {
    fn atr(&self) -> Vec<u8> {
        vec![0x3B, 0x80, 0x80, 0x01, 0x01]
    }
    fn power_on(&mut self) {}
    fn power_off(&mut self) {}
    fn reset(&mut self) {}
    fn process(&mut self, _apdu: &[u8]) -> Vec<u8> {
        vec![0x90, 0x00]
    }
}

#[async_trait]
impl ApduTransport for Nine000 {
    async fn transmit(&mut self, _c: &[u8]) -> Result<Vec<u8>, TransportError> {
        Ok(vec![0x90, 0x00])
    }
}

/// One timed personalization session, recording the APDUs it sends.
async fn session(
    link: &mut dyn ApduTransport,
    target: &PersoTarget,
    keys: &station_emv::gp::scp::KeySource,
    params: ScpParams,
    dgis: &[Dgi],
    challenge: [u8; 8],
) -> (Duration, Vec<Vec<u8>>, PersoReport) {
    let mut rec = Recorder {
        inner: link,
        sent: Vec::new(),
    };
    let t0 = Instant::now();
    let r = personalize(&mut rec, target, keys, params, dgis, challenge)
        .await
        .expect("personalization");
    (t0.elapsed(), rec.sent, r)
}

/// The same APDUs replayed as fast as the link allows.
async fn replay(link: &mut dyn ApduTransport, apdus: &[Vec<u8>]) -> Duration {
    let t0 = Instant::now();
    for apdu in apdus {
        link.transmit(apdu).await.expect("replay");
    }
    t0.elapsed()
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p95(v: &mut [Duration]) -> Duration {
    v.sort();
    v[(v.len() * 95 / 100).min(v.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let dir = std::env::temp_dir().join(format!("station-perso-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench folder");
    let ks =
        SoftwareKeyStore::load(&write_dev_keystore(&dir).expect("dev keys")).expect("key store");
    let profiles = ProfileSet::builtin().expect("profiles");
    let profile = profiles.get("visa_vsdc_cvn10").expect("visa profile");
    let input = PrepInput {
        pan: Zeroizing::new("4761739001010010".into()),
        exp_yymm: "3012".into(),
        psn: "01".into(),
        encoded_name: Some("DOE/JOHN".into()),
        cvv1: Some(Zeroizing::new("123".into())),
        ..PrepInput::default()
    };
    let keys = KeyIndexes {
        derivation: KeyIndex(1),
        cv: Some(KeyIndex(1)),
        pv: None,
        oda: None,
    };
    let card = prepare(&input, profile, &keys, &ks).expect("reference DGI set");
    let t = ks.transport_keys("DEV-VISA").expect("transport keys");
    let params = ScpParams {
        protocol: t.protocol,
        kvn: t.kvn,
        level: SecurityLevel::CDEC_CMAC,
    };
    let stock = SimCardConfig {
        protocol: t.protocol,
        kvn: t.kvn,
        kdd: [1, 2, 3, 4, 5, 6, 7, 8, 9, 0],
        keys: t.key_source(),
        instances: default_instances(),
        padded_dgis: vec![],
    };
    let target = PersoTarget {
        aid: card.aid.clone(),
        via_isd: None,
    };
    let vpcd = std::env::var("STATION_HIL_VPCD_PORT").ok();

    let mut sessions = Vec::new();
    let mut floors = Vec::new();
    let mut recorded = Vec::new();
    let mut report = None;
    for i in 0..RUNS {
        let blank = Arc::new(Mutex::new(SimCard::new(stock.clone())));
        match &vpcd {
            Some(port) => {
                let link: SharedCard = blank.clone();
                let (stop, rx) = watch::channel(false);
                let addr = format!("127.0.0.1:{port}");
                let task = tokio::spawn(async move { serve(&addr, link, rx).await });
                let mut enc = station_pcsc::PcscEncoder::open(
                    station_pcsc::ReaderConfig::new("Virtual PCD 00 00").expect("pattern"),
                )
                .await
                .expect("PC/SC encoder");
                enc.wait_for_card(Duration::from_secs(10))
                    .await
                    .expect("card");
                let (d, sent, r) = session(
                    &mut enc,
                    &target,
                    &t.key_source(),
                    params,
                    &card.dgis,
                    [i as u8; 8],
                )
                .await;
                sessions.push(d);
                recorded = sent;
                report = Some(r);
                let _ = enc.release().await;
                let _ = stop.send(true);
                let _ = task.await;
                tokio::time::sleep(Duration::from_millis(400)).await;

                let floor_card: SharedCard = Arc::new(Mutex::new(Nine000));
                let (stop, rx) = watch::channel(false);
                let addr = format!("127.0.0.1:{port}");
                let task = tokio::spawn(async move { serve(&addr, floor_card, rx).await });
                enc.wait_for_card(Duration::from_secs(10))
                    .await
                    .expect("floor card");
                floors.push(replay(&mut enc, &recorded).await);
                let _ = enc.release().await;
                let _ = stop.send(true);
                let _ = task.await;
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            None => {
                let mut link = InProcessTransport::new(blank.clone());
                let (d, sent, r) = session(
                    &mut link,
                    &target,
                    &t.key_source(),
                    params,
                    &card.dgis,
                    [i as u8; 8],
                )
                .await;
                sessions.push(d);
                recorded = sent;
                report = Some(r);
                floors.push(replay(&mut Nine000, &recorded).await);
            }
        }
    }
    let report = report.expect("at least one run");
    let block = 8;
    let wire: Vec<WireDgi> = card
        .dgis
        .iter()
        .map(|d: &Dgi| {
            let len = match d.encryption {
                DgiEncryption::Pad => (d.data.len() / block + 1) * block,
                _ => d.data.len(),
            };
            WireDgi {
                id: d.id,
                bytes: vec![0; len + if len > 254 { 5 } else { 3 }],
                encrypted: d.encryption != DgiEncryption::None,
            }
        })
        .collect();
    let naive = one_dgi_per_command_count(&wire, max_plain_data(params.protocol, params.level));
    let (sm, fm) = (median(&mut sessions), median(&mut floors));
    println!(
        "personalization ({}, {} runs, {} DGIs, Visa profile, SCP02 C-DEC+C-MAC):",
        if vpcd.is_some() {
            "through pcscd + vpcd"
        } else {
            "in-process, no pcscd"
        },
        RUNS,
        card.dgis.len()
    );
    println!(
        "  session median {:.2} ms, p95 {:.2} ms",
        ms(sm),
        ms(p95(&mut sessions))
    );
    println!(
        "  floor (same {} APDUs replayed to a 9000 card) median {:.2} ms, p95 {:.2} ms",
        recorded.len(),
        ms(fm),
        ms(p95(&mut floors))
    );
    println!(
        "  ratio session/floor {:.2}",
        sm.as_secs_f64() / fm.as_secs_f64().max(1e-9)
    );
    println!(
        "  APDUs: {} in the session; STORE DATA packed {} vs one-DGI-per-command {}",
        report.apdu_count, report.store_data_count, naive
    );
    let _ = std::fs::remove_dir_all(&dir);
}
