//! Station link client against a scripted upstream over real HTTP on 127.0.0.1.

mod link_common;

use link_common::{client, start, MemOutbox, Upstream};
use station_agent::link::outbox::{EventSender, Outbox, SenderOptions};
use station_agent::link::{Backoff, LinkClient, LinkConfig, LinkError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

fn options() -> SenderOptions {
    SenderOptions {
        batch: 100,
        backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(10)),
        idle: Duration::from_secs(1),
    }
}

#[tokio::test(start_paused = true)]
async fn outbox_is_drained_in_order_per_operation_once_the_hub_is_back() {
    // Reserve a port, then leave it closed: the hub is down.
    let reserved = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);

    let outbox = Arc::new(MemOutbox::with(&[
        ("op-a", 1, "CARD_PROD_READY"),
        ("op-b", 1, "CARD_PROD_READY"),
        ("op-a", 2, "CARD_PROD_DONE"),
        ("op-b", 2, "CARD_PROD_EXCEPTION"),
        ("op-a", 3, "CARD_PROD_DONE"),
    ]));
    let sender = EventSender::new(Arc::new(client(addr)), outbox.clone(), options());
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(sender.run(Arc::new(Notify::new()), stop_rx));

    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        outbox.pending_count(),
        5,
        "nothing can be delivered while the hub is down"
    );
    assert!(
        outbox.parked.lock().unwrap().is_empty(),
        "an unreachable hub parks nothing"
    );

    let up = Arc::new(Upstream::default());
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    link_common::serve(listener, up.clone());

    tokio::time::timeout(Duration::from_secs(600), async {
        while outbox.pending_count() > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("outbox drained after the hub came back");
    stop_tx.send(true).unwrap();
    task.await.unwrap();

    let events = up.events.lock().unwrap().clone();
    let seqs =
        |op: &str| -> Vec<u64> { events.iter().filter(|e| e.0 == op).map(|e| e.1).collect() };
    assert_eq!(seqs("op-a"), vec![1, 2, 3]);
    assert_eq!(seqs("op-b"), vec![1, 2]);
}

#[tokio::test]
async fn a_401_renews_the_token_once_and_the_request_is_repeated() {
    let up = Arc::new(Upstream::default());
    up.refused_tokens.lock().unwrap().insert("tok-1".into());
    let addr = start(up.clone()).await;
    let c = client(addr);

    c.send_event("op-a", &link_common::event(1, "CARD_PROD_READY"))
        .await
        .expect("delivered with the renewed token");

    assert_eq!(*up.token_calls.lock().unwrap(), 2);
    let events = up.events.lock().unwrap().clone();
    assert_eq!(events, vec![("op-a".to_string(), 1, "tok-2".to_string())]);
}

#[tokio::test]
async fn a_second_401_is_reported_without_looping() {
    let up = Arc::new(Upstream::default());
    *up.refuse_all.lock().unwrap() = true;
    let addr = start(up.clone()).await;
    let c = client(addr);

    let err = c
        .send_event("op-a", &link_common::event(1, "CARD_PROD_READY"))
        .await
        .unwrap_err();

    assert!(
        matches!(err, LinkError::Unauthorized { status: 401 }),
        "{err:?}"
    );
    assert_eq!(err.code(), "LINK_UNAUTHORIZED");
    assert_eq!(*up.token_calls.lock().unwrap(), 2, "exactly one renewal");
}

#[tokio::test]
async fn refused_credentials_leave_events_pending_instead_of_parking_them() {
    let up = Arc::new(Upstream::default());
    *up.refuse_all.lock().unwrap() = true;
    let addr = start(up.clone()).await;
    let outbox = Arc::new(MemOutbox::with(&[("op-a", 1, "CARD_PROD_READY")]));
    let sender = EventSender::new(Arc::new(client(addr)), outbox.clone(), options());

    let report = sender.send_pending().await.unwrap();

    assert_eq!(report.deferred, 1);
    assert_eq!(outbox.pending_count(), 1);
    assert!(outbox.parked.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_4xx_rejection_parks_the_event_and_holds_the_rest_of_its_operation() {
    let up = Arc::new(Upstream::default());
    up.rejected.lock().unwrap().insert(("op-a".into(), 1));
    let addr = start(up.clone()).await;
    let outbox = Arc::new(MemOutbox::with(&[
        ("op-a", 1, "CARD_PROD_READY"),
        ("op-a", 2, "CARD_PROD_DONE"),
        ("op-b", 1, "CARD_PROD_READY"),
    ]));
    let sender = EventSender::new(Arc::new(client(addr)), outbox.clone(), options());

    let report = sender.send_pending().await.unwrap();

    assert_eq!(
        (
            report.delivered,
            report.parked,
            report.held,
            report.deferred
        ),
        (1, 1, 1, 0)
    );
    let parked = outbox.parked.lock().unwrap().clone();
    assert_eq!(parked.len(), 1);
    assert_eq!((parked[0].0.as_str(), parked[0].1), ("op-a", 1));
    assert!(parked[0].2.starts_with("LINK_REJECTED"), "{}", parked[0].2);
    assert_eq!(
        *outbox.delivered.lock().unwrap(),
        vec![("op-b".to_string(), 1)],
        "other operations keep flowing"
    );
    let again = sender.send_pending().await.unwrap();
    assert_eq!(again, Default::default(), "nothing retried after parking");
    assert_eq!(up.events.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_5xx_defers_the_operation_and_keeps_its_later_events_behind() {
    let up = Arc::new(Upstream::default());
    up.event_script.lock().unwrap().push_back(503);
    let addr = start(up.clone()).await;
    let outbox = Arc::new(MemOutbox::with(&[
        ("op-a", 1, "CARD_PROD_READY"),
        ("op-a", 2, "CARD_PROD_DONE"),
    ]));
    let sender = EventSender::new(Arc::new(client(addr)), outbox.clone(), options());

    let first = sender.send_pending().await.unwrap();
    assert_eq!((first.delivered, first.deferred), (0, 2));
    assert!(
        up.events.lock().unwrap().is_empty(),
        "sequence 2 must not overtake 1"
    );

    let second = sender.send_pending().await.unwrap();
    assert_eq!(second.delivered, 2);
    let seqs: Vec<u64> = up.events.lock().unwrap().iter().map(|e| e.1).collect();
    assert_eq!(seqs, vec![1, 2]);
    assert!(outbox.pending_events(10).unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_access_token_is_reused_until_a_minute_before_expiry() {
    let up = Arc::new(Upstream::default());
    *up.token_lifetime.lock().unwrap() = 120;
    let addr = start(up.clone()).await;
    let c = client(addr);

    c.send_heartbeat(&heartbeat()).await.unwrap();
    c.send_heartbeat(&heartbeat()).await.unwrap();
    assert_eq!(*up.token_calls.lock().unwrap(), 1, "cached token reused");

    tokio::time::advance(Duration::from_secs(61)).await;
    c.send_heartbeat(&heartbeat()).await.unwrap();
    assert_eq!(
        *up.token_calls.lock().unwrap(),
        2,
        "renewed inside the 60 s margin"
    );
    assert_eq!(*up.heartbeats.lock().unwrap(), 3);
}

#[tokio::test]
async fn the_long_poll_returns_the_station_orders() {
    let up = Arc::new(Upstream::default());
    let addr = start(up).await;
    let c = client(addr);

    let orders = c.poll_orders(Duration::from_secs(1)).await.unwrap();

    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].operation_id, "op-1");
    assert_eq!(orders[0].order["persoStation"], "ST-1");
}

#[tokio::test]
async fn an_order_not_signed_by_a_configured_hub_key_is_not_handed_on() {
    let up = Arc::new(Upstream::default());
    let addr = start(up).await;
    let (_, other_public) =
        station_agent::sandbox::keys::generate_es256_jwk("test-hub-orders-1").unwrap();
    let c = LinkClient::new(LinkConfig {
        base_url: format!("http://{addr}"),
        token_url: format!("http://{addr}/oauth2/token"),
        station_id: "ST-1".into(),
        credential: link_common::station_credential(),
        tls: station_agent::link::TlsFiles::default(),
        request_timeout: Duration::from_secs(5),
        order_keys: station_agent::link::OrderVerifier::from_public_jwks(&[other_public]).unwrap(),
    })
    .unwrap();

    let orders = c.poll_orders(Duration::from_secs(1)).await.unwrap();

    assert!(
        orders.is_empty(),
        "an order signed by another key was accepted"
    );
}

fn heartbeat() -> station_agent::link::Heartbeat {
    station_agent::link::Heartbeat {
        time: "2026-11-23T00:00:00Z".into(),
        agent_version: "0.1.0".into(),
        devices: vec![station_agent::link::DeviceHealth {
            kind: "printer".into(),
            name: "evolis-1".into(),
            status: "OK".into(),
            faults: vec![],
        }],
        card_stock: Some(42),
    }
}

struct Intake(std::sync::Mutex<Vec<String>>);

impl station_agent::link::OrderIntake for Intake {
    fn accept(&self, order: station_agent::link::StationOrder) {
        self.0.lock().unwrap().push(order.operation_id);
    }
}

#[tokio::test(start_paused = true)]
async fn the_order_poller_hands_orders_over_and_survives_an_outage() {
    let reserved = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let intake = Arc::new(Intake(Default::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(station_agent::link::run_order_poller(
        Arc::new(client(addr)),
        intake.clone(),
        Duration::from_secs(20),
        Backoff::new(Duration::from_millis(200), Duration::from_secs(10)),
        stop_rx,
    ));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(intake.0.lock().unwrap().is_empty());

    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    link_common::serve(listener, Arc::new(Upstream::default()));
    tokio::time::timeout(Duration::from_secs(120), async {
        while intake.0.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("order handed over once the hub is back");
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(intake.0.lock().unwrap()[0], "op-1");
}

#[tokio::test(start_paused = true)]
async fn heartbeats_go_out_periodically() {
    struct Health;
    impl station_agent::link::HealthSource for Health {
        fn heartbeat(&self) -> station_agent::link::Heartbeat {
            heartbeat()
        }
    }
    let up = Arc::new(Upstream::default());
    let addr = start(up.clone()).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(station_agent::link::outbox::run_heartbeat(
        Arc::new(client(addr)),
        Arc::new(Health),
        Duration::from_secs(30),
        stop_rx,
    ));
    tokio::time::timeout(Duration::from_secs(600), async {
        while *up.heartbeats.lock().unwrap() < 3 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await
    .expect("three heartbeats");
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}

#[test]
fn a_client_certificate_without_its_key_is_a_configuration_error() {
    let err = station_agent::link::client::http_client(
        &station_agent::link::TlsFiles {
            client_cert: Some("/nonexistent/cert.pem".into()),
            client_key: None,
            ca_bundle: None,
        },
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert_eq!(err.code(), "LINK_CONFIG");
}

#[tokio::test]
async fn events_of_one_operation_go_out_by_sequence_whatever_the_outbox_order() {
    let up = Arc::new(Upstream::default());
    let addr = start(up.clone()).await;
    let outbox = Arc::new(MemOutbox::with(&[
        ("op-a", 2, "CARD_PROD_DONE"),
        ("op-b", 1, "CARD_PROD_READY"),
        ("op-a", 1, "CARD_PROD_READY"),
    ]));
    let sender = EventSender::new(Arc::new(client(addr)), outbox.clone(), options());

    sender.send_pending().await.unwrap();

    let sent: Vec<(String, u64)> = up
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.0.clone(), e.1))
        .collect();
    assert_eq!(
        sent,
        vec![
            ("op-a".to_string(), 1),
            ("op-a".to_string(), 2),
            ("op-b".to_string(), 1)
        ]
    );
}

#[tokio::test]
async fn the_link_is_built_from_the_station_configuration() {
    let up = Arc::new(Upstream::default());
    let addr = start(up.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/station.example.toml"
    ))
    .unwrap()
    .replace("http://127.0.0.1:8480", &format!("http://{addr}"));
    std::fs::write(dir.path().join("station.toml"), example).unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    let (private, _) = station_agent::sandbox::keys::generate_es256_jwk("link-BR-0042-01").unwrap();
    std::fs::write(dir.path().join("keys/link-es256.jwk"), private.as_str()).unwrap();
    std::fs::write(
        dir.path().join("keys/hub-orders.public.jwk"),
        &link_common::order_signing_keys().1,
    )
    .unwrap();
    let config =
        station_agent::config::StationConfig::load(&dir.path().join("station.toml")).unwrap();

    let link = station_agent::link::LinkClient::new(
        station_agent::link::LinkConfig::from_station_config(&config).unwrap(),
    )
    .unwrap();

    assert_eq!(link.station_id(), "BR-0042-01");
    assert_eq!(link.poll_orders(Duration::ZERO).await.unwrap().len(), 1);
    assert_eq!(*up.token_calls.lock().unwrap(), 1);
}
