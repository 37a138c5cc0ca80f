//! One agent per journal: an exclusive lock taken before restart recovery, so a second
//! `run` cannot mark the live agent's card in doubt.
//!
//! The lock is an SQLite database of its own next to the journal (`<journal>.lock`)
//! held in an exclusive transaction for the life of the agent: the operating system
//! releases it when the process ends, however it ends, on Linux and Windows alike.
//! The journal itself stays shared for the read-only monitors (`/ready`, `/metrics`).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode};

/// Why the single-instance lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another agent holds it.
    #[error("another station agent is already running on the journal {journal} (lock {lock}): stop it first")]
    Held {
        /// The journal.
        journal: String,
        /// The lock file.
        lock: String,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock {lock}: {source}")]
    Io {
        /// The lock file.
        lock: String,
        /// Cause.
        source: rusqlite::Error,
    },
}

impl LockError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            LockError::Held { .. } => "JRN_LOCKED",
            LockError::Io { .. } => "JRN_LOCK_IO",
        }
    }
}

/// The held lock; dropping it releases it.
pub struct InstanceLock {
    _conn: Connection,
    path: PathBuf,
}

impl InstanceLock {
    /// The lock file of a journal.
    pub fn path_for(journal: &Path) -> PathBuf {
        let mut name = journal.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Takes the lock of `journal`, or says who holds it. Never waits.
    pub fn acquire(journal: &Path) -> Result<InstanceLock, LockError> {
        let path = Self::path_for(journal);
        let io = |source| LockError::Io {
            lock: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                let _ = std::fs::create_dir_all(dir);
            }
        }
        let conn = Connection::open(&path).map_err(io)?;
        let held = |e: &rusqlite::Error| {
            matches!(
                e.sqlite_error_code(),
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
            )
        };
        let take = conn
            .pragma_update(None, "locking_mode", "EXCLUSIVE")
            .and_then(|_| conn.execute_batch("BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS agent (pid INTEGER); DELETE FROM agent; INSERT INTO agent VALUES (0);"));
        match take {
            Ok(()) => Ok(InstanceLock { _conn: conn, path }),
            Err(e) if held(&e) => Err(LockError::Held {
                journal: journal.display().to_string(),
                lock: path.display().to_string(),
            }),
            Err(e) => Err(io(e)),
        }
    }

    /// Where the lock file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_journal_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal.db");
        let first = InstanceLock::acquire(&journal).unwrap();
        let second = InstanceLock::acquire(&journal);
        assert!(
            matches!(second, Err(LockError::Held { .. })),
            "{:?}",
            second.err()
        );
        drop(first);
        assert!(InstanceLock::acquire(&journal).is_ok());
    }
}
