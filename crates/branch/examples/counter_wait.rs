//! The customer's wait at the counter: from staff pressing Start to the card in the
//! output tray, against the printer's mechanical floor for that card (feed, park at the
//! chip station, print one panel, stripe, eject), on a printer behind a 115200-baud
//! serial link where one 1016 × 648 panel takes seconds to cross. Measured twice: the
//! panel sent with the print command, then downloaded while the chip is written.
//! Run with `cargo xtask bench` (release build). Prints ratios; never pass/fail on time.

use std::time::{Duration, Instant};

use station_agent::agent::Agent;
use station_agent::job::state::JobState;
use station_branch::{branch, wait_states};
use station_evolis::ModelProfile;
use station_sim::printer::Timing;

const BAUD: u32 = 115_200;

async fn waits(cards: usize, timing: &Timing, ahead: bool) -> Vec<f64> {
    let dir = std::env::temp_dir().join(format!(
        "station-counter-wait-{}-{ahead}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench folder");
    let b = branch(&dir, "staff", timing.clone()).await;
    let mut model = ModelProfile::find("Primacy 2").expect("Primacy 2 profile");
    model.download_ahead = ahead;
    let agent = Agent::start(&b.config, b.devices_with(&model))
        .await
        .expect("agent starts");
    let ops: Vec<String> = b.order(cards).await.into_iter().map(|(_, op)| op).collect();
    wait_states(
        &agent,
        &ops,
        &[JobState::WaitingForStaff],
        Duration::from_secs(120),
    )
    .await;
    let mut out = Vec::new();
    for op in &ops {
        let t0 = Instant::now();
        agent.station.start(op, "bench").expect("card starts");
        wait_states(
            &agent,
            std::slice::from_ref(op),
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
    println!("  mechanical floor            {floor:>7.2} s (feed, park, one panel, stripe, eject)");
    println!("  panel over the link         {link:>7.2} s ({panel_bytes} bytes)");
    for (label, ahead) in [
        ("panel sent with the print   ", false),
        ("panel downloaded during chip", true),
    ] {
        let w = median(waits(cards, &timing, ahead).await);
        println!("  {label} {w:>7.2} s   wait / floor {:>5.2}", w / floor);
    }
}
