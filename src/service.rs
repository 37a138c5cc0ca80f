//! Running as an operating-system service: systemd readiness/stopping notifications
//! and the shutdown signal on Linux; the Windows service control handler on Windows.

use std::time::Duration;

/// Sends a notification to systemd when run with `Type=notify` (no-op otherwise).
///
/// Done by hand over `$NOTIFY_SOCKET` because the protocol is one datagram.
pub fn sd_notify(state: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::net::UnixDatagram;
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return;
        };
        let path = path.to_string_lossy().into_owned();
        // Abstract sockets (leading '@') are not reachable through std's path API.
        if path.starts_with('@') {
            tracing::debug!("systemd abstract notify socket not supported; skipping");
            return;
        }
        if let Ok(sock) = UnixDatagram::unbound() {
            let _ = sock.send_to(state.as_bytes(), &path);
        }
    }
    #[cfg(not(unix))]
    let _ = state;
}

/// Tells systemd the agent is ready (journal open, devices probed, console listening).
pub fn notify_ready() {
    sd_notify("READY=1");
}

/// Tells systemd the agent is stopping and may take up to `grace` to finish the current card.
pub fn notify_stopping(grace: Duration) {
    sd_notify(&format!(
        "STOPPING=1\nEXTEND_TIMEOUT_USEC={}",
        grace.as_micros()
    ));
}

/// Resolves when the service is asked to stop (SIGTERM/SIGINT, or Ctrl-C on Windows).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn ready_notification_reaches_the_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        std::env::set_var("NOTIFY_SOCKET", &path);
        notify_ready();
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
