//! Lists the PC/SC readers of the pcscd this process reaches (honours `PCSCLITE_CSOCK_NAME`),
//! one name per line. `cargo xtask` runs it to know when a private pcscd is ready, so that the
//! xtask itself needs no PC/SC library to build.

use std::process::ExitCode;

fn main() -> ExitCode {
    match pcsc::Context::establish(pcsc::Scope::User).and_then(|c| c.list_readers_owned()) {
        Ok(readers) => {
            for r in readers {
                println!("{}", r.to_string_lossy());
            }
            ExitCode::SUCCESS
        }
        Err(pcsc::Error::NoReadersAvailable) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pcsc-readers: {e}");
            ExitCode::from(1)
        }
    }
}
