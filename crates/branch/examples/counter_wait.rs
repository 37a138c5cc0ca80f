//! The customer's wait at the counter: from staff pressing Start to the card in the
//! output tray, against the printer's mechanical floor for that card (feed, park at the
//! chip station, print one panel, stripe, eject), on a printer behind a 115200-baud
//! serial link where one 1016 × 648 panel takes seconds to cross. Measured three ways:
//! the panel sent with the print command (no printer memory used); staged in the
//! printer's memory while staff are with the customer, Start pressed once it is there
//! (the default); and Start pressed the moment the card is ready, so nothing could be
//! staged and the download follows the feed and park on the link.
//! Run with `cargo xtask bench` (release build). Prints ratios; never pass/fail on time.

use std::time::{Duration, Instant};

use station_agent::agent::Agent;
use station_agent::job::state::JobState;
use station_branch::{branch, wait_states};
use station_sim::printer::Timing;

const BAUD: u32 = 115_200;

/// How the panel reaches the printer, and when staff press Start.
#[derive(Clone, Copy, PartialEq)]
enum Case {
    /// No printer memory used: the panel goes with the print command.
    WithPrint,
    /// The line stages the waiting card's panel while staff are with the customer;
    /// Start once it is in the printer.
    Staged,
    /// Start the moment the card is ready (no time to stage): the panel is downloaded
    /// behind the feed and park, while the chip is written.
    StartAtOnce,
}

async fn waits(cards: usize, timing: &Timing, case: Case) -> Vec<f64> {
    let dir = std::env::temp_dir().join(format!(
        "station-counter-wait-{}-{}",
        std::process::id(),
        case as u8
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench folder");
    let b = branch(&dir, "staff", timing.clone()).await;
    // The simulator's profile: staging is on only there (its commands are unconfirmed on
    // real printers); the first case turns it off.
    let mut model = station_branch::sim_printer_model();
    model.download_ahead = case != Case::WithPrint;
    let agent = Agent::start(&b.config, b.devices_with(&model))
        .await
        .expect("agent starts");
    let mut ops = Vec::new();
    if case != Case::StartAtOnce {
        ops = b.order(cards).await.into_iter().map(|(_, op)| op).collect();
        wait_states(
            &agent,
            &ops,
            &[JobState::WaitingForStaff],
            Duration::from_secs(120),
        )
        .await;
    }
    let mut out = Vec::new();
    for planned in (0..cards).map(|i| ops.get(i).cloned()) {
        let op = if case == Case::StartAtOnce {
            let (_, op) = b.order(1).await.remove(0);
            // Start is pressed as soon as the console offers it.
            while agent.station.start(&op, "bench").is_err() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            op
        } else {
            if case == Case::Staged {
                // The customer's ID check takes longer than the download.
                let deadline = Instant::now() + Duration::from_secs(120);
                while b.printer.memory().is_empty() {
                    assert!(Instant::now() < deadline, "panel never staged");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            let op = planned.expect("card ordered");
            agent.station.start(&op, "bench").expect("card starts");
            op
        };
        let t0 = Instant::now();
        wait_states(
            &agent,
            std::slice::from_ref(&op),
            &[JobState::Ejected],
            Duration::from_secs(600),
        )
        .await;
        out.push(t0.elapsed().as_secs_f64());
    }
    let finished = b.printer.finished();
    assert_eq!(finished.iter().filter(|c| !c.rejected).count(), cards);
    let panels: Vec<usize> = finished.iter().map(|c| c.panel_names.len()).collect();
    assert!(
        panels.iter().all(|n| *n == 1),
        "panels per card: {panels:?}"
    );
    let from_memory = finished.iter().filter(|c| c.from_memory == [true]).count();
    let expected = if case == Case::WithPrint { 0 } else { cards };
    assert_eq!(
        from_memory, expected,
        "cards printed from the printer's memory"
    );
    agent.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let cards: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let scale: f64 = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1.0);
    let timing = Timing {
        scale,
        baud: Some(BAUD),
        ..Timing::default()
    };
    let floor = timing.card_seconds(1) * scale;
    // One 1-bit panel, base64 as the driver sends it, in a `Db;k;1;` command.
    let panel_bytes = (1016 * 648 / 8usize).div_ceil(3) * 4 + 7;
    let link = timing.link_seconds(panel_bytes) * scale;
    println!(
        "customer wait, Start to card in the tray ({cards} cards, {BAUD} baud serial printer, time scale {scale}):"
    );
    println!("  mechanical floor                    {floor:>7.2} s (feed, park, one panel, stripe, eject)");
    println!("  panel over the link                 {link:>7.2} s ({panel_bytes} bytes)");
    for (label, case) in [
        ("panel sent with the print (old)    ", Case::WithPrint),
        ("staged before Start (default)      ", Case::Staged),
        ("Start at once, no time to stage    ", Case::StartAtOnce),
    ] {
        let w = median(waits(cards, &timing, case).await);
        println!("  {label} {w:>7.2} s   wait / floor {:>5.2}", w / floor);
    }
}
