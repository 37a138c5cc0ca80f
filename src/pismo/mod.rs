//! Pismo as the issuer's card processor: the client of the four seed contracts and
//! the counter flow that asks Pismo for a card and has it embossed at this branch.

pub mod client;
pub mod config;
pub mod counter;
pub mod error;
pub mod model;
pub mod secret;
pub mod store;

pub use client::{AddOutcome, CreateOutcome, PismoClient, PismoClientConfig};
pub use config::PismoSection;
pub use counter::{
    latest_job, may_make_again, order_of_request, overdue_words, run_overdue, CounterSettings,
    PismoDesk,
};
pub use error::PismoError;
pub use model::{
    CardCreated, ConfigId, CreatePlasticCard, CustomerId, EmbossingGroup, FieldError, PismoCardId,
    PrintedName, RequestId,
};
pub use secret::PismoSecret;
pub use store::{CounterRequest, RequestStep, RequestStore};
