//! Framing and reply interpretation of the Evolis escape-command protocol.

use station_hal::PrinterError;

/// Escape byte that starts every command.
pub const ESC: u8 = 0x1B;

/// How long a command may take, by what it makes the printer do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandClass {
    /// Reads and settings: answered at once.
    Status,
    /// Card movements (feed, chip station, reject).
    Move,
    /// Printing and ejecting a printed card.
    Print,
    /// Magstripe write and read-back.
    Mag,
}

/// `ESC cmd CR`.
pub fn frame(cmd: &str) -> Vec<u8> {
    let mut f = Vec::with_capacity(cmd.len() + 2);
    f.push(ESC);
    f.extend_from_slice(cmd.as_bytes());
    f.push(b'\r');
    f
}

/// The typed error for an `ERR …` reply, or `None` for a good reply.
pub fn error_for_reply(command: &str, reply: &str) -> Option<PrinterError> {
    let code = reply.strip_prefix("ERR")?.trim();
    Some(match code {
        "F" => PrinterError::FeederEmpty,
        "R" => PrinterError::RibbonOut,
        "C" => PrinterError::CoverOpen,
        "T" => PrinterError::CardJam,
        "K" | "D" | "W" => PrinterError::MagWrite,
        "B" => PrinterError::Busy,
        _ => PrinterError::Protocol {
            command: command.to_string(),
            reply: match code {
                "1" | "CDE" => "command not understood".to_string(),
                "2" => "parameter refused".to_string(),
                other => format!("ERR {other}"),
            },
        },
    })
}

/// Faults raised in a sensor summary (`Rse;f`): `OK` or comma-separated codes.
pub fn faults_from_sensors(reply: &str) -> Vec<PrinterError> {
    reply
        .split(',')
        .map(str::trim)
        .filter_map(|c| match c {
            "F" => Some(PrinterError::FeederEmpty),
            "R" => Some(PrinterError::RibbonOut),
            "N" => Some(PrinterError::RibbonNearEnd),
            "C" => Some(PrinterError::CoverOpen),
            "T" => Some(PrinterError::CardJam),
            "W" => Some(PrinterError::MagWrite),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_framed_by_esc_and_cr() {
        assert_eq!(frame("Rlr;p"), b"\x1bRlr;p\r".to_vec());
    }

    #[test]
    fn each_nack_code_maps_to_its_typed_error() {
        assert_eq!(
            error_for_reply("Ss", "ERR F"),
            Some(PrinterError::FeederEmpty)
        );
        assert_eq!(
            error_for_reply("Se", "ERR R"),
            Some(PrinterError::RibbonOut)
        );
        assert_eq!(
            error_for_reply("Ss", "ERR C"),
            Some(PrinterError::CoverOpen)
        );
        assert_eq!(error_for_reply("Sis", "ERR T"), Some(PrinterError::CardJam));
        assert_eq!(
            error_for_reply("Smw", "ERR W"),
            Some(PrinterError::MagWrite)
        );
        assert_eq!(error_for_reply("Ss", "OK"), None);
    }

    #[test]
    fn an_unknown_command_error_names_the_command() {
        let e = error_for_reply("Xyz", "ERR CDE").unwrap();
        assert_eq!(
            e.to_string(),
            "printer refused 'Xyz': command not understood"
        );
    }

    #[test]
    fn sensor_summary_lists_raised_faults() {
        assert_eq!(
            faults_from_sensors("C,N"),
            vec![PrinterError::CoverOpen, PrinterError::RibbonNearEnd]
        );
        assert!(faults_from_sensors("OK").is_empty());
    }
}
