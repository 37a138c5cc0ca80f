//! What staff must know about each printer/encoder pair.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Printer problem staff see while a card of the line is in doubt.
const IN_DOUBT: &str =
    "A card is in doubt after a restart: check the printer, then confirm or spoil it.";

#[derive(Debug, Clone, Default)]
struct LineHealth {
    /// Last device problem, cleared by the next good feed.
    problem: Option<String>,
    /// A card of this line is in doubt.
    in_doubt: bool,
}

/// The health of every line, by line name.
#[derive(Default)]
pub struct LineBoard {
    lines: Mutex<BTreeMap<String, LineHealth>>,
}

impl LineBoard {
    fn with(&self, line: &str, f: impl FnOnce(&mut LineHealth)) {
        f(self
            .lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(line.to_string())
            .or_default());
    }

    /// Makes `line` known (healthy until told otherwise).
    pub fn register(&self, line: &str) {
        self.with(line, |_| {});
    }

    /// Records or clears the printer problem of `line`.
    pub fn set_problem(&self, line: &str, problem: Option<String>) {
        self.with(line, |h| h.problem = problem);
    }

    /// Records whether a card of `line` is in doubt.
    pub fn set_in_doubt(&self, line: &str, in_doubt: bool) {
        self.with(line, |h| h.in_doubt = in_doubt);
    }

    /// Number of lines known.
    pub fn count(&self) -> usize {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Each line with the problem staff must fix, if any.
    pub fn lines(&self) -> Vec<(String, Option<String>)> {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, h)| {
                let problem = if h.in_doubt {
                    Some(IN_DOUBT.to_string())
                } else {
                    h.problem.clone()
                };
                (name.clone(), problem)
            })
            .collect()
    }
}
