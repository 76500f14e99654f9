//! Witnessing (c2sp.org/tlog-witness, c2sp.org/tlog-cosignature), both sides.
//!
//! The witness side — [`request`] (the add-checkpoint body, pure),
//! [`core`] (whether to cosign, and the per-log state), [`store`] (its own
//! compare-and-swap state store), [`config`] and [`server`] (`veritrail
//! witness`) — cosigns a log's checkpoint only when a trusted log key signed
//! it and it is consistent with the last one it cosigned for that log.
//!
//! The log side — [`cosign`] — sends every new checkpoint of the log, with
//! the consistency proof each witness needs, to the configured witnesses,
//! and publishes it as "witnessed" once the policy's number of valid
//! cosignatures is in.

pub mod config;
pub mod core;
pub mod cosign;
pub mod request;
pub mod server;
pub mod store;

pub use self::core::{AddError, CosignedState, Witness, WitnessedLog, origin_hash};
pub use request::{AddCheckpoint, MAX_PROOF_LINES, MAX_REQUEST_BODY, RequestError};

#[cfg(test)]
mod tests;
