//! `station-agent service …` outside Windows: the commands exist, and say plainly that
//! the Windows service is not for this system and where the systemd unit is.
#![cfg(not(windows))]

use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_station-agent"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn service_install_on_linux_exits_2_and_points_at_the_systemd_unit() {
    let (code, err) = run(&[
        "service",
        "install",
        "--config",
        "/etc/station-agent/station.toml",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("[SVC_WINDOWS_ONLY]"), "{err}");
    assert!(
        err.contains("packaging/systemd/station-agent.service"),
        "{err}"
    );
}

#[test]
fn service_uninstall_on_linux_exits_2() {
    let (code, err) = run(&["service", "uninstall"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("[SVC_WINDOWS_ONLY]"), "{err}");
}

#[test]
fn service_run_on_linux_exits_2_rather_than_running_the_agent() {
    let (code, err) = run(&["service", "run", "--config", "/nonexistent/station.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("[SVC_WINDOWS_ONLY]"), "{err}");
}
