//! Fuzz target `witness_request`: the property check `veritrail_fuzz::witness_request`, also
//! replayed over the committed corpus by tests/fuzz_corpus.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = veritrail_fuzz::witness_request(data) {
        panic!("witness_request: {violation}");
    }
});
