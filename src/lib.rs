//! Veritrail: a verifiable audit log.
//!
//! Audit events are committed to as leaves of an append-only RFC 6962 Merkle
//! tree, published as C2SP tiles and checkpoints, so that anyone can prove
//! inclusion and consistency without trusting the operator.
//!
//! Pure, spec-level code does no I/O: [`merkle`] (RFC 6962 hashing and
//! proofs), [`tiles`] (C2SP tile math), [`note`] (signed notes, checkpoints,
//! cosignatures) and [`event`] (the audit event schema and commitments).
//! The service is built on them: [`store`] (storage contract and sled
//! backend), [`sequencer`] (the single writer), [`lifecycle`] (create and
//! load a data directory), [`api`] (HTTP), [`server`] (`veritrail serve`),
//! [`listen`] (plain or TLS serving), [`fsck`] (offline checks),
//! [`backup`] (snapshots and restore) and [`history`] (checks against
//! published checkpoints).

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod backup;
pub mod bench;
pub mod bundle;
pub mod client;
pub mod config;
pub mod crypto;
pub mod durable;
pub mod event;
pub mod fsck;
pub mod history;
pub mod lifecycle;
pub mod listen;
pub mod merkle;
pub mod monitor;
pub mod note;
pub mod ratelimit;
pub mod report;
pub mod retention;
pub mod search;
pub mod sequencer;
pub mod server;
pub mod store;
pub mod tiles;
pub mod vault;
pub mod verify;
pub mod web;
pub mod witness;
