//! The Windows service manager (SCM) layer: translates [`control`](super::control),
//! [`spec`](super::spec) and [`session`](super::session) into `windows-service` calls.
//! No decisions are made here.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceDependency, ServiceErrorControl, ServiceExitCode, ServiceFailureActions,
    ServiceFailureResetPeriod, ServiceInfo, ServiceSidType, ServiceStartType, ServiceState,
    ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

use super::control::{
    action_for, ControlAction, ControlRequest, ManagerState, Phase, ServiceExit, StatusReport,
    StatusSequence,
};
use super::spec::{
    InstallSpec, CARD_STOP_GRACE, DESCRIPTION, DISPLAY_NAME, SERVICE_NAME, STOP_MARGIN,
};
use super::{ServiceCommand, ServiceError};

/// Win32 error: the process was not started by the service manager.
const ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: i32 = 1063;
/// Win32 error: access denied.
const ERROR_ACCESS_DENIED: i32 = 5;
/// Win32 error: the service already exists.
const ERROR_SERVICE_EXISTS: i32 = 1073;
/// Win32 error: the service does not exist.
const ERROR_SERVICE_DOES_NOT_EXIST: i32 = 1060;

/// What `service run` hands to the service thread the SCM creates.
struct Launch {
    config: Option<PathBuf>,
    runtime: tokio::runtime::Handle,
}

static LAUNCH: OnceLock<Launch> = OnceLock::new();

/// Phases reported by the agent (`notify_ready`, `notify_stopping`) while under the SCM.
static PHASES: OnceLock<Mutex<mpsc::Sender<Phase>>> = OnceLock::new();

/// Runs a `service` command on Windows.
pub(super) async fn command(
    action: ServiceCommand,
    config: Option<&Path>,
) -> Result<(), ServiceError> {
    match action {
        ServiceCommand::Run => run_dispatcher(config),
        ServiceCommand::Install { account } => install(config, account),
        ServiceCommand::Uninstall => uninstall().await,
    }
}

/// Forwards a phase to the SCM status thread; a no-op when not running under the SCM.
pub(super) fn report(phase: Phase) {
    if let Some(tx) = PHASES.get() {
        if let Ok(tx) = tx.lock() {
            let _ = tx.send(phase);
        }
    }
}

fn win32_code(e: &windows_service::Error) -> Option<i32> {
    match e {
        windows_service::Error::Winapi(io) => io.raw_os_error(),
        _ => None,
    }
}

fn manager_error(action: &'static str, e: windows_service::Error) -> ServiceError {
    match win32_code(&e) {
        Some(ERROR_ACCESS_DENIED) => ServiceError::AccessDenied,
        _ => ServiceError::Manager {
            action,
            message: match &e {
                windows_service::Error::Winapi(io) => io.to_string(),
                other => other.to_string(),
            },
        },
    }
}

// ---- service run ------------------------------------------------------------------

define_windows_service!(ffi_service_main, service_main);

/// Connects this process to the SCM; returns once the service has stopped.
fn run_dispatcher(config: Option<&Path>) -> Result<(), ServiceError> {
    let _ = LAUNCH.set(Launch {
        config: config.map(Path::to_path_buf),
        runtime: tokio::runtime::Handle::current(),
    });
    // The dispatcher blocks this thread until the service stops; the agent itself runs
    // on this runtime from the service thread.
    tokio::task::block_in_place(|| service_dispatcher::start(SERVICE_NAME, ffi_service_main))
        .map_err(|e| match win32_code(&e) {
            Some(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) => ServiceError::NotUnderServiceManager,
            _ => manager_error("connecting to the service manager", e),
        })
}

fn service_main(_arguments: Vec<OsString>) {
    // Nowhere to report to if even registration fails: the SCM times the start out.
    let _ = serve();
}

fn to_request(control: &ServiceControl) -> ControlRequest {
    match control {
        ServiceControl::Stop => ControlRequest::Stop,
        ServiceControl::Shutdown => ControlRequest::Shutdown,
        ServiceControl::Preshutdown => ControlRequest::Preshutdown,
        ServiceControl::Interrogate => ControlRequest::Interrogate,
        _ => ControlRequest::Other,
    }
}

fn to_status(r: StatusReport) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: match r.state {
            ManagerState::StartPending => ServiceState::StartPending,
            ManagerState::Running => ServiceState::Running,
            ManagerState::StopPending => ServiceState::StopPending,
            ManagerState::Stopped => ServiceState::Stopped,
        },
        controls_accepted: if r.accepts_stop {
            // PRESHUTDOWN rather than SHUTDOWN: it comes early enough, and with a timeout
            // long enough (set at install), for the card in progress to be finished.
            ServiceControlAccept::STOP | ServiceControlAccept::PRESHUTDOWN
        } else {
            ServiceControlAccept::empty()
        },
        exit_code: match r.exit {
            ServiceExit::Clean => ServiceExitCode::NO_ERROR,
            ServiceExit::Failed(code) => ServiceExitCode::ServiceSpecific(code),
        },
        checkpoint: r.checkpoint,
        wait_hint: r.wait_hint,
        process_id: None,
    }
}

fn serve() -> windows_service::Result<()> {
    let handle = service_control_handler::register(SERVICE_NAME, |control| {
        match action_for(to_request(&control)) {
            ControlAction::BeginStop => {
                super::request_stop();
                ServiceControlHandlerResult::NoError
            }
            ControlAction::Acknowledge => ServiceControlHandlerResult::NoError,
            ControlAction::NotHandled => ServiceControlHandlerResult::NotImplemented,
        }
    })?;
    let mut sequence = StatusSequence::default();
    handle.set_service_status(to_status(sequence.report(Phase::Starting)))?;

    let (tx, rx) = mpsc::channel::<Phase>();
    let _ = PHASES.set(Mutex::new(tx.clone()));
    let Some(launch) = LAUNCH.get() else {
        handle.set_service_status(to_status(sequence.report(Phase::Stopped(
            ServiceExit::Failed(super::control::EXIT_AGENT_FAILED),
        ))))?;
        return Ok(());
    };
    let runtime = launch.runtime.clone();
    let config = launch.config.clone();
    // The status handle stays on this thread; the agent reports its phases through the channel.
    std::thread::spawn(move || {
        // A panic must still end in STOPPED (with the failure code), or the SCM would
        // show the service running while nothing runs.
        let exit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(super::session::run(config.as_deref()))
        }))
        .unwrap_or(ServiceExit::Failed(super::control::EXIT_AGENT_FAILED));
        let _ = tx.send(Phase::Stopped(exit));
    });
    for phase in rx {
        let stopped = matches!(phase, Phase::Stopped(_));
        handle.set_service_status(to_status(sequence.report(phase)))?;
        if stopped {
            break;
        }
    }
    Ok(())
}

// ---- service install / uninstall --------------------------------------------------

fn install(config: Option<&Path>, account: String) -> Result<(), ServiceError> {
    let config = config
        .map(Path::to_path_buf)
        .unwrap_or_else(crate::config::service_default_path);
    let config = std::path::absolute(&config)
        .map_err(|e| ServiceError::Path(format!("--config {}: {e}", config.display())))?;
    let executable = std::env::current_exe()
        .map_err(|e| ServiceError::Path(format!("locating station-agent.exe: {e}")))?;
    if account.trim().is_empty() {
        return Err(ServiceError::Path("--account is empty".into()));
    }
    let spec = InstallSpec::new(executable, config, account);

    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .map_err(|e| manager_error("opening the service manager", e))?;
    let info = ServiceInfo {
        name: SERVICE_NAME.into(),
        display_name: DISPLAY_NAME.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: spec.executable.clone(),
        launch_arguments: spec.launch_arguments(),
        dependencies: spec
            .dependencies
            .iter()
            .map(|d| ServiceDependency::Service(d.into()))
            .collect(),
        account_name: Some(spec.account.clone().into()),
        account_password: None,
    };
    let service = manager
        .create_service(&info, ServiceAccess::CHANGE_CONFIG | ServiceAccess::DELETE)
        .map_err(|e| match win32_code(&e) {
            Some(ERROR_SERVICE_EXISTS) => ServiceError::AlreadyInstalled,
            _ => manager_error("creating the service", e),
        })?;
    // A half-configured service (no recovery, folder still readable by Users) must not
    // stay registered: remove it and report why.
    if let Err(e) = configure(&service, &spec) {
        let _ = service.delete();
        return Err(e);
    }
    println!(
        "service {SERVICE_NAME} installed (automatic start, account {}), configuration {}",
        spec.account,
        spec.config.display()
    );
    println!("start it once the configuration checks: sc start {SERVICE_NAME}");
    Ok(())
}

/// Everything after creation: description, recovery, shutdown timeout, SID, folder permissions.
fn configure(
    service: &windows_service::service::Service,
    spec: &InstallSpec,
) -> Result<(), ServiceError> {
    service
        .set_description(DESCRIPTION)
        .map_err(|e| manager_error("setting the description", e))?;
    service
        .update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(spec.recovery.reset_after),
            reboot_msg: None,
            command: None,
            actions: Some(
                spec.recovery
                    .restart_delays
                    .iter()
                    .map(|delay| ServiceAction {
                        action_type: ServiceActionType::Restart,
                        delay: *delay,
                    })
                    .collect(),
            ),
        })
        .map_err(|e| manager_error("setting the recovery actions", e))?;
    // The agent reports failures as a service-specific exit code, not as a crash.
    service
        .set_failure_actions_on_non_crash_failures(true)
        .map_err(|e| manager_error("enabling recovery on failure exit codes", e))?;
    service
        .set_preshutdown_timeout(spec.preshutdown_timeout)
        .map_err(|e| manager_error("setting the shutdown timeout", e))?;
    // Puts the service SID in the token whatever the account: the folder is granted to it.
    service
        .set_config_service_sid_info(ServiceSidType::Unrestricted)
        .map_err(|e| manager_error("setting the service SID", e))?;

    for dir in spec.folders() {
        std::fs::create_dir_all(&dir).map_err(|e| ServiceError::Permissions {
            target: dir.display().to_string(),
            message: e.to_string(),
        })?;
    }
    let icacls = icacls_exe();
    for step in spec.acl_steps() {
        let out = std::process::Command::new(&icacls)
            .args(&step.args)
            .output()
            .map_err(|e| ServiceError::Permissions {
                target: icacls.display().to_string(),
                message: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(ServiceError::Permissions {
                target: step.args[0].to_string_lossy().into_owned(),
                message: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout).trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
    }
    Ok(())
}

/// `icacls.exe` from System32, not from whatever PATH an elevated prompt has.
fn icacls_exe() -> PathBuf {
    let root = std::env::var_os("SystemRoot").unwrap_or_else(|| r"C:\Windows".into());
    PathBuf::from(root).join("System32").join("icacls.exe")
}

async fn uninstall() -> Result<(), ServiceError> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(|e| manager_error("opening the service manager", e))?;
    let service = manager
        .open_service(
            SERVICE_NAME,
            ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
        )
        .map_err(|e| match win32_code(&e) {
            Some(ERROR_SERVICE_DOES_NOT_EXIST) => ServiceError::NotInstalled,
            _ => manager_error("opening the service", e),
        })?;
    let state = |s: &windows_service::service::Service| {
        s.query_status()
            .map(|st| st.current_state)
            .map_err(|e| manager_error("querying the service", e))
    };
    if state(&service)? != ServiceState::Stopped {
        println!("stopping {SERVICE_NAME} (the card in progress is finished first)…");
        if state(&service)? != ServiceState::StopPending {
            service
                .stop()
                .map_err(|e| manager_error("stopping the service", e))?;
        }
        let limit = CARD_STOP_GRACE + STOP_MARGIN;
        let stopped = tokio::time::timeout(limit, async {
            loop {
                match state(&service) {
                    Ok(ServiceState::Stopped) => return Ok(()),
                    Ok(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                    Err(e) => return Err(e),
                }
            }
        })
        .await
        .map_err(|_| ServiceError::StopTimeout(limit))?;
        stopped?;
    }
    service
        .delete()
        .map_err(|e| manager_error("removing the service", e))?;
    println!(
        "service {SERVICE_NAME} removed; the configuration, keys and journal were left in place"
    );
    Ok(())
}

// These need a Windows test build, which the Unix-only dev-dependency station-sim
// prevents today; they were type-checked by cross-compiling them as plain code.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scm_stop_shutdown_and_preshutdown_map_to_the_graceful_stop() {
        for c in [
            ServiceControl::Stop,
            ServiceControl::Shutdown,
            ServiceControl::Preshutdown,
        ] {
            assert_eq!(action_for(to_request(&c)), ControlAction::BeginStop);
        }
        assert_eq!(to_request(&ServiceControl::Pause), ControlRequest::Other);
    }

    #[test]
    fn running_accepts_stop_and_preshutdown() {
        let s = to_status(StatusSequence::default().report(Phase::Running));
        assert_eq!(s.current_state, ServiceState::Running);
        assert_eq!(
            s.controls_accepted,
            ServiceControlAccept::STOP | ServiceControlAccept::PRESHUTDOWN
        );
    }

    #[test]
    fn stopping_reports_the_grace_as_wait_hint() {
        let s = to_status(StatusSequence::default().report(Phase::Stopping {
            grace: CARD_STOP_GRACE,
        }));
        assert_eq!(s.current_state, ServiceState::StopPending);
        assert_eq!(s.wait_hint, CARD_STOP_GRACE);
    }

    #[test]
    fn a_failure_is_a_service_specific_exit_code() {
        let s = to_status(StatusSequence::default().report(Phase::Stopped(ServiceExit::Failed(2))));
        assert_eq!(s.current_state, ServiceState::Stopped);
        assert_eq!(s.exit_code, ServiceExitCode::ServiceSpecific(2));
    }
}
