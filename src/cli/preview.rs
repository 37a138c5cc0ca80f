//! `preview`: the card face of an order as PNG, laid out as production lays it out,
//! with the PAN masked.

#[allow(unused_imports)]
use super::*;

use crate::order::{validate_card_request, CardRequest};
use crate::plastic::face::{render_front, write_preview_png, FaceInput, Layout};

pub(super) fn preview(explicit: Option<&Path>, order: &Path, out: &Path) -> Outcome {
    let text =
        std::fs::read_to_string(order).map_err(|e| usage(format!("{}: {e}", order.display())))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| usage(format!("{}: {e}", order.display())))?;
    // The order model, as the station reads it: a bad order is named, not half-drawn.
    let request = validate_card_request(&json).map_err(|e| {
        usage(format!(
            "{}: [{}] {}",
            order.display(),
            e.error_code,
            e.error
        ))
    })?;
    let design = match &request {
        CardRequest::Thales(o) => o.card_design.clone(),
        CardRequest::Instant(o) => o.card_design.clone(),
        CardRequest::Central(o) => o.card_design.clone(),
    }
    .unwrap_or_default();
    let mut input = FaceInput {
        name: "CARDHOLDER/NAME".into(),
        pan: None,
        exp_yymm: String::new(),
        custom_lines: design.custom_lines,
        member_id: design.member_id,
        artwork_id: design.artwork_id,
    };
    let mut layout = Layout::standard();
    let mut artwork = None;
    // With a station configuration, the station's layout and the real card data
    // (decrypted with the station's keys) are used; without one, placeholders. A
    // configuration that exists but cannot be used is an error, not a silent fallback.
    match config::locate(explicit) {
        Ok(path) if path.is_file() => {
            let cfg =
                StationConfig::load(&path).map_err(|e| usage(format!("[{}] {e}", e.code())))?;
            let p = crate::agent::production_from_config(&cfg).map_err(usage)?;
            let today = time::OffsetDateTime::now_utc().date();
            let card = p
                .keyring
                .decrypt_card_data(request.encrypted_data(), today)
                .map_err(|e| runtime(format!("encryptedData: [{}] {}", e.error_code, e.error)))?;
            input.name = card.encoded_name.clone().unwrap_or_default();
            input.exp_yymm = card.exp.to_yymm();
            // A preview is a file anyone may open or mail: it shows the PAN masked, as
            // the console does, never the number the printer will emboss.
            input.pan = Some(zeroize::Zeroizing::new(card.pan.masked()));
            layout = p.layout.clone();
            artwork = p.artwork_dir.clone();
        }
        Ok(path) => println!(
            "no station configuration at {}: placeholder name and number",
            path.display()
        ),
        Err(e) => println!("no station configuration ({e}): placeholder name and number"),
    }
    let img = render_front(&input, &layout, artwork.as_deref());
    write_preview_png(&img, out).map_err(runtime)?;
    println!("card face written to {}", out.display());
    Ok(())
}
