//! Logging: `tracing` to stderr as text or JSON, level from config and `RUST_LOG`.
//!
//! Card data is kept out of logs by type (a PAN only ever displays masked). As a
//! second line of defence every log line passes through [`scrub`] (the one PAN
//! scrubber, also used for journal reasons and the audit export), which masks any
//! Luhn-valid number of 12–19 digits, in one run or in groups, so a mistake elsewhere
//! cannot put a clear PAN into a log file.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Masks every PAN-shaped number in a log line: the one scrubber,
/// [`station_emv::card_data::scrub_pans`].
pub use station_emv::card_data::scrub_pans as scrub;

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
