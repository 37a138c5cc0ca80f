//! Command line: the service entry point and the engineers' commands.
//!
//! Exit codes: 0 done, 1 the operation failed (device, card, hub), 2 usage or
//! configuration error. Card data is only ever printed masked.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

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
    /// Run the station agent (the service).
    Run,
    /// Validate the configuration and the key files it names.
    CheckConfig,
    /// The embedded D1 sandbox hub.
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
    Jobs,
    /// Console staff accounts (who may sign in; PINs stored only as hashes).
    Staff {
        /// Staff actions.
        #[command(subcommand)]
        action: StaffAction,
    },
    /// Pismo counter requests (issue 12).
    Pismo {
        /// Pismo actions.
        #[command(subcommand)]
        action: crate::pismo::cli::PismoAction,
    },
    /// The Windows service: install, uninstall, and the entry the service manager starts.
    Service {
        /// Service actions.
        #[command(subcommand)]
        action: crate::service::ServiceCommand,
    },
}

/// `staff …` actions. The file defaults to the configuration's `console.staff`.
#[derive(Debug, Subcommand)]
pub enum StaffAction {
    /// Add an account or set a new PIN; the PIN is asked for (or read from standard
    /// input when it is not a terminal), never taken from the command line.
    Add {
        /// Sign-in id (recorded in the journal for each action).
        id: String,
        /// Name shown on the console.
        #[arg(long)]
        name: String,
        /// Staff file.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Remove an account.
    Remove {
        /// Sign-in id.
        id: String,
        /// Staff file.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// List the accounts (ids and names).
    List {
        /// Staff file.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

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
    /// The Pismo sandbox (issue 12).
    Pismo {
        /// Pismo sandbox actions.
        #[command(subcommand)]
        action: crate::sandbox::pismo::cli::PismoSandboxAction,
    },
}

/// `keys …` actions.
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Write a complete development key set and station configuration (never production).
    Init {
        /// Development keys (required: production keys never come from here).
        #[arg(long)]
        dev: PathBuf,
        /// persoStation id.
        #[arg(long, default_value = "BR-DEV-01")]
        station: String,
        /// Hub URL.
        #[arg(long, default_value = "http://127.0.0.1:8480")]
        upstream: String,
        /// Printer device.
        #[arg(long, default_value = "/dev/ttyUSB0")]
        printer: String,
        /// Encoder reader pattern.
        #[arg(long, default_value = "Virtual PCD 00 00")]
        reader: String,
        /// Start policy: staff or automatic.
        #[arg(long, default_value = "staff")]
        policy: String,
        /// Sandbox hub state folder to register the station in.
        #[arg(long)]
        hub_state: Option<PathBuf>,
    },
}

/// `card …` actions.
#[derive(Debug, Subcommand)]
pub enum CardAction {
    /// Read the card as a terminal would and print its EMV data (PAN masked).
    Read {
        /// Reader name pattern.
        #[arg(long)]
        reader: String,
        /// Application AID (hex); Visa then Mastercard when absent.
        #[arg(long)]
        aid: Option<String>,
    },
    /// Personalize the card from a DGI set with a card product's transport keys.
    Perso {
        /// Reader name pattern.
        #[arg(long)]
        reader: String,
        /// DGI set JSON `{aid, dgis:[{dgi, data, encryption}]}`.
        #[arg(long)]
        dgis: PathBuf,
        /// Card product whose transport keys (from the key store) open the card.
        #[arg(long)]
        transport_key: String,
    },
    /// Issue a card from an order on the encoder only (pre-printed stock).
    Issue {
        /// Order file as the station receives it (D1 cardRequestInstant JSON with JWE).
        #[arg(long)]
        order: PathBuf,
        /// Reader name pattern.
        #[arg(long)]
        reader: String,
    },
}

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
            println!("{}: configuration OK", path.display());
            Ok(())
        }
        Command::Run => {
            let cfg = load_config(explicit)?;
            crate::logging::init(&cfg.logging.level, cfg.logging.format);
            crate::agent::run(cfg)
                .await
                .map_err(|e| runtime(format!("[{}] {e}", e.code())))
        }
        Command::Sandbox {
            listen,
            state,
            action,
        } => sandbox(listen, state, action).await,
        Command::Keys { action } => keys(action),
        Command::Card { action } => {
            crate::logging::init("warn", crate::config::LogFormat::Text);
            card(explicit, action).await
        }
        Command::Printer { action } => printer(action).await,
        Command::Preview { order, out } => preview(explicit, &order, &out),
        Command::Jobs => jobs(explicit),
        Command::Staff { action } => staff(explicit, action),
        Command::Pismo { action } => {
            let cfg = load_config(explicit)?;
            if cfg.pismo.is_none() {
                return Err(usage("the configuration has no [pismo] section"));
            }
            crate::logging::init("warn", crate::config::LogFormat::Text);
            crate::pismo::cli::run(&cfg, action)
                .await
                .map_err(|f| match f {
                    crate::pismo::cli::CliFailure::Usage(m) => usage(m),
                    crate::pismo::cli::CliFailure::Runtime(m) => runtime(m),
                })
        }
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

fn staff_file(explicit: Option<&Path>, file: Option<PathBuf>) -> Result<PathBuf, Failure> {
    if let Some(f) = file {
        return Ok(f);
    }
    let cfg = load_config(explicit)?;
    cfg.console
        .staff
        .as_ref()
        .map(|p| cfg.resolve(p))
        .ok_or_else(|| usage("no --file and no console.staff in the configuration"))
}

/// The new PIN: asked twice on a terminal, else one line of standard input.
fn read_new_pin() -> Result<zeroize::Zeroizing<String>, Failure> {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        let pin =
            zeroize::Zeroizing::new(rpassword::prompt_password("New PIN: ").map_err(runtime)?);
        let again =
            zeroize::Zeroizing::new(rpassword::prompt_password("PIN again: ").map_err(runtime)?);
        if pin != again {
            return Err(usage("the two PINs differ; nothing was changed"));
        }
        return Ok(pin);
    }
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(runtime)?;
    Ok(zeroize::Zeroizing::new(
        line.trim_end_matches(['\r', '\n']).to_string(),
    ))
}

fn staff(explicit: Option<&Path>, action: StaffAction) -> Outcome {
    use crate::console::staff::StaffFile;
    match action {
        StaffAction::Add { id, name, file } => {
            let path = staff_file(explicit, file)?;
            let mut f = if path.exists() {
                StaffFile::load(&path).map_err(runtime)?
            } else {
                StaffFile::default()
            };
            let pin = read_new_pin()?;
            f.set(&id, &name, &pin).map_err(usage)?;
            f.save(&path).map_err(runtime)?;
            println!("staff '{id}' can sign in ({})", path.display());
            Ok(())
        }
        StaffAction::Remove { id, file } => {
            let path = staff_file(explicit, file)?;
            let mut f = StaffFile::load(&path).map_err(runtime)?;
            if !f.remove(&id) {
                return Err(usage(format!("no staff '{id}' in {}", path.display())));
            }
            f.save(&path).map_err(runtime)?;
            println!("staff '{id}' removed; a running agent ends their sessions at once");
            Ok(())
        }
        StaffAction::List { file } => {
            let path = staff_file(explicit, file)?;
            for a in StaffFile::load(&path).map_err(runtime)?.staff {
                println!("{:<32} {}", a.id, a.name);
            }
            Ok(())
        }
    }
}

async fn sandbox(listen: SocketAddr, state: PathBuf, action: Option<SandboxAction>) -> Outcome {
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

fn keys(action: KeysAction) -> Outcome {
    match action {
        KeysAction::Init {
            dev,
            station,
            upstream,
            printer,
            reader,
            policy,
            hub_state,
        } => {
            if !["staff", "automatic"].contains(&policy.as_str()) {
                return Err(usage(format!(
                    "--policy '{policy}' is not staff or automatic"
                )));
            }
            let files = crate::devkit::init_dev(
                &dev,
                &crate::devkit::DevOptions {
                    station,
                    upstream,
                    printer,
                    reader,
                    policy,
                    hub_state: hub_state.clone(),
                },
            )
            .map_err(runtime)?;
            println!("development keys and configuration written (NOT for production):");
            println!("  configuration  {}", files.config.display());
            println!("  card stock     {}", files.card_stock.display());
            println!(
                "  console staff  {} (sign in as '{}' with PIN {})",
                files.staff.display(),
                crate::devkit::DEV_STAFF_ID,
                crate::devkit::DEV_STAFF_PIN
            );
            if let Some(h) = hub_state {
                println!("  registered at the sandbox hub state {}", h.display());
            }
            Ok(())
        }
    }
}

async fn encoder(pattern: &str) -> Result<station_pcsc::PcscEncoder, Failure> {
    let cfg =
        station_pcsc::ReaderConfig::new(pattern).map_err(|e| usage(format!("--reader: {e}")))?;
    let mut enc = station_pcsc::PcscEncoder::open(cfg)
        .await
        .map_err(|e| runtime(format!("encoder '{pattern}': {e}")))?;
    enc.wait_for_card(Duration::from_secs(15))
        .await
        .map_err(|e| runtime(format!("encoder '{pattern}': {e}")))?;
    Ok(enc)
}

async fn card(explicit: Option<&Path>, action: CardAction) -> Outcome {
    use crate::emv::terminal::{read_card, TerminalParams};
    match action {
        CardAction::Read { reader, aid } => {
            let aids: Vec<Vec<u8>> = match aid {
                Some(a) => vec![hex::decode(&a).map_err(|_| usage("--aid is not hex"))?],
                None => vec![
                    hex::decode("A0000000031010").expect("hex"),
                    hex::decode("A0000000041010").expect("hex"),
                ],
            };
            let mut enc = encoder(&reader).await?;
            let mut last = String::new();
            for aid in aids {
                match read_card(&mut enc, &aid, &TerminalParams::default()).await {
                    Ok(r) => {
                        print_readout(&r);
                        return Ok(());
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            Err(runtime(format!("reading the card: {last}")))
        }
        CardAction::Perso {
            reader,
            dgis,
            transport_key,
        } => {
            let cfg = load_config(explicit)?;
            let ks = crate::emv::keystore::SoftwareKeyStore::load(&cfg.resolve(&cfg.keys.keystore))
                .map_err(|e| usage(format!("keys.keystore: {e}")))?;
            let t = crate::emv::keystore::KeyStore::transport_keys(&ks, &transport_key)
                .map_err(|e| usage(format!("--transport-key {transport_key}: {e}")))?;
            let text = std::fs::read_to_string(&dgis)
                .map_err(|e| usage(format!("{}: {e}", dgis.display())))?;
            let set = crate::order::card::ChipData::from_json_str(&text)
                .map_err(|e| usage(format!("{}: {}", dgis.display(), e.error)))?;
            let mut enc = encoder(&reader).await?;
            let report = crate::emv::cps::personalize(
                &mut enc,
                &crate::emv::cps::PersoTarget {
                    aid: set.aid.clone(),
                    via_isd: t.isd.clone(),
                },
                &t.key_source(),
                crate::emv::secure_channel::ScpParams {
                    protocol: t.protocol,
                    kvn: t.kvn,
                    level: crate::emv::secure_channel::SecurityLevel::CDEC_CMAC,
                },
                &set.dgis,
                rand::random(),
            )
            .await
            .map_err(|e| runtime(format!("[{}] {e}", e.code())))?;
            println!(
                "personalized: {} DGIs in {} STORE DATA, {} APDUs, {:.0} ms",
                report.dgi_count,
                report.store_data_count,
                report.apdu_count,
                report.duration.as_secs_f64() * 1000.0
            );
            Ok(())
        }
        CardAction::Issue { order, reader } => {
            let cfg = load_config(explicit)?;
            let production = crate::agent::production_from_config(&cfg).map_err(usage)?;
            let text = std::fs::read_to_string(&order)
                .map_err(|e| usage(format!("{}: {e}", order.display())))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| usage(format!("{}: {e}", order.display())))?;
            let today = time::OffsetDateTime::now_utc().date();
            let job = production
                .prepare(&json, today)
                .map_err(|r| runtime(format!("order refused: {r}")))?;
            println!("order accepted for {}", job.masked_pan);
            let mut enc = encoder(&reader).await?;
            let apdus = production
                .personalize(&mut enc, &job)
                .await
                .map_err(|e| runtime(format!("CARD_PROD_EXCEPTION: [{}] {e}", e.code())))?;
            production
                .verify(&mut enc, &job)
                .await
                .map_err(|r| runtime(format!("{r}")))?;
            println!(
                "card {} personalized ({apdus} APDUs) and verified: ARQC good",
                job.masked_pan
            );
            Ok(())
        }
    }
}

fn print_readout(r: &crate::emv::terminal::CardReadout) {
    use crate::emv::tlv;
    let tag = |t: u32| r.record_tag(t).map(|v| v.to_vec());
    let pan = tag(0x5A)
        .map(|v| {
            let digits: String = hex::encode_upper(v).trim_end_matches('F').to_string();
            crate::logging::mask_digits(&digits)
        })
        .unwrap_or_else(|| "(none)".into());
    let label = tlv::find(&r.fci, 0x50)
        .ok()
        .flatten()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default();
    println!("AID            {}", hex::encode_upper(&r.aid));
    println!("label          {label}");
    println!("AIP            {}", hex::encode_upper(r.aip));
    println!("AFL            {}", hex::encode_upper(&r.afl));
    println!("PAN            {pan}");
    println!(
        "expiry (5F24)  {}",
        tag(0x5F24).map(hex::encode_upper).unwrap_or_default()
    );
    println!(
        "PSN (5F34)     {}",
        tag(0x5F34).map(hex::encode_upper).unwrap_or_default()
    );
    println!(
        "name (5F20)    {}",
        tag(0x5F20)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default()
    );
    if let Some(t2) = tag(0x57) {
        let s = hex::encode_upper(t2);
        let masked = match s.split_once('D') {
            Some((p, rest)) => format!(
                "{}D{}",
                crate::logging::mask_digits(p),
                rest.get(..7).unwrap_or("")
            ),
            None => "(malformed)".into(),
        };
        println!("track 2 eq.    {masked}…");
    }
    println!(
        "PIN tries      {}",
        r.pin_try_counter
            .map(|c| c.to_string())
            .unwrap_or("?".into())
    );
    let g = &r.generate_ac;
    let kind = match g.cid & 0xC0 {
        0x80 => "ARQC",
        0x40 => "TC",
        _ => "AAC",
    };
    println!("ATC            {}", hex::encode_upper(g.atc));
    println!("cryptogram     {kind} {}", hex::encode_upper(g.ac));
    println!("IAD (9F10)     {}", hex::encode_upper(&g.iad));
}

async fn printer(action: PrinterAction) -> Outcome {
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

fn preview(explicit: Option<&Path>, order: &Path, out: &Path) -> Outcome {
    use crate::plastic::face::{render_front, write_preview_png, FaceInput, Layout};
    let text =
        std::fs::read_to_string(order).map_err(|e| usage(format!("{}: {e}", order.display())))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| usage(format!("{}: {e}", order.display())))?;
    let design = &json["cardDesign"];
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut input = FaceInput {
        name: "CARDHOLDER/NAME".into(),
        pan: None,
        exp_yymm: String::new(),
        custom_lines: strings(&design["customLines"]),
        member_id: design["memberId"].as_str().map(str::to_string),
        artwork_id: design["artworkId"].as_str().map(str::to_string),
    };
    let mut layout = Layout::standard();
    let mut artwork = None;
    // With a station configuration, the real card data is decrypted for the preview.
    if let Ok(path) = config::locate(explicit) {
        if let Ok(cfg) = StationConfig::load(&path) {
            if let Ok(p) = crate::agent::production_from_config(&cfg) {
                if let Some(jwe) = json["encryptedData"].as_str() {
                    let today = time::OffsetDateTime::now_utc().date();
                    if let Ok(card) = p.keyring.decrypt_card_data(jwe, today) {
                        input.name = card.encoded_name.clone().unwrap_or_default();
                        input.exp_yymm = card.exp.to_yymm();
                        input.pan = Some(zeroize::Zeroizing::new(card.pan.digits().to_string()));
                    }
                }
                layout = p.layout.clone();
                artwork = p.artwork_dir.clone();
            }
        }
    }
    let img = render_front(&input, &layout, artwork.as_deref());
    write_preview_png(&img, out).map_err(runtime)?;
    println!("card face written to {}", out.display());
    Ok(())
}

fn jobs(explicit: Option<&Path>) -> Outcome {
    let cfg = load_config(explicit)?;
    let journal =
        crate::journal::Journal::open(&cfg.resolve(&cfg.journal.path)).map_err(runtime)?;
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
