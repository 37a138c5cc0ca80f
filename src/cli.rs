//! Command line: the service entry point and the engineers' commands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, StationConfig};

/// station-agent: issues EMV payment cards over the counter.
#[derive(Debug, Parser)]
#[command(name = "station-agent", version, about)]
pub struct Cli {
    /// Configuration file (default: the service's, then the user's).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration and the key files it names.
    CheckConfig,
}

/// Parses the arguments and runs the command; the exit code tells scripts how it went.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig => check_config(cli.config),
    }
}

fn check_config(explicit: Option<PathBuf>) -> ExitCode {
    let result = config::locate(explicit.as_deref()).and_then(|path| {
        let cfg = StationConfig::load(&path)?;
        cfg.check()?;
        Ok(path)
    });
    match result {
        Ok(path) => {
            println!("{}: configuration OK", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("configuration error [{}]: {e}", e.code());
            ExitCode::from(2)
        }
    }
}
