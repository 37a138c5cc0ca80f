//! station-agent: issues EMV payment cards over the counter at a bank branch.
//!
//! Orders arrive from the upstream hub ([`link`]), are validated and decrypted
//! ([`order`]), journaled ([`journal`]) and driven through the job state machine
//! ([`job`]) across the card printer and the chip encoder ([`emv`]).

pub mod agent;
pub mod cli;
pub mod config;
pub mod console;
pub mod devkit;
pub mod emv;
pub mod job;
pub mod journal;
pub mod link;
pub mod logging;
pub mod order;
pub mod pismo;
pub mod plastic;
pub mod sandbox;
pub mod service;
