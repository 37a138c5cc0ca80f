//! `preview`: the card face of an order as PNG.

#[allow(unused_imports)]
use super::*;

pub(super) fn preview(explicit: Option<&Path>, order: &Path, out: &Path) -> Outcome {
    use crate::plastic::face::{render_front, write_preview_png, FaceInput, Layout};
    let text =
        std::fs::read_to_string(order).map_err(|e| usage(format!("{}: {e}", order.display())))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| usage(format!("{}: {e}", order.display())))?;
    let design = &json["cardDesign"];
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut input = FaceInput {
        name: "CARDHOLDER/NAME".into(),
        pan: None,
        exp_yymm: String::new(),
        custom_lines: strings(&design["customLines"]),
        member_id: design["memberId"].as_str().map(str::to_string),
        artwork_id: design["artworkId"].as_str().map(str::to_string),
    };
    let mut layout = Layout::standard();
    let mut artwork = None;
    // With a station configuration, the real card data is decrypted for the preview.
    if let Ok(path) = config::locate(explicit) {
        if let Ok(cfg) = StationConfig::load(&path) {
            if let Ok(p) = crate::agent::production_from_config(&cfg) {
                if let Some(jwe) = json["encryptedData"].as_str() {
                    let today = time::OffsetDateTime::now_utc().date();
                    if let Ok(card) = p.keyring.decrypt_card_data(jwe, today) {
                        input.name = card.encoded_name.clone().unwrap_or_default();
                        input.exp_yymm = card.exp.to_yymm();
                        input.pan = Some(zeroize::Zeroizing::new(card.pan.digits().to_string()));
                    }
                }
                layout = p.layout.clone();
                artwork = p.artwork_dir.clone();
            }
        }
    }
    let img = render_front(&input, &layout, artwork.as_deref());
    write_preview_png(&img, out).map_err(runtime)?;
    println!("card face written to {}", out.display());
    Ok(())
}
