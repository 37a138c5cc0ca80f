//! Station configuration: where it is found, what it holds, and how it is checked.
//!
//! The file is found at `--config`, else the service default
//! (`/etc/station-agent/station.toml`, `%ProgramData%\station-agent\station.toml`),
//! else the user's config dir. Relative paths inside it are relative to its folder,
//! so a configuration folder can be moved as a whole.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// A configuration problem, naming the file or key so IT can fix it.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// No configuration file was found in any of the usual places.
    #[error("no configuration file found (looked in: {0})")]
    NotFound(String),
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown/mistyped keys.
    #[error("{path}: {message}")]
    Syntax {
        /// File.
        path: PathBuf,
        /// Parser message (names the key and line).
        message: String,
    },
    /// A key has a value the station cannot use.
    #[error("{key}: {message}")]
    Invalid {
        /// Dotted key, e.g. `upstream.url`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// Stable code for logs and the console.
    pub fn code(&self) -> &'static str {
        match self {
            ConfigError::NotFound(_) => "CFG_NOT_FOUND",
            ConfigError::Read { .. } => "CFG_READ",
            ConfigError::Syntax { .. } => "CFG_SYNTAX",
            ConfigError::Invalid { .. } => "CFG_INVALID",
        }
    }

    fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// The whole station configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationConfig {
    /// Identity of this station.
    pub station: StationSection,
    /// The order hub this station talks to.
    pub upstream: UpstreamSection,
    /// Decryption keys and key store.
    pub keys: KeysSection,
    /// Printer and chip encoder.
    pub devices: DevicesSection,
    /// Journal location and retention.
    pub journal: JournalSection,
    /// Staff console.
    #[serde(default)]
    pub console: ConsoleSection,
    /// Health and metrics endpoints for monitoring (`/live`, `/ready`, `/metrics`).
    #[serde(default)]
    pub admin: AdminSection,
    /// Start policy.
    #[serde(default)]
    pub policy: PolicySection,
    /// Log level and format.
    #[serde(default)]
    pub logging: LoggingSection,
    /// Card products, EMV profiles, face layout.
    #[serde(default)]
    pub production: ProductionSection,
    /// Blank-card stock rules.
    #[serde(default)]
    pub stock: crate::stock::StockPolicy,
    /// Pismo as the issuer's card processor (issue 12); none = no counter requests.
    #[serde(default)]
    pub pismo: Option<crate::pismo::PismoSection>,
    /// Folder the file was read from; relative paths resolve against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[station]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationSection {
    /// The persoStation id orders must carry.
    pub perso_station: String,
    /// The issuer this station produces for.
    pub issuer_id: String,
}

/// `[upstream]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// Base URL of the hub.
    pub url: String,
    /// Client id (iss/sub of the client assertion).
    pub client_id: String,
    /// Key id of the ES256 signing key.
    pub kid: String,
    /// Private ES256 JWK file.
    pub signing_key: PathBuf,
    /// Client certificate (PEM) for mTLS.
    pub client_certificate: Option<PathBuf>,
    /// Client private key (PEM) for mTLS.
    pub client_key: Option<PathBuf>,
    /// CA bundle (PEM) that signs the hub's certificate.
    pub ca_bundle: Option<PathBuf>,
    /// The hub's order-signing public keys (ES256 JWK files, by `kid`): an order whose
    /// signature does not verify under one of them is never acted on.
    #[serde(default)]
    pub order_keys: Vec<PathBuf>,
}

/// `[keys]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysSection {
    /// Station JWE private keys (JWK files).
    pub station_jwe: Vec<PathBuf>,
    /// A development station: allows the software key store and the public
    /// development keys. Never on a station that makes real cards.
    #[serde(default)]
    pub development: bool,
    /// Software key store file (development only).
    pub keystore: Option<PathBuf>,
    /// The issuer keys' HSM.
    pub pkcs11: Option<Pkcs11Section>,
}

/// `[keys.pkcs11]`: the HSM holding the issuer keys (labels in docs/keys.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Section {
    /// PKCS#11 module (shared library) of the HSM.
    pub module: PathBuf,
    /// Token label.
    pub token: String,
    /// File holding the user PIN, owner-readable only.
    pub pin_file: Option<PathBuf>,
    /// Environment variable holding the user PIN.
    pub pin_env: Option<String>,
    /// SoftHSM2 only: its configuration file (sets `SOFTHSM2_CONF` for the module).
    pub softhsm2_conf: Option<PathBuf>,
}

/// Where the issuer keys are, as the configuration says.
#[derive(Debug, Clone)]
pub enum KeyStoreChoice {
    /// The software key file (development only).
    Software(PathBuf),
    /// The HSM.
    Pkcs11(station_emv::keys::Pkcs11Config),
}

/// `[devices]`: the station's production lines.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesSection {
    /// One `[[devices.line]]` per printer with its chip encoder; each makes one card
    /// at a time.
    pub line: Vec<LineSection>,
}

/// `[[devices.line]]`: a printer and the encoder at its chip station.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineSection {
    /// Name staff see on the console and the journal records for each card.
    pub name: String,
    /// The card printer.
    pub printer: PrinterSection,
    /// The chip encoder.
    pub encoder: EncoderSection,
}

impl LineSection {
    fn check(&self, i: usize) -> Result<(), ConfigError> {
        let key = |k: &str| format!("devices.line[{i}].{k}");
        let name_ok = (1..=32).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !name_ok {
            return Err(ConfigError::invalid(
                &key("name"),
                "1 to 32 letters, digits, '.', '_' or '-'",
            ));
        }
        if self.printer.device.trim().is_empty() {
            return Err(ConfigError::invalid(
                &key("printer.device"),
                "empty device path",
            ));
        }
        if self.encoder.reader.trim().is_empty() {
            return Err(ConfigError::invalid(
                &key("encoder.reader"),
                "empty reader name pattern",
            ));
        }
        Ok(())
    }
}

/// `[devices.line.printer]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrinterSection {
    /// Serial path, USB printer node or `tcp://host:port`.
    pub device: String,
    /// Model profile name; detected when absent.
    pub model: Option<String>,
}

/// `[devices.line.encoder]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderSection {
    /// PC/SC reader name pattern.
    pub reader: String,
}

/// `[journal]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSection {
    /// SQLite file.
    pub path: PathBuf,
    /// Days ended jobs keep their encrypted card data.
    #[serde(default)]
    pub retention_days: u32,
}

/// `[console]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSection {
    /// Listen address.
    #[serde(default = "default_console")]
    pub listen: String,
    /// Staff accounts (ids and PIN hashes) that may sign in; see `station-agent staff`.
    #[serde(default)]
    pub staff: Option<PathBuf>,
    /// Run the console without sign-in (loopback only; actions are journaled as
    /// "console", not as a person).
    #[serde(default)]
    pub allow_anonymous: bool,
    /// Host names (`name` or `name:port`) the console answers to besides loopback ones.
    #[serde(default)]
    pub server_names: Vec<String>,
    /// The console listens beyond loopback only with TLS: its own (`tls`) or a reverse
    /// proxy's in front; this says a proxy is there.
    #[serde(default)]
    pub behind_tls_proxy: bool,
    /// The console's own HTTPS certificate and key.
    #[serde(default)]
    pub tls: Option<ConsoleTls>,
}

/// `[console.tls]`: the console serves HTTPS with this certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleTls {
    /// PEM certificate chain, the console's own certificate first.
    pub certificate: PathBuf,
    /// PEM private key of that certificate (owner-only permissions).
    pub key: PathBuf,
}

impl Default for ConsoleSection {
    fn default() -> Self {
        ConsoleSection {
            listen: default_console(),
            staff: None,
            allow_anonymous: false,
            server_names: Vec::new(),
            behind_tls_proxy: false,
            tls: None,
        }
    }
}

fn default_console() -> String {
    "127.0.0.1:8470".into()
}

/// `[admin]`: health and metrics endpoints, with no sign-in and nothing sensitive.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Listen address, a port of its own (not the console's).
    #[serde(default = "default_admin")]
    pub listen: String,
    /// Serve on a non-loopback address (for a monitoring server on the branch
    /// network); refused unless set, as the endpoints have no sign-in.
    #[serde(default)]
    pub allow_remote: bool,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: default_admin(),
            allow_remote: false,
        }
    }
}

fn default_admin() -> String {
    "127.0.0.1:8471".into()
}

/// Who starts a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartPolicy {
    /// Staff press Start when the customer is at the counter.
    #[default]
    Staff,
    /// Cards start as soon as the order is validated.
    Automatic,
}

/// `[policy]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// Start policy.
    #[serde(default)]
    pub start: StartPolicy,
    /// Attempts at one card (the first and each make again) before staff can only give up.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
}

impl Default for PolicySection {
    fn default() -> Self {
        PolicySection {
            start: StartPolicy::default(),
            attempts: default_attempts(),
        }
    }
}

fn default_attempts() -> u32 {
    3
}

/// `[production]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductionSection {
    /// Card product (transport keys of the blank stock) when an order names none.
    #[serde(default = "default_product")]
    pub default_card_product: String,
    /// Folder of extra EMV profiles (`<name>.toml`), added to the shipped ones.
    pub profiles_dir: Option<PathBuf>,
    /// Card face layout file; the shipped `standard` layout when absent.
    pub layout: Option<PathBuf>,
    /// Folder of artwork PNGs named by `cardDesign.artworkId`.
    pub artwork_dir: Option<PathBuf>,
    /// Seconds to wait for the chip after the card is parked at the chip station.
    #[serde(default = "default_chip_wait")]
    pub chip_wait_seconds: u64,
}

impl Default for ProductionSection {
    fn default() -> Self {
        ProductionSection {
            default_card_product: default_product(),
            profiles_dir: None,
            layout: None,
            artwork_dir: None,
            chip_wait_seconds: default_chip_wait(),
        }
    }
}

fn default_product() -> String {
    "DEFAULT".into()
}

fn default_chip_wait() -> u64 {
    10
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[logging]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSection {
    /// Default level filter.
    #[serde(default = "default_level")]
    pub level: String,
    /// Output format.
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for LoggingSection {
    fn default() -> Self {
        LoggingSection {
            level: default_level(),
            format: LogFormat::Text,
        }
    }
}

fn default_level() -> String {
    "info".into()
}

/// Where the service installation keeps its configuration on this platform.
pub fn service_default_path() -> PathBuf {
    if cfg!(windows) {
        let base = std::env::var_os("ProgramData").unwrap_or_else(|| "C:\\ProgramData".into());
        PathBuf::from(base)
            .join("station-agent")
            .join("station.toml")
    } else {
        PathBuf::from("/etc/station-agent/station.toml")
    }
}

/// The per-user configuration file (for engineers running the agent by hand).
pub fn user_default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "station-agent")
        .map(|d| d.config_dir().join("station.toml"))
}

/// Finds the configuration file: the explicit path, else the service default, else the user's.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let mut tried = vec![service_default_path()];
    tried.extend(user_default_path());
    tried.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        ConfigError::NotFound(
            tried
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        )
    })
}

impl StationConfig {
    /// Reads and parses a file, without checking the referenced files.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::parse(&text).map_err(|message| ConfigError::Syntax {
            path: path.to_path_buf(),
            message,
        })?;
        cfg.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(cfg)
    }

    /// Parses TOML text (base dir left empty).
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }

    /// Resolves a path from the file against the file's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Checks every value and every referenced key file; the first problem names its key.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.check_values()?;
        self.check_files()
    }

    /// Checks values that need no file system access.
    pub fn check_values(&self) -> Result<(), ConfigError> {
        check_id("station.perso_station", &self.station.perso_station)?;
        check_id("station.issuer_id", &self.station.issuer_id)?;
        if !(1..=10).contains(&self.policy.attempts) {
            return Err(ConfigError::invalid(
                "policy.attempts",
                "1 to 10 attempts at one card (the first and each make again)",
            ));
        }
        let url = &self.upstream.url;
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
            return Err(ConfigError::invalid(
                "upstream.url",
                format!("'{url}' is not an http(s) URL"),
            ));
        }
        if url.starts_with("http://") && !is_loopback_url(url) {
            return Err(ConfigError::invalid(
                "upstream.url",
                format!(
                    "'{url}' is plain http to another machine: card orders and tokens would cross \
                     the network in clear; use https"
                ),
            ));
        }
        if self.upstream.order_keys.is_empty() {
            return Err(ConfigError::invalid(
                "upstream.order_keys",
                "no order-signing key of the hub: copy the hub's public key (the sandbox serves it \
                 at /sandbox/v1/keys as orderSigningKeys) into a file and list it here",
            ));
        }
        check_id("upstream.client_id", &self.upstream.client_id)?;
        check_id("upstream.kid", &self.upstream.kid)?;
        if let Some(p) = &self.pismo {
            p.check()
                .map_err(|e| ConfigError::invalid("pismo", e.to_string()))?;
        }
        if self.upstream.client_certificate.is_some() != self.upstream.client_key.is_some() {
            return Err(ConfigError::invalid(
                "upstream.client_key",
                "client_certificate and client_key go together for mTLS",
            ));
        }
        if self.keys.station_jwe.is_empty() {
            return Err(ConfigError::invalid(
                "keys.station_jwe",
                "at least one station decryption key is needed",
            ));
        }
        self.check_key_store()?;
        if self.devices.line.is_empty() {
            return Err(ConfigError::invalid(
                "devices.line",
                "no production line: add a [[devices.line]] with its printer and encoder",
            ));
        }
        for (i, line) in self.devices.line.iter().enumerate() {
            line.check(i)?;
            let simulated = line
                .printer
                .model
                .as_deref()
                .and_then(station_evolis::ModelProfile::find)
                .is_some_and(|m| m.simulated);
            if simulated && !self.keys.development {
                // Nothing on the link tells the simulator from a real printer (it sits on a
                // pty, a serial device like any other): only a development station may
                // name its profile, whose staging commands no real printer is known to have.
                return Err(ConfigError::invalid(
                    &format!("devices.line[{i}].printer.model"),
                    "the simulator's profile is for the simulated printer only, and the station \
                     cannot tell it from a real one: name the real printer's model (or omit it \
                     to detect it), or set [keys] development = true on a development station",
                ));
            }
            for (j, other) in self.devices.line[..i].iter().enumerate() {
                let same = |what: &str, why: &str| {
                    Err(ConfigError::invalid(
                        &format!("devices.line[{i}].{what}"),
                        format!("{why} as devices.line[{j}]"),
                    ))
                };
                if other.name == line.name {
                    return same("name", "the same name");
                }
                if other.printer.device == line.printer.device {
                    return same("printer.device", "the same printer");
                }
                if other.encoder.reader == line.encoder.reader {
                    return same("encoder.reader", "the same reader pattern");
                }
            }
        }
        self.check_console()?;
        self.check_admin()?;
        if !["error", "warn", "info", "debug", "trace"].contains(&self.logging.level.as_str()) {
            return Err(ConfigError::invalid(
                "logging.level",
                format!(
                    "'{}' is not one of error, warn, info, debug, trace",
                    self.logging.level
                ),
            ));
        }
        Ok(())
    }

    fn check_console(&self) -> Result<(), ConfigError> {
        let console = self
            .console
            .listen
            .parse::<SocketAddr>()
            .map_err(|e| ConfigError::invalid("console.listen", e.to_string()))?;
        match (&self.console.staff, self.console.allow_anonymous) {
            (None, false) => {
                return Err(ConfigError::invalid(
                    "console.staff",
                    "no staff file: create one with `station-agent staff add ID --name NAME --file PATH` \
                     and set console.staff, or set console.allow_anonymous = true",
                ))
            }
            (Some(_), true) => {
                return Err(ConfigError::invalid(
                    "console.allow_anonymous",
                    "set either console.staff or console.allow_anonymous, not both",
                ))
            }
            (None, true) if !console.ip().is_loopback() => {
                return Err(ConfigError::invalid(
                    "console.allow_anonymous",
                    format!(
                        "a console without sign-in must listen on loopback, not {console}"
                    ),
                ))
            }
            _ => {}
        }
        if self.console.tls.is_some() && self.console.behind_tls_proxy {
            return Err(ConfigError::invalid(
                "console.behind_tls_proxy",
                "set either [console.tls] (the console serves HTTPS) or \
                 console.behind_tls_proxy = true (a proxy does), not both",
            ));
        }
        if !console.ip().is_loopback()
            && self.console.tls.is_none()
            && !self.console.behind_tls_proxy
        {
            return Err(ConfigError::invalid(
                "console.listen",
                format!(
                    "{console} is reachable from the network but the console has no TLS: give it \
                     a certificate ([console.tls] certificate and key), or put a TLS reverse proxy \
                     in front and set console.behind_tls_proxy = true"
                ),
            ));
        }
        Ok(())
    }

    fn check_admin(&self) -> Result<(), ConfigError> {
        let admin = self
            .admin
            .listen
            .parse::<SocketAddr>()
            .map_err(|e| ConfigError::invalid("admin.listen", e.to_string()))?;
        if !admin.ip().is_loopback() && !self.admin.allow_remote {
            return Err(ConfigError::invalid(
                "admin.allow_remote",
                format!(
                    "the admin endpoints have no sign-in: listen on loopback, not {admin}, \
                     or set admin.allow_remote = true"
                ),
            ));
        }
        if self.console.listen.parse::<SocketAddr>().ok() == Some(admin) && admin.port() != 0 {
            return Err(ConfigError::invalid(
                "admin.listen",
                format!("{admin} is the console's address; give the admin endpoints a port of their own"),
            ));
        }
        Ok(())
    }

    /// Exactly one key store; the software one only on a development station.
    fn check_key_store(&self) -> Result<(), ConfigError> {
        match (&self.keys.keystore, &self.keys.pkcs11) {
            (Some(_), Some(_)) => Err(ConfigError::invalid(
                "keys.keystore",
                "give either keys.keystore (development) or [keys.pkcs11], not both",
            )),
            (None, None) => Err(ConfigError::invalid(
                "keys.pkcs11",
                "no issuer key store: configure the HSM in [keys.pkcs11]",
            )),
            (Some(_), None) if !self.keys.development => Err(ConfigError::invalid(
                "keys.keystore",
                "the software key store keeps issuer keys in a file and is for development \
                 only: configure the HSM in [keys.pkcs11], or set [keys] development = true on \
                 a development station",
            )),
            (Some(_), None) => Ok(()),
            (None, Some(p)) => match (&p.pin_file, &p.pin_env) {
                (Some(_), Some(_)) | (None, None) => Err(ConfigError::invalid(
                    "keys.pkcs11.pin_file",
                    "give the HSM user PIN as exactly one of pin_file or pin_env",
                )),
                _ if p.token.trim().is_empty() => Err(ConfigError::invalid(
                    "keys.pkcs11.token",
                    "the token label is empty",
                )),
                _ => Ok(()),
            },
        }
    }

    /// SoftHSM2's configuration file, resolved, when `[keys.pkcs11]` names one: the
    /// station puts it in `SOFTHSM2_CONF` at start, before any thread exists.
    pub fn softhsm2_conf(&self) -> Option<PathBuf> {
        self.keys
            .pkcs11
            .as_ref()
            .and_then(|p| p.softhsm2_conf.as_ref())
            .map(|c| self.resolve(c))
    }

    /// The key store to open, with paths resolved.
    pub fn key_store(&self) -> Result<KeyStoreChoice, ConfigError> {
        self.check_key_store()?;
        match (&self.keys.keystore, &self.keys.pkcs11) {
            (Some(k), _) => Ok(KeyStoreChoice::Software(self.resolve(k))),
            (None, Some(p)) => {
                let pin = match (&p.pin_file, &p.pin_env) {
                    (Some(f), _) => station_emv::keys::PinSource::File(self.resolve(f)),
                    (None, Some(v)) => station_emv::keys::PinSource::Env(v.clone()),
                    (None, None) => unreachable!("checked above"),
                };
                Ok(KeyStoreChoice::Pkcs11(station_emv::keys::Pkcs11Config {
                    module: p.module.clone(),
                    token: p.token.trim().to_string(),
                    pin,
                    sessions: self.devices.line.len().max(1),
                    development: self.keys.development,
                }))
            }
            (None, None) => unreachable!("checked above"),
        }
    }

    fn check_files(&self) -> Result<(), ConfigError> {
        check_secret_file(
            "upstream.signing_key",
            &self.resolve(&self.upstream.signing_key),
        )?;
        for (i, p) in self.keys.station_jwe.iter().enumerate() {
            check_secret_file(&format!("keys.station_jwe[{i}]"), &self.resolve(p))?;
        }
        if let Some(k) = &self.keys.keystore {
            check_secret_file("keys.keystore", &self.resolve(k))?;
        }
        if let Some(p) = &self.keys.pkcs11 {
            if !p.module.is_file() {
                return Err(ConfigError::invalid(
                    "keys.pkcs11.module",
                    format!("{} is not a file", p.module.display()),
                ));
            }
            if let Some(f) = &p.pin_file {
                check_secret_file("keys.pkcs11.pin_file", &self.resolve(f))?;
            }
        }
        if let Some(p) = &self.console.staff {
            let p = self.resolve(p);
            check_secret_file("console.staff", &p)?;
            crate::staff::StaffFile::load(&p)
                .map_err(|e| ConfigError::invalid("console.staff", e.to_string()))?;
        }
        if let Some(tls) = &self.console.tls {
            let key = self.resolve(&tls.key);
            check_secret_file("console.tls.key", &key)?;
            crate::tls::server_config(&self.resolve(&tls.certificate), &key).map_err(|e| {
                let field = match e {
                    crate::tls::TlsError::Certificate { .. } => "console.tls.certificate",
                    _ => "console.tls.key",
                };
                ConfigError::invalid(field, e.to_string())
            })?;
        }
        if let Some(k) = &self.upstream.client_key {
            check_secret_file("upstream.client_key", &self.resolve(k))?;
        }
        if let Some(p) = &self.pismo {
            check_secret_file(
                "pismo.client_secret_file",
                &self.resolve(&p.client_secret_file),
            )?;
        }
        for (i, p) in self.upstream.order_keys.iter().enumerate() {
            let key = format!("upstream.order_keys[{i}]");
            let path = self.resolve(p);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::invalid(&key, format!("cannot read {}: {e}", path.display()))
            })?;
            crate::link::OrderVerifier::from_public_jwks(&[text])
                .map_err(|e| ConfigError::invalid(&key, e.to_string()))?;
        }
        for (key, p) in [
            (
                "upstream.client_certificate",
                &self.upstream.client_certificate,
            ),
            ("upstream.ca_bundle", &self.upstream.ca_bundle),
        ] {
            if let Some(p) = p {
                let p = self.resolve(p);
                if !p.is_file() {
                    return Err(ConfigError::invalid(
                        key,
                        format!("{} does not exist", p.display()),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_id(key: &str, v: &str) -> Result<(), ConfigError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("'{v}' must be 1-64 characters of A-Z a-z 0-9 - _ ."),
        ))
    }
}

/// Refuses a key file that is missing or, on Unix, readable by group or others.
pub fn check_secret_file(key: &str, path: &Path) -> Result<(), ConfigError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigError::invalid(key, format!("cannot read {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(ConfigError::invalid(
            key,
            format!("{} is not a file", path.display()),
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "{} is readable by group or others (mode {mode:03o}); run: chmod 600 {}",
                    path.display(),
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Whether an `http://` URL points at this machine (127.0.0.0/8, `::1`, `localhost`).
fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> String {
        include_str!("../config/station.example.toml").to_string()
    }

    fn with_keys(keys: &str) -> StationConfig {
        let text = example();
        let start = text.find("\n[keys]\n").unwrap() + 1;
        let end = text.find("\n[[devices.line]]\n").unwrap() + 1;
        let text = format!(
            "{}[keys]\nstation_jwe = [\"keys/station-jwe.jwk\"]\n{keys}\n{}",
            &text[..start],
            &text[end..]
        );
        StationConfig::parse(&text).unwrap()
    }

    /// The example configuration on a development station or not, its printer model set.
    fn with_printer_model(development: bool, model: &str) -> StationConfig {
        let mut cfg = StationConfig::parse(&example()).unwrap();
        cfg.keys.development = development;
        cfg.devices.line[0].printer.model = Some(model.into());
        cfg
    }

    #[test]
    fn the_simulators_printer_profile_is_refused_outside_development() {
        let err = with_printer_model(false, "simulator")
            .check_values()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("devices.line[0].printer.model:"),
            "{err}"
        );
        assert!(err.to_string().contains("development = true"), "{err}");
    }

    #[test]
    fn a_real_printer_profile_is_accepted_outside_development() {
        with_printer_model(false, "Evolis Primacy 2")
            .check_values()
            .unwrap();
    }

    #[test]
    fn the_simulators_printer_profile_is_accepted_on_a_development_station() {
        with_printer_model(true, "simulator")
            .check_values()
            .unwrap();
    }

    #[test]
    fn the_software_key_store_is_refused_outside_development() {
        let err = with_keys("keystore = \"keys/keystore.toml\"\n")
            .check_values()
            .unwrap_err();
        assert!(err.to_string().starts_with("keys.keystore:"), "{err}");
        assert!(err.to_string().contains("development"), "{err}");
    }

    #[test]
    fn the_software_key_store_is_accepted_on_a_development_station() {
        with_keys("development = true\nkeystore = \"keys/keystore.toml\"\n")
            .check_values()
            .unwrap();
    }

    #[test]
    fn a_station_without_a_key_store_is_refused() {
        let err = with_keys("").check_values().unwrap_err();
        assert!(err.to_string().starts_with("keys.pkcs11:"), "{err}");
    }

    #[test]
    fn the_hsm_pin_comes_from_exactly_one_place() {
        let both =
            "[keys.pkcs11]\nmodule = \"/m.so\"\ntoken = \"t\"\npin_file = \"p\"\npin_env = \"P\"\n";
        let err = with_keys(both).check_values().unwrap_err();
        assert!(
            err.to_string().starts_with("keys.pkcs11.pin_file:"),
            "{err}"
        );
        let env = "[keys.pkcs11]\nmodule = \"/m.so\"\ntoken = \"t\"\npin_env = \"P\"\n";
        with_keys(env).check_values().unwrap();
    }

    #[test]
    fn the_shipped_example_parses_and_its_values_check() {
        let cfg = StationConfig::parse(&example()).unwrap();
        cfg.check_values().unwrap();
        assert_eq!(cfg.station.perso_station, "BR-0042-01");
        assert_eq!(cfg.policy.start, StartPolicy::Staff);
    }

    #[test]
    fn a_misspelled_key_is_named() {
        let text = example().replace("retention_days", "retention_dayz");
        let err = StationConfig::parse(&text).unwrap_err();
        assert!(err.contains("retention_dayz"), "{err}");
    }

    #[test]
    fn a_bad_upstream_url_names_the_key() {
        let text = example().replace("http://127.0.0.1:8480", "ftp:/nowhere");
        let err = StationConfig::parse(&text)
            .unwrap()
            .check_values()
            .unwrap_err();
        assert!(err.to_string().starts_with("upstream.url:"), "{err}");
    }

    #[test]
    fn plain_http_to_another_machine_is_refused() {
        let text = example().replace("http://127.0.0.1:8480", "http://hub.bank.example:8480");
        let err = StationConfig::parse(&text)
            .unwrap()
            .check_values()
            .unwrap_err();
        assert!(err.to_string().starts_with("upstream.url:"), "{err}");
        assert!(err.to_string().contains("https"), "{err}");
    }

    #[test]
    fn plain_http_on_loopback_and_https_anywhere_are_accepted() {
        for url in [
            "http://localhost:8480",
            "http://[::1]:8480/",
            "https://hub.bank.example",
        ] {
            let text = example().replace("http://127.0.0.1:8480", url);
            StationConfig::parse(&text)
                .unwrap()
                .check_values()
                .unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn an_unknown_start_policy_is_refused() {
        let text = example().replace("start = \"staff\"", "start = \"whenever\"");
        let err = StationConfig::parse(&text).unwrap_err();
        assert!(err.contains("whenever"), "{err}");
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("station.toml");
        std::fs::write(&path, example()).unwrap();
        let cfg = StationConfig::load(&path).unwrap();
        let pin = cfg.keys.pkcs11.as_ref().unwrap().pin_file.as_ref().unwrap();
        assert_eq!(cfg.resolve(pin), dir.path().join("keys/hsm.pin"));
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_readable_by_others_is_refused_with_its_key_name() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.jwk");
        std::fs::write(&key, "{}").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = check_secret_file("keys.keystore", &key).unwrap_err();
        assert!(err.to_string().starts_with("keys.keystore:"), "{err}");
        assert!(err.to_string().contains("644"), "{err}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_secret_file("keys.keystore", &key).unwrap();
    }

    #[test]
    fn a_missing_key_file_is_named() {
        let cfg = StationConfig::parse(&example()).unwrap();
        let err = cfg.check().unwrap_err();
        assert!(
            err.to_string().starts_with("upstream.signing_key:"),
            "{err}"
        );
    }

    #[test]
    fn a_console_without_staff_or_an_explicit_choice_is_refused() {
        let text = example().replace("staff = \"/etc/station-agent/staff.toml\"\n", "");
        let err = StationConfig::parse(&text)
            .unwrap()
            .check_values()
            .unwrap_err();
        assert!(err.to_string().starts_with("console.staff:"), "{err}");
    }

    #[test]
    fn a_console_without_sign_in_must_stay_on_loopback() {
        let text = example()
            .replace("staff = \"/etc/station-agent/staff.toml\"\n", "")
            .replace("# allow_anonymous = true", "allow_anonymous = true");
        StationConfig::parse(&text).unwrap().check_values().unwrap();
        let wide = text.replace("listen = \"127.0.0.1:8470\"", "listen = \"0.0.0.0:8470\"");
        let err = StationConfig::parse(&wide)
            .unwrap()
            .check_values()
            .unwrap_err();
        assert!(
            err.to_string().starts_with("console.allow_anonymous:"),
            "{err}"
        );
    }

    #[test]
    fn a_console_on_the_network_needs_a_tls_proxy() {
        let wide = example().replace("listen = \"127.0.0.1:8470\"", "listen = \"0.0.0.0:8470\"");
        let err = StationConfig::parse(&wide)
            .unwrap()
            .check_values()
            .unwrap_err();
        assert!(err.to_string().starts_with("console.listen:"), "{err}");
        let proxied = wide.replace("[console]\n", "[console]\nbehind_tls_proxy = true\n");
        StationConfig::parse(&proxied)
            .unwrap()
            .check_values()
            .unwrap();
    }

    #[test]
    fn a_console_on_the_network_may_serve_tls_itself() {
        let wide = example().replace("listen = \"127.0.0.1:8470\"", "listen = \"0.0.0.0:8470\"");
        let own = format!(
            "{wide}\n[console.tls]\ncertificate = \"console.crt\"\nkey = \"console.key\"\n"
        );
        StationConfig::parse(&own).unwrap().check_values().unwrap();
    }

    #[test]
    fn a_console_with_its_own_tls_and_a_proxy_is_ambiguous() {
        let both = example().replace("[console]\n", "[console]\nbehind_tls_proxy = true\n")
            + "\n[console.tls]\ncertificate = \"console.crt\"\nkey = \"console.key\"\n";
        let err = StationConfig::parse(&both)
            .unwrap()
            .check_values()
            .unwrap_err();
        assert!(
            err.to_string().starts_with("console.behind_tls_proxy:"),
            "{err}"
        );
    }

    #[test]
    fn the_admin_endpoints_default_to_loopback_on_a_port_of_their_own() {
        let cfg = StationConfig::parse(&example()).unwrap();
        assert_eq!(cfg.admin.listen, "127.0.0.1:8471");
        assert!(!cfg.admin.allow_remote);
    }

    #[test]
    fn admin_endpoints_off_loopback_need_an_explicit_choice() {
        let text = example().replace("listen = \"127.0.0.1:8471\"", "listen = \"0.0.0.0:8471\"");
        let err = StationConfig::parse(&text)
            .unwrap()
            .check_values()
            .unwrap_err();
        assert!(err.to_string().starts_with("admin.allow_remote:"), "{err}");
        let allowed = text.replace("# allow_remote = true", "allow_remote = true");
        StationConfig::parse(&allowed)
            .unwrap()
            .check_values()
            .unwrap();
    }

    #[test]
    fn two_lines_on_one_printer_are_refused_naming_the_key() {
        let line = example()
            .split("\n[[devices.line]]\n")
            .nth(1)
            .unwrap()
            .split("[journal]")
            .next()
            .unwrap()
            .to_string();
        let second = line.replace("counter-1", "counter-2");
        let text = example().replace("[journal]", &format!("[[devices.line]]\n{second}[journal]"));
        let err = StationConfig::parse(&text)
            .unwrap()
            .check_values()
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("devices.line[1].printer.device:"),
            "{err}"
        );
    }

    #[test]
    fn a_station_without_a_line_is_refused() {
        let mut cfg = StationConfig::parse(&example()).unwrap();
        cfg.devices.line.clear();
        let err = cfg.check_values().unwrap_err();
        assert!(err.to_string().starts_with("devices.line:"), "{err}");
    }
}
