//! Logging: `tracing` to stderr as text or JSON, level from config and `RUST_LOG`.
//!
//! Card data is kept out of logs by type (a PAN only ever displays masked). As a
//! second line of defence every log line passes through [`scrub`], which masks any
//! run of 12–19 digits that passes the Luhn check, so a mistake elsewhere cannot
//! put a clear PAN into a log file.

use std::io::{self, Write};

use station_emv::card_data::{luhn_ok, mask_digits};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Masks every run of 12–19 ASCII digits that passes Luhn (a PAN-shaped number).
pub fn scrub(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        if line[i].is_ascii_digit() {
            let start = i;
            while i < line.len() && line[i].is_ascii_digit() {
                i += 1;
            }
            let run = &line[start..i];
            if (12..=19).contains(&run.len()) && luhn_ok(run) {
                let s = std::str::from_utf8(run).expect("ascii digits");
                out.extend_from_slice(mask_digits(s).as_bytes());
            } else {
                out.extend_from_slice(run);
            }
        } else {
            out.push(line[i]);
            i += 1;
        }
    }
    out
}

/// A writer that scrubs what passes through it before handing it on.
pub struct ScrubbingWriter<W: Write> {
    inner: W,
}

impl<W: Write> ScrubbingWriter<W> {
    /// Wraps a writer.
    pub fn new(inner: W) -> Self {
        ScrubbingWriter { inner }
    }
}

impl<W: Write> Write for ScrubbingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // tracing's fmt layer hands over one whole event per write call.
        self.inner.write_all(&scrub(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Makes scrubbing writers around any `MakeWriter` (stderr in production, a buffer in tests).
pub struct Scrubbed<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Scrubbed<M> {
    type Writer = ScrubbingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbingWriter::new(self.0.make_writer())
    }
}

/// The level filter: `RUST_LOG` when set, else the configured level.
pub fn filter(level: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level))
}

/// Installs the global subscriber (once per process; later calls are ignored) and the
/// panic hook that reports through it.
pub fn init(level: &str, format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_writer(Scrubbed(io::stderr));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    install_panic_hook();
}

/// The message of a panic (its payload when it is text).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

/// Reports panics as error events through the scrubbing subscriber instead of the
/// default hook's raw stderr line: a panic message built from card data must not
/// reach a log file in clear.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = panic_message(info.payload());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        tracing::error!(panic = %message, location = %location, thread = %thread, "internal error (panic)");
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_keeps_first_six_and_last_four() {
        assert_eq!(mask_digits("4761739001010010"), "476173******0010");
        assert_eq!(mask_digits("4761739001010010123"), "476173*********0123");
    }

    #[test]
    fn short_digit_strings_are_masked_entirely() {
        assert_eq!(mask_digits("12345"), "*****");
    }

    #[test]
    fn scrub_masks_a_luhn_valid_pan_anywhere_in_a_line() {
        let line = b"card pan=4761739001010010 done";
        assert_eq!(scrub(line), b"card pan=476173******0010 done".to_vec());
    }

    #[test]
    fn scrub_leaves_other_numbers_alone() {
        // 16 digits failing Luhn (a timestamp-like id) and short numbers stay.
        let line = b"op 1234567890123456 at 2026";
        assert_eq!(scrub(line), line.to_vec());
    }

    #[test]
    fn scrubbed_subscriber_never_emits_a_clear_pan() {
        use std::sync::{Arc, Mutex};
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
        let buf = Buf::default();
        let sink = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(Scrubbed(move || sink.clone()))
            .json()
            .finish();
        tracing::subscriber::with_default(sub, || {
            tracing::warn!(detail = "4761739001010010", "mistake in a log call");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(!out.contains("4761739001010010"), "{out}");
        assert!(out.contains("476173******0010"), "{out}");
    }
}
