//! Running as an operating-system service: systemd readiness/stopping notifications
//! on Linux, the Windows service (SCM control handler, install, uninstall) on Windows,
//! and the one stop signal both end in.
//!
//! The rules (what is registered, what each control does, what is reported when) are
//! plain code in [`control`], [`spec`] and [`session`], tested on every platform; the
//! Windows-only part is a thin layer that hands them to the service manager.

pub mod control;
mod run;
pub mod session;
pub mod spec;
pub mod stop;
// The Windows service entry point is called through FFI: its
// `define_windows_service!` expands to the crate's only `unsafe` block.
#[cfg(windows)]
#[allow(unsafe_code)]
mod windows;

use std::path::Path;
use std::time::Duration;

use clap::Subcommand;
use thiserror::Error;

pub use run::run;
pub use stop::request_stop;

/// `service …` actions (Windows).
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// What the Windows service manager starts; to run the agent by hand use `run`.
    Run,
    /// Register the Windows service (as Administrator); `--config` names its configuration.
    Install {
        /// Account the service runs as (virtual, managed or built-in; no password is set).
        #[arg(long, default_value = spec::DEFAULT_ACCOUNT)]
        account: String,
    },
    /// Stop the Windows service (after the card in progress) and remove it.
    Uninstall,
}

/// Why a `service` command failed.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// The command manages a Windows service and this is not Windows.
    #[error(
        "`service` manages the Windows service and this is not Windows; here the agent runs \
         under systemd: install packaging/systemd/station-agent.service (or the Debian package) \
         and use `systemctl enable --now station-agent` (see docs/operator.md)"
    )]
    WindowsOnly,
    /// `service run` was started by hand rather than by the service manager.
    #[error(
        "`service run` is started by the Windows service manager (`sc start station-agent`); \
         to run the agent in this console use `station-agent run`"
    )]
    NotUnderServiceManager,
    /// The service is already registered.
    #[error("the station-agent service is already installed; run `station-agent service uninstall` first")]
    AlreadyInstalled,
    /// The service is not registered.
    #[error("the station-agent service is not installed")]
    NotInstalled,
    /// The command needs an elevated (Administrator) prompt.
    #[error("access denied by the service manager: run this from an Administrator prompt")]
    AccessDenied,
    /// A path given to the installer cannot be used.
    #[error("{0}")]
    Path(String),
    /// The service manager refused an operation.
    #[error("service manager: {action}: {message}")]
    Manager {
        /// What was being done.
        action: &'static str,
        /// The system's reason.
        message: String,
    },
    /// The configuration folder's permissions could not be set.
    #[error("setting the permissions of {target}: {message}")]
    Permissions {
        /// Folder or file.
        target: String,
        /// What icacls said.
        message: String,
    },
    /// The service did not stop in time for uninstall.
    #[error(
        "the service did not stop within {0:?}; uninstall again once the card in progress is done"
    )]
    StopTimeout(Duration),
}

impl ServiceError {
    /// Stable code for scripts and support.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::WindowsOnly => "SVC_WINDOWS_ONLY",
            ServiceError::NotUnderServiceManager => "SVC_NOT_UNDER_SCM",
            ServiceError::AlreadyInstalled => "SVC_ALREADY_INSTALLED",
            ServiceError::NotInstalled => "SVC_NOT_INSTALLED",
            ServiceError::AccessDenied => "SVC_ACCESS_DENIED",
            ServiceError::Path(_) => "SVC_PATH",
            ServiceError::Manager { .. } => "SVC_MANAGER",
            ServiceError::Permissions { .. } => "SVC_PERMISSIONS",
            ServiceError::StopTimeout(_) => "SVC_STOP_TIMEOUT",
        }
    }

    /// Whether this is a usage problem (exit code 2) rather than a failed operation (1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ServiceError::WindowsOnly
                | ServiceError::NotUnderServiceManager
                | ServiceError::AlreadyInstalled
                | ServiceError::NotInstalled
                | ServiceError::AccessDenied
                | ServiceError::Path(_)
        )
    }
}

/// Runs a `service` command; `config` is the global `--config`.
pub async fn command(action: ServiceCommand, config: Option<&Path>) -> Result<(), ServiceError> {
    #[cfg(windows)]
    {
        windows::command(action, config).await
    }
    #[cfg(not(windows))]
    {
        let _ = (action, config);
        Err(ServiceError::WindowsOnly)
    }
}

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

/// Tells the service manager the agent is ready (journal open, devices probed, console listening).
pub fn notify_ready() {
    sd_notify("READY=1");
    #[cfg(windows)]
    windows::report(control::Phase::Running);
}

/// Tells the service manager the agent is stopping and may take up to `grace` to finish the current card.
pub fn notify_stopping(grace: Duration) {
    sd_notify(&format!(
        "STOPPING=1\nEXTEND_TIMEOUT_USEC={}",
        grace.as_micros()
    ));
    #[cfg(windows)]
    windows::report(control::Phase::Stopping { grace });
}

/// Resolves when the service is asked to stop: SIGTERM/SIGINT, Ctrl-C, the Windows
/// service manager, or [`request_stop`] from anywhere in the process.
pub async fn shutdown_signal() {
    tokio::select! {
        _ = os_stop_signal() => request_stop(),
        _ = stop::process_stop().requested() => {},
    }
}

/// The operating system's own stop signals; never resolves if they cannot be watched.
async fn os_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = async {
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    term.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = term => {},
            _ = ctrl_c() => {},
        }
    }
    #[cfg(not(unix))]
    ctrl_c().await;
}

/// Ctrl-C; a handler that cannot be installed (no console under a service manager)
/// must not read as a stop request.
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
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

    #[tokio::test]
    async fn a_stop_requested_in_process_resolves_the_shutdown_signal() {
        // The process-wide signal is shared; only this test raises it.
        request_stop();
        shutdown_signal().await;
        assert!(stop::process_stop().is_requested());
    }
}

#[cfg(all(test, not(windows)))]
mod command_tests {
    use super::*;

    #[tokio::test]
    async fn service_commands_say_plainly_they_are_windows_only_and_point_at_systemd() {
        for action in [
            ServiceCommand::Run,
            ServiceCommand::Install {
                account: spec::DEFAULT_ACCOUNT.into(),
            },
            ServiceCommand::Uninstall,
        ] {
            let err = command(action, None).await.unwrap_err();
            assert_eq!(err.code(), "SVC_WINDOWS_ONLY");
            assert!(err.is_usage());
            assert!(err
                .to_string()
                .contains("packaging/systemd/station-agent.service"));
        }
    }
}
