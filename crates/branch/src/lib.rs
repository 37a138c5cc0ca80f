//! A whole branch in one process: the sandbox hub, the simulated printer and chips,
//! and the agent started from a `keys init --dev` configuration — for integration
//! tests and benchmarks. It sits above the agent: the simulators it wires together
//! (`station-sim`) know nothing of the agent.

pub mod demo;

use std::path::{Path, PathBuf};
use std::time::Duration;

use station_agent::agent::Agent;
use station_agent::config::StationConfig;
use station_agent::devkit::{init_dev, DevOptions};
use station_agent::job::pipeline::Devices;
use station_agent::job::state::JobState;
use station_agent::sandbox::{self, SandboxConfig, SandboxHandle};
use station_evolis::{EvolisPrinter, ModelProfile};
use station_sim::card::KeyFile;
use station_sim::printer::{SimPrinter, SimPrinterConfig, Timing};
use station_sim::station::{track_chips, Chips, SimEncoder};

/// The station id used by these tests.
pub const STATION: &str = "BR-E2E-01";

/// A running branch.
pub struct Branch {
    /// Folder holding the station, the hub state and printed faces.
    pub dir: PathBuf,
    /// The hub.
    pub hub: SandboxHandle,
    /// The hub's state folder.
    pub hub_state: PathBuf,
    /// The station configuration.
    pub config: StationConfig,
    /// The simulated printer of the first line.
    pub printer: SimPrinter,
    /// Chips of the cards at its chip station.
    pub chips: Chips,
    /// Printers and chips of the lines after the first.
    pub more_lines: Vec<(SimPrinter, Chips)>,
}

/// The configuration of the station written in `dir` by [`branch`], with its upstream
/// at `hub_url`, ports chosen by the system, and `lines` simulated lines.
pub fn station_config(dir: &Path, hub_url: &str, lines: usize) -> StationConfig {
    let mut config = StationConfig::load(&dir.join("station").join("station.toml")).unwrap();
    config.upstream.url = hub_url.to_string();
    config.console.listen = "127.0.0.1:0".into();
    config.admin.listen = "127.0.0.1:0".into();
    let template = config.devices.line[0].clone();
    config.devices.line = (1..=lines.max(1))
        .map(|n| {
            let mut l = template.clone();
            l.name = format!("line-{n}");
            l.printer.device = format!("sim-{n}");
            l.encoder.reader = format!("sim-{n}");
            l
        })
        .collect();
    config
}

/// The blank card stock (chip keys) of the station written in `dir` by [`branch`].
pub fn card_stock(dir: &Path) -> station_sim::card::SimCardConfig {
    let stock = std::fs::read_to_string(dir.join("station").join("card-stock.toml")).unwrap();
    KeyFile::parse(&stock).unwrap().to_config().unwrap()
}

/// The name of the simulated printer's model profile (`drivers/evolis/models/simulator.toml`):
/// the Primacy 2's timeouts with staging on, which no real printer's profile has yet.
pub const SIM_PRINTER_MODEL: &str = "simulator";

/// The simulated printer's model profile (see [`SIM_PRINTER_MODEL`]).
pub fn sim_printer_model() -> ModelProfile {
    ModelProfile::find(SIM_PRINTER_MODEL).expect("the simulator's printer model profile")
}

/// Devices of one simulated line over an in-memory printer link.
pub fn sim_devices(line: &str, printer: &SimPrinter, chips: &Chips) -> Devices {
    sim_devices_with(line, printer, chips, &sim_printer_model())
}

/// The devices of one simulated line, the printer driver using `model`'s profile.
pub fn sim_devices_with(
    line: &str,
    printer: &SimPrinter,
    chips: &Chips,
    model: &ModelProfile,
) -> Devices {
    let link = printer.spawn_in_memory().unwrap();
    let reader = link.try_clone().unwrap();
    Devices {
        line: line.to_string(),
        printer: Box::new(EvolisPrinter::new_split(
            Box::new(reader),
            Box::new(link),
            model.clone(),
        )),
        encoder: Box::new(SimEncoder::new(chips.clone())),
        chip_wait: Duration::from_secs(5),
    }
}

/// Starts the hub in `dir` and writes the station's development configuration.
pub async fn branch(dir: &Path, policy: &str, timing: Timing) -> Branch {
    branch_with_lines(dir, policy, timing, 1).await
}

/// A branch whose station has `lines` printer/encoder pairs.
pub async fn branch_with_lines(dir: &Path, policy: &str, timing: Timing, lines: usize) -> Branch {
    let dir = dir.to_path_buf();
    let hub_state = dir.join("hub");
    init_dev(
        &dir.join("station"),
        &DevOptions {
            station: STATION.into(),
            upstream: "http://127.0.0.1:1".into(),
            printer: "sim".into(),
            reader: "sim".into(),
            policy: policy.into(),
            hub_state: Some(hub_state.clone()),
            hsm: false,
        },
    )
    .unwrap();
    let hub = sandbox::start(&SandboxConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        state_dir: hub_state.clone(),
    })
    .await
    .unwrap();
    let config = station_config(&dir, &hub.base_url(), lines);
    let chip_config = card_stock(&dir);
    let mut all: Vec<(SimPrinter, Chips)> = (1..=lines.max(1))
        .map(|n| {
            let printer = SimPrinter::new(SimPrinterConfig {
                out_dir: Some(if n == 1 {
                    dir.clone()
                } else {
                    dir.join(format!("line-{n}"))
                }),
                timing: timing.clone(),
                ..SimPrinterConfig::default()
            });
            let chips = track_chips(&printer, chip_config.clone());
            (printer, chips)
        })
        .collect();
    let (printer, chips) = all.remove(0);
    Branch {
        dir,
        hub,
        hub_state,
        config,
        printer,
        chips,
        more_lines: all,
    }
}

impl Branch {
    /// Devices of every simulated line (printers over in-memory links).
    pub fn devices(&self) -> Vec<Devices> {
        self.devices_with(&sim_printer_model())
    }

    /// Devices of every simulated line, their drivers using `model`'s profile.
    pub fn devices_with(&self, model: &ModelProfile) -> Vec<Devices> {
        std::iter::once((&self.printer, &self.chips))
            .chain(self.more_lines.iter().map(|(p, c)| (p, c)))
            .zip(&self.config.devices.line)
            .map(|((printer, chips), line)| sim_devices_with(&line.name, printer, chips, model))
            .collect()
    }

    /// Starts the agent.
    pub async fn agent(&self) -> Agent {
        Agent::start(&self.config, self.devices()).await.unwrap()
    }

    /// Posts `n` sample orders as the issuer backend would.
    pub async fn order(&self, n: usize) -> Vec<(String, String)> {
        sandbox::client::post_sample_orders(&self.hub.base_url(), &self.hub_state, STATION, n)
            .await
            .unwrap()
    }

    /// The hub's top-level status of a card's last operation.
    pub async fn hub_status(&self, card_id: &str) -> String {
        let v = sandbox::client::production_status(&self.hub.base_url(), &self.hub_state, card_id)
            .await
            .unwrap();
        v["operations"][0]["status"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Journal path of the station.
    pub fn journal_path(&self) -> PathBuf {
        self.config.resolve(&self.config.journal.path)
    }

    /// Folder the printed faces go to.
    pub fn out_dir(&self) -> &Path {
        &self.dir
    }
}

/// Waits until every listed job reaches one of `states` (bounded).
pub async fn wait_states(agent: &Agent, ops: &[String], states: &[JobState], within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let all = ops.iter().all(|op| {
            agent
                .station
                .journal
                .job(op)
                .ok()
                .flatten()
                .map(|j| states.contains(&j.state))
                .unwrap_or(false)
        });
        if all {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let seen: Vec<_> = ops
                .iter()
                .map(|op| {
                    agent
                        .station
                        .journal
                        .job(op)
                        .ok()
                        .flatten()
                        .map(|j| (j.state, j.reason))
                })
                .collect();
            panic!("jobs did not reach {states:?} in time: {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the hub reports `status` for every card (bounded).
pub async fn wait_hub(branch: &Branch, cards: &[String], status: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    for card in cards {
        loop {
            if branch.hub_status(card).await == status {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("hub status of {card} is not {status}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
