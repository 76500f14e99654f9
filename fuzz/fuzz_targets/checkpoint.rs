//! Fuzz target `checkpoint`: the property check `veritrail_fuzz::checkpoint`, also
//! replayed over the committed corpus by tests/fuzz_corpus.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = veritrail_fuzz::checkpoint(data) {
        panic!("checkpoint: {violation}");
    }
});
