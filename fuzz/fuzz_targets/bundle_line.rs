//! Fuzz target `bundle_line`: the property check `veritrail_fuzz::bundle_line`, also
//! replayed over the committed corpus by tests/fuzz_corpus.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = veritrail_fuzz::bundle_line(data) {
        panic!("bundle_line: {violation}");
    }
});
