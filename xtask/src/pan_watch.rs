//! The demos' output is watched for a clear PAN: every line is passed through as it
//! comes and kept; the demo fails if any line holds a standalone run of 13 to 19
//! digits that passes the Luhn check (what a PAN looks like; masked PANs, ids and
//! timestamps do not).
//!
//! Deliberately its own small check, not the agent's scrubber
//! (`station_emv::card_data::scrub_pans`): xtask has no dependencies, and an outside
//! check that shares no code with what it checks cannot share its mistakes either.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;

/// Whether `line` holds a PAN-shaped number: 13–19 digits bounded by anything but a
/// letter or digit, Luhn-valid.
pub fn has_clear_pan(line: &str) -> bool {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let bounded = (start == 0 || !b[start - 1].is_ascii_alphanumeric())
            && (i == b.len() || !b[i].is_ascii_alphanumeric());
        if bounded && (13..=19).contains(&(i - start)) && luhn_ok(&b[start..i]) {
            return true;
        }
    }
    false
}

fn luhn_ok(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(k, d)| {
            let v = u32::from(d - b'0');
            if k % 2 == 1 {
                let w = v * 2;
                if w > 9 {
                    w - 9
                } else {
                    w
                }
            } else {
                v
            }
        })
        .sum();
    // (not `is_multiple_of`: it is newer than the MSRV)
    matches!(sum % 10, 0)
}

fn pump(from: impl Read + Send + 'static, err: bool, lines: mpsc::Sender<String>) {
    thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if err {
                eprintln!("{line}");
                let _ = std::io::stderr().flush();
            } else {
                println!("{line}");
                let _ = std::io::stdout().flush();
            }
            let _ = lines.send(line);
        }
    });
}

/// Runs `cmd` with its output echoed and watched; an error if it failed or printed a PAN.
pub fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        pump(out, false, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        pump(err, true, tx.clone());
    }
    drop(tx);
    let leaks = rx.iter().filter(|l| has_clear_pan(l)).count();
    let status = child.wait().map_err(|e| format!("{what}: {e}"))?;
    if leaks > 0 {
        return Err(format!(
            "{what} printed {leaks} line(s) with a clear PAN-shaped number"
        ));
    }
    println!("xtask: {what} output checked: no clear PAN");
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

#[cfg(test)]
mod tests {
    use super::has_clear_pan;

    #[test]
    fn a_luhn_valid_16_digit_number_is_a_clear_pan() {
        assert!(has_clear_pan("card 4761739001010010 made"));
    }

    #[test]
    fn masked_pans_ids_and_timestamps_are_not() {
        assert!(!has_clear_pan("476173******0010"));
        assert!(!has_clear_pan(
            "operation_id=55af5cd948a644b59a0259b85a655fd8"
        ));
        assert!(!has_clear_pan("2026-11-30T19:43:58.909718Z"));
        assert!(!has_clear_pan(
            "request 0db9774f-6140-451d-925d-1793a4e528e4"
        ));
    }

    #[test]
    fn a_digit_run_that_fails_luhn_is_not() {
        assert!(!has_clear_pan("4761739001010011"));
    }
}
