//! Fuzz target `witness_request` (pending): the c2sp.org/tlog-witness
//! add-checkpoint request parser, `veritrail::witness::AddCheckpoint`.
//!
//! Built only with `--features witness`, because that module is not merged
//! yet. Once it is, move `check` into `veritrail::fuzzing` (and its
//! `TARGETS`), call it from here like the other targets, drop the feature and
//! add the target to scripts/fuzz.sh's default list.
//!
//! Properties: the parser never panics; an accepted body formats back to
//! exactly its bytes; the checkpoint is the one the note's text states; the
//! proof has at most `MAX_PROOF_LINES` hashes; verifying the note against the
//! fixed keys never panics.
#![no_main]

use veritrail::note::{Checkpoint, NoteVerifier};
use veritrail::witness::{AddCheckpoint, MAX_PROOF_LINES};

fn check(data: &[u8]) -> Result<(), String> {
    let Ok(req) = AddCheckpoint::parse(data) else {
        return Ok(());
    };
    let formatted = AddCheckpoint::format(req.old_size, &req.proof, &req.note.to_bytes());
    if formatted != data {
        return Err("an accepted request formats to other bytes".into());
    }
    if Checkpoint::parse(req.note.text()).as_ref() != Ok(&req.checkpoint) {
        return Err("the request's checkpoint is not its note's text".into());
    }
    if req.proof.len() > MAX_PROOF_LINES {
        return Err(format!("accepted {} proof lines", req.proof.len()));
    }
    let verifiers: Vec<&dyn NoteVerifier> = veritrail::fuzzing::fixed_verifiers()
        .iter()
        .map(|v| &**v)
        .collect();
    let _ = req.note.verify(&verifiers);
    Ok(())
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = check(data) {
        panic!("witness_request: {violation}");
    }
});
