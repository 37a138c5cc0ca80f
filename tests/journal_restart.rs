//! An agent killed without a clean shutdown: the journal, reopened, has every job in
//! its last durable state, and jobs caught with a card in the printer come back in doubt.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use station_agent::job::JobState::{self, *};
use station_agent::journal::{Journal, NewJob};

const CHILD_ENV: &str = "JOURNAL_RESTART_CHILD_DB";

fn order(op: &str) -> NewJob {
    NewJob {
        operation_id: op.into(),
        issuer_id: "ISS".into(),
        card_id: format!("card-{op}"),
        perso_station: "BR-1".into(),
        order_json: serde_json::json!({"encryptedData": "eyJ.jwe"}),
    }
}

/// (operationId, path walked) written by the child before it is killed.
fn plan() -> Vec<(&'static str, Vec<JobState>)> {
    vec![
        ("queued", vec![]),
        ("ready", vec![Validated, WaitingForStaff]),
        ("feeding", vec![Validated, Feeding]),
        (
            "perso",
            vec![Validated, Feeding, AtChipStation, Personalizing],
        ),
        (
            "done",
            vec![
                Validated,
                Feeding,
                AtChipStation,
                Personalizing,
                Verifying,
                Printing,
                EncodingStripe,
                Ejecting,
                Ejected,
            ],
        ),
        ("failed", vec![Failed]),
    ]
}

/// Child side: write the plan, say so, then wait to be killed mid-flight.
fn child(db: &str) -> ! {
    let j = Journal::open(std::path::Path::new(db)).unwrap();
    for (op, path) in plan() {
        j.insert_order(&order(op)).unwrap();
        for s in path {
            j.transition(op, s, None).unwrap();
        }
    }
    println!("written");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

#[test]
fn after_a_kill_every_job_is_in_its_last_durable_state() {
    if let Ok(db) = std::env::var(CHILD_ENV) {
        child(&db);
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    let mut proc = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "after_a_kill_every_job_is_in_its_last_durable_state",
            "--nocapture",
        ])
        .env(CHILD_ENV, &db)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(proc.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.map(|l| l.contains("written")).unwrap_or(false)));
    proc.kill().unwrap(); // SIGKILL: no destructor, no checkpoint
    proc.wait().unwrap();

    let j = Journal::open(&db).unwrap();
    for (op, path) in plan() {
        let expected = path.last().copied().unwrap_or(Received);
        assert_eq!(j.job(op).unwrap().unwrap().state, expected, "{op}");
    }
    let mut doubt: Vec<String> = j
        .recover_after_restart()
        .unwrap()
        .into_iter()
        .map(|job| job.operation_id)
        .collect();
    doubt.sort();
    assert_eq!(doubt, vec!["feeding", "perso"]);
    assert_eq!(j.job("ready").unwrap().unwrap().state, WaitingForStaff);
    assert_eq!(j.job("done").unwrap().unwrap().state, Ejected);
}
