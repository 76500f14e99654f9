//! Fuzz target `leaf_record`: the property check `veritrail_fuzz::leaf_record`, also
//! replayed over the committed corpus by tests/fuzz_corpus.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = veritrail_fuzz::leaf_record(data) {
        panic!("leaf_record: {violation}");
    }
});
