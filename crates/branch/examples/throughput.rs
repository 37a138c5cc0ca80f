//! Pipeline throughput against the printer's mechanical limit, and the idle cost of
//! the agent. Run with `cargo xtask bench` (release build).
//!
//! The simulated printer's timing model gives the mechanical time of one card; the
//! agent runs the whole flow (hub, journal with fsync, decryption, data preparation,
//! personalization and read-back on the simulated chip) for N cards. Utilization =
//! N × mechanical seconds per card ÷ measured seconds from the first feed to the
//! last eject: 1.0 means the printer never waited on software. The simulated printer
//! does one step at a time (it takes no card from the feeder while another is in it,
//! and answers each command once its step's time has passed), so N cards take at least
//! N × [`Timing::card_seconds`]: a utilization above 1 would mean the clock missed a card,
//! which the bench refuses (it counts the feeds it saw).

use std::time::{Duration, Instant};

use station_agent::job::state::JobState;
use station_branch::{branch, wait_states};
use station_sim::printer::Timing;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn cpu_ticks() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .map(|s| {
            let f: Vec<&str> = s
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            // utime and stime are fields 14 and 15 (1-based) of the whole line.
            f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
                + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let cards: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let scale: f64 = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.1);
    let timing = Timing {
        scale,
        ..Timing::default()
    };
    let per_card = timing.card_seconds(1) * scale;
    let dir = std::env::temp_dir().join(format!("station-throughput-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench folder");
    let b = branch(&dir, "automatic", timing.clone()).await;
    let agent = b.agent().await;

    // Idle cost: the agent with nothing to do (long polls open, timers running).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (t0, c0) = (Instant::now(), cpu_ticks());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ticks = cpu_ticks() - c0;
    let hz = 100.0; // USER_HZ on Linux
    let idle_cpu = ticks as f64 / hz / t0.elapsed().as_secs_f64() * 100.0;
    let idle_rss = rss_kib();

    // Subscribed before the orders go in: the first card may be fed while the later
    // orders are still being posted, and a clock started at the second feed would credit
    // the printer with a card it never spent time on.
    let mut progress = agent.station.subscribe();
    let posted = b.order(cards).await;
    let ops: Vec<String> = posted.into_iter().map(|(_, op)| op).collect();
    // Clock starts at the first feed: the hub's order intake is not the printer's time.
    let (start, first) = loop {
        let p = progress.recv().await.expect("progress");
        if p.state == JobState::Feeding {
            break (Instant::now(), p.operation_id);
        }
    };
    // Every state change with its time, to say where the time of a card goes.
    // It stops when every card is out (told below), not by counting events: an event the
    // subscription missed must not leave the bench waiting for ever.
    let (all_out, mut all_out_rx) = tokio::sync::oneshot::channel::<()>();
    let steps = tokio::spawn(async move {
        let mut seen = vec![(first, JobState::Feeding, start)];
        loop {
            tokio::select! {
                p = progress.recv() => match p {
                    Ok(p) => seen.push((p.operation_id, p.state, Instant::now())),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                _ = &mut all_out_rx => break,
            }
        }
        seen
    });
    wait_states(
        &agent,
        &ops,
        &[JobState::Ejected],
        Duration::from_secs(3600),
    )
    .await;
    let elapsed = start.elapsed().as_secs_f64();
    let _ = all_out.send(());
    let limit = cards as f64 * per_card;
    let finished = b.printer.finished();
    assert_eq!(finished.iter().filter(|c| !c.rejected).count(), cards);
    println!("pipeline throughput ({cards} cards, printer time scale {scale}):");
    println!(
        "  mechanical limit  {:>8.1} cards/hour at this scale ({per_card:.3} s per card)",
        3600.0 / per_card
    );
    println!(
        "  measured          {:>8.1} cards/hour ({elapsed:.2} s for {cards} cards)",
        cards as f64 * 3600.0 / elapsed
    );
    println!(
        "  utilization       {:>8.3} (target >= 0.99)",
        limit / elapsed
    );
    let overhead = (elapsed / cards as f64 - per_card).max(0.0);
    let real = Timing::default().card_seconds(1);
    println!(
        "  software time per card {:.1} ms (chip personalization and read-back included); at the real printer's {real:.0} s per card: utilization {:.4}",
        overhead * 1000.0,
        real / (real + overhead)
    );
    let seen = steps.await.expect("step log");
    let feeds = seen
        .iter()
        .filter(|(_, s, _)| *s == JobState::Feeding)
        .count();
    println!("  feeds seen by the clock {feeds} of {cards}");
    assert_eq!(
        feeds, cards,
        "the clock must see every card fed, or the utilization is not a measure"
    );
    let scaled = |s: f64| s * scale * 1000.0;
    let mech = [
        (JobState::Feeding, scaled(timing.feed)),
        (JobState::AtChipStation, scaled(timing.park)),
        (JobState::Personalizing, 0.0),
        (JobState::Verifying, 0.0),
        (JobState::Printing, scaled(timing.print_panel)),
        (JobState::EncodingStripe, scaled(timing.mag)),
        (JobState::Ejecting, scaled(timing.eject)),
        (JobState::Ejected, 0.0),
    ];
    println!(
        "  where a card's time goes (median ms in each state, mechanical part, software part):"
    );
    // Each card's steps in order: the other orders' intake and preparation interleave
    // with the line's steps in the shared progress stream.
    let mut by_card: std::collections::BTreeMap<&str, Vec<(JobState, Instant)>> =
        Default::default();
    for (op, state, at) in &seen {
        by_card.entry(op.as_str()).or_default().push((*state, *at));
    }
    for (state, mech_ms) in mech {
        let mut d: Vec<f64> = by_card
            .values()
            .flat_map(|steps| steps.windows(2))
            .filter(|w| w[0].0 == state)
            .map(|w| (w[1].1 - w[0].1).as_secs_f64() * 1000.0)
            .collect();
        if d.is_empty() {
            continue;
        }
        d.sort_by(|a, b| a.total_cmp(b));
        let median = d[d.len() / 2];
        println!(
            "    {:<16} {median:>8.2} {mech_ms:>8.2} {:>8.2}",
            format!("{state:?}"),
            median - mech_ms
        );
    }
    println!("idle agent: {idle_rss} KiB resident, {idle_cpu:.2} % of one core");
    agent.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
