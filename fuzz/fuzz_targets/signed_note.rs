//! Fuzz target `signed_note`: the property check `veritrail_fuzz::signed_note`, also
//! replayed over the committed corpus by tests/fuzz_corpus.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = veritrail_fuzz::signed_note(data) {
        panic!("signed_note: {violation}");
    }
});
