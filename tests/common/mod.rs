//! The code the integration tests share, in one place:
//! - `server`: the real binary on 127.0.0.1:0 with a temporary data
//!   directory (start, wait for `listening on`, stop, kill, restart, output);
//! - `in_process`: a log assembled in this process (store, vault,
//!   sequencer, router) for tests that drive the router with `oneshot`;
//! - `http`: the requests every test makes against a running log;
//! - `cli`: one-shot commands of the binary, with their output;
//! - `checks`: checkpoint verification and on-disk damage;
//! - `services`: a throwaway PostgreSQL and an S3-compatible server
//!   (s3s-fs), started from `scripts/lib/`, for the remote backend;
//! - `spec`: the published test leaves and tlog_tiles adapters (also used
//!   by the Merkle benchmark).
//!
//! Each test binary includes this module and uses only part of it.
#![allow(dead_code, unused_imports)]

mod checks;
mod cli;
mod http;
mod in_process;
mod server;
pub mod services;
mod spec;

pub use checks::{files_containing, flip_stored_byte, hashes, log_verifiers, verify_checkpoint};
pub use cli::{Ran, veritrail, veritrail_async};
pub use http::{
    auditor_get, call, committed_size, create_key, create_key_for_app, create_revoked_key,
    get_bytes, get_json, get_json_auth, http, post_events, start_backup, submit,
};
pub use in_process::{InProcessLog, LogBuilder};
pub use server::{Server, binary, write_witness_config};
pub use spec::{Stored, spec_leaves};

use serde_json::{Value, json};

/// A valid audit event.
pub fn event(n: usize, id: Option<String>) -> Value {
    let mut e = json!({
        "actor": { "id": format!("user-{}", n % 97), "type": "user", "ip": "192.0.2.7" },
        "action": "record.read",
        "resource": { "type": "patient_record", "id": format!("rec-{n}") },
        "subject": format!("patient-{}", n % 13),
        "purpose": "treatment",
        "outcome": "success",
        "occurred_at": "2026-11-25T10:00:00Z",
        "context": { "n": n },
    });
    if let Some(id) = id {
        e["id"] = json!(id);
    }
    e
}
