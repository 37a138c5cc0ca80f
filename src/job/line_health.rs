//! What staff must know about each printer/encoder pair, and which parts of the
//! agent stopped when they should not have.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::journal::state::JobState;

/// Printer problem staff see while a card of the line is in doubt.
const IN_DOUBT: &str =
    "A card is in doubt after a restart: check the printer, then confirm or spoil it.";

/// Printer problem staff see while a spoiled card the reject box did not take is inside.
const AWAITING_REMOVAL: &str = "A spoiled card is stuck in the printer: take it out by hand, put it in the spoiled box, then press Card removed.";

#[derive(Debug, Clone, Default)]
struct LineHealth {
    /// Last device problem, cleared by the next good feed.
    problem: Option<String>,
    /// A card of this line stops it until staff deal with it (in doubt, or stuck).
    blocked: Option<JobState>,
    /// The line's producer stopped: nothing is made here until the agent restarts.
    down: Option<String>,
    /// The feeder was found empty: the line waits for cards (automatic start only).
    feeder_empty: bool,
}

/// The health of every line, by line name, and of the agent's other tasks.
#[derive(Default)]
pub struct LineBoard {
    lines: Mutex<BTreeMap<String, LineHealth>>,
    tasks_down: Mutex<BTreeMap<String, String>>,
}

impl LineBoard {
    fn with<R>(&self, line: &str, f: impl FnOnce(&mut LineHealth) -> R) -> R {
        f(self
            .lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(line.to_string())
            .or_default())
    }

    /// Makes `line` known (healthy until told otherwise).
    pub fn register(&self, line: &str) {
        self.with(line, |_| {});
    }

    /// Records or clears the printer problem of `line`.
    pub fn set_problem(&self, line: &str, problem: Option<String>) {
        self.with(line, |h| h.problem = problem);
    }

    /// Records the state of the card that stops `line` (in doubt, awaiting removal), if any.
    pub fn set_blocked(&self, line: &str, blocked: Option<JobState>) {
        self.with(line, |h| h.blocked = blocked);
    }

    /// Records that the feeder of `line` is empty (or no longer is).
    pub fn set_feeder_empty(&self, line: &str, empty: bool) {
        self.with(line, |h| h.feeder_empty = empty);
    }

    /// Whether `line` waits for blank cards.
    pub fn feeder_empty(&self, line: &str) -> bool {
        self.with(line, |h| h.feeder_empty)
    }

    /// The producer of `line` stopped for `why`: the line is down until a restart.
    pub fn set_down(&self, line: &str, why: String) {
        self.with(line, |h| h.down = Some(why));
    }

    /// A task other than a line's producer stopped for `why`.
    pub fn set_task_down(&self, task: &str, why: String) {
        self.tasks_down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(task.to_string(), why);
    }

    /// Number of lines known.
    pub fn count(&self) -> usize {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Number of lines whose producer stopped.
    pub fn down_count(&self) -> usize {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|h| h.down.is_some())
            .count()
    }

    /// Tasks (other than producers) that stopped, with why.
    pub fn tasks_down(&self) -> Vec<(String, String)> {
        self.tasks_down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(t, w)| (t.clone(), w.clone()))
            .collect()
    }

    /// Each line with the problem staff must fix, if any (a stopped line first).
    pub fn lines(&self) -> Vec<(String, Option<String>)> {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, h)| {
                let problem = if let Some(why) = &h.down {
                    Some(format!(
                        "Line stopped ({why}): restart the station agent and call IT."
                    ))
                } else {
                    match h.blocked {
                        Some(JobState::AwaitingRemoval) => Some(AWAITING_REMOVAL.to_string()),
                        Some(_) => Some(IN_DOUBT.to_string()),
                        None => h.problem.clone(),
                    }
                };
                (name.clone(), problem)
            })
            .collect()
    }
}
