//! `printer …`: the card printer, for field engineers.

#[allow(unused_imports)]
use super::*;

/// `printer …` actions.
#[derive(Debug, Subcommand)]
pub enum PrinterAction {
    /// Model, firmware, serial number, card position and sensors in words.
    Status {
        /// Serial path, USB printer node or tcp://host:port.
        #[arg(long)]
        device: String,
        /// Model profile name (detected when absent).
        #[arg(long)]
        model: Option<String>,
    },
    /// Feed a card, park it at the chip station, then eject it (or reject it).
    TestCard {
        /// Serial path, USB printer node or tcp://host:port.
        #[arg(long)]
        device: String,
        /// Model profile name.
        #[arg(long)]
        model: Option<String>,
        /// Send the card to the reject box instead of the output hopper.
        #[arg(long)]
        reject: bool,
    },
}

pub(super) async fn printer(action: PrinterAction) -> Outcome {
    use station_evolis::diagnostics;
    match action {
        PrinterAction::Status { device, model } => {
            let report = diagnostics::status_report(&device, model.as_deref())
                .await
                .map_err(|e| runtime(format!("printer {device}: {e}")))?;
            print!("{report}");
            Ok(())
        }
        PrinterAction::TestCard {
            device,
            model,
            reject,
        } => {
            diagnostics::test_card(&device, model.as_deref(), reject)
                .await
                .map_err(|e| runtime(format!("printer {device}: {e}")))?;
            println!(
                "test card fed, parked at the chip station and {}",
                if reject { "rejected" } else { "ejected" }
            );
            Ok(())
        }
    }
}
