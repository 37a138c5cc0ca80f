//! Key store benchmark (run by `cargo xtask bench`, release build): data preparation
//! plus personalization of one card, in-process on the simulated card, with the
//! issuer keys in the software store and in a SoftHSM2 token (PKCS#11). Prints the
//! median and p95 per card for each store and the ratio token / software.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use station_emv::cps::{personalize, PersoTarget};
use station_emv::data::prep::{prepare, KeyIndexes, PrepInput};
use station_emv::data::profile::ProfileSet;
use station_emv::gp::scp::{ScpParams, SecurityLevel};
use station_emv::keys::{
    softhsm2_conf_in, write_dev_keystore, write_dev_token, KeyIndex, KeyStore, PinSource,
    Pkcs11Config, Pkcs11KeyStore, SoftwareKeyStore, SOFTHSM2_MODULE,
};
use station_sim::card::{default_instances, InProcessTransport, SimCard, SimCardConfig};
use zeroize::Zeroizing;

const CARDS: usize = 50;

/// Times preparation + personalization of `CARDS` cards through `ks`.
async fn per_card(ks: &dyn KeyStore, stock: &SimCardConfig) -> Vec<Duration> {
    let profiles = ProfileSet::builtin().expect("profiles");
    let profile = profiles.get("visa_vsdc_cvn10").expect("visa profile");
    let keys = KeyIndexes {
        derivation: KeyIndex(1),
        cv: Some(KeyIndex(1)),
        pv: None,
        oda: None,
    };
    let mut times = Vec::new();
    for i in 0..CARDS {
        let input = PrepInput {
            pan: Zeroizing::new(format!("47617390010{:05}", i)),
            exp_yymm: "3012".into(),
            psn: "01".into(),
            encoded_name: Some("DOE/JOHN".into()),
            cvv1: Some(Zeroizing::new("123".into())),
            ..PrepInput::default()
        };
        let blank = Arc::new(Mutex::new(SimCard::new(stock.clone())));
        let mut link = InProcessTransport::new(blank);
        let t0 = Instant::now();
        let card = prepare(&input, profile, &keys, ks).expect("preparation");
        let t = ks.transport_keys("DEV-VISA").expect("transport keys");
        let params = ScpParams {
            protocol: t.protocol,
            kvn: t.kvn,
            level: SecurityLevel::CDEC_CMAC,
        };
        let target = PersoTarget {
            aid: card.aid.clone(),
            via_isd: None,
        };
        personalize(
            &mut link,
            &target,
            &t.key_source(),
            params,
            &card.dgis,
            [i as u8; 8],
        )
        .await
        .expect("personalization");
        times.push(t0.elapsed());
    }
    times.sort();
    times
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let dir = std::env::temp_dir().join(format!("station-keystore-bench-{}", std::process::id()));
    // SoftHSM2 reads it when it loads: set while this is the only thread.
    std::env::set_var("SOFTHSM2_CONF", softhsm2_conf_in(&dir.join("hsm")));
    tokio::runtime::Runtime::new()
        .expect("async runtime")
        .block_on(bench(dir));
}

async fn bench(dir: std::path::PathBuf) {
    std::fs::create_dir_all(&dir).expect("bench folder");
    let software =
        SoftwareKeyStore::load(&write_dev_keystore(&dir).expect("dev keys")).expect("key store");
    let token = write_dev_token(&dir.join("hsm"), Path::new(SOFTHSM2_MODULE), "bench")
        .expect("SoftHSM2 token (cargo xtask setup installs softhsm2)");
    let hsm = Pkcs11KeyStore::open(&Pkcs11Config {
        module: SOFTHSM2_MODULE.into(),
        token: token.token,
        pin: PinSource::File(token.pin_file),
        sessions: 1,
        development: true,
    })
    .expect("PKCS#11 store");
    let t = software.transport_keys("DEV-VISA").expect("transport keys");
    let stock = SimCardConfig {
        protocol: t.protocol,
        kvn: t.kvn,
        kdd: [1, 2, 3, 4, 5, 6, 7, 8, 9, 0],
        keys: t.key_source(),
        instances: default_instances(),
        padded_dgis: vec![],
    };
    let soft = per_card(&software, &stock).await;
    let token = per_card(&hsm, &stock).await;
    let med = |v: &[Duration]| v[v.len() / 2];
    let p95 = |v: &[Duration]| v[(v.len() * 95 / 100).min(v.len() - 1)];
    println!(
        "key stores: preparation + personalization per card ({CARDS} cards, Visa profile, \
         SCP02 C-DEC+C-MAC, in-process simulated card):"
    );
    println!(
        "  software store      median {:7.2} ms   p95 {:7.2} ms",
        ms(med(&soft)),
        ms(p95(&soft))
    );
    println!(
        "  PKCS#11 (SoftHSM2)  median {:7.2} ms   p95 {:7.2} ms",
        ms(med(&token)),
        ms(p95(&token))
    );
    println!(
        "  ratio PKCS#11 / software (median): {:.2}",
        ms(med(&token)) / ms(med(&soft)).max(f64::EPSILON)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
