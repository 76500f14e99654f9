//! Fuzz target `proof_verify`: the property check `veritrail_fuzz::proof_verify`, also
//! replayed over the committed corpus by tests/fuzz_corpus.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = veritrail_fuzz::proof_verify(data) {
        panic!("proof_verify: {violation}");
    }
});
