//! `[pismo]` of the station configuration: where Pismo is, the station's client
//! credential, the branch's embossing group, and whether this environment may
//! start embossing runs (EXT/sandbox only).

use super::error::PismoError;
use super::model::{ConfigId, EmbossingGroup};
use serde::Deserialize;
use std::path::PathBuf;

/// `[pismo]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PismoSection {
    /// API host (token, create card).
    pub api_url: String,
    /// PCI gateway host (embossing calls).
    pub pci_url: String,
    /// OAuth client id.
    pub client_id: String,
    /// File holding the OAuth client secret (one line; keep it 0600).
    pub client_secret_file: PathBuf,
    /// Issuer id of the D1 orders the hub makes from this branch's Pismo embossing runs:
    /// only such an order is made again by a resend to Pismo.
    #[serde(default = "default_issuer_id")]
    pub issuer_id: String,
    /// The branch's embossing group (`embossing_group` of create card).
    pub embossing_group: String,
    /// The group's embossing configuration id, needed to start runs.
    #[serde(default)]
    pub config_id: Option<String>,
    /// Whether this environment allows start embossing (Pismo: EXT only; never production).
    #[serde(default)]
    pub start_embossing: bool,
    /// How long to wait for a new card to become ready for embossing.
    #[serde(default = "default_ingress_deadline")]
    pub ingress_deadline_seconds: u64,
    /// Products staff may choose; the first is the default.
    #[serde(default)]
    pub products: Vec<String>,
    /// After this long in the embossing queue with no order at the station, the run is
    /// overdue and staff are told so.
    #[serde(default = "default_run_deadline")]
    pub run_deadline_minutes: u64,
}

fn default_issuer_id() -> String {
    "PISMO".into()
}

fn default_ingress_deadline() -> u64 {
    120
}

fn default_run_deadline() -> u64 {
    30
}

impl PismoSection {
    /// Check values (no file access).
    pub fn check(&self) -> Result<(), PismoError> {
        for (key, url) in [
            ("pismo.api_url", &self.api_url),
            ("pismo.pci_url", &self.pci_url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(PismoError::Config(format!(
                    "{key}: '{url}' is not an http(s) URL"
                )));
            }
        }
        if self.issuer_id.is_empty() {
            return Err(PismoError::Config("pismo.issuer_id is empty".into()));
        }
        if self.client_id.is_empty() {
            return Err(PismoError::Config("pismo.client_id is empty".into()));
        }
        EmbossingGroup::parse(&self.embossing_group)
            .map_err(|e| PismoError::Config(format!("pismo.embossing_group: {}", e.message)))?;
        if let Some(c) = &self.config_id {
            ConfigId::parse(c)
                .map_err(|e| PismoError::Config(format!("pismo.config_id: {}", e.message)))?;
        }
        if self.start_embossing && self.config_id.is_none() {
            return Err(PismoError::Config(
                "pismo.start_embossing needs pismo.config_id".into(),
            ));
        }
        if self.ingress_deadline_seconds == 0 {
            return Err(PismoError::Config(
                "pismo.ingress_deadline_seconds must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
