//! Key material of the sandbox: P-256 JWK generation and owner-only files.

use super::error::SandboxError;
use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::KeyPair;
use std::io::Write;
use std::path::Path;
use zeroize::Zeroizing;

/// A fresh ES256 (P-256) signing key pair as (private JWK, public JWK) JSON, both
/// carrying `kid`, `use` = `sig` and `alg` = `ES256`. JWE keys come from the order module.
pub fn generate_es256_jwk(kid: &str) -> Result<(Zeroizing<String>, String), SandboxError> {
    let mut pair = EcKeyPair::generate(EcCurve::P256)
        .map_err(|e| SandboxError::Keys(format!("P-256 generation: {e}")))?;
    pair.set_key_id(Some(kid));
    pair.set_algorithm(Some("ES256"));
    let mut private = pair.to_jwk_key_pair();
    let mut public = pair.to_jwk_public_key();
    private.set_key_use("sig");
    public.set_key_use("sig");
    Ok((Zeroizing::new(private.to_string()), public.to_string()))
}

/// Write `contents` to `path` readable by the owner only (0600), replacing it atomically.
pub fn write_private(path: &Path, contents: &str) -> Result<(), SandboxError> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(&tmp)
        .map_err(|e| SandboxError::state(&tmp, e))?;
    f.write_all(contents.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| SandboxError::state(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| SandboxError::state(path, e))
}

/// Write a public file (0644).
pub fn write_public(path: &Path, contents: &str) -> Result<(), SandboxError> {
    std::fs::write(path, contents).map_err(|e| SandboxError::state(path, e))
}

/// Read a text file of the state directory.
pub fn read_text(path: &Path) -> Result<String, SandboxError> {
    std::fs::read_to_string(path).map_err(|e| SandboxError::state(path, e))
}
