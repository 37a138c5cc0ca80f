//! Staff accounts: the staff file (`[[staff]] id, name, pin_hash`, PINs only as
//! Argon2id hashes), its checks and PIN hashing. Below both the configuration (which
//! checks the file) and the console (which signs staff in with it).

use std::path::Path;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

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
    /// Too many wrong PINs for this id (said the same whether or not the id exists).
    #[error("too many wrong PINs: this staff id is locked for {minutes} more minute(s)")]
    Locked {
        /// Minutes left, rounded up.
        minutes: u64,
    },
    /// Every try left for this id is being checked right now, or too many sign-ins are
    /// being checked at once.
    #[error("sign-in is busy: try again in a moment")]
    Busy,
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
            StaffError::Busy => "STAFF_SIGN_IN_BUSY",
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
