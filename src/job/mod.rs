//! Jobs: one card order from receipt to hand-over and the pipeline that drives printer
//! and encoder through it. The state machine itself lives with the journal that
//! enforces it ([`crate::journal::state`]); it is re-exported here for readers of jobs.

mod claims;
mod line_health;
pub mod pipeline;
mod prepared;
pub mod production;

pub use crate::journal::state;
pub use state::{D1Status, JobState, OperationStatus};
