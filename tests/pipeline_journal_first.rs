//! The journal is written before every device step it authorizes: when the write
//! before the feed fails, the printer is never asked to feed a card.

mod station;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mockall::mock;
use station::{card_data, dev, order, STATION};
use station_agent::config::StartPolicy;
use station_agent::job::pipeline::{Devices, PipelineError, Station};
use station_agent::journal::{Journal, JournalError, NewJob};
use station_hal::{
    ApduTransport, CardPrinter, ChipEncoder, MagTracks, PanelImage, PrinterError, PrinterStatus,
    TransportError,
};
use time::macros::date;

mock! {
    Printer {}
    #[async_trait]
    impl CardPrinter for Printer {
        async fn status(&mut self) -> Result<PrinterStatus, PrinterError>;
        async fn feed(&mut self) -> Result<(), PrinterError>;
        async fn park_at_chip_station(&mut self) -> Result<(), PrinterError>;
        async fn print(&mut self, panels: &[PanelImage]) -> Result<(), PrinterError>;
        async fn write_magstripe(&mut self, tracks: &MagTracks) -> Result<(), PrinterError>;
        async fn eject(&mut self) -> Result<(), PrinterError>;
        async fn reject(&mut self) -> Result<(), PrinterError>;
        async fn clear_fault(&mut self) -> Result<(), PrinterError>;
    }
}

mock! {
    Encoder {}
    #[async_trait]
    impl ApduTransport for Encoder {
        async fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, TransportError>;
    }
    #[async_trait]
    impl ChipEncoder for Encoder {
        async fn wait_for_card(&mut self, timeout: Duration) -> Result<(), TransportError>;
        async fn release(&mut self);
    }
}

#[tokio::test]
async fn the_pipeline_never_feeds_a_card_when_the_journal_write_before_it_fails() {
    let d = dev();
    let db = d.dir.path().join("journal.db");
    let journal = Arc::new(Journal::open(&db).unwrap());
    let o = order(&d, "visa_vsdc_cvn10", "01", &card_data(1));
    let prepared = d.production.prepare(&o, date!(2026 - 11 - 22)).unwrap();
    journal
        .insert_order(&NewJob {
            operation_id: "op-1".into(),
            issuer_id: "ISS".into(),
            card_id: "card-1".into(),
            perso_station: STATION.into(),
            order_json: o,
        })
        .unwrap();
    journal
        .transition("op-1", station_agent::job::JobState::Validated, None)
        .unwrap();
    // The disk refuses the write that would record the feed.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER disk_full BEFORE UPDATE OF state ON jobs \
             WHEN NEW.state = 'feeding' BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        )
        .unwrap();
    let mut printer = MockPrinter::new();
    printer.expect_feed().never();
    let mut devices = Devices {
        line: "A".into(),
        printer: Box::new(printer),
        encoder: Box::new(MockEncoder::new()),
        chip_wait: Duration::from_secs(1),
    };
    let station = Station::new(journal, d.production.clone(), StartPolicy::Automatic);

    let made = station
        .produce(&mut devices, "op-1", &prepared, "agent")
        .await;

    assert!(matches!(
        made,
        Err(PipelineError::Journal(JournalError::Db(_)))
    ));
}
