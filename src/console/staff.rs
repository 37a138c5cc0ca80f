//! Staff sign-in for the console: who pressed Start, handed a card over, confirmed or
//! spoiled it is what an auditor asks first, so every staff action carries a person.
//!
//! Accounts live in a small TOML file (`[[staff]] id, name, pin_hash`), PINs only as
//! Argon2id hashes. A session is a random bearer token held in memory (sent in the
//! `Authorization` header, so a page on another site cannot act with it); it ends
//! after an idle period or a shift's length, and at agent restart. Repeated wrong PINs
//! lock the account for a while.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use zeroize::Zeroizing;

/// Wrong PINs in a row that lock an account.
pub const MAX_FAILURES: u32 = 5;
/// How long a locked account stays locked.
pub const LOCKOUT: Duration = Duration::from_secs(5 * 60);
/// A session unused this long ends (a workstation left signed in at the counter).
pub const IDLE: Duration = Duration::from_secs(15 * 60);
/// No session outlives a shift.
pub const MAX_SESSION: Duration = Duration::from_secs(10 * 60 * 60);
/// Shortest PIN accepted when an account is created.
pub const MIN_PIN: usize = 6;

/// Why a staff file or a sign-in was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StaffError {
    /// The staff file cannot be read or is malformed.
    #[error("staff file {path}: {message}")]
    File {
        /// File.
        path: String,
        /// What is wrong (names the entry).
        message: String,
    },
    /// Unknown staff id or wrong PIN (deliberately the same answer for both).
    #[error("staff id or PIN not recognised")]
    BadCredentials,
    /// Too many wrong PINs.
    #[error("too many wrong PINs: this account is locked for {minutes} more minute(s)")]
    Locked {
        /// Minutes left, rounded up.
        minutes: u64,
    },
    /// No valid session.
    #[error("not signed in, or the session has ended: sign in again")]
    NotSignedIn,
    /// A new account or PIN does not meet the rules.
    #[error("{0}")]
    Refused(String),
}

impl StaffError {
    /// Stable code for logs and API clients.
    pub fn code(&self) -> &'static str {
        match self {
            StaffError::File { .. } => "STAFF_FILE",
            StaffError::BadCredentials => "STAFF_BAD_CREDENTIALS",
            StaffError::Locked { .. } => "STAFF_LOCKED",
            StaffError::NotSignedIn => "STAFF_NOT_SIGNED_IN",
            StaffError::Refused(_) => "STAFF_REFUSED",
        }
    }
}

/// One staff account as stored.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StaffAccount {
    /// Sign-in id, recorded in the journal as the actor.
    pub id: String,
    /// Name shown on the console.
    pub name: String,
    /// Argon2id PHC string of the PIN.
    pub pin_hash: String,
}

impl std::fmt::Debug for StaffAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaffAccount")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("pin_hash", &"<redacted>")
            .finish()
    }
}

/// The staff file: every account that may sign in at this station.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StaffFile {
    /// Accounts.
    #[serde(default)]
    pub staff: Vec<StaffAccount>,
}

fn valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl StaffFile {
    /// Reads and checks a staff file (ids well formed and unique, hashes parseable).
    pub fn load(path: &Path) -> Result<Self, StaffError> {
        let err = |message: String| StaffError::File {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let file: StaffFile = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for (i, a) in file.staff.iter().enumerate() {
            if !valid_id(&a.id) {
                return Err(err(format!(
                    "staff[{i}].id: 1 to 32 letters, digits, '.', '_' or '-'"
                )));
            }
            if !seen.insert(a.id.as_str()) {
                return Err(err(format!("staff[{i}].id: '{}' appears twice", a.id)));
            }
            if PasswordHash::new(&a.pin_hash).is_err() {
                return Err(err(format!(
                    "staff[{i}].pin_hash: not a PIN hash; set the PIN with `station-agent staff add`"
                )));
            }
        }
        Ok(file)
    }

    /// Writes the file readable by its owner only (it holds PIN hashes).
    pub fn save(&self, path: &Path) -> Result<(), StaffError> {
        let err = |message: String| StaffError::File {
            path: path.display().to_string(),
            message,
        };
        let text = toml::to_string(self).map_err(|e| err(e.to_string()))?;
        let tmp = path.with_extension("tmp");
        write_private(&tmp, &text).map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
    }

    /// Adds an account or sets a new PIN for an existing one.
    pub fn set(&mut self, id: &str, name: &str, pin: &str) -> Result<(), StaffError> {
        if !valid_id(id) {
            return Err(StaffError::Refused(
                "staff id: 1 to 32 letters, digits, '.', '_' or '-'".into(),
            ));
        }
        let hash = hash_pin(pin)?;
        match self.staff.iter_mut().find(|a| a.id == id) {
            Some(a) => {
                a.name = name.to_string();
                a.pin_hash = hash;
            }
            None => self.staff.push(StaffAccount {
                id: id.to_string(),
                name: name.to_string(),
                pin_hash: hash,
            }),
        }
        Ok(())
    }

    /// Removes an account; false when there was none.
    pub fn remove(&mut self, id: &str) -> bool {
        let before = self.staff.len();
        self.staff.retain(|a| a.id != id);
        self.staff.len() != before
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// Hashes a PIN with Argon2id and a random salt (PHC string).
pub fn hash_pin(pin: &str) -> Result<String, StaffError> {
    if pin.chars().count() < MIN_PIN {
        return Err(StaffError::Refused(format!(
            "a PIN has at least {MIN_PIN} characters"
        )));
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(pin.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StaffError::Refused(format!("cannot hash the PIN: {e}")))
}

/// Who is signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaffMember {
    /// Staff id (the journal's actor).
    pub id: String,
    /// Display name.
    pub name: String,
}

struct Session {
    member: StaffMember,
    started: Instant,
    last_seen: Instant,
}

#[derive(Default)]
struct Failures {
    count: u32,
    locked_until: Option<Instant>,
}

#[derive(Default)]
struct Book {
    sessions: HashMap<String, Session>,
    failures: HashMap<String, Failures>,
}

/// Where the accounts come from: fixed, or a file re-read when it changes.
struct Roster {
    source: Option<(PathBuf, Option<SystemTime>)>,
    accounts: Vec<StaffAccount>,
}

/// The accounts of a station and their live sessions.
pub struct StaffDesk {
    roster: Mutex<Roster>,
    book: Mutex<Book>,
}

impl StaffDesk {
    /// A desk over fixed accounts.
    pub fn new(file: StaffFile) -> Self {
        StaffDesk {
            roster: Mutex::new(Roster {
                source: None,
                accounts: file.staff,
            }),
            book: Mutex::new(Book::default()),
        }
    }

    /// A desk over a staff file, re-read when it changes: an account added or removed
    /// by IT takes effect at once, and a removed member's sessions end.
    pub fn watching(path: &Path) -> Result<Self, StaffError> {
        let desk = StaffDesk::new(StaffFile::load(path)?);
        desk.lock_roster().source = Some((path.to_path_buf(), modified(path)));
        Ok(desk)
    }

    fn lock_roster(&self) -> std::sync::MutexGuard<'_, Roster> {
        self.roster.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current accounts (a file that became unreadable keeps the last good list).
    fn accounts(&self) -> Vec<StaffAccount> {
        let mut r = self.lock_roster();
        if let Some((path, seen)) = r.source.as_mut() {
            let now = modified(path);
            if now != *seen {
                *seen = now;
                match StaffFile::load(path) {
                    Ok(f) => {
                        tracing::info!(accounts = f.staff.len(), "staff file re-read");
                        r.accounts = f.staff;
                    }
                    Err(e) => tracing::error!("{e}; keeping the previous staff list"),
                }
            }
        }
        r.accounts.clone()
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks the PIN and opens a session; returns its bearer token.
    pub fn sign_in(
        &self,
        id: &str,
        pin: &str,
    ) -> Result<(Zeroizing<String>, StaffMember), StaffError> {
        let now = Instant::now();
        if let Some(f) = self.book().failures.get(id) {
            if let Some(until) = f.locked_until.filter(|u| *u > now) {
                let left = until - now;
                return Err(StaffError::Locked {
                    minutes: left.as_secs().div_ceil(60).max(1),
                });
            }
        }
        // The hash is checked even for an unknown id so the answer takes as long.
        let accounts = self.accounts();
        let account = accounts.iter().find(|a| a.id == id);
        let hash = match account {
            Some(a) => a.pin_hash.as_str(),
            None => decoy_hash(),
        };
        let ok = PasswordHash::new(hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(pin.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false);
        let mut book = self.book();
        let (Some(account), true) = (account, ok) else {
            if account.is_some() {
                let f = book.failures.entry(id.to_string()).or_default();
                f.count += 1;
                if f.count >= MAX_FAILURES {
                    f.count = 0;
                    f.locked_until = Some(now + LOCKOUT);
                    tracing::warn!(staff = id, "console account locked after wrong PINs");
                }
            }
            tracing::info!(staff = id, "console sign-in refused");
            return Err(StaffError::BadCredentials);
        };
        book.failures.remove(id);
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let token = Zeroizing::new(hex::encode(raw));
        let member = StaffMember {
            id: account.id.clone(),
            name: account.name.clone(),
        };
        book.sessions.insert(
            token.to_string(),
            Session {
                member: member.clone(),
                started: now,
                last_seen: now,
            },
        );
        tracing::info!(staff = id, "console sign-in");
        Ok((token, member))
    }

    /// The member behind a bearer token, if the session is still open (it is kept alive).
    pub fn member(&self, token: &str) -> Result<StaffMember, StaffError> {
        let now = Instant::now();
        let accounts = self.accounts();
        let mut book = self.book();
        book.sessions.retain(|_, s| {
            now - s.last_seen < IDLE
                && now - s.started < MAX_SESSION
                && accounts.iter().any(|a| a.id == s.member.id)
        });
        let s = book
            .sessions
            .get_mut(token)
            .ok_or(StaffError::NotSignedIn)?;
        s.last_seen = now;
        Ok(s.member.clone())
    }

    /// Ends a session.
    pub fn sign_out(&self, token: &str) {
        if let Some(s) = self.book().sessions.remove(token) {
            tracing::info!(staff = %s.member.id, "console sign-out");
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// A hash of a random PIN nobody knows, verified for unknown ids.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let mut raw = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut raw);
        hash_pin(&hex::encode(raw)).expect("hash a random PIN")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desk() -> StaffDesk {
        let mut f = StaffFile::default();
        f.set("amartin", "A. Martin", "482913").unwrap();
        StaffDesk::new(f)
    }

    #[tokio::test]
    async fn the_right_pin_opens_a_session_that_names_the_member() {
        let d = desk();
        let (token, m) = d.sign_in("amartin", "482913").unwrap();
        assert_eq!(m.name, "A. Martin");
        assert_eq!(d.member(&token).unwrap().id, "amartin");
    }

    #[tokio::test]
    async fn a_wrong_pin_and_an_unknown_id_get_the_same_answer() {
        let d = desk();
        assert_eq!(
            d.sign_in("amartin", "000000").unwrap_err(),
            StaffError::BadCredentials
        );
        assert_eq!(
            d.sign_in("nobody", "482913").unwrap_err(),
            StaffError::BadCredentials
        );
    }

    #[tokio::test(start_paused = true)]
    async fn five_wrong_pins_lock_the_account_until_the_lockout_ends() {
        let d = desk();
        for _ in 0..MAX_FAILURES {
            let _ = d.sign_in("amartin", "000000");
        }
        assert_eq!(
            d.sign_in("amartin", "482913").unwrap_err(),
            StaffError::Locked { minutes: 5 }
        );
        tokio::time::advance(LOCKOUT).await;
        assert!(d.sign_in("amartin", "482913").is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_session_ends() {
        let d = desk();
        let (token, _) = d.sign_in("amartin", "482913").unwrap();
        tokio::time::advance(IDLE - Duration::from_secs(1)).await;
        assert!(d.member(&token).is_ok(), "use keeps it alive");
        tokio::time::advance(IDLE).await;
        assert_eq!(d.member(&token).unwrap_err(), StaffError::NotSignedIn);
    }

    #[tokio::test(start_paused = true)]
    async fn no_session_outlives_a_shift_even_in_use() {
        let d = desk();
        let (token, _) = d.sign_in("amartin", "482913").unwrap();
        let mut used = Duration::ZERO;
        while used < MAX_SESSION {
            tokio::time::advance(IDLE / 2).await;
            used += IDLE / 2;
            let _ = d.member(&token);
        }
        assert_eq!(d.member(&token).unwrap_err(), StaffError::NotSignedIn);
    }

    #[tokio::test]
    async fn signing_out_ends_the_session() {
        let d = desk();
        let (token, _) = d.sign_in("amartin", "482913").unwrap();
        d.sign_out(&token);
        assert_eq!(d.member(&token).unwrap_err(), StaffError::NotSignedIn);
    }

    #[tokio::test]
    async fn a_member_removed_from_the_file_is_signed_out_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staff.toml");
        let mut f = StaffFile::default();
        f.set("amartin", "A. Martin", "482913").unwrap();
        f.set("bnoor", "B. Noor", "739104").unwrap();
        f.save(&path).unwrap();
        let d = StaffDesk::watching(&path).unwrap();
        let (token, _) = d.sign_in("amartin", "482913").unwrap();
        f.remove("amartin");
        f.save(&path).unwrap();
        // A file system with coarse timestamps may keep the same mtime: make it move.
        let later = SystemTime::now() + Duration::from_secs(2);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(d.member(&token).unwrap_err(), StaffError::NotSignedIn);
        assert!(d.sign_in("bnoor", "739104").is_ok());
    }

    #[test]
    fn a_short_pin_is_refused() {
        let mut f = StaffFile::default();
        assert!(matches!(
            f.set("amartin", "A. Martin", "1234"),
            Err(StaffError::Refused(_))
        ));
    }

    #[test]
    fn the_file_keeps_hashes_not_pins_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staff.toml");
        let mut f = StaffFile::default();
        f.set("amartin", "A. Martin", "482913").unwrap();
        f.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("482913"));
        assert!(text.contains("$argon2id$"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(StaffFile::load(&path).unwrap(), f);
    }

    #[test]
    fn a_duplicate_id_in_the_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staff.toml");
        let mut f = StaffFile::default();
        f.set("amartin", "A. Martin", "482913").unwrap();
        f.staff.push(f.staff[0].clone());
        f.save(&path).unwrap();
        let e = StaffFile::load(&path).unwrap_err().to_string();
        assert!(e.contains("staff[1].id"), "{e}");
    }
}
