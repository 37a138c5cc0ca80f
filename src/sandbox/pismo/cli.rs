//! `station-agent sandbox --state DIR pismo …`: the development client's helpers.

use super::dev_client;
use crate::sandbox::state::StateFiles;
use std::path::Path;

/// `sandbox pismo …` actions.
#[derive(Debug, clap::Subcommand)]
pub enum PismoSandboxAction {
    /// Print a bearer token for the development Pismo client (for curl, schemathesis).
    Token {
        /// Sandbox base URL.
        #[arg(long, default_value = "http://127.0.0.1:8480")]
        hub: String,
    },
}

/// Run a `sandbox pismo` action against the sandbox whose state is in `state_dir`.
pub async fn run(state_dir: &Path, action: PismoSandboxAction) -> Result<(), String> {
    match action {
        PismoSandboxAction::Token { hub } => {
            let files = StateFiles::in_dir(state_dir);
            if !files.dir.is_dir() {
                return Err(format!(
                    "{} is not a sandbox state folder; start the sandbox with --state first",
                    state_dir.display()
                ));
            }
            let dev = dev_client(&files).map_err(|e| e.to_string())?;
            let client = crate::pismo::PismoClient::new(crate::pismo::PismoClientConfig::new(
                &hub,
                &hub,
                &dev.client_id,
                crate::pismo::PismoSecret::new(dev.client_secret.clone()),
            ))
            .map_err(|e| e.to_string())?;
            let token = client.token().await.map_err(|e| e.to_string())?;
            println!("{}", token.expose());
            Ok(())
        }
    }
}
