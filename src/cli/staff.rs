//! `staff …`: console staff accounts in the staff file.

#[allow(unused_imports)]
use super::*;

/// `staff …` actions. The file defaults to the configuration's `console.staff`.
#[derive(Debug, Subcommand)]
pub enum StaffAction {
    /// Add an account or set a new PIN; the PIN is asked for (or read from standard
    /// input when it is not a terminal), never taken from the command line.
    Add {
        /// Sign-in id (recorded in the journal for each action).
        id: String,
        /// Name shown on the console.
        #[arg(long)]
        name: String,
        /// Role: operator, supervisor, admin or auditor (a new account without one is
        /// an operator; an existing one keeps its role).
        #[arg(long)]
        role: Option<crate::roles::Role>,
        /// Staff file.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Remove an account.
    Remove {
        /// Sign-in id.
        id: String,
        /// Staff file.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// List the accounts (ids and names).
    List {
        /// Staff file.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

pub(super) fn staff_file(
    explicit: Option<&Path>,
    file: Option<PathBuf>,
) -> Result<PathBuf, Failure> {
    if let Some(f) = file {
        return Ok(f);
    }
    let cfg = load_config(explicit)?;
    cfg.console
        .staff
        .as_ref()
        .map(|p| cfg.resolve(p))
        .ok_or_else(|| usage("no --file and no console.staff in the configuration"))
}

/// The new PIN: asked twice on a terminal, else one line of standard input.
pub(super) fn read_new_pin() -> Result<zeroize::Zeroizing<String>, Failure> {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        let pin =
            zeroize::Zeroizing::new(rpassword::prompt_password("New PIN: ").map_err(runtime)?);
        let again =
            zeroize::Zeroizing::new(rpassword::prompt_password("PIN again: ").map_err(runtime)?);
        if pin != again {
            return Err(usage("the two PINs differ; nothing was changed"));
        }
        return Ok(pin);
    }
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(runtime)?;
    Ok(zeroize::Zeroizing::new(
        line.trim_end_matches(['\r', '\n']).to_string(),
    ))
}

pub(super) fn staff(explicit: Option<&Path>, action: StaffAction) -> Outcome {
    use crate::console::staff::StaffFile;
    match action {
        StaffAction::Add {
            id,
            name,
            role,
            file,
        } => {
            let path = staff_file(explicit, file)?;
            let mut f = if path.exists() {
                StaffFile::load(&path).map_err(runtime)?
            } else {
                StaffFile::default()
            };
            let pin = read_new_pin()?;
            f.set(&id, &name, &pin).map_err(usage)?;
            if let Some(role) = role {
                f.set_role(&id, role);
            }
            f.save(&path).map_err(runtime)?;
            let role = f
                .staff
                .iter()
                .find(|a| a.id == id)
                .map(|a| a.role)
                .unwrap_or_default();
            println!("staff '{id}' ({role}) can sign in ({})", path.display());
            Ok(())
        }
        StaffAction::Remove { id, file } => {
            let path = staff_file(explicit, file)?;
            let mut f = StaffFile::load(&path).map_err(runtime)?;
            if !f.remove(&id) {
                return Err(usage(format!("no staff '{id}' in {}", path.display())));
            }
            f.save(&path).map_err(runtime)?;
            println!("staff '{id}' removed; a running agent ends their sessions at once");
            Ok(())
        }
        StaffAction::List { file } => {
            let path = staff_file(explicit, file)?;
            for a in StaffFile::load(&path).map_err(runtime)?.staff {
                println!("{:<32} {:<10} {}", a.id, a.role, a.name);
            }
            Ok(())
        }
    }
}
