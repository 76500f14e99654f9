//! Replays the committed fuzz inputs as regression tests: every file under
//! `fuzz/seeds/<target>/` (spec vectors and minimised crash inputs) and
//! `fuzz/corpus/<target>/` (the minimised corpus the fuzzers grew) goes
//! through the same property check its fuzz target runs
//! (`fuzz/checks.rs`, compiled in here as a module). A panic or a broken property fails the test and
//! names the file.

use std::path::{Path, PathBuf};

#[path = "../fuzz/checks.rs"]
mod fuzzing;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// `(target, file)` for every input under `fuzz/<kind>/<target>/`.
fn inputs(kind: &str) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(targets) = std::fs::read_dir(fuzz_dir().join(kind)) else {
        return out;
    };
    for target in targets {
        let target = target.unwrap();
        let name = target.file_name().to_string_lossy().into_owned();
        for file in std::fs::read_dir(target.path()).unwrap() {
            out.push((name.clone(), file.unwrap().path()));
        }
    }
    out.sort();
    out
}

fn replay(kind: &str) -> usize {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (target, file) in inputs(kind) {
        let check = fuzzing::check_for(&target)
            .unwrap_or_else(|| panic!("fuzz/{kind}/{target} is not a known fuzz target"));
        let data = std::fs::read(&file).unwrap();
        match std::panic::catch_unwind(|| check(&data)) {
            Ok(Ok(())) => {}
            Ok(Err(v)) => failures.push(format!("{}: {v}", file.display())),
            Err(_) => failures.push(format!("{}: panicked", file.display())),
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    checked
}

#[test]
fn seed_and_regression_inputs_hold_every_property() {
    let checked = replay("seeds");
    // The spec vectors are committed: an empty run means the files moved.
    assert!(checked >= 30, "only {checked} seed inputs found");
}

#[test]
fn committed_corpora_hold_every_property() {
    replay("corpus");
}

#[test]
fn every_target_has_seeds() {
    let seeded: Vec<String> = inputs("seeds").into_iter().map(|(t, _)| t).collect();
    for (target, _) in fuzzing::TARGETS {
        assert!(
            seeded.iter().any(|t| t == target),
            "fuzz target {target} has no seed inputs under fuzz/seeds/{target}/"
        );
    }
}
