//! Fuzz target `entry_bundle`: the property check `veritrail::fuzzing::entry_bundle`, also
//! replayed over the committed corpus by tests/fuzz_corpus.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = veritrail::fuzzing::entry_bundle(data) {
        panic!("entry_bundle: {violation}");
    }
});
