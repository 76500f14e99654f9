//! Fuzz target `entry_bundle`: the property check `veritrail_fuzz::entry_bundle`, also
//! replayed over the committed corpus by tests/fuzz_corpus.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = veritrail_fuzz::entry_bundle(data) {
        panic!("entry_bundle: {violation}");
    }
});
