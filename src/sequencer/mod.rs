//! The engine: the one writer of the log, and what readers share with it.
//!
//! Read in life-cycle order:
//! - [`clock`]: the wall clock every time of the log is read from;
//! - [`edge`]: the right edge, the only part of the tree held in memory,
//!   loaded from the stored partial tiles;
//! - [`signer`]: turns a size and root into a signed checkpoint;
//! - [`view`]: the published checkpoint and durable size readers see;
//! - [`queue`]: the budget that bounds submitted, unanswered work;
//! - [`thread`]: the sequencer thread, its handle and its loop;
//! - [`write_path`]: accept → sequence → seal → commit → publish, the path
//!   of every event, with what is durable at each crash point;
//! - [`reader`]: proofs' subtree hashes and single leaves from the store;
//! - [`tile_cache`]: the same, and tiles and bundles as served, from a
//!   bounded cache in memory.
//!
//! Invariants: nothing is acknowledged or published before the store said
//! it is durable; a checkpoint is only signed for a root computed from the
//! right edge being committed; the `received` time of leaves never goes
//! backwards.

pub mod clock;
pub mod edge;
pub mod queue;
pub mod reader;
pub mod signer;
pub mod thread;
pub mod tile_cache;
pub mod view;
pub mod write_path;

#[cfg(test)]
mod tests;

pub use clock::{Clock, ManualClock};
pub use edge::{EdgeError, RightEdge};
pub use queue::QueueLimits;
pub use reader::{TileSource, read_entry};
pub use signer::CheckpointSigner;
pub use thread::{Sequencer, SequencerConfig, SequencerHandle};
pub use tile_cache::{DEFAULT_READ_CACHE_BYTES, ReadCacheStats, TileCache};
pub use view::{LogView, Published};
pub use write_path::{
    AcceptError, EntryReceipt, PreparedEvent, Receipt, Sealing, SubmitError, accept,
    accept_with_terms,
};
