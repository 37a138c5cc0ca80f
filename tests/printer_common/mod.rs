//! What the printer tests print: one black-panel image and the stripe of the test card.

use station_hal::{MagTracks, PanelImage, PanelSide};

/// A full-size monochrome front panel with a band of black dots.
pub fn panel() -> PanelImage {
    let mut data = vec![0u8; 1016 * 648 / 8];
    data[1000..1100].fill(0xFF);
    PanelImage {
        side: PanelSide::Front,
        panel: "k".into(),
        width: 1016,
        height: 648,
        bits_per_dot: 1,
        data,
    }
}

/// Tracks 1 and 2 of the test card.
pub fn tracks() -> MagTracks {
    MagTracks {
        track1: Some("B4761739001010010^DOE/JOHN^2512201000000000000".into()),
        track2: Some("4761739001010010=25122010000000000".into()),
        track3: None,
    }
}
