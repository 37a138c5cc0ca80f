//! The Evolis driver through a real serial (pty) link to the simulated printer: a full
//! card cycle, every injected fault as its typed error with the card in the reject box,
//! and the next card after the fault is cleared.

mod printer_common;

use printer_common::{panel, tracks};
use station_evolis::{EvolisPrinter, ModelProfile};
use station_hal::{CardPosition, CardPrinter, MagTracks, PanelImage, PrinterError, StagedCard};
use station_sim::printer::{
    bitmap_digest, Fault, Position, SimPrinter, SimPrinterConfig, Step, Timing,
};

async fn over_pty(sim: &SimPrinter) -> (EvolisPrinter, station_sim::printer::PtyLink) {
    let link = sim.spawn_pty().unwrap();
    let p = EvolisPrinter::open(link.path.to_str().unwrap(), None)
        .await
        .unwrap();
    (p, link)
}

async fn full_cycle(p: &mut EvolisPrinter) -> Result<(), PrinterError> {
    p.feed().await?;
    p.park_at_chip_station().await?;
    p.print(&[panel()]).await?;
    p.write_magstripe(&tracks()).await?;
    p.eject().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_goes_through_the_whole_cycle_over_the_serial_link() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimPrinter::new(SimPrinterConfig {
        out_dir: Some(dir.path().to_path_buf()),
        ..SimPrinterConfig::default()
    });
    let (mut p, _link) = over_pty(&sim).await;
    assert_eq!(p.model().name, "Evolis Primacy 2");
    let s = p.status().await.unwrap();
    assert!(s.ready);
    assert_eq!(s.position, CardPosition::NoCard);
    p.feed().await.unwrap();
    p.park_at_chip_station().await.unwrap();
    assert_eq!(
        p.status().await.unwrap().position,
        CardPosition::AtChipStation
    );
    p.print(&[panel()]).await.unwrap();
    p.write_magstripe(&tracks()).await.unwrap();
    p.eject().await.unwrap();
    let done = sim.finished();
    assert_eq!(done.len(), 1);
    assert!(!done[0].rejected);
    assert_eq!(
        done[0].tracks.get(&2).map(String::as_str),
        tracks().track2.as_deref()
    );
    assert!(done[0].panels[0].exists());
    assert_eq!(sim.position(), Position::Empty);
}

async fn fault_case(step: Step, fault: Fault, expected: PrinterError) {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let (mut p, _link) = over_pty(&sim).await;
    sim.arm_fault(step, fault);
    let e = full_cycle(&mut p).await.unwrap_err();
    assert_eq!(e, expected, "{step:?}");
    if sim.position() != Position::Empty {
        p.reject().await.unwrap();
    }
    assert_eq!(
        sim.position(),
        Position::Empty,
        "no card left in the printer"
    );
    if step != Step::Feed {
        assert!(
            sim.finished().last().unwrap().rejected,
            "card in the reject box"
        );
    }
    assert!(!p.status().await.unwrap().ready);
    p.clear_fault().await.unwrap();
    full_cycle(&mut p).await.unwrap();
    assert!(!sim.finished().last().unwrap().rejected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jam_at_the_chip_station_is_typed_and_the_card_rejected() {
    fault_case(Step::Park, Fault::Jam, PrinterError::CardJam).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_feeder_is_typed() {
    fault_case(Step::Feed, Fault::FeederEmpty, PrinterError::FeederEmpty).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ribbon_out_while_printing_is_typed_and_the_card_rejected() {
    fault_case(Step::Print, Fault::RibbonOut, PrinterError::RibbonOut).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_cover_is_typed_and_the_card_rejected() {
    fault_case(Step::Park, Fault::CoverOpen, PrinterError::CoverOpen).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_magstripe_write_error_is_typed_and_the_card_rejected() {
    fault_case(Step::Mag, Fault::MagWrite, PrinterError::MagWrite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_in_memory_link_speaks_the_same_protocol() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let host = sim.spawn_in_memory().unwrap();
    let mut p = EvolisPrinter::new(Box::new(host), ModelProfile::find("zenius").unwrap());
    full_cycle(&mut p).await.unwrap();
    assert_eq!(sim.finished().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_never_carry_track_data() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let (mut p, _link) = over_pty(&sim).await;
    p.feed().await.unwrap();
    let bad = MagTracks {
        track1: None,
        track2: Some("4761739001010010=2512".into()),
        track3: None,
    };
    sim.arm_fault(Step::Mag, Fault::MagWrite);
    let e = p.write_magstripe(&bad).await.unwrap_err();
    assert!(!format!("{e} {e:?}").contains("4761739001010010"));
}

fn other_panel() -> PanelImage {
    let mut p = panel();
    p.data[5000..5100].fill(0xFF);
    p
}

fn card(op: &str) -> StagedCard {
    StagedCard {
        operation_id: op.into(),
        attempt: 1,
    }
}

fn staging_printer(sim: &SimPrinter) -> EvolisPrinter {
    let mut model = ModelProfile::find("Primacy 2").unwrap();
    model.download_ahead = true;
    let link = sim.spawn_in_memory().unwrap();
    EvolisPrinter::new_split(Box::new(link.try_clone().unwrap()), Box::new(link), model)
}

async fn finish(p: &mut EvolisPrinter, face: PanelImage) {
    p.feed().await.unwrap();
    p.park_at_chip_station().await.unwrap();
    p.print(&[face]).await.unwrap();
    p.write_magstripe(&tracks()).await.unwrap();
    p.eject().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panel_downloaded_while_the_card_is_at_the_chip_station_is_printed_on_it() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let mut p = staging_printer(&sim);
    p.feed().await.unwrap();
    p.park_at_chip_station().await.unwrap();
    p.stage_panels(&card("A"), &[panel()]).await.unwrap();
    assert_eq!(
        p.status().await.unwrap().position,
        CardPosition::AtChipStation,
        "a download moves no card"
    );
    p.print(&[panel()]).await.unwrap();
    p.write_magstripe(&tracks()).await.unwrap();
    p.eject().await.unwrap();
    let card = &sim.finished()[0];
    assert!(!card.rejected);
    assert_eq!(
        card.panel_names,
        ["k"],
        "the downloaded panel was printed, once"
    );
    assert_eq!(card.from_memory, [true]);
}

#[tokio::test(flavor = "multi_thread")]
async fn panels_staged_before_the_feed_are_printed_from_the_printers_memory() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let mut p = staging_printer(&sim);
    p.stage_panels(&card("A"), &[panel()]).await.unwrap();
    assert_eq!(p.staged(), Some(&card("A")));
    finish(&mut p, panel()).await;
    let done = &sim.finished()[0];
    assert_eq!(done.from_memory, [true]);
    assert_eq!(
        done.panel_digests,
        sim.downloads(),
        "the staged bitmap, once"
    );
    assert_eq!(
        p.staged(),
        None,
        "the memory belonged to the card that left"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_staged_panel_is_never_printed_on_another_card() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let mut p = staging_printer(&sim);
    p.stage_panels(&card("A"), &[panel()]).await.unwrap();
    // Staff start card B instead: B's panel goes with the print.
    finish(&mut p, other_panel()).await;
    let done = &sim.finished()[0];
    assert_eq!(done.from_memory, [false]);
    assert_eq!(done.panel_digests, [bitmap_digest(&other_panel().data)]);
    assert_ne!(done.panel_digests, sim.downloads());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_the_printer_refuses_is_forgotten_and_the_panel_goes_with_the_print() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let mut p = staging_printer(&sim);
    sim.arm_fault(Step::Download, Fault::Jam);
    p.stage_panels(&card("A"), &[panel()]).await.unwrap();
    p.feed().await.unwrap();
    assert_eq!(
        p.staged(),
        None,
        "the refusal was collected before the feed"
    );
    p.park_at_chip_station().await.unwrap();
    p.print(&[panel()]).await.unwrap();
    p.write_magstripe(&tracks()).await.unwrap();
    p.eject().await.unwrap();
    let done = &sim.finished()[0];
    assert!(!done.rejected);
    assert_eq!(done.from_memory, [false]);
    assert_eq!(done.panel_digests, [bitmap_digest(&panel().data)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_printer_switched_off_and_on_after_staging_gets_the_panel_with_the_print() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let mut p = staging_printer(&sim);
    p.stage_panels(&card("A"), &[panel()]).await.unwrap();
    p.feed().await.unwrap();
    sim.power_cycle();
    p.park_at_chip_station().await.unwrap();
    p.print(&[panel()]).await.unwrap();
    p.write_magstripe(&tracks()).await.unwrap();
    p.eject().await.unwrap();
    let done = &sim.finished()[0];
    assert!(!done.rejected);
    assert_eq!(done.panel_digests, [bitmap_digest(&panel().data)]);
    assert_eq!(done.from_memory, [false]);
}

#[tokio::test(flavor = "multi_thread")]
async fn discarding_staged_panels_empties_the_printers_memory() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let mut p = staging_printer(&sim);
    p.stage_panels(&card("A"), &[panel()]).await.unwrap();
    p.discard_staged().await.unwrap();
    assert_eq!(p.staged(), None);
    // The reset is queued behind the download, not awaited: wait for both.
    p.settle().await.unwrap();
    assert!(sim.memory().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_without_download_ahead_stages_nothing() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let mut p = EvolisPrinter::new(
        Box::new(sim.spawn_in_memory().unwrap()),
        ModelProfile::find("zenius").unwrap(),
    );
    p.stage_panels(&card("A"), &[panel()]).await.unwrap();
    assert_eq!(p.staged(), None);
    finish(&mut p, panel()).await;
    assert!(sim.downloads().is_empty());
    assert_eq!(sim.finished()[0].from_memory, [false]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_download_follows_the_park_on_the_link_and_arrives_while_the_card_moves() {
    // A link that takes no time and a park of a tenth of a second: a download sent only
    // after the park answered would arrive after it.
    let sim = SimPrinter::new(SimPrinterConfig {
        timing: Timing {
            scale: 0.1,
            ..Timing::default()
        },
        ..SimPrinterConfig::default()
    });
    let mut p = staging_printer(&sim);
    p.feed().await.unwrap();
    p.park_and_stage(&card("A"), &[panel()]).await.unwrap();
    p.print(&[panel()]).await.unwrap();
    let log = sim.exchanges();
    let at = |name: &str| log.iter().find(|e| e.command == name).unwrap().clone();
    assert!(
        at("Dbm").arrived < at("Sis").answered,
        "the panel was in the printer before the park ended"
    );
    p.write_magstripe(&tracks()).await.unwrap();
    p.eject().await.unwrap();
    assert_eq!(sim.finished()[0].from_memory, [true]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_park_fails_the_card_and_the_download_behind_it_is_never_used() {
    let sim = SimPrinter::new(SimPrinterConfig::default());
    let mut p = staging_printer(&sim);
    p.feed().await.unwrap();
    sim.arm_fault(Step::Park, Fault::Jam);
    let e = p.park_and_stage(&card("A"), &[panel()]).await.unwrap_err();
    assert_eq!(e, PrinterError::CardJam);
    assert_eq!(p.staged(), None);
    p.reject().await.unwrap();
    p.clear_fault().await.unwrap();
    finish(&mut p, panel()).await;
    let next = sim.finished().last().unwrap().clone();
    assert!(!next.rejected);
    assert_eq!(next.from_memory, [false], "sent again with the print");
}

#[test]
fn a_panel_over_a_115200_baud_link_takes_seconds() {
    let t = station_sim::printer::Timing {
        baud: Some(115_200),
        ..Default::default()
    };
    // One 1-bit 1016 × 648 panel, base64 in a `Db` command.
    let secs = t.link_seconds((1016 * 648 / 8usize).div_ceil(3) * 4 + 7);
    assert!((9.0..10.0).contains(&secs), "{secs}");
    assert_eq!(
        station_sim::printer::Timing::default().link_seconds(100_000),
        0.0
    );
}
