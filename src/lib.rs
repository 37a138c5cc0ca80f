//! station-agent: issues EMV payment cards over the counter at a bank branch.
//!
//! Orders arrive from the upstream hub ([`link`]), are validated and decrypted
//! ([`order`]), journaled ([`journal`]) and driven through the job state machine
//! ([`job`]) across the card printer and the chip encoder ([`emv`]).

// No unsafe code anywhere, except the Windows service entry point: the system calls it
// through FFI and `windows_service::define_windows_service!` expands to an `unsafe`
// block there (allowed on that one module, `service/windows.rs`).
#![cfg_attr(not(windows), forbid(unsafe_code))]
#![cfg_attr(windows, deny(unsafe_code))]

pub mod admin;
pub mod agent;
pub mod audit;
pub mod cli;
pub mod config;
pub mod console;
pub mod dedicated;
#[cfg(feature = "sandbox")]
pub mod devkit;
pub mod job;
pub mod journal;
pub mod link;
pub mod logging;
pub mod order;
pub mod pismo;
pub mod plastic;
pub mod reconciliation;
pub mod roles;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod service;
pub mod staff;
pub mod stock;
pub mod tls;
