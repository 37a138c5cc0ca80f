//! `pismo-demo` (run by `cargo xtask demo --pismo`): the whole Pismo chain on this machine.
//!
//! Staff at the counter ask Pismo (the sandbox) for cards for N customers; Pismo makes
//! each card, the station adds it to the next embossing and starts the run; the run
//! reaches the station through the hub as D1 INSTANT orders; the simulated printer
//! jams on one card on purpose, staff choose "Make again", the card is resent for
//! embossing and made again. Exits 0 only if every card ends CARD_PROD_DONE and the
//! hub says SUCCESSFUL. Only masked PANs are printed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use station_agent::agent::{open_devices, Agent};
use station_agent::config::StationConfig;
use station_agent::job::state::JobState;
use station_agent::pismo::{latest_job, may_make_again, PismoDesk, PismoSection, RequestStep};
use station_agent::sandbox::pismo::{dev_client, EmbossingGroupEntry, PismoSandboxFile};
use station_agent::sandbox::{SandboxFile, StateFiles};
use station_branch::demo::{settled_hub_status, vpcd_port, Align, DemoFolder, Table, VpcdChips};
use station_sim::printer::{Fault, Step};

const STATION: &str = "BR-DEMO-01";
const GROUP: &str = "BR-DEMO-01-EMB";
const CONFIG_ID: &str = "5d0c3a52-2f1e-4d7c-9a43-0b8d0c0e5a11";
const CUSTOMERS: &[(&str, &str)] = &[
    ("JANE DOE", "1001"),
    ("KOFI MENSAH", "1002"),
    ("MEI CHEN", "1003"),
    ("LUCAS SILVA", "1004"),
    ("SOFIA NOWAK", "1005"),
    ("OMAR HASSAN", "1006"),
    ("AMELIE MARTIN", "1007"),
    ("JOHN SMITH", "1008"),
];

/// Issue cards for Pismo customers end to end on simulated hardware.
#[derive(Parser)]
struct Args {
    /// Number of customers asking for a card (at most 8).
    #[arg(long, default_value_t = 4)]
    cards: usize,
    /// Output folder (configuration, journal, hub state, printed faces).
    #[arg(long, default_value = "demo-out-pismo")]
    out: PathBuf,
    /// Printer mechanical time scale (1 = real printer speed).
    #[arg(long, default_value_t = 0.05)]
    time_scale: f64,
    /// vpcd port of pcscd (default: STATION_HIL_VPCD_PORT, else 35963).
    #[arg(long)]
    vpcd_port: Option<u16>,
}

/// The closing table: one row per counter request.
const RESULTS: Table = Table(&[
    ("#", 3, Align::Left),
    ("Pismo id", 8, Align::Left),
    ("printed name", 14, Align::Left),
    ("masked PAN", 19, Align::Left),
    ("station status", 16, Align::Left),
    ("hub status", 11, Align::Left),
    ("resends", 7, Align::Right),
    ("request", 12, Align::Left),
]);

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("pismo demo: {msg}");
    ExitCode::from(1)
}

/// Register the demo station's embossing group in the hub's `sandbox.toml`.
fn register_group(hub_state: &std::path::Path) -> Result<(), String> {
    let files = StateFiles::in_dir(hub_state);
    let mut file: SandboxFile = files.load_config().map_err(|e| e.to_string())?;
    file.pismo = Some(PismoSandboxFile {
        ready_millis: 400,
        groups: vec![EmbossingGroupEntry {
            name: GROUP.into(),
            config_id: CONFIG_ID.into(),
            perso_station: STATION.into(),
            schedule_seconds: 0,
        }],
        ..PismoSandboxFile::default()
    });
    std::fs::write(&files.config, file.to_toml().map_err(|e| e.to_string())?)
        .map_err(|e| format!("{}: {e}", files.config.display()))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let n = args.cards.clamp(2, CUSTOMERS.len());
    station_agent::logging::init("warn", station_agent::config::LogFormat::Text);
    let folder = match DemoFolder::create(&args.out, STATION, "automatic", false) {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let (files, hub_state) = (&folder.files, folder.hub_state.clone());
    if let Err(e) = register_group(&hub_state) {
        return fail(e);
    }
    println!("1. sandbox hub with the Pismo sandbox (group {GROUP} → station {STATION})");
    let hub = match folder.start_hub().await {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    println!("   listening at {}", hub.base_url());

    println!(
        "2. simulated Evolis printer on a pty (a jam armed at the chip station), chips on vpcd"
    );
    let printer = folder.printer(args.time_scale);
    // One card is spoiled on purpose: the first one to reach the chip station jams, and
    // staff clear the printer at once (a standing fault would spoil the next cards too).
    printer.arm_fault(Step::Park, Fault::Jam);
    let watcher = printer.clone();
    tokio::spawn(async move {
        while watcher.handle("Rse") == "OK" {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        watcher.clear_fault();
    });
    let pty = match printer.spawn_pty() {
        Ok(p) => p,
        Err(e) => return fail(format!("pty: {e}")),
    };
    let chips = match VpcdChips::serve(&printer, &files.card_stock, vpcd_port(args.vpcd_port)) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };

    println!("3. station agent with a [pismo] section (start embossing allowed: sandbox)");
    let mut cfg = match StationConfig::load(&files.config) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    cfg.upstream.url = hub.base_url();
    cfg.console.listen = "127.0.0.1:0".into();
    cfg.devices.line[0].printer.device = pty.path.display().to_string();
    // The simulator's own profile (staging on), not the model it answers to `Rtp`.
    cfg.devices.line[0].printer.model = Some(station_branch::SIM_PRINTER_MODEL.into());
    let dev = match dev_client(&StateFiles::in_dir(&hub_state)) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let secret = PathBuf::from("keys/pismo-client.secret");
    if let Err(e) =
        station_agent::sandbox::keys::write_private(&cfg.resolve(&secret), &dev.client_secret)
    {
        return fail(e);
    }
    cfg.pismo = Some(PismoSection {
        api_url: hub.base_url(),
        pci_url: hub.base_url(),
        client_id: dev.client_id.clone(),
        client_secret_file: secret,
        issuer_id: station_agent::sandbox::pismo::PISMO_ISSUER_ID.into(),
        embossing_group: GROUP.into(),
        config_id: Some(CONFIG_ID.into()),
        start_embossing: true,
        ingress_deadline_seconds: 30,
        products: vec![],
        run_deadline_minutes: 30,
    });
    let devices = match open_devices(&cfg).await {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let agent = match Agent::start(&cfg, devices).await {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let Some(desk): Option<Arc<PismoDesk>> = agent.pismo.clone() else {
        return fail("the agent started without its Pismo desk");
    };
    println!(
        "   staff console at http://{}/ (sign in as {} / {})",
        agent.console_addr,
        station_agent::devkit::DEV_STAFF_ID,
        station_agent::devkit::DEV_STAFF_PIN
    );

    println!("4. {n} customers ask for a card at the counter");
    let mut requests = Vec::new();
    for (name, customer) in &CUSTOMERS[..n] {
        match desk.request(customer, name, None, "dev").await {
            Ok(r) => {
                println!("   customer {customer} {name:<14} request {}", r.request_id);
                desk.spawn_drive(&r.request_id);
                requests.push(r.request_id);
            }
            Err(e) => return fail(format!("request for customer {customer}: {e}")),
        }
    }

    println!("5. waiting: Pismo → embossing run → hub → station (one card jams on purpose)");
    let started = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(90 + n as u64 * 20);
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut made_again = 0;
    loop {
        let jobs = agent
            .station
            .journal_thread()
            .call(|j| j.all_jobs(500).unwrap_or_default())
            .await;
        let mut all_done = true;
        for id in &requests {
            let Ok(Some(r)) = desk.store().get(id).await else {
                all_done = false;
                continue;
            };
            let job = latest_job(&jobs, &r, desk.issuer_id());
            let status = match job {
                Some(j) => format!("order {} — {}", &j.operation_id[..8], j.state.label()),
                None => r.step.label().to_string(),
            };
            let key = (
                id.clone(),
                r.card_id.map(|c| c.to_string()).unwrap_or_default(),
            );
            if seen.get(&key) != Some(&status) {
                println!(
                    "   Pismo card {:<7} {:<19} {status}",
                    r.card_id
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "-".into()),
                    job.and_then(|j| j.masked_pan.clone()).unwrap_or_default()
                );
                seen.insert(key, status);
            }
            let done = job
                .is_some_and(|j| matches!(j.state, JobState::Ejected | JobState::HandedOver))
                && matches!(r.step, RequestStep::Queued | RequestStep::RunStarted);
            all_done &= done;
            if may_make_again(&r, job) {
                // Staff choose "Make again" on the spoiled card.
                println!(
                    "   staff: card {} spoiled ({}); Make again",
                    r.card_id.unwrap_or_default(),
                    job.and_then(|j| j.reason.clone()).unwrap_or_default()
                );
                // The same entry the console's button uses.
                if let Err(e) = desk
                    .make_again_spoiled(agent.station.journal_thread(), id, "dev")
                    .await
                {
                    return fail(format!("make again: {e}"));
                }
                made_again += 1;
            }
        }
        if all_done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = started.elapsed();

    println!();
    println!("{}", RESULTS.heading());
    let jobs = agent
        .station
        .journal_thread()
        .call(|j| j.all_jobs(500).unwrap_or_default())
        .await;
    let mut ok = made_again >= 1;
    for (i, id) in requests.iter().enumerate() {
        let r = match desk.store().get(id).await {
            Ok(Some(r)) => r,
            _ => {
                ok = false;
                continue;
            }
        };
        let job = latest_job(&jobs, &r, desk.issuer_id());
        let d1 = job
            .and_then(|j| j.state.reported_status())
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| "NOT FINISHED".into());
        let hub_status = match r.card_id {
            Some(card) => {
                settled_hub_status(|| async {
                    hub.hub()
                        .store
                        .operations_for_card(
                            station_agent::sandbox::pismo::PISMO_ISSUER_ID,
                            &card.to_string(),
                        )
                        .ok()
                        .and_then(|ops| ops.last().map(|o| o.status.clone()))
                        .unwrap_or_default()
                })
                .await
            }
            None => String::new(),
        };
        ok &= d1 == "CARD_PROD_DONE" && hub_status == "SUCCESSFUL";
        println!(
            "{}",
            RESULTS.row(&[
                &(i + 1),
                &r.card_id.map(|c| c.to_string()).unwrap_or_default(),
                &r.printed_name,
                &job.and_then(|j| j.masked_pan.clone()).unwrap_or_default(),
                &d1,
                &hub_status,
                &r.resend_count,
                &r.step.as_str(),
            ])
        );
    }
    let pismo_cards = hub
        .pismo()
        .store
        .call(|s| s.cards().map(|c| c.len()))
        .await
        .unwrap_or(0);
    ok &= pismo_cards == requests.len();
    println!(
        "\n{} requests, {pismo_cards} cards at Pismo, {made_again} made again, in {:.1} s; journal {}; hub state {}",
        requests.len(),
        elapsed.as_secs_f64(),
        cfg.resolve(&cfg.journal.path).display(),
        hub_state.display()
    );
    agent.shutdown().await;
    chips.stop().await;
    hub.shutdown().await;
    drop(pty);
    if ok {
        println!("pismo demo: every card CARD_PROD_DONE and SUCCESSFUL at the hub, the spoiled one made again");
        ExitCode::SUCCESS
    } else {
        fail("some cards did not complete (see the table)")
    }
}
