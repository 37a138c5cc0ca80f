//! Hand-written simulators of the station's hardware: an Evolis printer and a GP/EMV card.

pub mod card;
pub mod printer;
pub mod station;
pub mod vpcd;
