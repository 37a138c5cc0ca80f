//! A private pcscd with the vpcd driver for hardware-in-the-loop tests.
//!
//! pcsc-lite 1.9.9 hard-codes its server socket and pid file under `/run/pcscd`, and
//! only the client library honours `PCSCLITE_CSOCK_NAME`. So the private daemon runs
//! in its own mount namespace (`unshare --mount`) where a private directory is
//! bind-mounted on `/run/pcscd`; the socket it creates there is the same inode as
//! `<workdir>/run/pcscd.comm` outside, which test processes reach through
//! `PCSCLITE_CSOCK_NAME`. An empty tmpfs over the USB driver directory keeps the private
//! daemon away from real USB readers; a private `reader.conf.d` (`pcscd -c DIR`)
//! declares vpcd on free TCP ports instead of the system's 35963/35964.
//! A system pcscd, if any, is neither needed nor touched.
//!
//! The daemon is supervised like a service manager would do it: when it exits it is
//! started again, which is what the HIL "pcscd restarted" test relies on.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Reader name prefix the vpcd driver gets from our reader.conf (`… 00 00`, `… 00 01`).
pub const READER_NAME: &str = "Virtual PCD";
/// Where pcsc-lite looks for USB reader bundles; hidden inside the namespace.
const USB_DROP_DIR: &str = "/usr/lib/pcsc/drivers";
/// Where Debian and upstream vsmartcard install the vpcd IFD handler.
const VPCD_DRIVER_CANDIDATES: &[&str] = &[
    "/usr/lib/pcsc/drivers/serial/libifdvpcd.so",
    "/usr/lib/x86_64-linux-gnu/pcsc/drivers/serial/libifdvpcd.so",
    "/usr/local/lib/pcsc/drivers/serial/libifdvpcd.so",
];
/// First TCP port tried for the private vpcd slots (0x9C40).
const FIRST_PORT: u16 = 40000;
/// A unix socket path must fit in `sockaddr_un.sun_path` (108 bytes with the NUL).
const SUN_PATH_MAX: usize = 107;
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A running private pcscd; dropping it stops the daemon.
pub struct PrivatePcscd {
    workdir: PathBuf,
    port: u16,
    stop: Arc<AtomicBool>,
    child: Arc<Mutex<Option<Child>>>,
    supervisor: Option<JoinHandle<()>>,
}

/// Everything needed to (re)start the daemon the same way.
#[derive(Clone)]
struct Launch {
    pcscd: PathBuf,
    run_dir: PathBuf,
    conf_dir: PathBuf,
    log: PathBuf,
}

impl Launch {
    fn spawn(&self) -> Result<Child, String> {
        // Stale files from a killed instance would make the new one refuse to start.
        let _ = fs::remove_file(self.run_dir.join("pcscd.comm"));
        let _ = fs::remove_file(self.run_dir.join("pcscd.pid"));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let script = format!(
            "mount --bind \"$1\" /run/pcscd || exit 90; \
             if [ -d {USB_DROP_DIR} ]; then mount -t tmpfs station-hil {USB_DROP_DIR} || exit 91; fi; \
             exec \"$2\" --foreground --info --config \"$3\""
        );
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(script)
            .arg("sh")
            .arg(&self.run_dir)
            .arg(&self.pcscd)
            .arg(&self.conf_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot run unshare (util-linux) to start pcscd: {e}"))
    }
}

impl PrivatePcscd {
    /// Starts pcscd with vpcd under `workdir` and waits until the "Virtual PCD" readers are listed.
    ///
    /// Sets `PCSCLITE_CSOCK_NAME` in this process so that its own readiness check (and
    /// every child it spawns) talks to the private daemon.
    pub fn start(workdir: &Path) -> Result<PrivatePcscd, String> {
        let pcscd = find_pcscd()?;
        let driver = find_vpcd_driver()?;
        let workdir = absolute(workdir)?;
        let run_dir = workdir.join("run");
        let conf_dir = workdir.join("reader.conf.d");
        let driver_dir = workdir.join("driver");
        for dir in [&run_dir, &conf_dir, &driver_dir] {
            fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let socket = run_dir.join("pcscd.comm");
        if socket.as_os_str().len() > SUN_PATH_MAX {
            return Err(format!(
                "private pcscd socket path {} is longer than {SUN_PATH_MAX} bytes; use a shorter work dir",
                socket.display()
            ));
        }
        // The bind-mount target must exist; an empty /run/pcscd is what the pcscd package makes.
        fs::create_dir_all("/run/pcscd")
            .map_err(|e| format!("cannot create /run/pcscd as a mount point: {e}"))?;
        // The USB driver directory is hidden in the namespace, so use a copy of the driver.
        let private_driver = driver_dir.join("libifdvpcd.so");
        fs::copy(&driver, &private_driver).map_err(|e| {
            format!(
                "cannot copy the vpcd driver {} to {}: {e}",
                driver.display(),
                private_driver.display()
            )
        })?;
        let port = free_port_pair()?;
        fs::write(
            conf_dir.join("vpcd"),
            format!(
                "FRIENDLYNAME \"{READER_NAME}\"\nDEVICENAME /dev/null:0x{port:04X}\nLIBPATH {}\nCHANNELID 0x{port:04X}\n",
                private_driver.display()
            ),
        )
        .map_err(|e| format!("cannot write the private reader.conf: {e}"))?;

        let launch = Launch {
            pcscd,
            run_dir,
            conf_dir,
            log: workdir.join("pcscd.log"),
        };
        let _ = fs::remove_file(&launch.log);
        let child = Arc::new(Mutex::new(Some(launch.spawn()?)));
        let stop = Arc::new(AtomicBool::new(false));
        let supervisor = {
            let (child, stop, launch) = (child.clone(), stop.clone(), launch.clone());
            std::thread::Builder::new()
                .name("private-pcscd".into())
                .spawn(move || supervise(&launch, &child, &stop))
                .map_err(|e| format!("cannot start the pcscd supervisor thread: {e}"))?
        };
        let daemon = PrivatePcscd {
            workdir,
            port,
            stop,
            child,
            supervisor: Some(supervisor),
        };
        std::env::set_var("PCSCLITE_CSOCK_NAME", daemon.socket_path());
        daemon.wait_ready(&launch.log)?;
        Ok(daemon)
    }

    /// Path of the private daemon's client socket.
    pub fn socket_path(&self) -> PathBuf {
        self.workdir.join("run").join("pcscd.comm")
    }

    /// TCP port of reader "Virtual PCD 00 00"; "… 00 01" is the next port.
    pub fn vpcd_port(&self) -> u16 {
        self.port
    }

    /// Environment a test process needs to use the private daemon and its vpcd readers.
    pub fn env(&self) -> Vec<(String, String)> {
        let run = self.workdir.join("run");
        vec![
            ("STATION_HIL_PCSC".into(), "1".into()),
            (
                "PCSCLITE_CSOCK_NAME".into(),
                self.socket_path().display().to_string(),
            ),
            ("STATION_HIL_VPCD_PORT".into(), self.port.to_string()),
            (
                "STATION_HIL_PCSCD_PIDFILE".into(),
                run.join("pcscd.pid").display().to_string(),
            ),
        ]
    }

    fn wait_ready(&self, log: &Path) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("not started");
        while Instant::now() < deadline {
            match list_readers() {
                Ok(readers) if readers.iter().any(|r| r.starts_with(READER_NAME)) => return Ok(()),
                Ok(readers) => last = format!("readers listed: {readers:?}"),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let tail = fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(15).collect();
        Err(format!(
            "private pcscd did not list '{READER_NAME}' within {READY_TIMEOUT:?} (last: {last}); \
             it must run as root (unshare --mount). pcscd log, newest first:\n{}",
            tail.join("\n")
        ))
    }
}

/// The reader names pcscd lists, through the `pcsc-readers` helper (built by [`build_helper`]).
fn list_readers() -> Result<Vec<String>, String> {
    let out = Command::new(helper_path())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", helper_path().display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// Where cargo leaves the `pcsc-readers` helper (the workspace's debug target dir).
fn helper_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug").join("pcsc-readers")
}

/// Builds the PC/SC helper; call it after the system packages are installed, since it
/// links libpcsclite (which the xtask itself must not need).
pub fn build_helper() -> Result<(), String> {
    crate::cargo(
        &[
            "build",
            "--quiet",
            "-p",
            "station-pcsc",
            "--bin",
            "pcsc-readers",
        ],
        &[],
    )
}

impl Drop for PrivatePcscd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(supervisor) = self.supervisor.take() {
            let _ = supervisor.join();
        }
        if let Ok(mut slot) = self.child.lock() {
            if let Some(child) = slot.take() {
                terminate(child);
            }
        }
    }
}

/// Restarts pcscd whenever it exits, until stopped.
fn supervise(launch: &Launch, child: &Mutex<Option<Child>>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        let Ok(mut slot) = child.lock() else { return };
        let exited = match slot.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => Some(status.to_string()),
            Some(Ok(None)) => None,
            Some(Err(e)) => Some(e.to_string()),
            None => Some("not running".into()),
        };
        if let Some(why) = exited {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            eprintln!("xtask: private pcscd exited ({why}); restarting it");
            match launch.spawn() {
                Ok(new) => *slot = Some(new),
                Err(e) => {
                    eprintln!("xtask: cannot restart private pcscd: {e}");
                    *slot = None;
                }
            }
        }
    }
}

/// SIGTERM first so pcscd removes its socket and closes the vpcd ports; SIGKILL if it hangs.
fn terminate(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn find_pcscd() -> Result<PathBuf, String> {
    let mut candidates = vec![PathBuf::from("/usr/sbin/pcscd")];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("pcscd")));
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        "pcscd is not installed: `apt-get install pcscd` (HIL tests need it; they are never skipped)"
            .to_string()
    })
}

fn find_vpcd_driver() -> Result<PathBuf, String> {
    VPCD_DRIVER_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "the vpcd reader driver is not installed (looked for {}): `apt-get install vsmartcard-vpcd`",
                VPCD_DRIVER_CANDIDATES.join(", ")
            )
        })
}

fn absolute(path: &Path) -> Result<PathBuf, String> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .map_err(|e| format!("cannot resolve {}: {e}", path.display()))
    }
}

/// Two consecutive free TCP ports (vpcd uses base for slot 0 and base + 1 for slot 1).
fn free_port_pair() -> Result<u16, String> {
    (FIRST_PORT..FIRST_PORT + 200)
        .step_by(2)
        .find(|&p| {
            TcpListener::bind(("0.0.0.0", p)).is_ok()
                && TcpListener::bind(("0.0.0.0", p + 1)).is_ok()
        })
        .ok_or_else(|| format!("no two free consecutive TCP ports from {FIRST_PORT} for vpcd"))
}
