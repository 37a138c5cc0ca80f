//! Console latency while cards are produced: the p99 of `GET /api/jobs` while 20 cards
//! go through the in-process simulated printer and card, and how many times each card
//! was prepared (1.00: never twice).
//!
//! `cargo run --release --example console_latency [CARDS] [PRINTER_TIME_SCALE]`

use std::time::{Duration, Instant};

use station_agent::job::state::JobState;
use station_branch::{branch, wait_states};
use station_sim::printer::Timing;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
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
    let dir = std::env::temp_dir().join(format!("station-console-latency-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench folder");
    let timing = Timing {
        scale,
        ..Timing::default()
    };
    let mut b = branch(&dir, "automatic", timing).await;
    // The page is read as a signed-in member would; sign-in itself is not measured.
    b.config.console.staff = None;
    let agent = b.agent().await;
    let url = format!("http://{}/api/jobs", agent.console_addr);
    let client = reqwest::Client::new();

    let ops: Vec<String> = b.order(cards).await.into_iter().map(|(_, op)| op).collect();
    let mut done = {
        let ops = ops.clone();
        let agent_ref = &agent;
        Box::pin(async move {
            wait_states(
                agent_ref,
                &ops,
                &[JobState::Ejected],
                Duration::from_secs(3600),
            )
            .await
        })
    };
    let mut samples = Vec::new();
    loop {
        tokio::select! {
            _ = &mut done => break,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {
                let t = Instant::now();
                let r = client.get(&url).send().await.expect("console answers");
                assert!(r.status().is_success(), "GET /api/jobs: {}", r.status());
                let _ = r.bytes().await.expect("jobs body");
                samples.push(t.elapsed());
            }
        }
    }
    drop(done);
    samples.sort();
    let preparations = agent.station.preparations();
    println!("console latency while {cards} cards are produced (printer time scale {scale}):");
    println!(
        "  GET /api/jobs     p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} requests)",
        percentile(&samples, 0.5).as_secs_f64() * 1000.0,
        percentile(&samples, 0.99).as_secs_f64() * 1000.0,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        samples.len()
    );
    println!(
        "  preparations per card: {:.2}",
        preparations as f64 / cards as f64
    );
    agent.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
