//! Building the search index in the background, so a server serves at
//! once when its index is more than a flush's worth of events behind the
//! tree (missing, or of an earlier format, in a large log; see
//! [`Vault::open_building_index`]): one thread brings the index up to the tree, a
//! step of [`STEP_EVENTS`] events at a time ([`Vault::index_step`]), and
//! ends the building when a step reaches the tree's size.
//!
//! Memory is bounded by the index's tail (its flushes write the steps'
//! postings out as they fill it), and progress is the watermark those
//! flushes store: after a crash or a stop, the next start resumes there.
//! While it runs, [`crate::search::search`] is refused (see
//! [`crate::search::index`] for why), `/healthz` shows the progress, and
//! `/metrics` the gauges set here.
//!
//! Invariant: the thread never writes anything but the index's own
//! blocks and watermark, and stops once the vault is dropped.

use std::sync::Arc;

use crate::store::StoreError;
use crate::vault::Vault;
use crate::vault::background::{self, Pace, Step};

/// Events read per step (the key lock is held for one step).
pub const STEP_EVENTS: u64 = 256;
/// Events read per step when indexing at start, before the server serves
/// (nothing waits on the key lock yet).
pub const START_STEP_EVENTS: u64 = 4096;

/// Starts building `vault`'s search index if it is behind the tree (see
/// [`Vault::open_building_index`]), paced as every background job is (see
/// [`crate::vault::background`]).
pub fn start(vault: &Arc<Vault>, pace: Pace) -> Result<(), StoreError> {
    let Some(progress) = vault.index_building()? else {
        set_gauges(None);
        return Ok(());
    };
    tracing::info!(
        indexed = progress.indexed,
        size = progress.target,
        "building the search index in the background; searches answer once it is done"
    );
    set_gauges(Some(progress));
    let writers = vault.writers().clone();
    background::spawn(
        "search-index-build",
        Arc::downgrade(vault),
        pace,
        writers,
        |v, _| {
            if v.index_step(STEP_EVENTS)? {
                set_gauges(None);
                tracing::info!("the search index is built");
                return Ok(Step::Done);
            }
            set_gauges(v.index_building().ok().flatten());
            Ok(Step::Worked)
        },
    )
}

fn set_gauges(progress: Option<crate::search::BuildProgress>) {
    metrics::gauge!("veritrail_search_index_building").set(f64::from(u8::from(progress.is_some())));
    if let Some(p) = progress {
        metrics::gauge!("veritrail_search_index_indexed_leaves").set(p.indexed as f64);
        metrics::gauge!("veritrail_search_index_target_leaves").set(p.target as f64);
    }
}
