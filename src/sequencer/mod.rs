//! The engine: the one writer of the log, and what readers share with it.
//!
//! Read in life-cycle order:
//! - [`clock`]: the wall clock every time of the log is read from;
//! - [`edge`]: the right edge, the only part of the tree held in memory,
//!   loaded from the stored partial tiles;
//! - [`signer`]: turns a size and root into a signed checkpoint;
//! - [`view`]: the published checkpoint and durable size readers see;
//! - [`queue`]: the budget that bounds submitted, unanswered work;
//! - [`lease`]: whether this process may sequence now, when several
//!   frontends share one store;
//! - [`thread`]: the sequencer thread, its handle and its loop (and the
//!   follower's, which only refreshes the view);
//! - [`write_path`]: accept → sequence → seal → commit → publish, the path
//!   of every event, with what is durable at each crash point;
//! - [`reader`]: proofs' subtree hashes and single leaves from the store;
//! - `test_log` (unit tests only): the one way the crate's own tests start
//!   a log in this process.
//! - [`tile_cache`]: the same, and tiles and bundles as served, from a
//!   bounded cache in memory.
//!
//! Invariants: nothing is acknowledged or published before the store said
//! it is durable; a checkpoint is only signed for a root computed from the
//! right edge being committed; the `received` time of leaves never goes
//! backwards.

pub(crate) mod clock;
pub(crate) mod edge;
pub(crate) mod lease;
pub(crate) mod queue;
pub(crate) mod reader;
pub(crate) mod signer;
pub(crate) mod thread;
pub(crate) mod tile_cache;
pub(crate) mod view;
pub(crate) mod write_path;

#[cfg(test)]
pub(crate) mod test_log;
#[cfg(test)]
mod tests;

pub use clock::{Clock, ManualClock};
pub use edge::RightEdge;
pub use lease::Lease;
pub use queue::QueueLimits;
pub use reader::TileSource;
pub(crate) use reader::read_entry;
pub use signer::CheckpointSigner;
pub use thread::{Sequencer, SequencerConfig, SequencerHandle};
pub use tile_cache::{
    DEFAULT_PROOF_CACHE_BYTES, DEFAULT_READ_CACHE_BYTES, ReadCacheStats, TileCache,
};
pub use view::{LogView, Published};
pub use write_path::{
    AcceptError, EntryReceipt, PreparedEvent, Receipt, Sealing, SubmitError, accept,
    accept_with_terms,
};
