//! Veritrail: a verifiable audit log.
//!
//! Audit events are committed to as leaves of an append-only RFC 6962 Merkle
//! tree, published as C2SP tiles and checkpoints, so that anyone can prove
//! inclusion and consistency without trusting the operator. ARCHITECTURE.md
//! draws the layers and the arrows allowed between them.
//!
//! - Specs, pure (no I/O, no clock): [`merkle`] (RFC 6962 hashing and
//!   proofs), [`tiles`] (C2SP tile math), [`note`] (signed notes,
//!   checkpoints, cosignatures, the checkpoint trust policy) and [`event`]
//!   (the audit event schema and commitments).
//! - Engine: [`sequencer`] (the single writer and its write path),
//!   [`vault`] (encryption at rest and erasure), [`store`] (the storage
//!   contract and its backends).
//! - Service: [`api`] (HTTP), [`alerts`] (rules on accepted events), [`auth`], [`search`], [`backup`],
//!   [`lifecycle`] (create and load a data directory), [`server`]
//!   (`veritrail serve`), [`listen`] (plain or TLS serving), [`config`].
//! - Checking a log from outside: [`verify`] and [`monitor`] (the two
//!   commands of the one log follower, `follower`), [`evidence`] (evidence
//!   bundles and reports), [`history`], [`fsck`], [`client`].
//! - Witnessing: [`witness`] (the standalone witness) and `cosign` (the
//!   log asking witnesses for cosignatures).
//!
//! Only what the binary, the tests, the benchmarks and the fuzz targets use
//! is public; the follower's machinery, the cosignature collection, durable
//! files, rate limits, retention and the embedded console are the
//! library's own.

#![forbid(unsafe_code)]

pub mod alerts;
pub mod api;
pub mod auth;
pub mod backup;
pub mod client;
pub mod config;
mod cosign;
pub mod crypto;
mod durable;
pub mod event;
pub mod evidence;
mod fifo_cache;
mod follower;
pub mod fsck;
pub mod history;
pub mod leadership;
pub mod lifecycle;
pub mod listen;
pub mod merkle;
pub mod monitor;
pub mod note;
mod ratelimit;
mod retention;
pub mod search;
pub mod sequencer;
pub mod server;
pub mod ship;
pub mod store;
pub mod tiles;
pub mod vault;
pub mod verify;
mod web;
pub mod witness;
