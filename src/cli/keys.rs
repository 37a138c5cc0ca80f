//! `keys …`: development key material and station configuration (feature `sandbox`).

#[allow(unused_imports)]
use super::*;

/// `keys …` actions.
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Write a complete development key set and station configuration (never production).
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
    },
}

pub(super) fn keys(action: KeysAction) -> Outcome {
    match action {
        KeysAction::Init {
            dev,
            station,
            upstream,
            printer,
            reader,
            policy,
            hub_state,
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
                },
            )
            .map_err(runtime)?;
            println!("development keys and configuration written (NOT for production):");
            println!("  configuration  {}", files.config.display());
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
