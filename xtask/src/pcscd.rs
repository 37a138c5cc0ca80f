//! A private pcscd with the vpcd driver, for hardware-in-the-loop tests.
//!
//! pcscd always serves `/run/pcscd/pcscd.comm`, so it runs in its own mount namespace
//! (`unshare --mount`) where `/run/pcscd` is a bind mount of a private folder; the
//! tests, outside that namespace, reach it through `PCSCLITE_CSOCK_NAME`, which
//! libpcsclite honours. Its vpcd driver listens on private ports, so a system pcscd
//! (and its vpcd on 35963) is neither needed nor disturbed.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian puts the vpcd reader driver.
const VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";

/// A running private pcscd; killed on drop.
pub struct PrivatePcscd {
    child: Child,
    socket: PathBuf,
    port: u16,
}

fn free_port_pair() -> Result<u16, String> {
    for _ in 0..50 {
        let a = TcpListener::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        let p = a.local_addr().map_err(|e| e.to_string())?.port();
        if p < u16::MAX && TcpListener::bind(("0.0.0.0", p + 1)).is_ok() {
            return Ok(p);
        }
    }
    Err("no free pair of TCP ports for vpcd".into())
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|d| d.join(cmd))
            .find(|p| p.is_file())
    })
}

impl PrivatePcscd {
    /// Starts pcscd in `workdir` and waits until its vpcd port accepts a card.
    pub fn start(workdir: &Path) -> Result<Self, String> {
        let pcscd = which("pcscd").ok_or("pcscd is not installed (apt-get install pcscd)")?;
        if !Path::new(VPCD_DRIVER).is_file() {
            return Err(format!(
                "the vpcd driver {VPCD_DRIVER} is missing (apt-get install vsmartcard-vpcd)"
            ));
        }
        let unshare = which("unshare").ok_or("unshare (util-linux) is not installed")?;
        let run = workdir.join("run");
        let conf = workdir.join("reader.conf.d");
        let _ = std::fs::remove_dir_all(workdir);
        std::fs::create_dir_all(&run).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&conf).map_err(|e| e.to_string())?;
        let port = free_port_pair()?;
        std::fs::write(
            conf.join("vpcd"),
            format!(
                "FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME   /dev/null:0x{port:04X}\n\
                 LIBPATH      {VPCD_DRIVER}\nCHANNELID    0x{port:04X}\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let script = format!(
            "mount -t tmpfs none /run && mkdir /run/pcscd && mount --bind '{}' /run/pcscd \
             && exec '{}' -f -c '{}'",
            run.display(),
            pcscd.display(),
            conf.display()
        );
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let mut cmd = Command::new(unshare);
        cmd.args(["--mount", "--propagation", "private"]);
        if !root {
            cmd.arg("--map-root-user");
        }
        let log = std::fs::File::create(workdir.join("pcscd.log")).map_err(|e| e.to_string())?;
        let child = cmd
            .args(["sh", "-c", &script])
            .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot start pcscd: {e}"))?;
        let mut me = PrivatePcscd {
            child,
            socket: run.join("pcscd.comm"),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = me.child.try_wait() {
                let log = std::fs::read_to_string(workdir.join("pcscd.log")).unwrap_or_default();
                return Err(format!("private pcscd exited ({status}): {log}"));
            }
            if me.socket.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                // That probe connection looked like a card to vpcd; give it time to settle.
                std::thread::sleep(Duration::from_millis(300));
                return Ok(me);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = me.child.kill();
        Err("private pcscd did not open its socket and vpcd port within 15 s".into())
    }

    /// Environment that test processes need to reach this pcscd and its vpcd.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("STATION_HIL_PCSC".into(), "1".into()),
            (
                "PCSCLITE_CSOCK_NAME".into(),
                self.socket.display().to_string(),
            ),
            ("STATION_VPCD_PORT".into(), self.port.to_string()),
        ]
    }
}

impl Drop for PrivatePcscd {
    fn drop(&mut self) {
        // The child is `unshare`, which exec'd into sh then pcscd: one process.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
