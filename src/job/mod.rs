//! Jobs: one card order from receipt to hand-over, its state machine and the pipeline
//! that drives printer and encoder through it.

pub mod state;

pub use state::{D1Status, JobState, OperationStatus};
