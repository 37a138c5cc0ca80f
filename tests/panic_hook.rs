//! A panic is reported through the scrubbing log, never as a raw line with card data.
//! (Its own test binary: the hook is process-wide.)

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use station_agent::logging::{install_panic_hook, Scrubbed};

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_panic_is_logged_as_an_error_with_any_pan_in_its_message_masked() {
    let buf = Buf::default();
    let sink = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_writer(Scrubbed(move || sink.clone()))
        .json()
        .finish();
    install_panic_hook();
    tracing::subscriber::with_default(sub, || {
        let r = std::panic::catch_unwind(|| panic!("bad card 4761739001010010 in the printer"));
        assert!(r.is_err());
    });
    let _ = std::panic::take_hook();
    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(out.contains("\"level\":\"ERROR\""), "{out}");
    assert!(out.contains("476173******0010"), "{out}");
    assert!(!out.contains("4761739001010010"), "{out}");
}
