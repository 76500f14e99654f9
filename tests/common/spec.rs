//! Fixtures from the specifications, shared by the test binaries and the
//! Merkle benchmark (which includes this file by path, so it stands alone).
// Each binary that includes this module uses only part of it.
#![allow(dead_code)]

/// The eight leaves of transparency-dev/merkle `testonly.LeafInputs`
/// (specs §6.1), used by the published vectors.
pub fn spec_leaves() -> Vec<Vec<u8>> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|h| hex::decode(h).expect("fixture is hex"))
    .collect()
}

/// tlog_tiles' stored hashes (Go sumdb/tlog layout) as its `HashReader`.
pub struct Stored(pub Vec<tlog_tiles::Hash>);

impl tlog_tiles::HashReader for Stored {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                self.0
                    .get(i as usize)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}
