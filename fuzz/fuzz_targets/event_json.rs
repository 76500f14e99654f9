//! Fuzz target `event_json`: the property check `veritrail_fuzz::event_json`, also
//! replayed over the committed corpus by tests/fuzz_corpus.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = veritrail_fuzz::event_json(data) {
        panic!("event_json: {violation}");
    }
});
