//! Fuzz target `evidence_report`: the property check `veritrail_fuzz::evidence_report`, also
//! replayed over the committed corpus by tests/fuzz_corpus.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = veritrail_fuzz::evidence_report(data) {
        panic!("evidence_report: {violation}");
    }
});
