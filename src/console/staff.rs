//! Staff sign-in for the console: who pressed Start, handed a card over, confirmed or
//! spoiled it is what an auditor asks first, so every staff action carries a person.
//!
//! Accounts live in a small TOML file (`[[staff]] id, name, pin_hash`), PINs only as
//! Argon2id hashes. A session is a random bearer token held in memory (sent in the
//! `Authorization` header, so a page on another site cannot act with it); it ends
//! after an idle period or a shift's length, and at agent restart. Repeated wrong PINs
//! lock the id for 30 minutes, and PIN checks are rationed ([`super::lockout`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::time::Instant;
use zeroize::Zeroizing;

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;
use rand::RngCore;

pub use super::lockout::{LOCKOUT, MAX_CONCURRENT_CHECKS, MAX_FAILURES};
pub use crate::staff::{hash_pin, StaffAccount, StaffError, StaffFile, MIN_PIN};

use super::lockout::Lockout;
/// A session unused this long ends (a workstation left signed in at the counter).
pub const IDLE: Duration = Duration::from_secs(15 * 60);
/// No session outlives a shift.
pub const MAX_SESSION: Duration = Duration::from_secs(10 * 60 * 60);
/// Who is signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaffMember {
    /// Staff id (the journal's actor).
    pub id: String,
    /// Display name.
    pub name: String,
    /// What they may do.
    pub role: crate::roles::Role,
}

struct Session {
    member: StaffMember,
    started: Instant,
    last_seen: Instant,
}

#[derive(Default)]
struct Book {
    sessions: HashMap<String, Session>,
}

/// How often, at most, the staff file is looked at (its modification time) for a
/// change: every console request asks for the accounts, and a stat per request is
/// waste; a removed member is still locked out within this long.
pub const STAFF_FILE_CHECK: Duration = Duration::from_secs(1);

/// The staff file behind a roster: its path, the modification time last read, and when
/// it was last looked at.
struct Source {
    path: PathBuf,
    seen: Option<SystemTime>,
    checked: Instant,
}

/// Where the accounts come from: fixed, or a file re-read when it changes.
struct Roster {
    source: Option<Source>,
    accounts: Vec<StaffAccount>,
}

/// The accounts of a station and their live sessions (clones share them).
#[derive(Clone)]
pub struct StaffDesk {
    roster: Arc<Mutex<Roster>>,
    book: Arc<Mutex<Book>>,
    lockout: Arc<Lockout>,
}

impl StaffDesk {
    /// A desk over fixed accounts.
    pub fn new(file: StaffFile) -> Self {
        StaffDesk {
            roster: Arc::new(Mutex::new(Roster {
                source: None,
                accounts: file.staff,
            })),
            book: Arc::new(Mutex::new(Book::default())),
            lockout: Arc::new(Lockout::default()),
        }
    }

    /// A desk over a staff file, re-read when it changes: an account added or removed
    /// by IT takes effect at once, and a removed member's sessions end.
    pub fn watching(path: &Path) -> Result<Self, StaffError> {
        let desk = StaffDesk::new(StaffFile::load(path)?);
        desk.lock_roster().source = Some(Source {
            path: path.to_path_buf(),
            seen: modified(path),
            checked: Instant::now(),
        });
        Ok(desk)
    }

    fn lock_roster(&self) -> std::sync::MutexGuard<'_, Roster> {
        self.roster.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current accounts (a file that became unreadable keeps the last good list),
    /// the file looked at no more than once per [`STAFF_FILE_CHECK`].
    fn accounts(&self) -> Vec<StaffAccount> {
        let mut guard = self.lock_roster();
        let r = &mut *guard;
        let due = Instant::now();
        if let Some(source) = r
            .source
            .as_mut()
            .filter(|s| due - s.checked >= STAFF_FILE_CHECK)
        {
            source.checked = due;
            let now = modified(&source.path);
            if now != source.seen {
                source.seen = now;
                match StaffFile::load(&source.path) {
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

    /// Checks the PIN and opens a session; returns its bearer token. The attempt is
    /// reserved against the id's lockout first and the Argon2 check runs on the blocking
    /// pool only in one of the few check slots, so a burst tests no more PINs, and
    /// holds no more memory, than the limits allow.
    pub async fn sign_in(
        &self,
        id: &str,
        pin: &str,
    ) -> Result<(Zeroizing<String>, StaffMember), StaffError> {
        let mut reservation = self.lockout.reserve(id).inspect_err(|e| {
            tracing::info!(staff = id, code = e.code(), "console sign-in refused");
        })?;
        let slot = match self.lockout.check_slot().await {
            Ok(slot) => slot,
            Err(e) => {
                reservation.released();
                return Err(e);
            }
        };
        reservation.checking();
        let desk = self.clone();
        let (id_owned, pin) = (id.to_string(), Zeroizing::new(pin.to_string()));
        // The slot moves into the check: it frees when Argon2 is done, even if the
        // caller has gone away meanwhile.
        let checked = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            desk.check_pin(&id_owned, &pin)
        })
        .await;
        let Ok(Some(account)) = checked else {
            // A check that panicked counts as a wrong PIN, like one that failed.
            reservation.failed();
            tracing::info!(staff = id, "console sign-in refused");
            return Err(StaffError::BadCredentials);
        };
        reservation.succeeded();
        let now = Instant::now();
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let token = Zeroizing::new(hex::encode(raw));
        let member = StaffMember {
            id: account.id.clone(),
            name: account.name.clone(),
            role: account.role,
        };
        self.book().sessions.insert(
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

    /// The account whose PIN this is (blocking: Argon2). The hash is checked even for
    /// an unknown id so that the answer takes as long.
    fn check_pin(&self, id: &str, pin: &str) -> Option<StaffAccount> {
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
        account.filter(|_| ok).cloned()
    }

    /// Every account that may sign in (id, name, role; never the PIN hash), for the
    /// admin's staff page.
    pub fn roster(&self) -> Vec<StaffMember> {
        self.accounts()
            .into_iter()
            .map(|a| StaffMember {
                id: a.id,
                name: a.name,
                role: a.role,
            })
            .collect()
    }

    /// The most PIN checks seen running at once (never above [`MAX_CONCURRENT_CHECKS`]).
    pub fn peak_concurrent_checks(&self) -> usize {
        self.lockout.peak_concurrent_checks()
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
        let (token, m) = d.sign_in("amartin", "482913").await.unwrap();
        assert_eq!(m.name, "A. Martin");
        assert_eq!(d.member(&token).unwrap().id, "amartin");
    }

    #[tokio::test]
    async fn a_wrong_pin_and_an_unknown_id_get_the_same_answer() {
        let d = desk();
        assert_eq!(
            d.sign_in("amartin", "000000").await.unwrap_err(),
            StaffError::BadCredentials
        );
        assert_eq!(
            d.sign_in("nobody", "482913").await.unwrap_err(),
            StaffError::BadCredentials
        );
    }

    #[tokio::test(start_paused = true)]
    async fn five_wrong_pins_lock_the_account_for_thirty_minutes() {
        let d = desk();
        for _ in 0..MAX_FAILURES {
            let _ = d.sign_in("amartin", "000000").await;
        }
        assert_eq!(
            d.sign_in("amartin", "482913").await.unwrap_err(),
            StaffError::Locked { minutes: 30 }
        );
        tokio::time::advance(LOCKOUT - Duration::from_secs(1)).await;
        assert_eq!(
            d.sign_in("amartin", "482913").await.unwrap_err(),
            StaffError::Locked { minutes: 1 }
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(d.sign_in("amartin", "482913").await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_locked_id_and_an_unknown_id_get_the_same_answer() {
        let d = desk();
        for id in ["amartin", "nobody"] {
            for _ in 0..MAX_FAILURES {
                let _ = d.sign_in(id, "000000").await;
            }
        }
        let known = d.sign_in("amartin", "482913").await.unwrap_err();
        assert_eq!(known, StaffError::Locked { minutes: 30 });
        assert_eq!(d.sign_in("nobody", "482913").await.unwrap_err(), known);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_simultaneous_wrong_pins_tests_no_more_than_the_lockout_allows() {
        let d = desk();
        let burst: Vec<_> = (0..64)
            .map(|i| {
                let d = d.clone();
                tokio::spawn(async move { d.sign_in("amartin", &format!("{i:06}")).await })
            })
            .collect();
        let mut tested = 0u32;
        for attempt in burst {
            // Only an attempt answered "not recognised" had its PIN checked.
            if attempt.await.unwrap().unwrap_err() == StaffError::BadCredentials {
                tested += 1;
            }
        }
        assert!(tested <= MAX_FAILURES, "{tested} PINs tested");
        assert!(matches!(
            d.sign_in("amartin", "482913").await.unwrap_err(),
            StaffError::Locked { .. }
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sign_ins_for_many_ids_at_once_run_no_more_pin_checks_than_the_cap() {
        let d = desk();
        let burst: Vec<_> = (0..12)
            .map(|i| {
                let d = d.clone();
                tokio::spawn(async move { d.sign_in(&format!("id{i}"), "000000").await })
            })
            .collect();
        for attempt in burst {
            let answer = attempt.await.unwrap().unwrap_err();
            assert!(
                matches!(answer, StaffError::BadCredentials | StaffError::Busy),
                "{answer:?}"
            );
        }
        assert!(d.peak_concurrent_checks() >= 1);
        assert!(d.peak_concurrent_checks() <= MAX_CONCURRENT_CHECKS);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_session_ends() {
        let d = desk();
        let (token, _) = d.sign_in("amartin", "482913").await.unwrap();
        tokio::time::advance(IDLE - Duration::from_secs(1)).await;
        assert!(d.member(&token).is_ok(), "use keeps it alive");
        tokio::time::advance(IDLE).await;
        assert_eq!(d.member(&token).unwrap_err(), StaffError::NotSignedIn);
    }

    #[tokio::test(start_paused = true)]
    async fn no_session_outlives_a_shift_even_in_use() {
        let d = desk();
        let (token, _) = d.sign_in("amartin", "482913").await.unwrap();
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
        let (token, _) = d.sign_in("amartin", "482913").await.unwrap();
        d.sign_out(&token);
        assert_eq!(d.member(&token).unwrap_err(), StaffError::NotSignedIn);
    }

    /// A watched desk with two members, amartin signed in; amartin is then removed
    /// from the file.
    async fn amartin_signed_in_then_removed(dir: &Path) -> (StaffDesk, Zeroizing<String>) {
        let path = dir.join("staff.toml");
        let mut f = StaffFile::default();
        f.set("amartin", "A. Martin", "482913").unwrap();
        f.set("bnoor", "B. Noor", "739104").unwrap();
        f.save(&path).unwrap();
        let d = StaffDesk::watching(&path).unwrap();
        let (token, _) = d.sign_in("amartin", "482913").await.unwrap();
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
        (d, token)
    }

    #[tokio::test(start_paused = true)]
    async fn a_member_removed_from_the_file_is_signed_out_within_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let (d, token) = amartin_signed_in_then_removed(dir.path()).await;
        tokio::time::advance(STAFF_FILE_CHECK).await;
        assert_eq!(d.member(&token).unwrap_err(), StaffError::NotSignedIn);
        assert!(d.sign_in("bnoor", "739104").await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn the_staff_file_is_looked_at_no_more_than_once_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let (d, token) = amartin_signed_in_then_removed(dir.path()).await;
        tokio::time::advance(STAFF_FILE_CHECK / 2).await;
        assert!(
            d.member(&token).is_ok(),
            "requests within the second use the list already read"
        );
        tokio::time::advance(STAFF_FILE_CHECK / 2).await;
        assert_eq!(d.member(&token).unwrap_err(), StaffError::NotSignedIn);
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
