//! The whole station side of the link against the sandbox hub: poll an order,
//! journal it, move the job to Ejected, and let the sender drain the journal.

mod sandbox_common;

use sandbox_common::{instant_order, TestHub, STATION, STATION_CLIENT};
use station_agent::job::state::JobState;
use station_agent::journal::{InsertOutcome, Journal, NewJob};
use station_agent::link::outbox::{EventSender, SenderOptions};
use station_agent::link::{ClientCredential, LinkClient, LinkConfig, TlsFiles};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn a_produced_card_is_reported_from_the_journal_to_the_hub() {
    let hub = TestHub::start().await;
    let (_, body) = hub
        .order(
            &hub.issuer_token().await,
            "card-1",
            &instant_order(&hub.sealed_card(), STATION),
        )
        .await;
    let op = body["operationId"].as_str().unwrap().to_string();
    let client = Arc::new(
        LinkClient::new(LinkConfig {
            base_url: hub.handle.base_url(),
            token_url: hub.url("/oauth2/token"),
            station_id: STATION.into(),
            credential: ClientCredential::from_private_jwk(
                STATION_CLIENT,
                &hub.station_signing_private,
                None,
            )
            .unwrap(),
            tls: TlsFiles::default(),
            request_timeout: Duration::from_secs(5),
            order_keys: hub.order_verifier(),
        })
        .unwrap(),
    );
    let order = client.poll_orders(Duration::ZERO).await.unwrap().remove(0);
    // What the hub hands over passes the station's own acceptance and decrypts with its key.
    station_agent::order::accept_for_station(&order.order, STATION)
        .expect("accepted by the station");
    let keyring =
        station_agent::order::StationKeyring::from_jwks(vec![hub.station_jwe_private.to_string()])
            .unwrap();
    let card = keyring
        .decrypt_card_data(
            order.order["encryptedData"].as_str().unwrap(),
            time::OffsetDateTime::now_utc().date(),
        )
        .expect("card data valid for the station");
    assert_eq!(card.pan.masked(), "476173******0010");
    let journal = Arc::new(Journal::open_in_memory().unwrap());
    let outcome = journal
        .insert_order(&NewJob {
            operation_id: order.operation_id.clone(),
            issuer_id: order.issuer_id.clone(),
            card_id: order.card_id.clone(),
            perso_station: STATION.into(),
            order_json: order.order.clone(),
        })
        .unwrap();
    assert_eq!(outcome, InsertOutcome::Created);
    for state in [
        JobState::Validated,
        JobState::Feeding,
        JobState::AtChipStation,
        JobState::Personalizing,
        JobState::Verifying,
        JobState::Printing,
        JobState::EncodingStripe,
        JobState::Ejecting,
        JobState::Ejected,
    ] {
        journal.transition(&op, state, None).unwrap();
    }

    let sender = EventSender::new(client, journal.clone(), SenderOptions::default());
    let report = sender.send_pending().await.unwrap();

    assert_eq!(report.deferred + report.parked, 0, "{report:?}");
    assert!(journal.pending_events(10).unwrap().is_empty());
    let statuses: Vec<String> = hub
        .handle
        .hub()
        .store
        .events(&op)
        .unwrap()
        .into_iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(statuses.last().map(String::as_str), Some("CARD_PROD_DONE"));
    let (_, st) = hub
        .production_status(&hub.issuer_token().await, "card-1")
        .await;
    assert_eq!(st["operations"][0]["status"], "SUCCESSFUL");
}
