//! `sandbox …`: the embedded D1 sandbox hub and its client actions (feature `sandbox`).

#[allow(unused_imports)]
use super::*;

/// `sandbox …` client actions.
#[derive(Debug, Subcommand)]
pub enum SandboxAction {
    /// Post sample INSTANT orders as an issuer backend would.
    Order {
        /// persoStation the orders are for.
        #[arg(long)]
        station: String,
        /// Number of orders.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// Hub base URL.
        #[arg(long, default_value = "http://127.0.0.1:8480")]
        hub: String,
    },
    /// Print a card's production status.
    Status {
        /// cardId.
        #[arg(long)]
        card: String,
        /// Hub base URL.
        #[arg(long, default_value = "http://127.0.0.1:8480")]
        hub: String,
    },
    /// The Pismo sandbox on the same listener.
    Pismo {
        /// Pismo sandbox actions.
        #[command(subcommand)]
        action: crate::sandbox::pismo::cli::PismoSandboxAction,
    },
}

pub(super) async fn sandbox(
    listen: SocketAddr,
    state: PathBuf,
    action: Option<SandboxAction>,
) -> Outcome {
    use crate::sandbox::{self, client, SandboxConfig};
    match action {
        None => {
            crate::logging::init("info", crate::config::LogFormat::Text);
            sandbox::run(SandboxConfig {
                listen,
                state_dir: state,
            })
            .await
            .map_err(runtime)
        }
        Some(SandboxAction::Order {
            station,
            count,
            hub,
        }) => {
            let posted = client::post_sample_orders(&hub, &state, &station, count)
                .await
                .map_err(runtime)?;
            for (card, op) in posted {
                println!("{card} {op}");
            }
            Ok(())
        }
        Some(SandboxAction::Status { card, hub }) => {
            let v = client::production_status(&hub, &state, &card)
                .await
                .map_err(runtime)?;
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            Ok(())
        }
        Some(SandboxAction::Pismo { action }) => sandbox::pismo::cli::run(&state, action)
            .await
            .map_err(runtime),
    }
}
