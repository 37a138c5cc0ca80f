//! Sandbox settings: command-line level [`SandboxConfig`] and the stations
//! registered in `sandbox.toml` of the state directory.

use super::error::SandboxError;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// How to run the sandbox hub (`station-agent sandbox --listen ADDR --state DIR`).
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// State directory (keys, `sandbox.toml`, `hub.sqlite`).
    pub state_dir: PathBuf,
}

/// A station registered at the hub.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StationEntry {
    /// The station's `persoStation` id.
    pub perso_station: String,
    /// The station's JWE recipient public keys (JWK JSON); the first is used to encrypt,
    /// the others stay listed during a key rotation.
    pub public_jwks: Vec<String>,
    /// `iss`/`sub` of the station's client assertions.
    pub client_id: String,
    /// The station's ES256 public JWK (JSON, with `kid`) verifying its client assertions.
    pub client_jwk: String,
}

/// Content of `sandbox.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SandboxFile {
    /// Base URL of the issuer backend receiving D1 notifications; none = notifications stay queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_url: Option<String>,
    /// Registered stations.
    #[serde(default)]
    pub stations: Vec<StationEntry>,
    /// The Pismo sandbox: org, customers, embossing groups mapped to stations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pismo: Option<super::pismo::PismoSandboxFile>,
}

impl SandboxFile {
    /// Parse and check `sandbox.toml` content.
    pub fn parse(text: &str) -> Result<Self, SandboxError> {
        let file: SandboxFile =
            toml::from_str(text).map_err(|e| SandboxError::Config(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for s in &file.stations {
            if s.perso_station.is_empty() || s.client_id.is_empty() {
                return Err(SandboxError::Config(
                    "a station needs persoStation and clientId".into(),
                ));
            }
            if !seen.insert(s.perso_station.clone()) {
                return Err(SandboxError::Config(format!(
                    "station {} registered twice",
                    s.perso_station
                )));
            }
            if s.public_jwks.is_empty() {
                return Err(SandboxError::Config(format!(
                    "station {} has no publicJwks",
                    s.perso_station
                )));
            }
        }
        if let Some(p) = &file.pismo {
            let stations: Vec<String> = file
                .stations
                .iter()
                .map(|s| s.perso_station.clone())
                .collect();
            p.check(&stations)?;
        }
        Ok(file)
    }

    /// Serialize back to TOML.
    pub fn to_toml(&self) -> Result<String, SandboxError> {
        toml::to_string_pretty(self).map_err(|e| SandboxError::Config(e.to_string()))
    }
}
