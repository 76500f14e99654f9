//! Veritrail: a verifiable audit log.
//!
//! Audit events are committed to as leaves of an append-only RFC 6962 Merkle
//! tree, published as C2SP tiles and checkpoints, so that anyone can prove
//! inclusion and consistency without trusting the operator.
//!
//! The pure, spec-level code (`merkle`, `tiles`, `note`, `event`) does no I/O;
//! the service (`store`, `sequencer`, `api`) is built on it.

#![forbid(unsafe_code)]

pub mod event;
pub mod merkle;
pub mod note;
pub mod tiles;
