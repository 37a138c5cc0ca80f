//! The split printer link (a writer and a reader thread, commands sent before earlier
//! ones are answered) never gets out of step: a reply that is lost, or comes after its
//! command was given up, is never taken for another command's. The command whose reply
//! was lost fails as "outcome unknown"; the link is resynchronised before the next one.

mod printer_common;

use printer_common::{panel, tracks};
use std::time::Duration;

use station_evolis::{CommandClass, EvolisPrinter, ModelProfile, Timeouts};
use station_hal::{CardPosition, CardPrinter, PrinterError, StagedCard};
use station_sim::printer::{SimPrinter, SimPrinterConfig, Timing};

/// Timeouts short enough for a test, long enough for the instant simulator on a busy
/// machine. The driver's timers are tokio's, but the link runs on threads: a paused clock
/// would jump past every reply, so these are real, short times.
fn quick() -> Timeouts {
    Timeouts {
        status: 1000,
        move_: 1500,
        print: 2000,
        mag: 1500,
    }
}

fn split_printer(sim: &SimPrinter, timeouts: Option<Timeouts>) -> EvolisPrinter {
    let mut model = ModelProfile::find("simulator").unwrap();
    if let Some(t) = timeouts {
        model = model.with_timeouts(t);
    }
    let link = sim.spawn_in_memory().unwrap();
    EvolisPrinter::new_split(Box::new(link.try_clone().unwrap()), Box::new(link), model)
}

fn card(op: &str) -> StagedCard {
    StagedCard {
        operation_id: op.into(),
        attempt: 1,
    }
}

fn outcome_unknown(e: &PrinterError) -> bool {
    matches!(e, PrinterError::Offline(m) if m.contains("outcome unknown"))
}

/// Prints, encodes and ejects the card at the chip station.
async fn finish(p: &mut EvolisPrinter) {
    p.print(&[panel()]).await.unwrap();
    p.write_magstripe(&tracks()).await.unwrap();
    p.eject().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_reply_to_the_park_during_park_and_stage_does_not_report_the_card_parked() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let mut p = split_printer(&sim, Some(quick()));
    p.feed().await.unwrap();
    sim.lose_reply("Sis");
    let e = p
        .park_and_stage(&card("A"), &[panel()])
        .await
        .expect_err("the download's OK must not pass for the park's");
    assert!(outcome_unknown(&e), "{e}");
    assert_eq!(p.staged(), None, "nothing staged is trusted");
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_lost_reply_the_next_command_gets_its_own_reply() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let mut p = split_printer(&sim, Some(quick()));
    p.feed().await.unwrap();
    sim.lose_reply("Sis");
    let e = p.park_at_chip_station().await.unwrap_err();
    assert!(outcome_unknown(&e), "{e}");
    let s = p.status().await.unwrap();
    assert_eq!(
        (
            s.model.as_str(),
            s.firmware.as_str(),
            s.serial_number.as_str()
        ),
        ("Primacy 2", "SIM-1.0", "SIM0000001")
    );
    assert_eq!(s.position, CardPosition::AtChipStation, "the park was done");
    finish(&mut p).await;
    assert!(!sim.finished()[0].rejected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_whose_reply_is_lost_is_forgotten_and_the_card_is_made() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let mut p = split_printer(&sim, Some(quick()));
    // A firmware that ignores the ribbon command silently: the download's replies are one
    // short, and the feed behind them must still get its own.
    sim.lose_reply("Pr");
    p.stage_panels(&card("A"), &[panel()]).await.unwrap();
    p.feed().await.unwrap();
    assert_eq!(p.staged(), None);
    p.park_at_chip_station().await.unwrap();
    finish(&mut p).await;
    let done = &sim.finished()[0];
    assert!(!done.rejected);
    assert_eq!(done.from_memory, [false], "sent again with the print");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_reply_after_the_timeout_is_not_given_to_the_next_command() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let mut p = split_printer(&sim, Some(quick()));
    // The serial number is known: the resynchronisation waits for its answer.
    p.status().await.unwrap();
    p.feed().await.unwrap();
    sim.delay_reply("Sis", Duration::from_millis(2500));
    let e = p.park_at_chip_station().await.unwrap_err();
    assert!(outcome_unknown(&e), "{e}");
    let at = p.command("Rlr;p", CommandClass::Status).await.unwrap();
    assert_eq!(at, "SMART CARD", "its own reply, not the park's late OK");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        p.command("Rfv", CommandClass::Status).await.unwrap(),
        "SIM-1.0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_reply_waiting_on_the_link_before_the_next_command_is_discarded() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let mut p = split_printer(&sim, Some(quick()));
    p.feed().await.unwrap();
    sim.delay_reply("Sis", Duration::from_millis(2000));
    assert!(outcome_unknown(
        &p.park_at_chip_station().await.unwrap_err()
    ));
    // The late OK arrives while nothing is asked.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        p.command("Rtp", CommandClass::Status).await.unwrap(),
        "Primacy 2"
    );
    finish(&mut p).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn discarding_staged_panels_does_not_wait_for_the_download() {
    // A panel takes about three seconds on this link.
    let sim = SimPrinter::new(SimPrinterConfig {
        timing: Timing {
            scale: 0.3,
            baud: Some(115_200),
            ..Timing::default()
        },
        ..SimPrinterConfig::default()
    });
    let mut p = split_printer(&sim, None);
    p.stage_panels(&card("A"), &[panel()]).await.unwrap();
    p.discard_staged().await.unwrap();
    assert_eq!(p.staged(), None);
    assert!(
        sim.downloads().is_empty(),
        "answered while the download was still crossing"
    );
    p.status().await.unwrap();
    assert_eq!(sim.downloads().len(), 1);
    assert!(sim.memory().is_empty(), "the reset followed the download");
}

/// Reads the status twice: the serial number is then known (two answers agree).
async fn learn_serial(p: &mut EvolisPrinter) {
    for _ in 0..2 {
        assert_eq!(p.status().await.unwrap().serial_number, "SIM0000001");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_reply_to_the_serial_number_read_does_not_take_the_link_offline() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let mut p = split_printer(&sim, Some(quick()));
    learn_serial(&mut p).await;
    // Polled while the feeder is empty: one reply lost to noise.
    sim.lose_reply("Rsn");
    let _ = p.status().await;
    let s = p.status().await.expect("the link is back in step");
    assert_eq!(s.serial_number, "SIM0000001");
    assert_eq!(
        p.command("Rfv", CommandClass::Status).await.unwrap(),
        "SIM-1.0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_answer_to_the_resynchronisation_is_not_owed_for_ever() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let mut p = split_printer(&sim, Some(quick()));
    learn_serial(&mut p).await;
    p.feed().await.unwrap();
    sim.delay_reply("Sis", Duration::from_millis(2500));
    assert!(outcome_unknown(
        &p.park_at_chip_station().await.unwrap_err()
    ));
    // The park's late OK arrives during the resynchronisation; its own answer is lost.
    sim.lose_reply("Rsn");
    let e = p.command("Rlr;p", CommandClass::Status).await.unwrap_err();
    assert!(matches!(e, PrinterError::Offline(_)), "{e}");
    assert_eq!(
        p.command("Rlr;p", CommandClass::Status).await.unwrap(),
        "SMART CARD"
    );
    finish(&mut p).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_line_nobody_asked_for_while_the_link_is_in_step_is_not_taken_for_the_next_reply() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let mut p = split_printer(&sim, Some(quick()));
    // The feed is answered twice (an echo): the second OK arrives while nothing waits.
    sim.repeat_reply("Ss", 2, Duration::ZERO);
    p.feed().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        p.command("Rlr;p", CommandClass::Status).await.unwrap(),
        "CARD",
        "its own reply, not the echoed OK"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_printer_that_keeps_sending_lines_is_offline_not_waited_for() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let mut p = split_printer(&sim, Some(quick()));
    // Five seconds of chatter behind the feed's answer, longer than the resynchronisation
    // may wait (twice a status read's time, and one more).
    sim.repeat_reply("Ss", 200, Duration::from_millis(25));
    p.feed().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = p.command("Rtp", CommandClass::Status).await.unwrap_err();
    assert!(
        matches!(&e, PrinterError::Offline(m) if m.contains("kept sending lines")),
        "{e}"
    );
    // Once the printer is quiet, the link comes back in step.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(
        p.command("Rtp", CommandClass::Status).await.unwrap(),
        "Primacy 2"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_action_whose_reply_is_lost_is_not_sent_again() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let mut p = split_printer(&sim, Some(quick()));
    sim.lose_reply("Pr");
    let e = p.command("Pr;k", CommandClass::Status).await.unwrap_err();
    assert!(outcome_unknown(&e), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_download_reply_leaves_staging_on() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let mut p = split_printer(&sim, Some(quick()));
    sim.lose_reply("Dbm");
    p.stage_panels(&card("A"), &[panel()]).await.unwrap();
    p.status().await.unwrap();
    assert_eq!(p.staged(), None, "the download in doubt is forgotten");
    p.stage_panels(&card("B"), &[panel()]).await.unwrap();
    assert_eq!(p.staged(), Some(&card("B")), "staged again");
    p.settle().await.unwrap();
    assert_eq!(sim.downloads().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_forgotten_after_an_error_is_cleared_from_the_printer_when_the_line_stops() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let mut p = split_printer(&sim, Some(quick()));
    sim.lose_reply("Dbm");
    p.stage_panels(&card("A"), &[panel()]).await.unwrap();
    p.status().await.unwrap();
    assert_eq!(p.staged(), None);
    assert_eq!(sim.memory(), ["k"], "the face crossed all the same");
    // What the line does as it stops.
    p.discard_staged().await.unwrap();
    p.settle().await.unwrap();
    assert!(sim.memory().is_empty(), "no face left in the printer");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_forgotten_after_an_error_is_cleared_before_the_next_card() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let mut p = split_printer(&sim, Some(quick()));
    sim.lose_reply("Dbm");
    p.stage_panels(&card("A"), &[panel()]).await.unwrap();
    p.status().await.unwrap();
    assert_eq!(sim.memory(), ["k"]);
    p.feed().await.unwrap();
    assert!(sim.memory().is_empty(), "reset before the card went in");
    assert_eq!(sim.position(), station_sim::printer::Position::InPrinter);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_park_reply_spoils_that_card_only_and_the_next_card_is_made_whole() {
    use station_agent::agent::Agent;
    use station_agent::job::state::JobState;
    use station_branch::{branch, sim_printer_model, wait_states};

    let dir = tempfile::tempdir().unwrap();
    let b = branch(dir.path(), "automatic", Timing::default()).await;
    b.printer.lose_reply("Sis");
    let model = sim_printer_model().with_timeouts(quick());
    let agent = Agent::start(&b.config, b.devices_with(&model))
        .await
        .unwrap();
    let ops: Vec<String> = b.order(2).await.into_iter().map(|(_, op)| op).collect();
    let within = Duration::from_secs(60);
    let ends = [JobState::Ejected, JobState::Spoiled];
    wait_states(&agent, &ops, &ends, within).await;
    let state = |op: &str| agent.station.journal.job(op).unwrap().unwrap().state;
    let mut states: Vec<JobState> = ops.iter().map(|op| state(op)).collect();
    states.sort_by_key(|s| *s == JobState::Ejected);
    assert_eq!(states, [JobState::Spoiled, JobState::Ejected]);
    let cards = b.printer.finished();
    assert_eq!(cards.len(), 2);
    assert!(
        cards[0].rejected,
        "the card whose park was in doubt went to the reject box"
    );
    assert!(!cards[1].rejected);
    assert_eq!(
        cards[1].panel_digests.len(),
        1,
        "the next card printed once, with its own reply to each command"
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_face_whose_download_failed_does_not_stay_in_the_printer_after_the_agent_stops() {
    use station_agent::agent::Agent;
    use station_agent::job::state::JobState;
    use station_branch::{branch, sim_printer_model, wait_states};
    use station_sim::printer::{Fault, Step};

    let dir = tempfile::tempdir().unwrap();
    let timing = Timing {
        scale: 0.01,
        baud: Some(115_200),
        ..Timing::default()
    };
    let b = branch(dir.path(), "staff", timing).await;
    // The staged download's reply is lost; Start then finds the feeder empty, so no card
    // carries the face out of the printer.
    b.printer.lose_reply("Dbm");
    b.printer.arm_fault(Step::Feed, Fault::FeederEmpty);
    let model = sim_printer_model().with_timeouts(quick());
    let agent = Agent::start(&b.config, b.devices_with(&model))
        .await
        .unwrap();
    let ops: Vec<String> = b.order(1).await.into_iter().map(|(_, op)| op).collect();
    let within = Duration::from_secs(60);
    wait_states(&agent, &ops, &[JobState::WaitingForStaff], within).await;
    let deadline = tokio::time::Instant::now() + within;
    while b.printer.downloads().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never staged");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    agent.station.start(&ops[0], "amartin").unwrap();
    let state = || agent.station.journal.job(&ops[0]).unwrap().unwrap().state;
    while b.printer.is_armed(Step::Feed) || state() != JobState::WaitingForStaff {
        assert!(tokio::time::Instant::now() < deadline, "never fed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    agent.shutdown().await;
    assert!(
        b.printer.memory().is_empty(),
        "no face left in the printer's memory"
    );
    assert!(b.printer.finished().is_empty(), "no card moved");
}
