//! The plastic side of a card: its printed face and its magnetic stripe.

pub mod face;
pub mod magstripe;
