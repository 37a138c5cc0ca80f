//! Data preparation: from a card profile and an order's card data to the DGIs a card
//! is personalized with, and the issuer computations that go into them.

pub mod cryptogram;
pub mod cvv;
pub mod derive;
pub mod prep;
pub mod profile;
