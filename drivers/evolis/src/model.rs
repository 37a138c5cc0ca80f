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
    /// Panels may be downloaded into the printer's bitmap memory ahead of printing
    /// (`Dbm;<panel>;<bits>;<bitmap>`, then `Spp;<panel>` prints it): the station stages
    /// the next card's panels while staff are still with the customer, so a slow serial
    /// link carries them before Start. Off unless the model's profile says so; on only
    /// in the simulator's profile (`models/simulator.toml`): `Dbm`, `Spp` and the reset
    /// `Srs` are the simulator's model of the feature and must be checked against the
    /// model's programming guide (docs/printer.md) before a real model's profile turns it
    /// on. A printer that answers the download as an unknown command turns staging off
    /// for itself and gets its panels with the print.
    #[serde(default)]
    pub download_ahead: bool,
    /// The profile of the simulated printer (`drivers/sim`): the station's configuration
    /// accepts it only on a development station, as nothing on the link tells the
    /// simulator from a real printer.
    #[serde(default)]
    pub simulated: bool,
}

const BUILTIN: &[(&str, &str)] = &[
    ("primacy", include_str!("../models/primacy.toml")),
    ("primacy2", include_str!("../models/primacy2.toml")),
    ("zenius", include_str!("../models/zenius.toml")),
    ("simulator", include_str!("../models/simulator.toml")),
];

const GENERIC: &str = include_str!("../models/generic.toml");

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

    /// The profile for what the printer answered to `Rtp`, or the generic Evolis profile
    /// (logged as a warning) when no shipped profile names that model: an unknown model is
    /// still an Evolis printer that answered, not a refusal.
    pub fn for_reported_model(rtp: &str) -> ModelProfile {
        Self::find(rtp).unwrap_or_else(|| {
            tracing::warn!(
                model = rtp.trim(),
                "no profile for this printer model; using the generic Evolis profile \
                 (add a file in drivers/evolis/models to tune its timeouts)"
            );
            Self::generic()
        })
    }

    /// The generic Evolis profile (`models/generic.toml`).
    pub fn generic() -> ModelProfile {
        toml::from_str(GENERIC).unwrap_or_else(|e| panic!("models/generic.toml: {e}"))
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

    #[test]
    fn the_first_generation_primacy_has_its_own_profile() {
        assert_eq!(
            ModelProfile::find("Primacy").unwrap().name,
            "Evolis Primacy"
        );
    }

    #[test]
    fn a_reported_model_without_a_profile_gets_the_generic_profile() {
        let p = ModelProfile::for_reported_model("Evolis Pebble 4");
        assert_eq!(p.name, ModelProfile::generic().name);
        assert_eq!((p.panel_width, p.panel_height, p.dpi), (1016, 648, 300));
    }

    #[test]
    fn no_real_printer_profile_stages_panels_with_unconfirmed_commands() {
        let real: Vec<_> = ModelProfile::builtin()
            .into_iter()
            .chain([ModelProfile::generic()])
            .filter(|p| p.download_ahead)
            .map(|p| p.name)
            .collect();
        assert_eq!(real, ["Evolis simulator (staging)"]);
    }

    #[test]
    fn the_simulator_profile_is_found_by_name_only() {
        let sim = ModelProfile::find("simulator").unwrap();
        assert!(sim.download_ahead);
        assert!(sim.rtp.is_empty(), "no real printer's Rtp answer picks it");
        assert_eq!(
            ModelProfile::for_reported_model("Primacy 2").name,
            "Evolis Primacy 2"
        );
    }

    #[test]
    fn the_generic_profile_is_never_chosen_by_name_matching() {
        assert!(ModelProfile::generic().rtp.is_empty());
        assert!(ModelProfile::find("").is_none());
    }
}
