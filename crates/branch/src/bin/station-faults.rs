//! `station-faults` (run by `cargo xtask faults`): the fault campaign of issue 13.
//!
//! Every injection we can make against a whole simulated branch (sandbox hub,
//! simulated Evolis printer and chips, the real agent): the agent process killed with
//! SIGKILL at each pipeline step, printer faults at each mechanical step, a reject box
//! that does not take the card, chips pulled or mute, the printer's serial link cut,
//! the hub down or answering 500, garbage or slowly, the journal refusing writes as a
//! full disk does, and a corrupt journal. Staff are played by the campaign: they clear
//! printer faults, take stuck cards out, and spoil cards in doubt, as the console asks.
//!
//! Each scenario is then accounted from the hub's records and the journal:
//! - lost: an order the hub accepted whose last status is not final;
//! - issued twice: a card personalized more than once (journal entries into
//!   `personalizing`, or more than one `CARD_PROD_DONE` at the hub);
//! - surfaced in doubt: a card the agent put in doubt after a restart.
//!
//! The run ends with `faults: N scenarios, L lost, T issued twice, K surfaced in doubt`
//! then `P passed, F failed`, and exits non-zero on any failure.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use station_agent::agent::Agent;
use station_agent::job::pipeline::StaffAction;
use station_agent::job::state::JobState;
use station_agent::journal::{Journal, Resolution};
use station_agent::sandbox::{self, SandboxConfig};
use station_branch::{branch, card_stock, sim_devices, station_config, Branch};
use station_sim::card::Faults;
use station_sim::printer::{Fault, SimPrinter, SimPrinterConfig, Step, Timing};
use station_sim::station::track_chips;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a scenario may take to bring every order to a final status.
const SETTLE: Duration = Duration::from_secs(120);

/// Statuses after which the hub expects nothing more for an operation.
const FINAL: [&str; 4] = [
    "CARD_PROD_DONE",
    "CARD_PROD_EXCEPTION",
    "DATA_EXCEPTION",
    "CARD_PROD_CANCELED",
];

/// The figures of one scenario.
#[derive(Debug, Default)]
struct Tally {
    orders: usize,
    lost: usize,
    twice: usize,
    in_doubt: usize,
    /// Final hub status per order, in order.
    finals: Vec<String>,
    /// The state each card in doubt was caught in (where the kill or failure landed).
    doubt_from: Vec<String>,
}

/// Why a scenario failed, with its figures when its orders could still be counted.
#[derive(Debug)]
struct Failed {
    why: String,
    tally: Option<Tally>,
}

impl Failed {
    /// A failure with the scenario's figures.
    fn with(why: String, tally: Tally) -> Self {
        Failed {
            why,
            tally: Some(tally),
        }
    }
}

impl From<String> for Failed {
    fn from(why: String) -> Self {
        Failed { why, tally: None }
    }
}

impl From<&str> for Failed {
    fn from(why: &str) -> Self {
        why.to_string().into()
    }
}

/// A scenario's outcome.
type Outcome = Result<Tally, Failed>;

/// Counts lost, twice-issued and in-doubt cards of `orders` from the hub and the journal.
///
/// A hub record or a journal that cannot be read fails the scenario: nothing read is
/// not the same as nothing lost or issued twice.
fn account(b: &Branch, journal: &Path, orders: &[(String, String)]) -> Result<Tally, Failed> {
    let store = &b.hub.hub().store;
    let hub_statuses = |op: &str| {
        store
            .events(op)
            .map(|events| events.into_iter().map(|e| e.status).collect())
            .map_err(|e| format!("the hub's record of {op} cannot be read: {e}"))
    };
    tally(hub_statuses, journal, orders).map_err(Failed::from)
}

/// The figures of `orders` from each one's hub statuses (oldest first) and the journal
/// at `journal`, which must exist and open: [`Journal::open`] would make an empty one.
fn tally(
    hub_statuses: impl Fn(&str) -> Result<Vec<String>, String>,
    journal: &Path,
    orders: &[(String, String)],
) -> Result<Tally, String> {
    let unreadable = |e: &dyn std::fmt::Display| {
        format!(
            "the journal {} cannot be read to account for the orders: {e}",
            journal.display()
        )
    };
    if !journal.is_file() {
        return Err(unreadable(&"no such file"));
    }
    let j = Journal::open(journal).map_err(|e| unreadable(&e))?;
    let mut t = Tally {
        orders: orders.len(),
        ..Tally::default()
    };
    for (_card, op) in orders {
        let statuses = hub_statuses(op)?;
        let last = statuses.last().cloned().unwrap_or_default();
        if !FINAL.contains(&last.as_str()) {
            t.lost += 1;
        }
        let done = statuses.iter().filter(|s| *s == "CARD_PROD_DONE").count();
        let history = j.history(op).map_err(|e| unreadable(&e))?;
        let personalized = history.iter().filter(|h| h.to == "personalizing").count();
        if done > 1 || personalized > 1 {
            t.twice += 1;
        }
        if let Some(h) = history.iter().find(|h| h.to == "in_doubt") {
            t.in_doubt += 1;
            t.doubt_from.push(h.from.clone().unwrap_or_default());
        }
        t.finals
            .push(if last.is_empty() { "-".into() } else { last });
    }
    Ok(t)
}

/// Whether every order's last hub status is final.
fn all_final(b: &Branch, orders: &[(String, String)]) -> bool {
    orders.iter().all(|(_, op)| {
        b.hub
            .hub()
            .store
            .events(op)
            .ok()
            .and_then(|e| e.last().map(|e| FINAL.contains(&e.status.as_str())))
            .unwrap_or(false)
    })
}

/// Plays branch staff: clears printer faults, takes out cards the reject box did not
/// take, spoils cards in doubt (the card is looked at and put in the spoiled box).
fn staff_sweep(agent: &Agent, printer: &SimPrinter) {
    let j = &agent.station.journal;
    for job in j
        .jobs(&[JobState::InDoubt, JobState::AwaitingRemoval])
        .unwrap_or_default()
    {
        let _ = printer.handle("Srs");
        printer.clear_fault();
        let action = match job.state {
            JobState::InDoubt => StaffAction::Resolve(Resolution::Spoil),
            _ => StaffAction::CardRemoved,
        };
        let _ = agent.station.act(&job.operation_id, action, "faults-staff");
    }
    if agent.station.printer_problem().is_some() {
        printer.clear_fault();
    }
}

/// Waits until every order is final at the hub, playing staff meanwhile.
async fn settle(
    b: &Branch,
    agent: &Agent,
    orders: &[(String, String)],
    printer: &SimPrinter,
) -> Result<(), Failed> {
    let deadline = Instant::now() + SETTLE;
    while !all_final(b, orders) {
        if Instant::now() > deadline {
            let seen: Vec<String> = orders
                .iter()
                .map(|(_, op)| match agent.station.journal.job(op) {
                    Ok(Some(j)) => format!("{} ({})", j.state, j.reason.unwrap_or_default()),
                    _ => "not journaled".into(),
                })
                .collect();
            let why = format!("orders not final in time: {seen:?}");
            return Err(match account(b, &b.journal_path(), orders) {
                Ok(t) => Failed::with(why, t),
                Err(e) => format!("{why}; and {}", e.why).into(),
            });
        }
        staff_sweep(agent, printer);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// A fresh branch for one scenario (mechanical steps instant).
async fn fresh(policy: &str) -> (tempfile::TempDir, Branch) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let b = branch(dir.path(), policy, Timing::default()).await;
    (dir, b)
}

/// One card hits `fault` at `step`; staff fix the printer; the next card must be made.
async fn printer_fault(step: Step, fault: Fault) -> Outcome {
    let (_dir, b) = fresh("automatic").await;
    b.printer.arm_fault(step, fault);
    let agent = b.agent().await;
    let mut orders = b.order(1).await;
    settle(&b, &agent, &orders, &b.printer).await?;
    // Staff read the console's message and fix the printer.
    b.printer.clear_fault();
    orders.extend(b.order(1).await);
    settle(&b, &agent, &orders, &b.printer).await?;
    let t = account(&b, &b.journal_path(), &orders)?;
    if t.finals[1] != "CARD_PROD_DONE" {
        return Err(Failed::with(
            format!("the card after the fault ended {}", t.finals[1]),
            t,
        ));
    }
    if b.printer.position() != station_sim::printer::Position::Empty {
        return Err("a card was left in the printer".into());
    }
    agent.shutdown().await;
    Ok(t)
}

/// The chip misbehaves with `faults`; the card is spoiled and the next one made.
async fn chip_fault(faults: Faults) -> Outcome {
    let (_dir, b) = fresh("automatic").await;
    b.chips.queue_faults(faults);
    let agent = b.agent().await;
    let mut orders = b.order(1).await;
    settle(&b, &agent, &orders, &b.printer).await?;
    orders.extend(b.order(1).await);
    settle(&b, &agent, &orders, &b.printer).await?;
    let t = account(&b, &b.journal_path(), &orders)?;
    if t.finals != ["CARD_PROD_EXCEPTION", "CARD_PROD_DONE"] {
        return Err(Failed::with(format!("finals {:?}", t.finals), t));
    }
    agent.shutdown().await;
    Ok(t)
}

/// A jam, and the reject box does not take the card: the line waits for staff.
async fn reject_fails() -> Outcome {
    let (_dir, b) = fresh("automatic").await;
    b.printer.arm_fault(Step::Park, Fault::Jam);
    b.printer.arm_fault(Step::Reject, Fault::Jam);
    let agent = b.agent().await;
    let mut orders = b.order(2).await;
    let deadline = Instant::now() + SETTLE;
    loop {
        let stuck = agent
            .station
            .journal
            .jobs(&[JobState::AwaitingRemoval])
            .unwrap_or_default();
        if !stuck.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err("the stuck card never awaited removal".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    if b.printer.finished().iter().any(|c| !c.rejected) {
        return Err("a card was fed while a spoiled one was stuck inside".into());
    }
    settle(&b, &agent, &orders, &b.printer).await?;
    b.printer.clear_fault();
    orders.extend(b.order(1).await);
    settle(&b, &agent, &orders, &b.printer).await?;
    let t = account(&b, &b.journal_path(), &orders)?;
    if t.finals.last().map(String::as_str) != Some("CARD_PROD_DONE") {
        return Err(Failed::with(format!("finals {:?}", t.finals), t));
    }
    agent.shutdown().await;
    Ok(t)
}

/// The printer's serial link is cut while a card is being personalized; the cable is
/// put back and the agent restarted; staff take the card out.
async fn serial_link_cut() -> Outcome {
    let (_dir, b) = fresh("automatic").await;
    let link = b.printer.spawn_in_memory().map_err(|e| e.to_string())?;
    let cut = link.try_clone().map_err(|e| e.to_string())?;
    let devices = vec![station_agent::job::pipeline::Devices {
        line: "line-1".into(),
        printer: Box::new(station_evolis::EvolisPrinter::new(
            Box::new(link),
            station_branch::sim_printer_model(),
        )),
        encoder: Box::new(station_sim::station::SimEncoder::new(b.chips.clone())),
        chip_wait: Duration::from_secs(5),
    }];
    let agent = Agent::start(&b.config, devices)
        .await
        .map_err(|e| e.to_string())?;
    let mut progress = agent.station.subscribe();
    let mut orders = b.order(1).await;
    loop {
        let p = tokio::time::timeout(SETTLE, progress.recv())
            .await
            .map_err(|_| "no progress".to_string())?
            .map_err(|e| e.to_string())?;
        if p.state == JobState::Personalizing {
            let _ = cut.shutdown(std::net::Shutdown::Both);
            break;
        }
    }
    let deadline = Instant::now() + SETTLE;
    while agent
        .station
        .journal
        .jobs(&[JobState::AwaitingRemoval, JobState::Spoiled])
        .unwrap_or_default()
        .is_empty()
    {
        if Instant::now() > deadline {
            return Err("the card under a cut link was never spoiled".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent.abort();
    let agent = b.agent().await;
    orders.extend(b.order(1).await);
    settle(&b, &agent, &orders, &b.printer).await?;
    let t = account(&b, &b.journal_path(), &orders)?;
    if t.finals[1] != "CARD_PROD_DONE" {
        return Err(Failed::with(
            format!("the card after the cut ended {}", t.finals[1]),
            t,
        ));
    }
    agent.shutdown().await;
    Ok(t)
}

/// The hub is down from before the agent starts; cards are made; the reports drain
/// once the hub is back.
async fn hub_down_for_the_run() -> Outcome {
    let (_dir, mut b) = fresh("automatic").await;
    let orders = b.order(2).await;
    let addr = b.hub.local_addr();
    // The station takes the orders, then the hub goes away for the whole production.
    let agent = b.agent().await;
    let deadline = Instant::now() + SETTLE;
    while orders
        .iter()
        .any(|(_, op)| agent.station.journal.job(op).ok().flatten().is_none())
    {
        if Instant::now() > deadline {
            return Err("orders never reached the station".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hub = std::mem::replace(&mut b.hub, placeholder_hub(&b.hub_state).await?);
    hub.shutdown().await;
    let deadline = Instant::now() + SETTLE;
    while agent
        .station
        .journal
        .jobs(&[JobState::Ejected])
        .map(|j| j.len())
        .unwrap_or(0)
        < 2
    {
        if Instant::now() > deadline {
            return Err("cards not made while the hub was down".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let placeholder = std::mem::replace(
        &mut b.hub,
        sandbox::start(&SandboxConfig {
            listen: addr,
            state_dir: b.hub_state.clone(),
        })
        .await
        .map_err(|e| e.to_string())?,
    );
    placeholder.shutdown().await;
    settle(&b, &agent, &orders, &b.printer).await?;
    let t = account(&b, &b.journal_path(), &orders)?;
    agent.shutdown().await;
    Ok(t)
}

/// A hub handle to hold while the real one is down (a second hub on another port over
/// a copy of nothing: it is never asked).
async fn placeholder_hub(state: &Path) -> Result<sandbox::SandboxHandle, String> {
    sandbox::start(&SandboxConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        state_dir: state.join("placeholder"),
    })
    .await
    .map_err(|e| e.to_string())
}

/// How the proxy in front of the hub misbehaves during its bad spell.
#[derive(Debug, Clone, Copy)]
enum HubFault {
    /// Every request answered `500 Internal Server Error`.
    Error500,
    /// Every connection answered with bytes that are not HTTP.
    Garbage,
    /// Every byte forwarded, each chunk after a 1.5 s pause.
    Slow,
}

/// A TCP proxy in front of the hub that misbehaves for `bad_for`, then forwards.
async fn hub_proxy(hub: SocketAddr, fault: HubFault, bad_for: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("proxy port");
    let addr = listener.local_addr().expect("proxy address");
    let until = Instant::now() + bad_for;
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let bad = Instant::now() < until;
            tokio::spawn(async move {
                match (bad, fault) {
                    (true, HubFault::Error500) => {
                        let mut buf = [0u8; 4096];
                        let _ = client.read(&mut buf).await;
                        let _ = client
                            .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                    }
                    (true, HubFault::Garbage) => {
                        let mut buf = [0u8; 4096];
                        let _ = client.read(&mut buf).await;
                        let _ = client
                            .write_all(b"\x00\xffNOT-HTTP garbage}{\r\n\r\n")
                            .await;
                    }
                    (slow, _) => {
                        let Ok(upstream) = tokio::net::TcpStream::connect(hub).await else {
                            return;
                        };
                        if slow {
                            let (cr, cw) = client.into_split();
                            let (ur, uw) = upstream.into_split();
                            let delay = Duration::from_millis(1500);
                            tokio::join!(slow_copy(cr, uw, delay), slow_copy(ur, cw, delay));
                        } else {
                            let mut client = client;
                            let mut upstream = upstream;
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn slow_copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        tokio::time::sleep(delay).await;
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The agent talks to the hub through a proxy that misbehaves for a while.
async fn hub_misbehaves(fault: HubFault) -> Outcome {
    let (_dir, mut b) = fresh("automatic").await;
    let orders = b.order(2).await;
    let proxy = hub_proxy(b.hub.local_addr(), fault, Duration::from_secs(8)).await;
    b.config.upstream.url = format!("http://{proxy}");
    let agent = b.agent().await;
    settle(&b, &agent, &orders, &b.printer).await?;
    let t = account(&b, &b.journal_path(), &orders)?;
    if t.finals.iter().any(|f| f != "CARD_PROD_DONE") {
        return Err(Failed::with(format!("finals {:?}", t.finals), t));
    }
    agent.shutdown().await;
    Ok(t)
}

/// The journal refuses the write into `state` (as a full disk does): the agent stops
/// with an error, is restarted once the disk has room, and staff deal with the card.
async fn journal_refuses(state: JobState) -> Outcome {
    let (_dir, b) = fresh("automatic").await;
    let mut agent = b.agent().await;
    let disk = rusqlite_exec(
        &b.journal_path(),
        &format!(
            "CREATE TRIGGER disk_full BEFORE UPDATE OF state ON jobs WHEN NEW.state = '{state}' \
             BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END;"
        ),
    );
    disk?;
    let mut orders = b.order(1).await;
    let why = tokio::time::timeout(SETTLE, agent.failed())
        .await
        .map_err(|_| "the agent did not stop on the journal failure".to_string())?;
    if !why.contains("JRN") {
        return Err(format!("stopped for another reason: {why}").into());
    }
    agent.abort();
    rusqlite_exec(&b.journal_path(), "DROP TRIGGER disk_full;")?;
    let agent = b.agent().await;
    orders.extend(b.order(1).await);
    settle(&b, &agent, &orders, &b.printer).await?;
    let t = account(&b, &b.journal_path(), &orders)?;
    if t.finals[1] != "CARD_PROD_DONE" {
        return Err(Failed::with(
            format!("the card after the restart ended {}", t.finals[1]),
            t,
        ));
    }
    agent.shutdown().await;
    Ok(t)
}

/// Runs SQL on the journal through a connection of its own (the injection tool).
fn rusqlite_exec(journal: &Path, sql: &str) -> Result<(), String> {
    rusqlite::Connection::open(journal)
        .and_then(|c| c.execute_batch(sql))
        .map_err(|e| e.to_string())
}

/// The journal file is damaged while the agent is stopped: the agent refuses to start
/// with an error naming the journal, and moves no card.
async fn corrupt_journal() -> Outcome {
    let (_dir, b) = fresh("automatic").await;
    let agent = b.agent().await;
    let orders = b.order(1).await;
    settle(&b, &agent, &orders, &b.printer).await?;
    agent.shutdown().await;
    let path = b.journal_path();
    // Counted while the journal is whole: the damage below is what makes it unreadable.
    let t = account(&b, &path, &orders)?;
    let _ = std::fs::remove_file(path.with_extension("db-wal"));
    let mut bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
    for b in bytes.iter_mut().take(4096) {
        *b = 0xA5;
    }
    std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
    let fed = b.printer.finished().len();
    match Agent::start(&b.config, b.devices()).await {
        Ok(a) => {
            a.abort();
            return Err("the agent started on a corrupt journal".into());
        }
        Err(e) if e.code() == "AGENT_JOURNAL" => {}
        Err(e) => return Err(format!("refused, but as {}: {e}", e.code()).into()),
    }
    if b.printer.finished().len() != fed {
        return Err("a card moved".into());
    }
    Ok(t)
}

/// Parent side of a kill: starts the agent as a child process, SIGKILLs it as soon as a
/// card enters `step`, restarts it (staff spoil the card in doubt), and lets it finish.
async fn killed_at(step: JobState) -> Outcome {
    let (dir, b) = fresh("automatic").await;
    let hub = b.hub.base_url();
    let mut orders = b.order(1).await;
    let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args(["child", &dir.path().display().to_string(), &hub])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let out = child.stdout.take().expect("piped");
    let target = step.as_str().to_string();
    let seen = tokio::task::spawn_blocking(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.split_whitespace().nth(1) == Some(target.as_str()) {
                return true;
            }
        }
        false
    });
    let seen = tokio::time::timeout(SETTLE, seen)
        .await
        .map_err(|_| "the step never came".to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    // std's kill is SIGKILL on Unix: no clean-up runs in the agent.
    let _ = child.kill();
    let _ = child.wait();
    if !seen? {
        return Err(format!("the agent ended before {step}").into());
    }
    orders.extend(b.order(1).await);
    let status = tokio::task::spawn_blocking({
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let dir = dir.path().display().to_string();
        move || {
            Command::new(exe)
                .args(["child", &dir, &hub, "--settle", "2"])
                .stdout(Stdio::null())
                .status()
        }
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let journal = b.journal_path();
    let t = account(&b, &journal, &orders)?;
    if !status.success() {
        return Err(Failed {
            why: format!("the restarted agent failed ({status})"),
            tally: Some(t),
        });
    }
    if t.finals[1] != "CARD_PROD_DONE" {
        return Err(Failed::with(
            format!("the card after the restart ended {}", t.finals[1]),
            t,
        ));
    }
    Ok(t)
}

/// Child side: the agent of the branch in `dir` on a simulated printer slowed to a
/// tenth of real speed (and a chip answering in 10 ms), printing each card step as `<operationId> <state>`. With
/// `--settle N`, plays staff and exits once N orders are journaled, none unfinished
/// and every report delivered.
async fn child(dir: &Path, hub: &str, settle_for: Option<usize>) -> ExitCode {
    station_agent::logging::init("warn", station_agent::config::LogFormat::Text);
    let config = station_config(dir, hub, 1);
    let printer = SimPrinter::new(SimPrinterConfig {
        timing: Timing {
            scale: 0.1,
            ..Timing::default()
        },
        ..SimPrinterConfig::default()
    });
    let chips = track_chips(&printer, card_stock(dir));
    if settle_for.is_none() {
        // A chip as slow as a real one (10 ms an APDU), so the kill lands in its step.
        chips.queue_faults(Faults {
            delay: Some(Duration::from_millis(10)),
            ..Faults::default()
        });
    }
    let agent = match Agent::start(&config, vec![sim_devices("line-1", &printer, &chips)]).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("child agent: {e}");
            return ExitCode::from(1);
        }
    };
    let mut progress = agent.station.subscribe();
    let Some(expected) = settle_for else {
        let mut out = std::io::stdout();
        loop {
            match progress.recv().await {
                Ok(p) => {
                    let _ = writeln!(out, "{} {}", p.operation_id, p.state);
                    let _ = out.flush();
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return ExitCode::SUCCESS,
            }
        }
    };
    let deadline = Instant::now() + SETTLE;
    let unfinished = [
        JobState::Received,
        JobState::Validated,
        JobState::WaitingForStaff,
        JobState::Feeding,
        JobState::AtChipStation,
        JobState::Personalizing,
        JobState::Verifying,
        JobState::Printing,
        JobState::EncodingStripe,
        JobState::Ejecting,
        JobState::InDoubt,
        JobState::AwaitingRemoval,
    ];
    loop {
        staff_sweep(&agent, &printer);
        let open = agent.station.journal.jobs(&unfinished).unwrap_or_default();
        let undelivered = agent
            .station
            .journal
            .pending_events(1)
            .map(|e| e.len())
            .unwrap_or(1);
        let journaled = agent
            .station
            .journal
            .all_jobs(1000)
            .map(|j| j.len())
            .unwrap_or(0);
        if open.is_empty() && undelivered == 0 && journaled >= expected {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("child agent: orders not finished in time");
            return ExitCode::from(1);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.shutdown().await;
    ExitCode::SUCCESS
}

type Scenario = (
    String,
    std::pin::Pin<Box<dyn std::future::Future<Output = Outcome>>>,
);

fn scenarios(only: Option<&str>) -> Vec<Scenario> {
    let mut all: Vec<Scenario> = Vec::new();
    let mut add =
        |name: String, f: std::pin::Pin<Box<dyn std::future::Future<Output = Outcome>>>| {
            if only.map_or(true, |o| name.contains(o)) {
                all.push((name, f));
            }
        };
    for step in [
        JobState::Feeding,
        JobState::AtChipStation,
        JobState::Personalizing,
        JobState::Verifying,
        JobState::Printing,
        JobState::EncodingStripe,
        JobState::Ejecting,
    ] {
        add(format!("kill -9 while {step}"), Box::pin(killed_at(step)));
    }
    for step in [Step::Feed, Step::Park, Step::Print, Step::Mag, Step::Eject] {
        for fault in [
            Fault::CoverOpen,
            Fault::Jam,
            Fault::RibbonOut,
            Fault::FeederEmpty,
        ] {
            add(
                format!("printer {fault:?} at {step:?}"),
                Box::pin(printer_fault(step, fault)),
            );
        }
    }
    add(
        "printer MagWrite at Mag".into(),
        Box::pin(printer_fault(Step::Mag, Fault::MagWrite)),
    );
    add(
        "reject box does not take the card".into(),
        Box::pin(reject_fails()),
    );
    add(
        "card pulled during encoding".into(),
        Box::pin(chip_fault(Faults {
            drop_at: Some(5),
            ..Faults::default()
        })),
    );
    add(
        "mute chip".into(),
        Box::pin(chip_fault(Faults {
            mute: true,
            ..Faults::default()
        })),
    );
    add(
        "serial link cut mid-card".into(),
        Box::pin(serial_link_cut()),
    );
    add(
        "hub down for the run".into(),
        Box::pin(hub_down_for_the_run()),
    );
    for fault in [HubFault::Error500, HubFault::Garbage, HubFault::Slow] {
        add(
            format!("hub answers {fault:?}"),
            Box::pin(hub_misbehaves(fault)),
        );
    }
    for state in [
        JobState::Feeding,
        JobState::Personalizing,
        JobState::Ejected,
    ] {
        add(
            format!("journal disk full entering {state}"),
            Box::pin(journal_refuses(state)),
        );
    }
    add("corrupt journal".into(), Box::pin(corrupt_journal()));
    all
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        let (Some(dir), Some(hub)) = (args.get(1), args.get(2)) else {
            eprintln!("usage: station-faults child DIR HUB_URL [--settle]");
            return ExitCode::from(2);
        };
        let settle_for = args
            .iter()
            .position(|a| a == "--settle")
            .and_then(|i| args.get(i + 1))
            .and_then(|n| n.parse().ok());
        return child(&PathBuf::from(dir), hub, settle_for).await;
    }
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1));
    let started = Instant::now();
    let mut results: BTreeMap<usize, (String, Outcome, f64)> = BTreeMap::new();
    let list = scenarios(only.map(String::as_str));
    let n = list.len();
    for (i, (name, run)) in list.into_iter().enumerate() {
        let t0 = Instant::now();
        let r = run.await;
        let secs = t0.elapsed().as_secs_f64();
        match &r {
            Ok(t) => println!(
                "ok    {name:<44} {:>4.1} s  orders {} lost {} twice {} in doubt {}{}  {:?}",
                secs,
                t.orders,
                t.lost,
                t.twice,
                t.in_doubt,
                if t.doubt_from.is_empty() {
                    String::new()
                } else {
                    format!(" (caught in {})", t.doubt_from.join(", "))
                },
                t.finals
            ),
            Err(e) => println!("FAIL  {name:<44} {secs:>4.1} s  {}", e.why),
        }
        results.insert(i, (name, r, secs));
    }
    let (mut lost, mut twice, mut doubt, mut failed) = (0, 0, 0, 0);
    for (_, r, _) in results.values() {
        match r {
            Ok(t) => {
                lost += t.lost;
                twice += t.twice;
                doubt += t.in_doubt;
                if t.lost > 0 || t.twice > 0 {
                    failed += 1;
                }
            }
            Err(f) => {
                failed += 1;
                if let Some(t) = &f.tally {
                    lost += t.lost;
                    twice += t.twice;
                    doubt += t.in_doubt;
                }
            }
        }
    }
    println!("campaign took {:.0} s", started.elapsed().as_secs_f64());
    println!("faults: {n} scenarios, {lost} lost, {twice} issued twice, {doubt} surfaced in doubt");
    println!("{} passed, {failed} failed", n - failed);
    if failed == 0 && lost == 0 && twice == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_order() -> Vec<(String, String)> {
        vec![("card-1".into(), "op-1".into())]
    }

    fn done_at_hub(_op: &str) -> Result<Vec<String>, String> {
        Ok(vec!["CARD_PROD_DONE".into()])
    }

    #[test]
    fn a_journal_that_is_not_there_fails_the_tally_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let err = tally(done_at_hub, &path, &one_order()).unwrap_err();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(!path.exists(), "the tally must not make an empty journal");
    }

    #[test]
    fn a_journal_that_cannot_be_opened_fails_the_tally_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        std::fs::write(&path, [0xA5u8; 8192]).unwrap();
        let err = tally(done_at_hub, &path, &one_order()).unwrap_err();
        assert!(err.contains(&path.display().to_string()), "{err}");
    }

    #[test]
    fn a_hub_record_that_cannot_be_read_fails_the_tally() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        drop(Journal::open(&path).unwrap());
        let err = tally(|op| Err(format!("{op} unreadable")), &path, &one_order()).unwrap_err();
        assert!(err.contains("op-1"), "{err}");
    }

    #[test]
    fn a_readable_journal_and_hub_give_the_figures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        drop(Journal::open(&path).unwrap());
        let t = tally(done_at_hub, &path, &one_order()).unwrap();
        assert_eq!((t.orders, t.lost, t.twice, t.in_doubt), (1, 0, 0, 0));
        assert_eq!(t.finals, ["CARD_PROD_DONE"]);
    }
}
