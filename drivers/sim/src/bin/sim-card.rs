//! `sim-card`: a blank simulated GP/EMV card inserted in pcscd's vpcd reader.
//!
//! `sim-card --vpcd 127.0.0.1:35963 --keys FILE` connects to the vpcd port with the
//! transport keys in FILE and stays inserted — keeping what was personalized — until
//! it is stopped (Ctrl-C / SIGTERM).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Parser;
use station_sim::card::KeyFile;
use station_sim::vpcd::{serve, SharedCard};

/// Simulated GlobalPlatform/EMV card for pcscd's vpcd driver.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// vpcd address (host:port) of the reader slot to insert the card in.
    #[arg(long, default_value = "127.0.0.1:35963")]
    vpcd: String,
    /// Transport key file (TOML: scp, i, kvn, kdd, and kmc+diversification or enc/mac/dek;
    /// optional isd = AID of the Issuer Security Domain).
    #[arg(long)]
    keys: PathBuf,
    /// A mute chip: the reader cannot power it (its answer-to-reset is unreadable), as
    /// with a faulty or badly placed card.
    #[arg(long)]
    mute: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut card = match std::fs::read_to_string(&args.keys)
        .map_err(|e| format!("{}: {e}", args.keys.display()))
        .and_then(|t| KeyFile::parse(&t).map_err(|e| e.to_string()))
        .and_then(|k| k.blank_card().map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sim-card: {e}");
            return ExitCode::from(2);
        }
    };
    card.faults.mute = args.mute;
    let card: SharedCard = Arc::new(Mutex::new(card));
    let (stop, rx) = tokio::sync::watch::channel(false);
    println!(
        "sim-card: inserted in vpcd at {} (Ctrl-C removes it)",
        args.vpcd
    );
    tokio::select! {
        _ = serve(&args.vpcd, card, rx) => {},
        _ = tokio::signal::ctrl_c() => { let _ = stop.send(true); },
    }
    ExitCode::SUCCESS
}
