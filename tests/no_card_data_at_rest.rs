//! Orders run through the whole agent while every log line is captured at TRACE level
//! (without the production scrubber, so the code itself is under test); then the
//! journal files and the logs are searched for the clear PAN, track data and CVV.

mod e2e;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{branch, wait_states, STATION};
use serde_json::json;
use station_agent::job::state::JobState;
use station_agent::journal::NewJob;
use station_agent::order::jwe::encrypt_json;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_clear_pan_track_or_cvv_in_the_journal_or_the_logs() {
    let logs = Capture::default();
    let sink = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || sink.clone())
            .finish(),
    )
    .unwrap();

    let (_dir, b) = branch("automatic").await;
    let agent = b.agent().await;
    let station_key = std::fs::read_to_string(
        b.config
            .resolve(std::path::Path::new("keys/station-jwe.public.jwk")),
    )
    .unwrap();
    let cards = [("4761739001010010", "987"), ("4000001234567899", "654")];
    let mut ops = Vec::new();
    for (i, (pan, cvv)) in cards.iter().enumerate() {
        let data = json!({"pan": pan, "exp": "3012", "encodedName": "DOE/JANE", "cvv1": cvv,
                          "panSequenceNumber": "01"});
        let order = json!({
            "distributionChannel": "INSTANT",
            "cardProductId": "DEV-VISA",
            "persoStation": STATION,
            "services": {"issuance": "CREATION"},
            "encryptedData": encrypt_json(&station_key, data.to_string().as_bytes()).unwrap(),
            "paymentApplication": {"config": "visa_vsdc_cvn10", "derivationKeyIndex": "01", "cvKeyIndex": "01"}
        });
        let op = format!("op-at-rest-{i}");
        agent
            .station
            .intake(NewJob {
                operation_id: op.clone(),
                issuer_id: "SANDBOX-ISSUER".into(),
                card_id: format!("card-at-rest-{i}"),
                perso_station: STATION.into(),
                order_json: order,
            })
            .unwrap();
        ops.push(op);
    }
    wait_states(&agent, &ops, &[JobState::Ejected], Duration::from_secs(60)).await;
    agent.shutdown().await;

    let mut at_rest = Vec::new();
    let journal = b.journal_path();
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{}{suffix}", journal.display());
        if let Ok(bytes) = std::fs::read(&p) {
            at_rest.extend(bytes);
        }
    }
    assert!(!at_rest.is_empty());
    let logged = logs.0.lock().unwrap().clone();
    assert!(!logged.is_empty(), "logs were captured");
    let haystacks = [("journal", &at_rest), ("logs", &logged)];
    for (pan, cvv) in cards {
        let track2 = format!("{pan}=3012");
        let needles = [
            pan.to_string(),
            track2,
            format!("\"cvv1\":\"{cvv}\""),
            format!("cvv1: \"{cvv}\""),
        ];
        for (name, hay) in haystacks {
            for n in &needles {
                assert!(
                    !hay.windows(n.len()).any(|w| w == n.as_bytes()),
                    "{name} contains card data ({} bytes searched)",
                    hay.len()
                );
            }
        }
    }
    // The masked form is what the journal keeps.
    assert!(at_rest.windows(16).any(|w| w == b"476173******0010"));
}
