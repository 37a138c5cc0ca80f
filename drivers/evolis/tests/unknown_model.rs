//! A printer that reports a model with no shipped profile is still driven (generic profile).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use station_evolis::diagnostics::status_report;
use station_evolis::EvolisPrinter;
use station_hal::PrinterError;

/// An Evolis-speaking printer on loopback TCP that calls itself `model`.
fn printer_reporting(model: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut out = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let mut frame = Vec::new();
        while reader.read_until(b'\r', &mut frame).unwrap_or(0) > 0 {
            let cmd = String::from_utf8_lossy(&frame[1..frame.len() - 1]).to_string();
            let reply = match cmd.as_str() {
                "Rtp" => model,
                "Rfv" => "1.2.3",
                "Rsn" => "PB4-000123",
                "Rlr;p" => "OK",
                "Rse;f" => "OK",
                "Rse;r" => "87",
                "Rse;k" => "40",
                _ => "OK",
            };
            out.write_all(format!("{reply}\r").as_bytes()).unwrap();
            frame.clear();
        }
    });
    format!("tcp://{addr}")
}

#[tokio::test]
async fn printer_status_answers_for_a_model_without_a_profile() {
    let device = printer_reporting("Evolis Pebble 4");
    let report = status_report(&device, None).await.expect("status report");
    assert!(report.contains("model: Evolis Pebble 4"), "{report}");
    assert!(
        report.contains("profile: Evolis (generic profile)"),
        "{report}"
    );
    assert!(report.contains("serial number: PB4-000123"), "{report}");
}

#[tokio::test]
async fn a_first_generation_primacy_gets_its_profile() {
    let device = printer_reporting("Primacy");
    let p = EvolisPrinter::open(&device, None).await.unwrap();
    assert_eq!(p.model().name, "Evolis Primacy");
}

#[tokio::test]
async fn a_configured_model_name_without_a_profile_is_a_configuration_error() {
    let device = printer_reporting("Primacy");
    let err = EvolisPrinter::open(&device, Some("Primacy 9"))
        .await
        .err()
        .expect("unknown configured model");
    assert!(matches!(err, PrinterError::UnknownModel(ref n) if n == "Primacy 9"));
}
