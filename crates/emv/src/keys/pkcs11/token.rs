//! Writing a SoftHSM2 token from a key file, and SoftHSM2's configuration.

use super::*;

/// What [`write_dev_token`] wrote.
#[derive(Debug, Clone)]
pub struct DevToken {
    /// SoftHSM2 configuration (its token directory beside it); point `SOFTHSM2_CONF` here.
    pub softhsm2_conf: PathBuf,
    /// User PIN file (mode 0600).
    pub pin_file: PathBuf,
    /// Token label.
    pub token: String,
}

/// One key to import: label, type, value and what it may do.
pub(crate) struct ImportKey {
    pub label: String,
    pub key_type: KeyType,
    pub value: SecretBytes,
    pub derive: bool,
    pub encrypt: bool,
    /// It is a card's DEK itself (an undiversified KMC): it wraps the ICC keys.
    pub wrap: bool,
}

impl ImportKey {
    /// What the key may do in the token, by its role (docs/keys.md); everything else is
    /// refused, whatever the token's defaults.
    pub(crate) fn usage(&self) -> KeyUsage {
        match (self.wrap, self.key_type == KeyType::AES) {
            // Only an undiversified KMC wraps: it is the card's own key set, DEK included.
            (true, true) => KeyUsage::SCP03_CARD_KEY_SET,
            // SCP02's card DEK wraps nothing itself: the S-DEK derived from it does.
            (true, false) => KeyUsage::SCP02_CARD_KEY_SET,
            (false, _) => KeyUsage {
                derive: self.derive,
                encrypt: self.encrypt,
                ..KeyUsage::NONE
            },
        }
    }
}

/// An issuer RSA key for ODA to import: the private key, and its public data.
pub(crate) struct ImportRsa {
    pub index: KeyIndex,
    pub modulus: Vec<u8>,
    pub public_exponent: Vec<u8>,
    pub private_exponent: SecretBytes,
    /// The `CKO_DATA` text: CA index, issuer certificate, exponent, remainder, modulus.
    pub params: String,
}

fn write_secret(path: &Path, text: &str) -> Result<(), KeyStoreError> {
    use std::io::Write;
    let err = |e: std::io::Error| KeyStoreError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    f.write_all(text.as_bytes()).map_err(err)
}

/// Where [`write_softhsm2_token`] writes SoftHSM2's configuration for a token under `dir`.
pub fn softhsm2_conf_in(dir: &Path) -> PathBuf {
    dir.join("softhsm2.conf")
}

/// The folder of the file `SOFTHSM2_CONF` names: where a process started with it writes
/// its tokens ([`write_softhsm2_token`]). Cargo sets it for this workspace's tests.
pub fn softhsm2_dir_from_env() -> Option<PathBuf> {
    let conf = PathBuf::from(std::env::var_os("SOFTHSM2_CONF")?);
    conf.parent().map(Path::to_path_buf)
}

/// For tests: the folder `SOFTHSM2_CONF` names, where tests write their tokens; refused
/// unless it is under this workspace's `target/` (Cargo's `[env]` gives tests
/// `target/softhsm2/softhsm2.conf`, but a `SOFTHSM2_CONF` already in the shell wins, and
/// tests rewrite its configuration and delete its tokens).
#[doc(hidden)]
pub fn softhsm2_dir_for_test() -> Result<PathBuf, KeyStoreError> {
    let dir = softhsm2_dir_from_env().ok_or_else(|| KeyStoreError::Token {
        token: String::new(),
        reason: "SOFTHSM2_CONF is not set (Cargo sets it from .cargo/config.toml)".into(),
    })?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    check_test_softhsm2_dir(&dir, &workspace.join("target"))?;
    Ok(dir)
}

/// Refuses a SoftHSM2 folder for tests outside `target` (this workspace's build folder):
/// tests delete the tokens they find there.
fn check_test_softhsm2_dir(dir: &Path, target: &Path) -> Result<(), KeyStoreError> {
    let inside = match (resolved(dir), std::fs::canonicalize(target)) {
        (Some(dir), Ok(target)) => dir.starts_with(&target) && dir != target,
        _ => false,
    };
    if inside {
        return Ok(());
    }
    Err(KeyStoreError::File {
        path: dir.to_path_buf(),
        reason: format!(
            "tests write and delete SoftHSM2 tokens only under {}: SOFTHSM2_CONF names a \
             folder outside it (perhaps real tokens); unset SOFTHSM2_CONF for cargo test",
            target.display()
        ),
    })
}

/// `p` with its longest existing prefix canonicalized (symbolic links and `..` resolved);
/// `None` when what follows that prefix climbs with `..`.
fn resolved(p: &Path) -> Option<PathBuf> {
    let mut rest = Vec::new();
    let mut base = p.to_path_buf();
    loop {
        if let Ok(c) = std::fs::canonicalize(&base) {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return Some(out);
        }
        let name = base.file_name()?.to_os_string();
        if name == ".." {
            return None;
        }
        rest.push(name);
        base = base.parent()?.to_path_buf();
    }
}

/// For tests: [`softhsm2_dir_for_test`], emptied of earlier runs' tokens (their SO PINs
/// are gone, so they cannot be initialized again) unless SoftHSM2 is already loaded in
/// this process. Call once per process, before any token is written.
#[doc(hidden)]
pub fn fresh_softhsm2_dir_for_test() -> Result<PathBuf, KeyStoreError> {
    let dir = softhsm2_dir_for_test()?;
    let loaded = MODULES
        .get()
        .map(|m| !m.lock().unwrap_or_else(|p| p.into_inner()).is_empty())
        .unwrap_or(false);
    let tokens = dir.join("tokens");
    if !loaded && tokens.exists() {
        std::fs::remove_dir_all(&tokens).map_err(|e| KeyStoreError::File {
            path: tokens.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok(dir)
}

/// SoftHSM2 reads `SOFTHSM2_CONF` when it loads; changing the environment of a process
/// that runs threads is unsound, so the process sets it before it starts any (the
/// station in `main`; tests through Cargo's `[env]`), and this only checks it.
fn check_softhsm2_conf(conf: &Path) -> Result<(), KeyStoreError> {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    match std::env::var_os("SOFTHSM2_CONF") {
        Some(set) if canonical(Path::new(&set)) == canonical(conf) => Ok(()),
        set => Err(KeyStoreError::Token {
            token: String::new(),
            reason: format!(
                "SOFTHSM2_CONF is {}, not {}: set it before the process starts (station-agent \
                 does at start)",
                set.map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "not set".into()),
                conf.display()
            ),
        }),
    }
}

/// Writes a SoftHSM2 token under `dir` (configuration `dir/softhsm2.conf`, tokens in
/// `dir/tokens`, user PIN in `dir/TOKEN.pin`) and imports the development keys as
/// non-extractable objects.
pub fn write_dev_token(
    dir: &Path,
    module_path: &Path,
    token: &str,
) -> Result<DevToken, KeyStoreError> {
    write_softhsm2_token(
        dir,
        module_path,
        token,
        &crate::keys::software::development_store()?,
    )
}

/// Writes a SoftHSM2 token under `dir` as [`write_dev_token`] does, importing the keys
/// of a software key store (labels in the module documentation): how a development or
/// test bench moves a key file into a token. `SOFTHSM2_CONF` must already name
/// `dir/softhsm2.conf` ([`softhsm2_conf_in`]), set before the process started threads.
pub fn write_softhsm2_token(
    dir: &Path,
    module_path: &Path,
    token: &str,
    keys: &crate::keys::SoftwareKeyStore,
) -> Result<DevToken, KeyStoreError> {
    let io = |p: &Path, e: std::io::Error| KeyStoreError::File {
        path: p.to_path_buf(),
        reason: e.to_string(),
    };
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).map_err(|e| io(&tokens, e))?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )
    .map_err(|e| io(&conf, e))?;
    check_softhsm2_conf(&conf)?;
    // One PIN file per token: tokens of one SoftHSM2 folder share `dir`.
    let pin_file = dir.join(format!(
        "{}.pin",
        token
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            })
            .collect::<String>()
    ));
    let user_pin = Zeroizing::new(format!("{:08}", rand::random::<u32>() % 100_000_000));
    let so_pin = Zeroizing::new(format!("{:08}", rand::random::<u32>() % 100_000_000));
    write_secret(&pin_file, &format!("{}\n", user_pin.as_str()))?;

    let m = module(module_path)?;
    let slot = match find_slot(&m, token) {
        Ok(s) => s,
        Err(_) => m
            .get_slots_with_token()
            .map_err(hsm)?
            .into_iter()
            .find(|s| {
                m.get_token_info(*s)
                    .map(|i| !i.token_initialized())
                    .unwrap_or(false)
            })
            .ok_or_else(|| KeyStoreError::Token {
                token: token.to_string(),
                reason: "no free slot to initialize a token in".into(),
            })?,
    };
    let so = AuthPin::from(so_pin.as_str().to_string());
    m.init_token(slot, &so, token).map_err(hsm)?;
    // The token is re-initialized: find its (possibly new) slot again.
    let slot = find_slot(&m, token)?;
    let s = m.open_rw_session(slot).map_err(hsm)?;
    s.login(UserType::So, Some(&so)).map_err(hsm)?;
    s.init_pin(&AuthPin::from(user_pin.as_str().to_string()))
        .map_err(hsm)?;
    s.logout().map_err(hsm)?;
    s.login(
        UserType::User,
        Some(&AuthPin::from(user_pin.as_str().to_string())),
    )
    .map_err(hsm)?;
    for k in keys.import_keys() {
        // PKCS#11's check value (the token verifies it): for AES the ECB of a zero
        // block, not GlobalPlatform's 01-block KCV.
        let kcv = match k.key_type {
            t if t == KeyType::AES => crate::crypto::aes_ecb_encrypt(k.value.expose(), &[0; 16])
                .map(|e| [e[0], e[1], e[2]]),
            _ => crate::crypto::tdes_kcv(k.value.expose()),
        }
        .map_err(|e| KeyStoreError::Crypto(e.to_string()))?;
        let mut template = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(k.key_type),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(k.label.as_bytes().to_vec()),
            Attribute::Value(k.value.expose().to_vec()),
            Attribute::CheckValue(kcv.to_vec()),
        ];
        template.extend(k.usage().secret_template());
        let created = s.create_object(&template);
        // The template's copy of the value is wiped whatever happened.
        for a in template.iter_mut() {
            if let Attribute::Value(v) = a {
                zeroize::Zeroize::zeroize(v);
            }
        }
        created.map_err(|e| KeyStoreError::Hsm(format!("importing {}: {e}", k.label)))?;
    }
    for k in keys.oda_imports() {
        let label = labels::oda_issuer(k.index);
        let mut template = vec![
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Modulus(k.modulus.clone()),
            Attribute::PublicExponent(k.public_exponent.clone()),
            Attribute::PrivateExponent(k.private_exponent.expose().to_vec()),
        ];
        template.extend(KeyUsage::RSA_SIGN.private_template());
        let created = s.create_object(&template);
        for a in template.iter_mut() {
            if let Attribute::PrivateExponent(v) = a {
                zeroize::Zeroize::zeroize(v);
            }
        }
        created.map_err(|e| KeyStoreError::Hsm(format!("importing {label}: {e}")))?;
        s.create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(labels::oda_params(k.index).into_bytes()),
            Attribute::Value(k.params.into_bytes()),
        ])
        .map_err(|e| KeyStoreError::Hsm(format!("importing oda.{}: {e}", k.index)))?;
    }
    for (label, params) in keys.ca_imports() {
        s.create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(label.clone().into_bytes()),
            Attribute::Value(params.into_bytes()),
        ])
        .map_err(|e| KeyStoreError::Hsm(format!("importing {label}: {e}")))?;
    }
    for (product, params) in keys.transport_params() {
        s.create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(labels::transport_params(&product).into_bytes()),
            Attribute::Value(params.into_bytes()),
        ])
        .map_err(|e| KeyStoreError::Hsm(format!("importing transport.{product}: {e}")))?;
    }
    Ok(DevToken {
        softhsm2_conf: conf,
        pin_file,
        token: token.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import(key_type: KeyType, derive: bool, encrypt: bool, wrap: bool) -> KeyUsage {
        ImportKey {
            label: "k".into(),
            key_type,
            value: SecretBytes::new(Zeroizing::new(vec![0; 16])),
            derive,
            encrypt,
            wrap,
        }
        .usage()
    }

    #[test]
    fn an_undiversified_kmc_never_decrypts_and_wraps_only_as_an_scp03_dek() {
        // SCP02: session keys by 3DES CBC and the S-DEK derived from it (which wraps).
        let scp02 = import(KeyType::DES2, true, true, true);
        assert_eq!(scp02, KeyUsage::SCP02_CARD_KEY_SET);
        assert!(!scp02.wrap && !scp02.decrypt && !scp02.unwrap);
        // SCP03: session keys by CMAC, and it is the DEK: wraps and encrypts, derives nothing.
        let scp03 = import(KeyType::AES, true, true, true);
        assert_eq!(scp03, KeyUsage::SCP03_CARD_KEY_SET);
        assert!(scp03.wrap && scp03.encrypt && scp03.sign && !scp03.derive);
        assert!(!scp03.unwraps_what_it_wraps());
    }

    #[test]
    fn imks_cvks_and_diversifying_kmcs_do_one_thing() {
        assert_eq!(import(KeyType::DES2, true, false, false), KeyUsage::DERIVE);
        assert_eq!(import(KeyType::DES2, false, true, false), KeyUsage::ENCRYPT);
    }

    #[test]
    fn tests_refuse_a_softhsm2_folder_outside_the_build_folder() {
        // A shell's SOFTHSM2_CONF naming real tokens: tests would delete them.
        let target = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let e = check_test_softhsm2_dir(elsewhere.path(), target.path()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(&elsewhere.path().display().to_string()),
            "{text}"
        );
        assert!(text.contains("unset SOFTHSM2_CONF"), "{text}");
        // Climbing out of the build folder is outside it too, as is the folder itself.
        let climbing = target.path().join("softhsm2/../../x");
        assert!(check_test_softhsm2_dir(&climbing, target.path()).is_err());
        assert!(check_test_softhsm2_dir(target.path(), target.path()).is_err());
    }

    #[test]
    fn tests_take_a_softhsm2_folder_under_the_build_folder_even_before_it_exists() {
        let target = tempfile::tempdir().unwrap();
        let dir = target.path().join("softhsm2");
        check_test_softhsm2_dir(&dir, target.path()).unwrap();
        std::fs::create_dir(&dir).unwrap();
        check_test_softhsm2_dir(&dir, target.path()).unwrap();
    }
}
