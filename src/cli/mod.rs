//! Command line: the service entry point and the engineers' commands.
//!
//! Exit codes: 0 done, 1 the operation failed (device, card, hub), 2 usage or
//! configuration error. Card data is only ever printed masked.

#[cfg(feature = "sandbox")]
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{self, StationConfig};

mod card;
mod counter;
mod keys;
mod pismo;
mod preview;
mod printer;
#[cfg(feature = "sandbox")]
mod sandbox;
mod staff;

pub use card::CardAction;
pub use counter::{AuditAction, ReportKind, StockAction};
pub use keys::KeysAction;
pub use pismo::PismoAction;
pub use printer::PrinterAction;
#[cfg(feature = "sandbox")]
pub use sandbox::SandboxAction;
pub use staff::StaffAction;

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
    /// Run the station agent (the service).
    Run,
    /// Validate the configuration and the key files it names.
    CheckConfig,
    /// The embedded D1 sandbox hub.
    #[cfg(feature = "sandbox")]
    Sandbox {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8480")]
        listen: SocketAddr,
        /// State folder (keys, registrations, database).
        #[arg(long, default_value = "sandbox-state")]
        state: PathBuf,
        /// Sandbox client actions.
        #[command(subcommand)]
        action: Option<SandboxAction>,
    },
    /// Key material.
    Keys {
        /// Key actions.
        #[command(subcommand)]
        action: KeysAction,
    },
    /// The chip encoder, for field engineers.
    Card {
        /// Card actions.
        #[command(subcommand)]
        action: CardAction,
    },
    /// The card printer, for field engineers.
    Printer {
        /// Printer actions.
        #[command(subcommand)]
        action: PrinterAction,
    },
    /// Render the card face of an order as PNG.
    Preview {
        /// Order file (D1 cardRequestInstant JSON).
        #[arg(long)]
        order: PathBuf,
        /// Output PNG.
        #[arg(long, default_value = "card-face.png")]
        out: PathBuf,
    },
    /// List the journal's recent jobs.
    Jobs {
        /// List the engineering record instead (`card perso`, `card issue`: who, what, outcome).
        #[arg(long)]
        engineering: bool,
    },
    /// Blank-card stock per card product (loaded, used, issued, spoiled, remaining).
    Stock {
        /// Record blanks loaded; without an action the stock is shown.
        #[command(subcommand)]
        action: Option<StockAction>,
    },
    /// Reports from the journal.
    Report {
        /// Which report.
        #[command(subcommand)]
        kind: ReportKind,
    },
    /// The audit trail.
    Audit {
        /// Audit actions.
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Console staff accounts (who may sign in; PINs stored only as hashes).
    Staff {
        /// Staff actions.
        #[command(subcommand)]
        action: StaffAction,
    },
    /// Pismo counter requests: a card for a customer, embossed at this branch.
    Pismo {
        /// Pismo actions.
        #[command(subcommand)]
        action: PismoAction,
    },
    /// The Windows service: install, uninstall, and the entry the service manager starts.
    Service {
        /// Service actions.
        #[command(subcommand)]
        action: crate::service::ServiceCommand,
    },
}

/// Why a command failed, with the exit code it maps to.
enum Failure {
    /// Usage or configuration (exit 2).
    Usage(String),
    /// The operation failed (exit 1).
    Runtime(String),
}

fn runtime(e: impl std::fmt::Display) -> Failure {
    Failure::Runtime(e.to_string())
}

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure::Usage(e.to_string())
}

type Outcome = Result<(), Failure>;

/// Parses the arguments and runs the command; the exit code tells scripts how it went.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    if let Some(conf) = softhsm2_conf(&cli) {
        // SoftHSM2 reads it when it loads; set here, while this is the only thread.
        std::env::set_var("SOFTHSM2_CONF", conf);
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(dispatch(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(m)) => {
            eprintln!("failed: {m}");
            ExitCode::from(1)
        }
    }
}

/// The SoftHSM2 configuration this command needs, if any: the development token
/// `keys init --hsm` writes, or the one the station configuration names. A
/// configuration that does not load is left for the command itself to report.
fn softhsm2_conf(cli: &Cli) -> Option<PathBuf> {
    match &cli.command {
        Command::Keys {
            action: KeysAction::Init { dev, hsm: true, .. },
        } => Some(crate::devkit::softhsm2_conf(dev)),
        _ => {
            let path = config::locate(cli.config.as_deref()).ok()?;
            StationConfig::load(&path).ok()?.softhsm2_conf()
        }
    }
}

fn load_config(explicit: Option<&Path>) -> Result<StationConfig, Failure> {
    let path = config::locate(explicit).map_err(|e| usage(format!("[{}] {e}", e.code())))?;
    let cfg = StationConfig::load(&path).map_err(|e| usage(format!("[{}] {e}", e.code())))?;
    cfg.check()
        .map_err(|e| usage(format!("[{}] {e}", e.code())))?;
    Ok(cfg)
}

async fn dispatch(cli: Cli) -> Outcome {
    let explicit = cli.config.as_deref();
    match cli.command {
        Command::CheckConfig => {
            let path =
                config::locate(explicit).map_err(|e| usage(format!("[{}] {e}", e.code())))?;
            let cfg =
                StationConfig::load(&path).map_err(|e| usage(format!("[{}] {e}", e.code())))?;
            cfg.check()
                .map_err(|e| usage(format!("[{}] {e}", e.code())))?;
            // Opening the key store logs into the HSM and looks for the public
            // development keys, which only a development station may hold.
            crate::agent::open_key_store(&cfg).map_err(|e| usage(format!("[{}] {e}", e.code())))?;
            println!("{}: configuration OK", path.display());
            Ok(())
        }
        Command::Run => {
            let cfg = load_config(explicit)?;
            crate::logging::init(&cfg.logging.level, cfg.logging.format);
            crate::service::run(cfg)
                .await
                .map_err(|e| runtime(format!("[{}] {e}", e.code())))
        }
        #[cfg(feature = "sandbox")]
        Command::Sandbox {
            listen,
            state,
            action,
        } => sandbox::sandbox(listen, state, action).await,
        Command::Keys { action } => keys::keys(explicit, action),
        Command::Card { action } => {
            crate::logging::init("warn", crate::config::LogFormat::Text);
            card::card(explicit, action).await
        }
        Command::Printer { action } => printer::printer(action).await,
        Command::Preview { order, out } => preview::preview(explicit, &order, &out),
        Command::Jobs { engineering } => jobs(explicit, engineering),
        Command::Staff { action } => staff::staff(explicit, action),
        Command::Stock { action } => counter::stock(explicit, action),
        Command::Report { kind } => counter::report(explicit, kind),
        Command::Audit { action } => counter::audit(explicit, action),
        Command::Pismo { action } => pismo::pismo(explicit, action).await,
        Command::Service { action } => {
            crate::service::command(action, explicit)
                .await
                .map_err(|e| {
                    let m = format!("[{}] {e}", e.code());
                    if e.is_usage() {
                        usage(m)
                    } else {
                        runtime(m)
                    }
                })
        }
    }
}

fn jobs(explicit: Option<&Path>, engineering: bool) -> Outcome {
    let cfg = load_config(explicit)?;
    let journal =
        crate::journal::Journal::open(&cfg.resolve(&cfg.journal.path)).map_err(runtime)?;
    if engineering {
        for e in journal.engineering(50).map_err(runtime)? {
            println!(
                "{:<25} {:<16} {:<10} {:<8} card {:<20} {:<19} {} on '{}'{}",
                e.at,
                e.actor,
                e.command.as_str(),
                e.outcome.as_str(),
                e.card_id.unwrap_or_else(|| "-".into()),
                e.masked_pan.unwrap_or_else(|| "-".into()),
                e.keys,
                e.reader,
                e.detail.map(|d| format!(" — {d}")).unwrap_or_default()
            );
        }
        return Ok(());
    }
    for j in journal.all_jobs(50).map_err(runtime)? {
        println!(
            "{:<38} {:<38} {:<19} {}{}",
            j.operation_id,
            j.card_id,
            j.masked_pan.unwrap_or_default(),
            j.state.label(),
            j.reason.map(|r| format!(" — {r}")).unwrap_or_default()
        );
    }
    Ok(())
}
