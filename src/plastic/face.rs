//! The card face: order fields placed by a layout (`config/layouts/*.toml`) and drawn
//! with the bundled DejaVu Sans Mono into the printer's 1016 × 648 panel.

use std::path::{Path, PathBuf};

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use image::{GrayImage, Luma};
use serde::Deserialize;
use station_hal::{PanelImage, PanelSide};
use thiserror::Error;
use zeroize::Zeroizing;

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");

/// A face that cannot be drawn.
#[derive(Debug, Error)]
pub enum FaceError {
    /// The layout file is not valid.
    #[error("layout {path}: {message}")]
    Layout {
        /// File.
        path: PathBuf,
        /// Problem.
        message: String,
    },
    /// The preview could not be written.
    #[error("cannot write {path}: {message}")]
    Write {
        /// File.
        path: PathBuf,
        /// Problem.
        message: String,
    },
}

/// What a field shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// The PAN in groups of four (only when the product prints it).
    Pan,
    /// Expiry MM/YY.
    Expiry,
    /// Printed name.
    Name,
    /// `cardDesign.memberId`.
    MemberId,
    /// `cardDesign.customLines`, one under the other.
    CustomLines,
}

/// One placed field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// What it shows.
    pub kind: FieldKind,
    /// Left, in dots.
    pub x: u32,
    /// Baseline, in dots.
    pub y: u32,
    /// Text height, in dots.
    pub size: f32,
    /// Small caption above the value.
    pub label: Option<String>,
}

/// A box in dots.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Rect {
    /// Left.
    pub x: u32,
    /// Top.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

/// A card face design.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    /// Name.
    pub name: String,
    /// Panel width in dots.
    pub width: u32,
    /// Panel height in dots.
    pub height: u32,
    /// Where artwork goes.
    pub artwork: Option<Rect>,
    /// Fields.
    pub fields: Vec<Field>,
}

impl Layout {
    /// The layout shipped as `config/layouts/standard.toml`.
    pub fn standard() -> Layout {
        toml::from_str(include_str!("../../config/layouts/standard.toml"))
            .expect("config/layouts/standard.toml is valid")
    }

    /// Loads a layout file.
    pub fn load(path: &Path) -> Result<Layout, FaceError> {
        let err = |m: String| FaceError::Layout {
            path: path.to_path_buf(),
            message: m,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        toml::from_str(&text).map_err(|e| err(e.to_string()))
    }

    /// The box a field's text occupies (for checks and previews).
    pub fn field_box(&self, kind: FieldKind) -> Option<Rect> {
        self.fields.iter().find(|f| f.kind == kind).map(|f| Rect {
            x: f.x,
            y: f.y.saturating_sub(f.size as u32),
            w: self.width.saturating_sub(f.x),
            h: f.size as u32 + 4,
        })
    }
}

/// The order fields a face shows. The PAN is card data: zeroized, never logged.
#[derive(Default)]
pub struct FaceInput {
    /// Printed name (from `encodedName`, `/` shown as a space).
    pub name: String,
    /// PAN digits when the product prints the PAN.
    pub pan: Option<Zeroizing<String>>,
    /// Expiry as YYMM.
    pub exp_yymm: String,
    /// `cardDesign.customLines`.
    pub custom_lines: Vec<String>,
    /// `cardDesign.memberId`.
    pub member_id: Option<String>,
    /// `cardDesign.artworkId`.
    pub artwork_id: Option<String>,
}

/// Printed form of an ISO 7813 name: `DOE/JOHN` → `JOHN DOE`.
pub fn printed_name(encoded: &str) -> String {
    match encoded.split_once('/') {
        Some((surname, given)) => format!("{} {}", given.trim(), surname.trim())
            .trim()
            .to_string(),
        None => encoded.trim().to_string(),
    }
}

fn draw_text(
    img: &mut GrayImage,
    font: &FontRef<'_>,
    x: u32,
    baseline: u32,
    size: f32,
    text: &str,
) {
    let scaled = font.as_scaled(PxScale::from(size));
    let mut caret = x as f32;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        let glyph = id.with_scale_and_position(size, ab_glyph::point(caret, baseline as f32));
        caret += scaled.h_advance(id);
        if let Some(outline) = font.outline_glyph(glyph) {
            let b = outline.px_bounds();
            outline.draw(|gx, gy, cov| {
                let (px, py) = (b.min.x as i32 + gx as i32, b.min.y as i32 + gy as i32);
                if cov > 0.5
                    && px >= 0
                    && py >= 0
                    && (px as u32) < img.width()
                    && (py as u32) < img.height()
                {
                    img.put_pixel(px as u32, py as u32, Luma([0]));
                }
            });
        }
    }
}

/// Draws the front face as a grey image (black text on white).
pub fn render_front(input: &FaceInput, layout: &Layout, artwork_dir: Option<&Path>) -> GrayImage {
    let mut img = GrayImage::from_pixel(layout.width, layout.height, Luma([255]));
    let font = FontRef::try_from_slice(FONT).expect("bundled font parses");
    if let (Some(rect), Some(id), Some(dir)) = (layout.artwork, &input.artwork_id, artwork_dir) {
        if let Ok(art) = image::open(dir.join(format!("{id}.png"))) {
            let art = art
                .resize_exact(rect.w, rect.h, image::imageops::FilterType::Triangle)
                .to_luma8();
            image::imageops::overlay(&mut img, &art, rect.x as i64, rect.y as i64);
        }
    }
    for f in &layout.fields {
        if let Some(label) = &f.label {
            draw_text(
                &mut img,
                &font,
                f.x,
                f.y.saturating_sub(f.size as u32 + 4),
                f.size * 0.45,
                label,
            );
        }
        match f.kind {
            FieldKind::Pan => {
                if let Some(pan) = &input.pan {
                    let grouped: Zeroizing<String> = Zeroizing::new(
                        pan.as_bytes()
                            .chunks(4)
                            .map(|c| String::from_utf8_lossy(c).into_owned())
                            .collect::<Vec<_>>()
                            .join(" "),
                    );
                    draw_text(&mut img, &font, f.x, f.y, f.size, &grouped);
                }
            }
            FieldKind::Expiry if input.exp_yymm.len() == 4 => {
                let mmyy = format!("{}/{}", &input.exp_yymm[2..], &input.exp_yymm[..2]);
                draw_text(&mut img, &font, f.x, f.y, f.size, &mmyy);
            }
            FieldKind::Name => draw_text(
                &mut img,
                &font,
                f.x,
                f.y,
                f.size,
                &printed_name(&input.name),
            ),
            FieldKind::MemberId => {
                if let Some(m) = &input.member_id {
                    draw_text(&mut img, &font, f.x, f.y, f.size, m);
                }
            }
            FieldKind::CustomLines => {
                for (i, line) in input.custom_lines.iter().enumerate() {
                    let y = f.y + (i as f32 * f.size * 1.1) as u32;
                    draw_text(&mut img, &font, f.x, y, f.size, line);
                }
            }
            FieldKind::Expiry => {}
        }
    }
    img
}

/// Converts a face to the printer's 1-bit K panel (MSB first, 1 = ink).
pub fn to_k_panel(img: &GrayImage) -> PanelImage {
    let (w, h) = img.dimensions();
    let mut data = vec![0u8; (w * h).div_ceil(8) as usize];
    for (i, p) in img.pixels().enumerate() {
        if p.0[0] < 128 {
            data[i / 8] |= 0x80 >> (i % 8);
        }
    }
    PanelImage {
        side: PanelSide::Front,
        panel: "k".into(),
        width: w,
        height: h,
        bits_per_dot: 1,
        data,
    }
}

/// Writes the face as a PNG so staff and designers can look at it.
pub fn write_preview_png(img: &GrayImage, path: &Path) -> Result<(), FaceError> {
    img.save(path).map_err(|e| FaceError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dark_in(img: &GrayImage, r: Rect) -> usize {
        let mut n = 0;
        for y in r.y..(r.y + r.h).min(img.height()) {
            for x in r.x..(r.x + r.w).min(img.width()) {
                if img.get_pixel(x, y).0[0] < 128 {
                    n += 1;
                }
            }
        }
        n
    }

    fn sample() -> FaceInput {
        FaceInput {
            name: "DOE/JOHN".into(),
            pan: Some(Zeroizing::new("4761739001010010".into())),
            exp_yymm: "2712".into(),
            custom_lines: vec!["PLATINUM".into()],
            member_id: Some("M-1234".into()),
            artwork_id: None,
        }
    }

    #[test]
    fn each_text_region_of_the_layout_has_ink() {
        let layout = Layout::standard();
        let img = render_front(&sample(), &layout, None);
        for kind in [
            FieldKind::Pan,
            FieldKind::Expiry,
            FieldKind::Name,
            FieldKind::MemberId,
        ] {
            let r = layout.field_box(kind).unwrap();
            assert!(dark_in(&img, r) > 200, "{kind:?} region is empty");
        }
    }

    #[test]
    fn without_a_printed_pan_its_region_stays_blank() {
        let layout = Layout::standard();
        let mut input = sample();
        input.pan = None;
        let img = render_front(&input, &layout, None);
        assert_eq!(dark_in(&img, layout.field_box(FieldKind::Pan).unwrap()), 0);
    }

    #[test]
    fn the_k_panel_has_one_bit_per_dot() {
        let layout = Layout::standard();
        let p = to_k_panel(&render_front(&sample(), &layout, None));
        assert_eq!(p.data.len(), 1016 * 648 / 8);
        assert!(p.data.iter().any(|b| *b != 0));
    }

    #[test]
    fn the_iso_name_prints_given_name_first() {
        assert_eq!(printed_name("DOE/JOHN Q"), "JOHN Q DOE");
        assert_eq!(printed_name("ACME CORP"), "ACME CORP");
    }
}
