//! One run of the agent under a service manager that has no console: the
//! configuration is loaded and checked, logs go to a file next to it, and the outcome
//! becomes the service exit code.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use thiserror::Error;

use super::control::{ServiceExit, EXIT_AGENT_FAILED, EXIT_CONFIG_INVALID};
use super::spec::LOGS_DIR;
use crate::config::{self, ConfigError, LogFormat, StationConfig};

/// The service log file name inside the `logs` folder.
pub const LOG_FILE: &str = "station-agent.log";

/// Size beyond which the log is moved aside to `station-agent.log.1` when the service starts.
pub const LOG_ROLL_BYTES: u64 = 20 * 1024 * 1024;

/// Why a service run ended early.
#[derive(Debug, Error)]
pub enum SessionError {
    /// The configuration or a key file it names is missing or invalid.
    #[error("[{code}] {0}; check it with: station-agent check-config --config <file>", code = .0.code())]
    Config(#[from] ConfigError),
    /// The agent stopped on a failure.
    #[error("[{code}] {0}", code = .0.code())]
    Agent(#[from] crate::agent::AgentError),
}

impl SessionError {
    /// The service-specific exit code the service manager records.
    pub fn exit(&self) -> ServiceExit {
        match self {
            SessionError::Config(_) => ServiceExit::Failed(EXIT_CONFIG_INVALID),
            SessionError::Agent(_) => ServiceExit::Failed(EXIT_AGENT_FAILED),
        }
    }
}

/// The service exit for a run's outcome.
pub fn exit_for(outcome: &Result<(), SessionError>) -> ServiceExit {
    match outcome {
        Ok(()) => ServiceExit::Clean,
        Err(e) => e.exit(),
    }
}

/// Finds, loads and checks the configuration (values and key files).
pub fn load_config(explicit: Option<&Path>) -> Result<StationConfig, ConfigError> {
    let path = config::locate(explicit)?;
    let cfg = StationConfig::load(&path)?;
    cfg.check()?;
    Ok(cfg)
}

/// The log folder for a configuration file: `logs` next to it.
pub fn log_dir(config_file: &Path) -> PathBuf {
    config_file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
        .join(LOGS_DIR)
}

/// Opens the service log for appending, first moving an over-large one aside so the
/// disk cannot fill up over months of service (one previous file is kept).
pub fn open_log_file(dir: &Path, roll_bytes: u64) -> io::Result<File> {
    fs::create_dir_all(dir)?;
    let path = dir.join(LOG_FILE);
    if fs::metadata(&path)
        .map(|m| m.len() > roll_bytes)
        .unwrap_or(false)
    {
        fs::rename(&path, dir.join(format!("{LOG_FILE}.1")))?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// Sends the agent's logs to the service log file, through the same PAN scrubber as stderr.
pub fn init_file_logging(file: File, level: &str, format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(crate::logging::filter(level))
        .with_ansi(false)
        .with_writer(crate::logging::Scrubbed(Mutex::new(file)));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs the agent as the service: configuration, log file, then the agent until stopped.
pub async fn run(explicit: Option<&Path>) -> ServiceExit {
    let outcome = run_logged(explicit).await;
    if let Err(e) = &outcome {
        tracing::error!(error = %e, "station agent service stopped on a failure");
    }
    exit_for(&outcome)
}

async fn run_logged(explicit: Option<&Path>) -> Result<(), SessionError> {
    let logs = config::locate(explicit).ok().map(|p| log_dir(&p));
    let file = |dir: &Option<PathBuf>| {
        dir.as_deref()
            .and_then(|d| open_log_file(d, LOG_ROLL_BYTES).ok())
    };
    let cfg = match load_config(explicit) {
        Ok(cfg) => cfg,
        Err(e) => {
            // Still log why, at the default level, where the configuration should be.
            if let Some(f) = file(&logs) {
                init_file_logging(f, "info", LogFormat::Text);
            }
            return Err(e.into());
        }
    };
    if let Some(f) = file(&logs) {
        init_file_logging(f, &cfg.logging.level, cfg.logging.format);
    }
    crate::service::run(cfg).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_missing_configuration_stops_the_service_with_the_configuration_code() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_config(Some(&dir.path().join("station.toml"))).unwrap_err();
        let outcome: Result<(), SessionError> = Err(err.into());
        assert_eq!(exit_for(&outcome), ServiceExit::Failed(EXIT_CONFIG_INVALID));
    }

    #[test]
    fn a_configuration_error_tells_it_how_to_check_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err: SessionError = load_config(Some(&dir.path().join("station.toml")))
            .unwrap_err()
            .into();
        let text = err.to_string();
        assert!(text.starts_with("[CFG_READ]"), "{text}");
        assert!(text.contains("check-config"), "{text}");
    }

    #[test]
    fn an_agent_failure_stops_the_service_with_the_agent_code() {
        let outcome: Result<(), SessionError> =
            Err(crate::agent::AgentError::Device("printer: not found".into()).into());
        assert_eq!(exit_for(&outcome), ServiceExit::Failed(EXIT_AGENT_FAILED));
    }

    #[test]
    fn a_requested_stop_is_a_clean_exit() {
        assert_eq!(exit_for(&Ok(())), ServiceExit::Clean);
    }

    #[test]
    fn logs_go_next_to_the_configuration_file() {
        assert_eq!(
            log_dir(Path::new("/ProgramData/station-agent/station.toml")),
            Path::new("/ProgramData/station-agent").join("logs")
        );
    }

    #[test]
    fn the_log_is_appended_to_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        writeln!(open_log_file(dir.path(), 1024).unwrap(), "first").unwrap();
        writeln!(open_log_file(dir.path(), 1024).unwrap(), "second").unwrap();
        let text = fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
        assert_eq!(text, "first\nsecond\n");
    }

    #[test]
    fn an_over_large_log_is_moved_aside_at_start_and_a_fresh_one_begun() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(LOG_FILE), vec![b'x'; 2048]).unwrap();
        writeln!(open_log_file(dir.path(), 1024).unwrap(), "fresh").unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join(LOG_FILE)).unwrap(),
            "fresh\n"
        );
        assert_eq!(
            fs::metadata(dir.path().join(format!("{LOG_FILE}.1")))
                .unwrap()
                .len(),
            2048
        );
    }
}
