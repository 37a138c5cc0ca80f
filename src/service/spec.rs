//! What `service install` registers with the Windows service manager and which
//! permissions it puts on the configuration folder. Plain data so it is reviewed and
//! tested on every platform; `windows.rs` only hands it to the SCM and to `icacls`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The service name (`sc query station-agent`).
pub const SERVICE_NAME: &str = "station-agent";

/// The name shown in the Services console.
pub const DISPLAY_NAME: &str = "Station Agent (EMV card issuance)";

/// The description shown in the Services console.
pub const DESCRIPTION: &str = "Issues EMV payment cards over the counter: receives card orders \
from the order hub, drives the card printer and the PC/SC chip encoder, and reports production \
status upstream. Stopping waits for the card in progress.";

/// The Windows smart card service (PC/SC) the chip encoder is reached through.
pub const SMART_CARD_SERVICE: &str = "SCardSvr";

/// Time the card in progress may need to be finished or rejected once a stop is asked
/// for; the same 120 s as `TimeoutStopSec` in the systemd unit.
pub const CARD_STOP_GRACE: Duration = Duration::from_secs(120);

/// The service's own SID by name. Installed with an unrestricted service SID, every
/// token of this service carries it whatever account it runs as, so the folder is
/// granted to this service alone.
pub const SERVICE_SID_NAME: &str = r"NT SERVICE\station-agent";

/// Margin on top of [`CARD_STOP_GRACE`] for what follows the card: the journal is
/// closed and STOPPED reported before Windows gives up on the shutdown wait.
pub const STOP_MARGIN: Duration = Duration::from_secs(30);

/// The account the service runs as unless `--account` says otherwise.
///
/// The virtual service account: an unprivileged local identity like LocalService, but
/// one no other service shares, so whatever it is granted (the key folder, a printer
/// port) is granted to this service alone; it has no password to manage or rotate.
/// LocalSystem is not used: the agent parses data from the network and must not hold
/// the whole machine. A bank that needs a domain identity passes a gMSA (`DOMAIN\name$`).
pub const DEFAULT_ACCOUNT: &str = SERVICE_SID_NAME;

/// Well-known SID of LocalSystem; used by SID so localized Windows installs match.
const SID_SYSTEM: &str = "*S-1-5-18";

/// Well-known SID of the built-in Administrators group.
const SID_ADMINISTRATORS: &str = "*S-1-5-32-544";

/// Subfolder of the configuration folder the service may write: the journal.
pub const DATA_DIR: &str = "data";

/// Subfolder of the configuration folder the service may write: its log files.
pub const LOGS_DIR: &str = "logs";

/// What the service manager does when the agent fails (crash or non-zero exit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Delay before each successive restart; the last one repeats.
    pub restart_delays: Vec<Duration>,
    /// A failure-free period after which the failure count starts again from zero.
    pub reset_after: Duration,
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery {
            // Quick first retry for a transient device or network fault; slower after,
            // so a broken configuration does not spin.
            restart_delays: vec![
                Duration::from_secs(10),
                Duration::from_secs(60),
                Duration::from_secs(300),
            ],
            reset_after: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// Everything `service install` registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallSpec {
    /// The agent executable the service manager starts.
    pub executable: PathBuf,
    /// The configuration file the service runs with (absolute).
    pub config: PathBuf,
    /// The account the service runs as (no password: virtual, managed or built-in accounts).
    pub account: String,
    /// Services that must run first.
    pub dependencies: Vec<String>,
    /// Restart policy after failures.
    pub recovery: Recovery,
    /// How long Windows waits for the card in progress when the machine shuts down.
    pub preshutdown_timeout: Duration,
}

impl InstallSpec {
    /// The spec for this executable and configuration file, with the defaults a branch uses.
    pub fn new(executable: PathBuf, config: PathBuf, account: String) -> Self {
        InstallSpec {
            executable,
            config,
            account,
            dependencies: vec![SMART_CARD_SERVICE.to_string()],
            recovery: Recovery::default(),
            preshutdown_timeout: CARD_STOP_GRACE + STOP_MARGIN,
        }
    }

    /// The arguments the service manager starts the executable with.
    pub fn launch_arguments(&self) -> Vec<OsString> {
        vec![
            "service".into(),
            "run".into(),
            "--config".into(),
            self.config.clone().into_os_string(),
        ]
    }

    /// The folder holding the configuration and key files.
    pub fn config_dir(&self) -> PathBuf {
        self.config
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// Folders `service install` creates (the configuration folder and its writable subfolders).
    pub fn folders(&self) -> Vec<PathBuf> {
        let dir = self.config_dir();
        vec![dir.join(DATA_DIR), dir.join(LOGS_DIR), dir]
    }

    /// The `icacls` calls, in order, that make the configuration folder private.
    pub fn acl_steps(&self) -> Vec<AclStep> {
        acl_steps(&self.config_dir())
    }
}

/// One `icacls` invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclStep {
    /// Arguments after `icacls.exe`.
    pub args: Vec<OsString>,
}

/// The permission steps for `dir`; the service is named by its own SID, not its account.
///
/// Folders under %ProgramData% inherit "Users: read" and "Users: create files";
/// key files must not. So: drop any explicit grant on the folder, stop inheriting,
/// grant SYSTEM and Administrators full control and the service read, make
/// every existing file inherit only that (dropping explicit grants there too), make
/// Administrators the owner (an owner can always rewrite a file's permissions), and let
/// the service write only its journal and log folders.
pub fn acl_steps(dir: &Path) -> Vec<AclStep> {
    let step = |args: Vec<OsString>| AclStep { args };
    let s = |v: &str| OsString::from(v);
    let modify = format!("{SERVICE_SID_NAME}:(OI)(CI)M");
    vec![
        step(vec![dir.as_os_str().to_owned(), s("/reset"), s("/Q")]),
        step(vec![
            dir.as_os_str().to_owned(),
            s("/inheritance:r"),
            s("/grant:r"),
            s(&format!("{SID_SYSTEM}:(OI)(CI)F")),
            s(&format!("{SID_ADMINISTRATORS}:(OI)(CI)F")),
            s(&format!("{SERVICE_SID_NAME}:(OI)(CI)RX")),
        ]),
        step(vec![
            dir.join("*").into_os_string(),
            s("/reset"),
            s("/T"),
            s("/C"),
            s("/Q"),
        ]),
        step(vec![
            dir.as_os_str().to_owned(),
            s("/setowner"),
            s(SID_ADMINISTRATORS),
            s("/T"),
            s("/C"),
            s("/Q"),
        ]),
        step(vec![
            dir.join(DATA_DIR).into_os_string(),
            s("/grant"),
            s(&modify),
        ]),
        step(vec![
            dir.join(LOGS_DIR).into_os_string(),
            s("/grant"),
            s(&modify),
        ]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> InstallSpec {
        InstallSpec::new(
            PathBuf::from("/opt/station-agent/station-agent.exe"),
            PathBuf::from("/ProgramData/station-agent/station.toml"),
            DEFAULT_ACCOUNT.to_string(),
        )
    }

    fn args(step: &AclStep) -> Vec<String> {
        step.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_service_manager_starts_service_run_with_the_installed_configuration() {
        assert_eq!(
            spec().launch_arguments(),
            vec![
                OsString::from("service"),
                "run".into(),
                "--config".into(),
                "/ProgramData/station-agent/station.toml".into()
            ]
        );
    }

    #[test]
    fn the_launch_arguments_parse_as_the_service_run_command() {
        use crate::cli::{Cli, Command};
        use clap::Parser;
        let mut argv = vec![OsString::from("station-agent")];
        argv.extend(spec().launch_arguments());
        let cli = Cli::try_parse_from(argv).unwrap();
        assert!(matches!(
            cli.command,
            Command::Service {
                action: super::super::ServiceCommand::Run
            }
        ));
        assert_eq!(
            cli.config.as_deref(),
            Some(Path::new("/ProgramData/station-agent/station.toml"))
        );
    }

    #[test]
    fn the_service_waits_for_the_smart_card_service() {
        assert_eq!(spec().dependencies, vec!["SCardSvr".to_string()]);
    }

    #[test]
    fn a_failed_agent_is_restarted_sooner_first_then_later_and_the_count_resets_daily() {
        let r = spec().recovery;
        assert_eq!(
            r.restart_delays,
            vec![
                Duration::from_secs(10),
                Duration::from_secs(60),
                Duration::from_secs(300)
            ]
        );
        assert_eq!(r.reset_after, Duration::from_secs(86_400));
    }

    #[test]
    fn a_machine_shutdown_waits_for_the_card_in_progress_and_a_margin() {
        assert_eq!(spec().preshutdown_timeout, Duration::from_secs(150));
    }

    #[test]
    fn the_default_account_is_the_per_service_virtual_account() {
        assert_eq!(DEFAULT_ACCOUNT, format!(r"NT SERVICE\{SERVICE_NAME}"));
        assert_eq!(SERVICE_SID_NAME, DEFAULT_ACCOUNT);
    }

    #[test]
    fn explicit_grants_on_the_configuration_folder_are_dropped_first() {
        let steps = spec().acl_steps();
        assert_eq!(
            args(&steps[0]),
            vec!["/ProgramData/station-agent", "/reset", "/Q"]
        );
    }

    #[test]
    fn the_configuration_folder_stops_inheriting_and_only_system_admins_and_the_service_keep_access(
    ) {
        let steps = spec().acl_steps();
        let dir = "/ProgramData/station-agent";
        assert_eq!(
            args(&steps[1]),
            vec![
                dir,
                "/inheritance:r",
                "/grant:r",
                "*S-1-5-18:(OI)(CI)F",
                "*S-1-5-32-544:(OI)(CI)F",
                r"NT SERVICE\station-agent:(OI)(CI)RX",
            ]
        );
    }

    #[test]
    fn existing_files_lose_explicit_grants_and_inherit_the_folder_permissions() {
        let steps = spec().acl_steps();
        let star = Path::new("/ProgramData/station-agent").join("*");
        assert_eq!(
            args(&steps[2]),
            vec![star.to_str().unwrap(), "/reset", "/T", "/C", "/Q"]
        );
    }

    #[test]
    fn administrators_own_the_folder_so_no_user_keeps_owner_rights_over_key_files() {
        let steps = spec().acl_steps();
        assert_eq!(
            args(&steps[3])[1..],
            ["/setowner", "*S-1-5-32-544", "/T", "/C", "/Q"]
        );
    }

    #[test]
    fn the_service_may_write_only_its_journal_and_log_folders() {
        let steps = spec().acl_steps();
        let dir = Path::new("/ProgramData/station-agent");
        let writable: Vec<Vec<String>> = steps.iter().skip(4).map(args).collect();
        assert_eq!(
            writable,
            vec![
                vec![
                    dir.join("data").to_str().unwrap().to_string(),
                    "/grant".into(),
                    r"NT SERVICE\station-agent:(OI)(CI)M".into()
                ],
                vec![
                    dir.join("logs").to_str().unwrap().to_string(),
                    "/grant".into(),
                    r"NT SERVICE\station-agent:(OI)(CI)M".into()
                ],
            ]
        );
        // Nowhere else does the service get more than read.
        for step in &steps[..4] {
            assert!(!args(step).iter().any(|a| a.ends_with(":(OI)(CI)M")));
        }
    }

    #[test]
    fn whatever_the_account_the_folder_is_granted_to_the_service_sid_alone() {
        let s = InstallSpec::new(
            PathBuf::from("/a/station-agent.exe"),
            PathBuf::from("/cfg/station.toml"),
            r"BANK\svc-station$".to_string(),
        );
        let all: Vec<String> = s.acl_steps().iter().flat_map(args).collect();
        assert!(all.contains(&r"NT SERVICE\station-agent:(OI)(CI)RX".to_string()));
        assert!(!all.iter().any(|a| a.contains("svc-station")));
    }

    #[test]
    fn install_creates_the_configuration_folder_and_its_writable_subfolders() {
        let dir = Path::new("/ProgramData/station-agent");
        assert_eq!(
            spec().folders(),
            vec![dir.join("data"), dir.join("logs"), dir.to_path_buf()]
        );
    }

    #[test]
    fn the_windows_example_configuration_checks_and_keeps_the_journal_in_the_writable_folder() {
        let text = include_str!("../../packaging/windows/station.example.toml");
        let cfg = crate::config::StationConfig::parse(text).unwrap();
        cfg.check_values().unwrap();
        assert!(cfg.journal.path.starts_with(DATA_DIR));
    }
}
