//! The standalone witness (c2sp.org/tlog-witness, c2sp.org/tlog-cosignature):
//! `veritrail witness`.
//!
//! Its parts — [`request`] (the add-checkpoint body, pure), [`core`]
//! (whether to cosign, and the per-log state), [`store`] (its own
//! compare-and-swap state store), [`config`] and [`server`] — cosign a
//! log's checkpoint only when a trusted log key signed
//! it and it is consistent with the last one it cosigned for that log.
//!
//! The log's own side of witnessing, asking witnesses to cosign its
//! checkpoints, is [`crate::cosign`]; it shares only the request format
//! ([`request`]) with this module.

pub mod config;
pub(crate) mod core;
pub(crate) mod request;
pub mod server;
pub mod store;

pub use self::core::{AddError, CosignedState, Witness, WitnessedLog, origin_hash};
pub use request::{AddCheckpoint, MAX_PROOF_LINES, MAX_REQUEST_BODY, RequestError};

#[cfg(test)]
mod tests;
