//! What the two demos (`station-demo`, `pismo-demo`) share: the chips served on pcscd's
//! vpcd reader, the hub status read once it is settled, and the closing results table.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::time::Duration;

use station_agent::devkit::{init_dev, DevFiles, DevOptions};
use station_agent::sandbox::{self, SandboxConfig, SandboxHandle};
use station_sim::card::KeyFile;
use station_sim::printer::{SimPrinter, SimPrinterConfig, Timing};
use station_sim::station::serve_chips_on_vpcd;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A demo's output folder: the development station, the hub's state, the printed faces.
pub struct DemoFolder {
    /// Printed faces (PNG).
    pub faces: PathBuf,
    /// The sandbox hub's state folder.
    pub hub_state: PathBuf,
    /// What `keys init --dev` wrote for the station.
    pub files: DevFiles,
}

impl DemoFolder {
    /// Empties `out` and writes a development station `station` in it (`keys init --dev`,
    /// printer on a pty, chips on pcscd's vpcd reader), registered with the hub state beside it.
    pub fn create(out: &Path, station: &str, policy: &str, hsm: bool) -> Result<Self, String> {
        let _ = std::fs::remove_dir_all(out);
        let faces = out.join("faces");
        std::fs::create_dir_all(&faces).map_err(|e| format!("{}: {e}", faces.display()))?;
        let hub_state = out.join("hub");
        let files = init_dev(
            &out.join("station"),
            &DevOptions {
                station: station.into(),
                upstream: "http://127.0.0.1:8480".into(),
                printer: "pty".into(),
                reader: "Virtual PCD 00 00".into(),
                policy: policy.into(),
                hub_state: Some(hub_state.clone()),
                hsm,
            },
        )?;
        Ok(DemoFolder {
            faces,
            hub_state,
            files,
        })
    }

    /// Starts the sandbox hub on the state folder, on a port the system chooses.
    pub async fn start_hub(&self) -> Result<SandboxHandle, String> {
        sandbox::start(&SandboxConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            state_dir: self.hub_state.clone(),
        })
        .await
        .map_err(|e| format!("sandbox hub: {e}"))
    }

    /// A simulated printer saving its printed faces here, at `time_scale` of real speed.
    pub fn printer(&self, time_scale: f64) -> SimPrinter {
        SimPrinter::new(SimPrinterConfig {
            out_dir: Some(self.faces.clone()),
            timing: Timing {
                scale: time_scale,
                ..Timing::default()
            },
            ..SimPrinterConfig::default()
        })
    }
}

/// The vpcd port of pcscd when none is given: `STATION_HIL_VPCD_PORT`, else vpcd's own.
pub fn vpcd_port(given: Option<u16>) -> u16 {
    given
        .or_else(|| std::env::var("STATION_HIL_VPCD_PORT").ok()?.parse().ok())
        .unwrap_or(35963)
}

/// Simulated chips of the blank stock in `card_stock`, put on pcscd's vpcd reader
/// whenever the printer parks a card at its chip station.
pub struct VpcdChips {
    stop: watch::Sender<bool>,
    served: JoinHandle<()>,
}

impl VpcdChips {
    /// Starts serving chips for `printer` on `127.0.0.1:port`.
    pub fn serve(printer: &SimPrinter, card_stock: &Path, port: u16) -> Result<Self, String> {
        let stock = std::fs::read_to_string(card_stock)
            .map_err(|e| e.to_string())
            .and_then(|t| KeyFile::parse(&t).map_err(|e| e.to_string()))
            .and_then(|k| k.to_config().map_err(|e| e.to_string()))
            .map_err(|e| format!("card stock keys: {e}"))?;
        let (stop, stopped) = watch::channel(false);
        let served = tokio::spawn(serve_chips_on_vpcd(
            printer.clone(),
            stock,
            format!("127.0.0.1:{port}"),
            stopped,
        ));
        Ok(VpcdChips { stop, served })
    }

    /// Takes the chip off the reader and stops serving.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.served.await;
    }
}

/// The hub's status of an order once it has left `PENDING` (the last reports may still
/// be on their way), asking `status` up to 50 times 100 ms apart.
pub async fn settled_hub_status<F, Fut>(mut status: F) -> String
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let mut last = String::new();
    for _ in 0..50 {
        last = status().await;
        if last != "PENDING" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text: padded on the right.
    Left,
    /// Figures: padded on the left.
    Right,
}

/// A results table printed with fixed-width columns: heading, width, alignment.
pub struct Table(pub &'static [(&'static str, usize, Align)]);

impl Table {
    /// The heading line.
    pub fn heading(&self) -> String {
        let cells: Vec<&dyn Display> = self.0.iter().map(|(h, _, _)| h as &dyn Display).collect();
        self.row(&cells)
    }

    /// One row, a cell per column (cells beyond the columns are ignored).
    pub fn row(&self, cells: &[&dyn Display]) -> String {
        let line: Vec<String> = self
            .0
            .iter()
            .zip(cells)
            .map(|(&(_, width, align), cell)| match align {
                Align::Left => format!("{cell:<width$}"),
                Align::Right => format!("{cell:>width$}"),
            })
            .collect();
        line.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: Table = Table(&[
        ("#", 3, Align::Left),
        ("status", 8, Align::Left),
        ("seconds", 7, Align::Right),
    ]);

    #[test]
    fn a_row_pads_text_on_the_right_and_figures_on_the_left() {
        assert_eq!(TABLE.row(&[&1, &"DONE", &"9.5"]), "1   DONE         9.5");
    }

    #[test]
    fn the_heading_uses_the_same_columns() {
        assert_eq!(TABLE.heading(), "#   status   seconds");
    }

    #[tokio::test(start_paused = true)]
    async fn the_hub_status_is_read_again_while_it_is_pending() {
        let mut answers = vec!["SUCCESSFUL", "PENDING", "PENDING"];
        let status = settled_hub_status(|| {
            let next = answers.pop().unwrap_or("PENDING").to_string();
            async move { next }
        })
        .await;
        assert_eq!(status, "SUCCESSFUL");
    }
}
