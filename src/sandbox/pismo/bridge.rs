//! The embosser bridge: the sandbox's stand-in for Pismo's embossing file. A run
//! for a group becomes one D1 INSTANT order per card for the station registered
//! for that group, card data re-encrypted to the station key, `cardId` = the
//! Pismo card id; each card gets its `embossing` event and the run an
//! `embossing_summary`.

use super::store::{now_ms, SandboxCard};
use super::{envelope, EmbossingGroupEntry, PismoSandbox, PISMO_ISSUER_ID};
use crate::sandbox::client::{sample_instant_order, SampleProduct, SAMPLE_PRODUCTS};
use crate::sandbox::SandboxError;
use rand::Rng;
use serde_json::json;
use station_emv::card_data::{luhn_check_digit, mask_digits};
use zeroize::Zeroizing;

/// The sample product (test BIN, EMV profile) a card is made as: the one staff chose
/// when the sandbox knows it, else the first (Visa).
fn sample_product(card: &SandboxCard) -> &'static SampleProduct {
    card.product
        .as_deref()
        .and_then(|p| SAMPLE_PRODUCTS.iter().find(|s| s.card_product_id == p))
        .unwrap_or(&SAMPLE_PRODUCTS[0])
}

/// Card data JSON (D1 `encryptedData` content) for a new Pismo card: a Luhn-valid
/// PAN on its product's test BIN, expiry three years ahead, the printed name upper-cased.
fn new_card_data(card: &SandboxCard) -> (Zeroizing<String>, String) {
    let mut pan = String::from(sample_product(card).bin);
    {
        let mut rng = rand::thread_rng();
        while pan.len() < 15 {
            pan.push(char::from(b'0' + rng.gen_range(0..10u8)));
        }
    }
    let check = luhn_check_digit(&pan);
    pan.push(check);
    let pan = Zeroizing::new(pan);
    let today = time::OffsetDateTime::now_utc().date();
    let yymm = |y: i32, m: u8| format!("{:02}{:02}", y.rem_euclid(100), m);
    let month = today.month() as u8;
    let exp = yymm(today.year() + 3, month);
    let name = card
        .printed_name
        .clone()
        .unwrap_or_else(|| "CARDHOLDER".into())
        .to_ascii_uppercase();
    let data = json!({
        "pan": pan.as_str(),
        "exp": exp,
        "effectiveDate": yymm(today.year(), month),
        "encodedName": name,
        "panSequenceNumber": "00",
        // Track 2 carries the service code (201: international, IC, normal authorization).
        "trackData": { "track2": format!("{}={exp}2010000000000", pan.as_str()) },
    });
    (Zeroizing::new(data.to_string()), mask_digits(&pan))
}

/// The PCI data of cards whose not-ready window has passed, sealed to the hub key,
/// and their `embossing_card_ingress` events.
fn ingress(sb: &PismoSandbox) -> Result<(), SandboxError> {
    for card in sb.store.blocking().due_for_ingress(now_ms())? {
        let (data, masked) = new_card_data(&card);
        let sealed = crate::order::jwe::encrypt_json(&sb.hub.hub_public_jwk, data.as_bytes())
            .map_err(|e| SandboxError::Keys(e.to_string()))?;
        drop(data);
        let cid = uuid::Uuid::new_v4().to_string();
        let event = envelope(
            &sb.file.org_id,
            "embossing",
            "embossing_card_ingress",
            &cid,
            json!({"card_id": card.id, "embossing_group": card.embossing_group, "status": "SUCCESS"}),
        );
        sb.store
            .blocking()
            .complete_ingress(card.id, &sealed, &masked, &[event])?;
        sb.emit();
    }
    Ok(())
}

/// One embossing run for `group`: every queued card (only `only` when not empty).
/// Returns how many cards became orders. A card whose previous order is still in
/// production stays queued for the next run.
pub fn run_group(
    sb: &PismoSandbox,
    group: &EmbossingGroupEntry,
    only: &[i64],
) -> Result<usize, SandboxError> {
    let file_name = format!(
        "EMB_{}_{}.pgp",
        group.name,
        time::OffsetDateTime::now_utc().unix_timestamp()
    );
    let mut count = 0;
    for card in sb.store.blocking().queued_in_group(&group.name)? {
        if !only.is_empty() && !only.contains(&card.id) {
            continue;
        }
        let Some(sealed) = sb.store.blocking().card_data_jwe(card.id)? else {
            continue;
        };
        let opened = match sb.hub.rules().open_card_data(&sealed) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(card_id = card.id, status = %e.status, "pismo sandbox: card data unusable");
                continue;
            }
        };
        let request_id = format!("pismo-{}-{}", card.id, card.embossed_count + 1);
        let mut body =
            sample_instant_order(sample_product(&card), "", &group.perso_station, &request_id);
        if let Some(p) = &card.product {
            body["cardProductId"] = json!(p);
        }
        match sb.hub.submit_instant(
            PISMO_ISSUER_ID,
            &card.id.to_string(),
            &group.perso_station,
            &body,
            &opened,
        ) {
            Ok(operation_id) => {
                let event = envelope(
                    &sb.file.org_id,
                    "embossing",
                    "embossing",
                    &request_id,
                    json!({
                        "card_id": card.id,
                        "embossing_group": group.name,
                        "config_id": group.config_id,
                        "file_name": file_name,
                        "reembossing": card.reembossing_pending,
                        "reembossing_counter": card.reembossing_counter,
                        "operation_id": operation_id,
                    }),
                );
                sb.store.blocking().embossed(card.id, &event)?;
                count += 1;
                tracing::info!(card_id = card.id, operation_id = %operation_id, station = %group.perso_station, "pismo sandbox: card sent to the embosser");
            }
            Err(e) => {
                tracing::warn!(card_id = card.id, status = %e.status, error = ?e.error, "pismo sandbox: the hub refused the order; the card waits for the next run");
            }
        }
    }
    if count > 0 {
        sb.store.blocking().push_event(&envelope(
            &sb.file.org_id,
            "embossing",
            "embossing_summary",
            &uuid::Uuid::new_v4().to_string(),
            json!({"file_name": file_name, "count": count, "config_id": group.config_id, "embossing_group": group.name}),
        ))?;
        sb.emit();
    }
    Ok(count)
}

/// One pass of the worker: ingress, triggers, schedules.
pub fn work_once(sb: &PismoSandbox) -> Result<(), SandboxError> {
    ingress(sb)?;
    for t in sb.store.blocking().open_triggers()? {
        // The sandbox org has one program (1): a program list without it selects nothing.
        if t.programs.is_empty() || t.programs.contains(&1) {
            for g in sb.file.groups.iter().filter(|g| {
                uuid::Uuid::parse_str(&g.config_id).ok() == uuid::Uuid::parse_str(&t.config_id).ok()
            }) {
                run_group(sb, g, &t.cards)?;
            }
        }
        sb.store.blocking().trigger_done(t.id)?;
    }
    let now = now_ms();
    for g in sb.file.groups.iter().filter(|g| g.schedule_seconds > 0) {
        if now - sb.store.blocking().last_run_ms(&g.name)? >= (g.schedule_seconds * 1000) as i64 {
            run_group(sb, g, &[])?;
            sb.store.blocking().set_last_run_ms(&g.name, now)?;
        }
    }
    Ok(())
}
