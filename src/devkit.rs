//! Development key set for a station (`station-agent keys init --dev DIR`): station
//! JWE key pair, ES256 link key, software key store, blank card stock keys, and a
//! station configuration that uses them — optionally registered at a sandbox hub.
//! The demo and the tests use it; production keys never come from it.

use std::path::{Path, PathBuf};

use crate::order::jwe::generate_p256_keypair;
use crate::sandbox::config::{SandboxFile, StationEntry};
use crate::sandbox::keys::{generate_es256_jwk, write_private, write_public};
use crate::sandbox::state::init_state;
use station_emv::keys::{write_dev_keystore, write_dev_token, SOFTHSM2_MODULE};

/// Label of the development SoftHSM2 token (`keys init --dev DIR --hsm`).
pub const DEV_TOKEN: &str = "station-dev";

/// What to generate.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// persoStation id.
    pub station: String,
    /// Hub base URL.
    pub upstream: String,
    /// Printer device.
    pub printer: String,
    /// Encoder reader pattern.
    pub reader: String,
    /// `staff` or `automatic`.
    pub policy: String,
    /// Sandbox state dir to register the station in.
    pub hub_state: Option<PathBuf>,
    /// Put the issuer keys in a SoftHSM2 token (non-extractable) instead of a key file.
    pub hsm: bool,
}

/// Files written.
#[derive(Debug, Clone)]
pub struct DevFiles {
    /// The station configuration.
    pub config: PathBuf,
    /// Key file of the blank card stock (for `sim-card --keys`).
    pub card_stock: PathBuf,
    /// Staff accounts of the console (one development account).
    pub staff: PathBuf,
}

/// Sign-in id of the development staff account.
pub const DEV_STAFF_ID: &str = "dev";
/// PIN of the development staff account (public: development only).
pub const DEV_STAFF_PIN: &str = "246810";
/// Sign-in id of the second development supervisor (approves spoils under dual control).
pub const DEV_SUPERVISOR_ID: &str = "dev-sup";
/// PIN of the second development supervisor (public: development only).
pub const DEV_SUPERVISOR_PIN: &str = "135790";
/// Sign-in id of the development auditor (reads and exports the audit).
pub const DEV_AUDITOR_ID: &str = "dev-audit";
/// PIN of the development auditor (public: development only).
pub const DEV_AUDITOR_PIN: &str = "975310";

fn io(path: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

/// SoftHSM2's configuration of the development token under `dir` (`--hsm`).
pub fn softhsm2_conf(dir: &Path) -> PathBuf {
    station_emv::keys::softhsm2_conf_in(&dir.join("hsm"))
}

/// Writes the development key set and configuration into `dir`.
pub fn init_dev(dir: &Path, o: &DevOptions) -> Result<DevFiles, String> {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).map_err(|e| io(&keys, e))?;
    let jwe_kid = format!("{}-jwe-1", o.station);
    let (jwe_private, jwe_public) = generate_p256_keypair(&jwe_kid);
    write_private(&keys.join("station-jwe.jwk"), &jwe_private).map_err(|e| e.to_string())?;
    write_public(&keys.join("station-jwe.public.jwk"), &jwe_public).map_err(|e| e.to_string())?;
    let link_kid = format!("{}-link-1", o.station);
    let (link_private, link_public) = generate_es256_jwk(&link_kid).map_err(|e| e.to_string())?;
    write_private(&keys.join("link-es256.jwk"), &link_private).map_err(|e| e.to_string())?;
    write_public(&keys.join("link-es256.public.jwk"), &link_public).map_err(|e| e.to_string())?;
    let key_store = if o.hsm {
        // No issuer key value is written outside the token.
        let token = write_dev_token(&dir.join("hsm"), Path::new(SOFTHSM2_MODULE), DEV_TOKEN)
            .map_err(|e| e.to_string())?;
        let pin_name = token
            .pin_file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!(
            "\n[keys.pkcs11]\nmodule = \"{SOFTHSM2_MODULE}\"\ntoken = \"{}\"\n\
             pin_file = \"hsm/{pin_name}\"\nsofthsm2_conf = \"hsm/softhsm2.conf\"\n",
            token.token
        )
    } else {
        let keystore = write_dev_keystore(&keys).map_err(|e| e.to_string())?;
        let keystore_name = keystore
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("keystore = \"keys/{keystore_name}\"\n")
    };
    let card_stock = dir.join("card-stock.toml");
    write_private(
        &card_stock,
        "# Blank card stock of card product DEV-VISA / DEV-MC (public development keys).\n\
         scp = \"02\"\ni = 0x55\nkvn = 0x20\nkdd = \"11223344556677889900\"\n\
         kmc = \"404142434445464748494A4B4C4D4E4F\"\ndiversification = \"emv_cpg202\"\n",
    )
    .map_err(|e| e.to_string())?;
    let staff = dir.join("staff.toml");
    let mut accounts = crate::staff::StaffFile::default();
    accounts
        .set(DEV_STAFF_ID, "Development staff", DEV_STAFF_PIN)
        .and_then(|_| {
            accounts.set(
                DEV_SUPERVISOR_ID,
                "Development supervisor",
                DEV_SUPERVISOR_PIN,
            )
        })
        .and_then(|_| accounts.set(DEV_AUDITOR_ID, "Development auditor", DEV_AUDITOR_PIN))
        .and_then(|_| {
            // The development account does everything a branch supervisor does.
            accounts.set_role(DEV_STAFF_ID, crate::roles::Role::Supervisor);
            accounts.set_role(DEV_SUPERVISOR_ID, crate::roles::Role::Supervisor);
            accounts.set_role(DEV_AUDITOR_ID, crate::roles::Role::Auditor);
            accounts.save(&staff)
        })
        .map_err(|e| e.to_string())?;
    let client_id = format!("station-{}", o.station);
    let config = dir.join("station.toml");
    let text = format!(
        "# Development station (keys init --dev). Not for production.\n\
         [station]\nperso_station = \"{station}\"\nissuer_id = \"{issuer}\"\n\n\
         [upstream]\nurl = \"{url}\"\nclient_id = \"{client_id}\"\nkid = \"{link_kid}\"\nsigning_key = \"keys/link-es256.jwk\"\n{order_keys}\n\
         [keys]\nstation_jwe = [\"keys/station-jwe.jwk\"]\ndevelopment = true\n{key_store}\n\
         [[devices.line]]\nname = \"line-1\"\n\n[devices.line.printer]\ndevice = \"{printer}\"\n\n\
         [devices.line.encoder]\nreader = \"{reader}\"\n\n\
         [journal]\npath = \"journal.db\"\nretention_days = 0\n\n\
         [console]\nlisten = \"127.0.0.1:8470\"\nstaff = \"staff.toml\"\n\n[policy]\nstart = \"{policy}\"\n\n\
         [logging]\nlevel = \"info\"\nformat = \"text\"\n\n\
         [production]\ndefault_card_product = \"DEV-VISA\"\nchip_wait_seconds = 10\n",
        station = o.station,
        issuer = crate::sandbox::state::DEV_ISSUER_ID,
        url = o.upstream,
        printer = o.printer,
        reader = o.reader,
        policy = o.policy,
        order_keys = if o.hub_state.is_some() {
            "order_keys = [\"keys/hub-orders.public.jwk\"]\n"
        } else {
            "# order_keys = [\"keys/hub-orders.public.jwk\"]: the hub's order-signing public key, required\n"
        },
    );
    std::fs::write(&config, text).map_err(|e| io(&config, e))?;
    if let Some(hub) = &o.hub_state {
        let files = init_state(hub).map_err(|e| e.to_string())?;
        let signing = crate::sandbox::keys::read_text(&files.order_signing_public_jwk)
            .map_err(|e| e.to_string())?;
        write_public(&keys.join("hub-orders.public.jwk"), &signing).map_err(|e| e.to_string())?;
        let mut file = files.load_config().map_err(|e| e.to_string())?;
        file.stations.retain(|s| s.perso_station != o.station);
        file.stations.push(StationEntry {
            perso_station: o.station.clone(),
            public_jwks: vec![jwe_public.clone()],
            client_id,
            client_jwk: link_public.clone(),
        });
        write_sandbox_file(&files.config, &file)?;
    }
    Ok(DevFiles {
        config,
        card_stock,
        staff,
    })
}

fn write_sandbox_file(path: &Path, file: &SandboxFile) -> Result<(), String> {
    let text = toml::to_string_pretty(file).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StationConfig;

    #[test]
    fn the_dev_set_checks_and_registers_at_the_hub() {
        let dir = tempfile::tempdir().unwrap();
        let hub = dir.path().join("hub");
        let files = init_dev(
            &dir.path().join("station"),
            &DevOptions {
                station: "BR-DEV-01".into(),
                upstream: "http://127.0.0.1:8480".into(),
                printer: "/dev/null".into(),
                reader: "Virtual PCD".into(),
                policy: "automatic".into(),
                hub_state: Some(hub.clone()),
                hsm: false,
            },
        )
        .unwrap();
        let cfg = StationConfig::load(&files.config).unwrap();
        cfg.check().unwrap();
        let reg = crate::sandbox::state::StateFiles::in_dir(&hub)
            .load_config()
            .unwrap();
        assert_eq!(reg.stations[0].perso_station, "BR-DEV-01");
    }
}
