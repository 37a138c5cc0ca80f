//! The station's Pismo credentials (the OAuth client secret and the bearer tokens it
//! buys): wiped from memory when dropped, never shown by `Debug`, and read only from a
//! file its owner alone may read.

use super::error::PismoError;
use std::path::Path;
use zeroize::Zeroizing;

/// A Pismo client secret or bearer token: zeroized on drop, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct PismoSecret(Zeroizing<String>);

impl PismoSecret {
    /// Takes ownership of a secret so that it is wiped with this value.
    pub fn new(secret: String) -> Self {
        PismoSecret(Zeroizing::new(secret))
    }

    /// The secret, for the HTTP header that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads the client secret from `path` (one line; surrounding white space ignored).
    ///
    /// On Unix the file is refused when group or others may read it, as the issuer key
    /// file is: a secret anyone on the workstation can read is not the station's alone.
    /// Errors name the file, never its content.
    pub fn from_file(path: &Path) -> Result<Self, PismoError> {
        let refuse = |reason: String| {
            PismoError::Config(format!(
                "pismo.client_secret_file {}: {reason}",
                path.display()
            ))
        };
        let meta = std::fs::metadata(path).map_err(|e| refuse(e.to_string()))?;
        if !meta.is_file() {
            return Err(refuse("not a file".into()));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(refuse(format!(
                    "readable by group or others (mode {mode:03o}); run: chmod 600 {}",
                    path.display()
                )));
            }
        }
        let raw = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| refuse(e.to_string()))?);
        let secret = raw.trim();
        if secret.is_empty() {
            return Err(refuse("the file is empty".into()));
        }
        Ok(PismoSecret::new(secret.to_string()))
    }
}

impl std::fmt::Debug for PismoSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PismoSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_file(contents: &str, mode: u32) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pismo.secret");
        std::fs::write(&path, contents).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = mode;
        (dir, path)
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = PismoSecret::new("s3cr3t-client-value".into());
        let shown = format!("{s:?} {:?}", Some(s.clone()));
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn an_owner_only_file_gives_the_secret_without_its_line_end() {
        let (_dir, path) = secret_file("s3cr3t\n", 0o600);
        assert_eq!(PismoSecret::from_file(&path).unwrap().expose(), "s3cr3t");
    }

    #[cfg(unix)]
    #[test]
    fn a_file_readable_by_group_or_others_is_refused_naming_the_file() {
        for mode in [0o640, 0o604, 0o644] {
            let (_dir, path) = secret_file("s3cr3t\n", mode);
            let err = PismoSecret::from_file(&path).unwrap_err();
            let words = err.to_string();
            assert_eq!(err.code(), "PISMO_CONFIG");
            assert!(words.contains(&path.display().to_string()), "{words}");
            assert!(words.contains("group or others"), "{words}");
            assert!(!words.contains("s3cr3t"), "{words}");
        }
    }

    #[test]
    fn a_missing_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.secret");
        let words = PismoSecret::from_file(&path).unwrap_err().to_string();
        assert!(words.contains(&path.display().to_string()), "{words}");
    }

    #[test]
    fn an_empty_file_is_refused() {
        let (_dir, path) = secret_file(" \n", 0o600);
        let words = PismoSecret::from_file(&path).unwrap_err().to_string();
        assert!(words.contains("empty"), "{words}");
    }
}
