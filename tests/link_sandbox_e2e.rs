//! The station's link client against the sandbox hub: poll, then report the
//! card produced from an outbox.

mod link_common;
mod sandbox_common;

use link_common::MemOutbox;
use sandbox_common::{instant_order, TestHub, STATION, STATION_CLIENT};
use station_agent::link::outbox::{EventSender, SenderOptions};
use station_agent::link::{ClientCredential, LinkClient, LinkConfig, TlsFiles};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn a_station_polls_its_order_and_reports_it_produced() {
    let hub = TestHub::start().await;
    let (status, body) = hub
        .order(
            &hub.issuer_token().await,
            "card-1",
            &instant_order(&hub.sealed_card(), STATION),
        )
        .await;
    assert_eq!(status, 202);
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

    let orders = client.poll_orders(Duration::from_secs(1)).await.unwrap();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].operation_id, op);

    let outbox = Arc::new(MemOutbox::with(&[
        (op.as_str(), 1, "CARD_PROD_READY"),
        (op.as_str(), 2, "CARD_PROD_DONE"),
    ]));
    let sender = EventSender::new(client.clone(), outbox.clone(), SenderOptions::default());
    let report = sender.send_pending().await.unwrap();
    assert_eq!(report.delivered, 2);

    let (_, st) = hub
        .production_status(&hub.issuer_token().await, "card-1")
        .await;
    assert_eq!(st["operations"][0]["status"], "SUCCESSFUL");
    assert!(client.poll_orders(Duration::ZERO).await.unwrap().is_empty());
}
