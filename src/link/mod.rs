//! The station link: how the agent talks to its upstream order hub
//! (`docs/station-link.openapi.yaml`). D1's token flow authenticates the
//! station; orders arrive by long poll; status events leave from the journal's
//! outbox; a heartbeat reports device health.

pub mod auth;
pub mod backoff;
pub mod client;
pub mod error;
pub mod journal_outbox;
pub mod outbox;
pub mod poller;
pub mod signature;
pub mod wire;

pub use auth::{AccessToken, ClientCredential, TokenSource};
pub use backoff::Backoff;
pub use client::{LinkClient, LinkConfig, TlsFiles};
pub use error::LinkError;
pub use outbox::{
    EventSender, HealthSource, Outbox, OutboxError, OutboxEvent, PassReport, SenderOptions,
};
pub use poller::{run_order_poller, OrderIntake};
pub use signature::{OrderRefused, OrderSigner, OrderVerifier};
pub use wire::{DeviceHealth, Heartbeat, StationOrder, StationOrders, StatusEvent};
