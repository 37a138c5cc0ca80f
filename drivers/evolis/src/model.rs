//! Printer models as data: one TOML profile per model in `drivers/evolis/models/`.

use std::time::Duration;

use serde::Deserialize;

/// Per-class command timeouts of a model.
#[derive(Debug, Clone, Deserialize)]
pub struct Timeouts {
    /// Reads and settings.
    pub status: u64,
    /// Card moves.
    #[serde(rename = "move")]
    pub move_: u64,
    /// Printing and ejecting.
    pub print: u64,
    /// Magstripe.
    pub mag: u64,
}

impl Timeouts {
    /// The timeout of a command class.
    pub fn for_class(&self, c: super::CommandClass) -> Duration {
        use super::CommandClass::*;
        Duration::from_millis(match c {
            Status => self.status,
            Move => self.move_,
            Print => self.print,
            Mag => self.mag,
        })
    }
}

/// What a printer model can do and how long it may take.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelProfile {
    /// Display name.
    pub name: String,
    /// Names the printer reports to `Rtp`.
    pub rtp: Vec<String>,
    /// Panel width in dots.
    pub panel_width: u32,
    /// Panel height in dots.
    pub panel_height: u32,
    /// Resolution.
    pub dpi: u32,
    /// Ribbon types, preferred first.
    pub ribbons: Vec<String>,
    /// Has a contact chip station.
    pub chip_station: bool,
    /// Has a contactless station.
    pub contactless_station: bool,
    /// Has a magstripe encoder.
    pub magstripe: bool,
    /// Command timeouts in milliseconds.
    pub timeouts_ms: Timeouts,
}

const BUILTIN: &[(&str, &str)] = &[
    ("primacy2", include_str!("../models/primacy2.toml")),
    ("zenius", include_str!("../models/zenius.toml")),
];

impl ModelProfile {
    /// The profiles shipped with the driver.
    pub fn builtin() -> Vec<ModelProfile> {
        BUILTIN
            .iter()
            .map(|(file, text)| {
                toml::from_str(text).unwrap_or_else(|e| panic!("models/{file}.toml: {e}"))
            })
            .collect()
    }

    /// The profile whose name, file name or `Rtp` answer matches (case-insensitive).
    pub fn find(name: &str) -> Option<ModelProfile> {
        let n = name.trim().to_lowercase();
        BUILTIN
            .iter()
            .zip(Self::builtin())
            .find(|((file, _), p)| {
                *file == n
                    || p.name.to_lowercase() == n
                    || p.rtp.iter().any(|r| r.to_lowercase() == n)
            })
            .map(|(_, p)| p)
    }

    /// Overrides the timeouts of this profile (tests and slow installations).
    pub fn with_timeouts(mut self, t: Timeouts) -> Self {
        self.timeouts_ms = t;
        self
    }

    /// The timeouts of this profile.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_profile_parses_and_has_the_standard_panel() {
        for p in ModelProfile::builtin() {
            assert_eq!((p.panel_width, p.panel_height), (1016, 648), "{}", p.name);
        }
    }

    #[test]
    fn a_model_is_found_by_what_rtp_answers() {
        assert_eq!(
            ModelProfile::find("Primacy 2").unwrap().name,
            "Evolis Primacy 2"
        );
        assert_eq!(ModelProfile::find("zenius").unwrap().name, "Evolis Zenius");
        assert!(ModelProfile::find("Badgy 100").is_none());
    }
}
