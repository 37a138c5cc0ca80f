//! Pismo as the issuer's card processor: the client of the four seed contracts and
//! the counter flow that asks Pismo for a card and has it embossed at this branch.

pub mod client;
pub mod error;
pub mod model;

pub use client::{AddOutcome, CreateOutcome, PismoClient, PismoClientConfig};
pub use error::PismoError;
pub use model::{
    CardCreated, ConfigId, CreatePlasticCard, CustomerId, EmbossingGroup, FieldError, PismoCardId,
    PrintedName, RequestId,
};
