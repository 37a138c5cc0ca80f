//! `keys …`: the issuer keys by label and check value; development key material and
//! station configuration (`keys init`, feature `sandbox`).

#[allow(unused_imports)]
use super::*;

/// `keys …` actions.
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// List the issuer keys of the configured store: labels, types and check values only.
    List,
    /// Write a complete development key set and station configuration (never production).
    #[cfg(feature = "sandbox")]
    Init {
        /// Development keys (required: production keys never come from here).
        #[arg(long)]
        dev: PathBuf,
        /// persoStation id.
        #[arg(long, default_value = "BR-DEV-01")]
        station: String,
        /// Hub URL.
        #[arg(long, default_value = "http://127.0.0.1:8480")]
        upstream: String,
        /// Printer device.
        #[arg(long, default_value = "/dev/ttyUSB0")]
        printer: String,
        /// Encoder reader pattern.
        #[arg(long, default_value = "Virtual PCD 00 00")]
        reader: String,
        /// Start policy: staff or automatic.
        #[arg(long, default_value = "staff")]
        policy: String,
        /// Sandbox hub state folder to register the station in.
        #[arg(long)]
        hub_state: Option<PathBuf>,
        /// Import the development keys into a SoftHSM2 token (non-extractable) and
        /// configure the station to use it, instead of writing a key file.
        #[arg(long)]
        hsm: bool,
    },
}

pub(super) fn keys(explicit: Option<&Path>, action: KeysAction) -> Outcome {
    match action {
        KeysAction::List => {
            let cfg = load_config(explicit)?;
            let listed = match cfg
                .key_store()
                .map_err(|e| usage(format!("[{}] {e}", e.code())))?
            {
                crate::config::KeyStoreChoice::Software(path) => {
                    station_emv::keys::SoftwareKeyStore::load(&path)
                        .map_err(|e| runtime(format!("keys.keystore: {e}")))?
                        .list()
                }
                crate::config::KeyStoreChoice::Pkcs11(p11) => {
                    station_emv::keys::Pkcs11KeyStore::open(&p11)
                        .and_then(|ks| ks.list())
                        .map_err(|e| runtime(format!("keys.pkcs11: {e}")))?
                }
            };
            println!("{:<32} {:<5} KCV", "LABEL", "TYPE");
            for k in listed {
                println!("{:<32} {:<5} {}", k.label, k.kind, k.kcv);
            }
            Ok(())
        }
        #[cfg(feature = "sandbox")]
        KeysAction::Init {
            dev,
            station,
            upstream,
            printer,
            reader,
            policy,
            hub_state,
            hsm,
        } => {
            if !["staff", "automatic"].contains(&policy.as_str()) {
                return Err(usage(format!(
                    "--policy '{policy}' is not staff or automatic"
                )));
            }
            let files = crate::devkit::init_dev(
                &dev,
                &crate::devkit::DevOptions {
                    station,
                    upstream,
                    printer,
                    reader,
                    policy,
                    hub_state: hub_state.clone(),
                    hsm,
                },
            )
            .map_err(runtime)?;
            println!("development keys and configuration written (NOT for production):");
            println!("  configuration  {}", files.config.display());
            if hsm {
                println!(
                    "  issuer keys    SoftHSM2 token '{}' in {} (non-extractable)",
                    crate::devkit::DEV_TOKEN,
                    dev.join("hsm").display()
                );
            }
            println!("  card stock     {}", files.card_stock.display());
            println!(
                "  console staff  {} (sign in as '{}' with PIN {})",
                files.staff.display(),
                crate::devkit::DEV_STAFF_ID,
                crate::devkit::DEV_STAFF_PIN
            );
            if let Some(h) = hub_state {
                println!("  registered at the sandbox hub state {}", h.display());
            }
            Ok(())
        }
    }
}
