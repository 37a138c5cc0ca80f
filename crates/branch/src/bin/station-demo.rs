//! `station-demo` (run by `cargo xtask demo`): a whole branch on this machine.
//!
//! The sandbox hub, the simulated printer on a real pty, simulated chips inserted in
//! pcscd's vpcd reader while each card is at the chip station, and the agent with its
//! real printer driver and PC/SC encoder. Sample orders go through the hub's D1 Card
//! order endpoint over HTTP; progress is shown per card step; a table sums up. Exits
//! 0 only if every card reached CARD_PROD_DONE and the hub says SUCCESSFUL. `--hsm` keeps
//! the issuer keys in a SoftHSM2 token (the PKCS#11 store) instead of a key file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use station_agent::agent::{open_devices, Agent};
use station_agent::config::StationConfig;
use station_agent::job::state::JobState;
use station_agent::sandbox;
use station_branch::demo::{settled_hub_status, vpcd_port, Align, DemoFolder, Table, VpcdChips};

const STATION: &str = "BR-DEMO-01";

/// Issue sample cards end to end on simulated hardware.
#[derive(Parser)]
struct Args {
    /// Number of cards to order.
    #[arg(long, default_value_t = 5)]
    cards: usize,
    /// Output folder (configuration, journal, hub state, printed faces).
    #[arg(long, default_value = "demo-out")]
    out: PathBuf,
    /// Printer mechanical time scale (1 = real printer speed).
    #[arg(long, default_value_t = 0.05)]
    time_scale: f64,
    /// vpcd port of pcscd (default: STATION_HIL_VPCD_PORT, else 35963).
    #[arg(long)]
    vpcd_port: Option<u16>,
    /// Staff policy: leave the orders waiting in the staff console (127.0.0.1:8470)
    /// for someone to issue by clicking, until Ctrl-C.
    #[arg(long)]
    console: bool,
    /// Keep the issuer keys in a SoftHSM2 token (PKCS#11, non-extractable) instead of
    /// the development key file.
    #[arg(long)]
    hsm: bool,
}

const STEPS: [JobState; 10] = [
    JobState::Received,
    JobState::Validated,
    JobState::Feeding,
    JobState::AtChipStation,
    JobState::Personalizing,
    JobState::Verifying,
    JobState::Printing,
    JobState::EncodingStripe,
    JobState::Ejecting,
    JobState::Ejected,
];

fn bar(state: JobState) -> String {
    let done = STEPS.iter().position(|s| *s == state).map(|i| i + 1);
    match done {
        Some(n) => format!(
            "[{}{}]",
            "#".repeat(n * 2),
            "-".repeat((STEPS.len() - n) * 2)
        ),
        None => format!("[{}]", "!".repeat(STEPS.len() * 2)),
    }
}

/// The closing table: one row per order.
const RESULTS: Table = Table(&[
    ("#", 3, Align::Left),
    ("cardId", 38, Align::Left),
    ("EMV profile", 16, Align::Left),
    ("masked PAN", 19, Align::Left),
    ("station status", 20, Align::Left),
    ("hub status", 11, Align::Left),
    ("seconds", 7, Align::Right),
    ("APDUs", 5, Align::Right),
]);

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("demo: {msg}");
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.hsm {
        // SoftHSM2 reads it when it loads: set while this is the only thread.
        std::env::set_var(
            "SOFTHSM2_CONF",
            station_agent::devkit::softhsm2_conf(&args.out.join("station")),
        );
    }
    match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(demo(args)),
        Err(e) => fail(format!("cannot start the async runtime: {e}")),
    }
}

async fn demo(args: Args) -> ExitCode {
    station_agent::logging::init("warn", station_agent::config::LogFormat::Text);
    let folder = match DemoFolder::create(
        &args.out,
        STATION,
        if args.console { "staff" } else { "automatic" },
        args.hsm,
    ) {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let (files, hub_state) = (&folder.files, folder.hub_state.clone());
    if args.hsm {
        println!(
            "0. issuer keys in SoftHSM2 token '{}' ({}), non-extractable",
            station_agent::devkit::DEV_TOKEN,
            args.out.join("station/hsm").display()
        );
    }
    println!("1. sandbox hub (D1 Card order endpoint, station link)");
    let hub = match folder.start_hub().await {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    println!("   listening at {}", hub.base_url());

    println!("2. simulated Evolis printer on a pty, chips on pcscd's vpcd reader");
    let printer = folder.printer(args.time_scale);
    let pty = match printer.spawn_pty() {
        Ok(p) => p,
        Err(e) => return fail(format!("pty: {e}")),
    };
    let port = vpcd_port(args.vpcd_port);
    let chips = match VpcdChips::serve(&printer, &files.card_stock, port) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    println!("   printer at {}, vpcd port {port}", pty.path.display());

    println!("3. station agent (Evolis driver over the pty, PC/SC encoder)");
    let mut cfg = match StationConfig::load(&files.config) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    cfg.upstream.url = hub.base_url();
    if !args.console {
        cfg.console.listen = "127.0.0.1:0".into();
        cfg.admin.listen = "127.0.0.1:0".into();
    }
    cfg.devices.line[0].printer.device = pty.path.display().to_string();
    // The simulator's own profile (staging on), not the model it answers to `Rtp`.
    cfg.devices.line[0].printer.model = Some(station_branch::SIM_PRINTER_MODEL.into());
    let devices = match open_devices(&cfg).await {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let agent = match Agent::start(&cfg, devices).await {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    println!(
        "   staff console at http://{}/ (sign in as {} / {})",
        agent.console_addr,
        station_agent::devkit::DEV_STAFF_ID,
        station_agent::devkit::DEV_STAFF_PIN
    );
    let mut progress = agent.station.subscribe();
    // A supervisor records the blanks put in the feeder, as at the start of a branch day.
    for (product, batch) in [("DEV-VISA", "DEMO-LOT-V1"), ("DEV-MC", "DEMO-LOT-M1")] {
        if let Err(e) = station_agent::stock::load(
            &agent.station.journal,
            product,
            50,
            batch,
            station_agent::devkit::DEV_STAFF_ID,
        ) {
            return fail(e);
        }
    }
    println!("   50 blanks each of DEV-VISA and DEV-MC recorded as loaded");

    println!(
        "4. {} orders posted to the Card order endpoint as the issuer backend",
        args.cards
    );
    let posted =
        match sandbox::client::post_sample_orders(&hub.base_url(), &hub_state, STATION, args.cards)
            .await
        {
            Ok(p) => p,
            Err(e) => return fail(format!("posting orders: {e}")),
        };
    if args.console {
        console::wait_for_staff(&agent, &posted).await;
        agent.shutdown().await;
        chips.stop().await;
        hub.shutdown().await;
        drop(pty);
        println!("demo: stopped");
        return ExitCode::SUCCESS;
    }
    let started = Instant::now();
    let index: BTreeMap<String, usize> = posted
        .iter()
        .enumerate()
        .map(|(i, (_, op))| (op.clone(), i + 1))
        .collect();
    let mut last: BTreeMap<String, JobState> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60 + (args.cards as u64) * 20);
    println!();
    loop {
        let finished = posted.iter().all(|(_, op)| {
            agent
                .station
                .journal
                .job(op)
                .ok()
                .flatten()
                .map(|j| j.state.is_terminal() || j.state == JobState::Ejected)
                .unwrap_or(false)
        });
        if finished || Instant::now() > deadline {
            break;
        }
        if let Ok(Ok(p)) = tokio::time::timeout(Duration::from_millis(200), progress.recv()).await {
            if let Some(n) = index.get(&p.operation_id) {
                if last.get(&p.operation_id) != Some(&p.state) {
                    last.insert(p.operation_id.clone(), p.state);
                    println!(
                        "   card {n}/{}  {:<19} {} {}",
                        args.cards,
                        p.masked_pan.as_deref().unwrap_or("(decrypting)"),
                        bar(p.state),
                        p.state.label()
                    );
                    let _ = std::io::stdout().flush();
                }
            }
        }
    }
    let elapsed = started.elapsed();
    // Let the last reports reach the hub.
    let mut ok = true;
    println!();
    println!("{}", RESULTS.heading());
    for (i, (card, op)) in posted.iter().enumerate() {
        let job = agent.station.journal.job(op).ok().flatten();
        let d1 = job
            .as_ref()
            .and_then(|j| j.state.reported_status())
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| "NOT FINISHED".into());
        let hub_status = settled_hub_status(|| async {
            sandbox::client::production_status(&hub.base_url(), &hub_state, card)
                .await
                .ok()
                .and_then(|v| v["operations"][0]["status"].as_str().map(str::to_string))
                .unwrap_or_default()
        })
        .await;
        ok &= d1 == "CARD_PROD_DONE" && hub_status == "SUCCESSFUL";
        // The sample orders cycle through the sample products in order.
        let product = &sandbox::client::SAMPLE_PRODUCTS[i % sandbox::client::SAMPLE_PRODUCTS.len()];
        let masked_pan = job
            .as_ref()
            .and_then(|j| j.masked_pan.clone())
            .unwrap_or_default();
        let seconds = job
            .as_ref()
            .and_then(|j| j.seconds)
            .map(|s| format!("{s:.1}"))
            .unwrap_or_default();
        let apdus = job.as_ref().map(|j| j.apdu_count).unwrap_or(0);
        println!(
            "{}",
            RESULTS.row(&[
                &(i + 1),
                card,
                &product.profile,
                &masked_pan,
                &d1,
                &hub_status,
                &seconds,
                &apdus,
            ])
        );
        if let Some(r) = job.as_ref().and_then(|j| j.reason.clone()) {
            println!("    reason: {r}");
        }
    }
    println!();
    let printed: Vec<_> = printer
        .finished()
        .into_iter()
        .flat_map(|c| c.panels)
        .collect();
    println!("printed faces ({}):", printed.len());
    for p in &printed {
        println!("   {}", p.display());
    }
    println!(
        "\n{} cards in {:.1} s; journal {}; hub state {}",
        posted.len(),
        elapsed.as_secs_f64(),
        cfg.resolve(&cfg.journal.path).display(),
        hub_state.display()
    );
    counter_summary(&agent, &cfg, &files.config);
    agent.shutdown().await;
    chips.stop().await;
    hub.shutdown().await;
    drop(pty);
    if ok {
        println!("demo: every card CARD_PROD_DONE and SUCCESSFUL at the hub");
        ExitCode::SUCCESS
    } else {
        fail("some cards did not complete (see the table)")
    }
}

/// The counter's end of day for the demo: the reconciliation and the audit export, as
/// `station-agent report reconciliation` and `audit export` print them.
fn counter_summary(agent: &Agent, cfg: &StationConfig, config_path: &std::path::Path) {
    use station_agent::reconciliation::{day_bounds, reconcile, today};
    let day = today();
    let journal = &agent.station.journal;
    println!(
        "\nreconciliation of {day} (station-agent --config {} report reconciliation --day {day}):",
        config_path.display()
    );
    match reconcile(journal, day) {
        Ok(r) => print!("{}", r.to_csv()),
        Err(e) => println!("   journal unavailable: {e}"),
    }
    let (from, until) = day_bounds(day);
    match station_agent::audit::lines(journal, &from, &until) {
        Ok(lines) => println!(
            "audit export: {} JSON lines, one per action, masked PANs only (station-agent --config {} audit export --day {day}); journal {}",
            lines.len(),
            config_path.display(),
            cfg.resolve(&cfg.journal.path).display()
        ),
        Err(e) => println!("   journal unavailable: {e}"),
    }
}

/// `--console`: the orders wait for staff in the console until Ctrl-C.
mod console {
    use station_agent::agent::Agent;

    /// Prints where to click and each card's steps until Ctrl-C (or SIGTERM).
    pub async fn wait_for_staff(agent: &Agent, posted: &[(String, String)]) {
        println!();
        println!("   staff console: http://{}/", agent.console_addr);
        println!(
            "   sign in as {} with PIN {} (development account), then press Start on each card",
            station_agent::devkit::DEV_STAFF_ID,
            station_agent::devkit::DEV_STAFF_PIN
        );
        println!(
            "   health and metrics: http://{0}/ready  http://{0}/metrics",
            agent.admin_addr
        );
        println!(
            "   {} orders waiting; Ctrl-C stops everything",
            posted.len()
        );
        let mut progress = agent.station.subscribe();
        let stop = station_agent::service::shutdown_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                p = progress.recv() => match p {
                    Ok(p) => println!(
                        "   {:<19} {}",
                        p.masked_pan.as_deref().unwrap_or("(decrypting)"),
                        p.state.label()
                    ),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                },
            }
        }
        println!();
        println!("demo: stopping (the card in progress, if any, finishes first)");
    }
}
