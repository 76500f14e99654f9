//! Fuzz target `bundle_line` (pending): the evidence-bundle NDJSON reader
//! and the tlog-proof reader, `veritrail::bundle::verify_bundle` and
//! `veritrail::bundle::verify_tlog_proof`.
//!
//! Built only with `--features bundle`, because that module is not merged
//! yet. Once it is, move `check` into `veritrail::fuzzing` (and its
//! `TARGETS`), call it from here like the other targets, drop the feature and
//! add the target to scripts/fuzz.sh's default list. If the module grows a
//! per-line parser, fuzz that too (accepted lines must format back).
//!
//! Properties: neither reader panics on any input, with the fixed keys
//! (which include `example.com/log`, the key of the seed bundle's
//! checkpoint); a verified bundle's indexes are all inside its tree.
#![no_main]

use veritrail::note::NoteVerifier;

fn check(data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let verifiers: Vec<&dyn NoteVerifier> = veritrail::fuzzing::fixed_verifiers()
        .iter()
        .filter(|v| v.name() == "example.com/log")
        .map(|v| &**v)
        .collect();
    for verified in [
        veritrail::bundle::verify_bundle(text, &verifiers),
        veritrail::bundle::verify_tlog_proof(text, &verifiers),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(i) = verified.indexes.iter().find(|&&i| i >= verified.tree_size) {
            return Err(format!(
                "verified leaf {i} outside the tree of size {}",
                verified.tree_size
            ));
        }
    }
    Ok(())
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = check(data) {
        panic!("bundle_line: {violation}");
    }
});
