//! Fuzz target `tile_path`: the property check `veritrail_fuzz::tile_path`, also
//! replayed over the committed corpus by tests/fuzz_corpus.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = veritrail_fuzz::tile_path(data) {
        panic!("tile_path: {violation}");
    }
});
