//! The sample issuer client posts orders a station then receives.

mod sandbox_common;

use sandbox_common::{keyring_decrypt, TestHub, STATION};
use serde_json::Value;
use station_agent::sandbox::client::{post_sample_orders, SAMPLE_PRODUCTS};
use station_emv::card_data::luhn_valid;

#[tokio::test]
async fn sample_orders_reach_the_station_with_valid_test_card_data() {
    let hub = TestHub::start().await;

    let posted = post_sample_orders(&hub.handle.base_url(), hub.dir.path(), STATION, 3)
        .await
        .unwrap();

    assert_eq!(posted.len(), 3);
    let polled = hub.poll(&hub.station_token().await, 0).await;
    let orders = polled["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 3);
    for (n, ((card_id, op), order)) in posted.iter().zip(orders).enumerate() {
        // A mixed batch: the products in turn, each with its profile and card product.
        let product = &SAMPLE_PRODUCTS[n % SAMPLE_PRODUCTS.len()];
        assert_eq!(
            order["order"]["paymentApplication"]["config"],
            product.profile
        );
        assert_eq!(order["order"]["cardProductId"], product.card_product_id);
        assert_eq!(order["cardId"], card_id.as_str());
        assert_eq!(order["operationId"], op.as_str());
        let clear = keyring_decrypt(
            &hub.station_jwe_private,
            order["order"]["encryptedData"].as_str().unwrap(),
        )
        .unwrap();
        let card: Value = serde_json::from_slice(&clear).unwrap();
        let pan = card["pan"].as_str().unwrap();
        assert!(pan.starts_with(product.bin) && luhn_valid(pan));
    }
}
