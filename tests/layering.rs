//! The layering that ARCHITECTURE.md draws, checked on the source text.
//!
//! The spec modules (`merkle`, `tiles`, `note`, `event`) implement RFC 6962 /
//! 9162 and the C2SP formats: bytes in, values out. They must never depend on
//! the service around them (no async runtime, no database, no HTTP, no
//! logging), and inside the crate they may only use one another (and the
//! std-only durable-file helper). This test reads every source file of those
//! modules and fails on the first line that crosses the line, naming the
//! file and the line.

use std::path::{Path, PathBuf};

/// The pure modules: a file `src/<name>.rs`, a folder `src/<name>/`, or both.
const PURE: &[&str] = &["merkle", "tiles", "note", "event"];

/// What else of the crate they may use: the durable-file helper, a leaf
/// that needs nothing but the standard library, through which `note/keys.rs`
/// (the one file of the specs that touches the disk) writes key files.
const ALSO_ALLOWED: &[&str] = &["durable"];

/// Crates that only the service layers may use.
const SERVICE_CRATES: &[&str] = &[
    "tokio",
    "sled",
    "axum",
    "axum_server",
    "hyper",
    "tower",
    "tower_http",
    "reqwest",
    "tracing",
    "metrics",
];

fn source_files(name: &str) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let file = src.join(format!("{name}.rs"));
    if file.is_file() {
        files.push(file);
    }
    let mut dirs = vec![src.join(name)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The code of a line, without a trailing `//` comment (good enough for
/// this crate's style: no `//` inside the string literals of these modules
/// precedes a path).
fn code(line: &str) -> &str {
    let trimmed = line.trim_start();
    if trimmed.starts_with("//") {
        return "";
    }
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

/// Every identifier that is followed by `::` or follows `use `.
fn path_roots(code: &str) -> Vec<&str> {
    let mut roots = Vec::new();
    let bytes = code.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if is_ident(bytes[i]) && (i == 0 || !is_ident(bytes[i - 1]) && bytes[i - 1] != b':') {
            let start = i;
            while i < bytes.len() && is_ident(bytes[i]) {
                i += 1;
            }
            let word = &code[start..i];
            let rest = code[i..].trim_start();
            let after_use = code[..start].trim_end().ends_with("use");
            if rest.starts_with("::") || after_use {
                roots.push(word);
            }
        } else {
            i += 1;
        }
    }
    roots
}

/// The module a `crate::x` path names.
fn crate_modules(code: &str) -> Vec<&str> {
    code.match_indices("crate::")
        .map(|(i, m)| {
            let rest = &code[i + m.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

#[test]
fn spec_modules_use_no_service_crate_and_only_each_other() {
    let mut violations = Vec::new();
    let mut read = 0;
    for name in PURE {
        for file in source_files(name) {
            read += 1;
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = code(line);
                for root in path_roots(code) {
                    if SERVICE_CRATES.contains(&root) {
                        violations.push(format!(
                            "{}:{}: uses `{root}`: {}",
                            file.display(),
                            n + 1,
                            line.trim()
                        ));
                    }
                }
                for module in crate_modules(code) {
                    if !PURE.contains(&module) && !ALSO_ALLOWED.contains(&module) {
                        violations.push(format!(
                            "{}:{}: reaches `crate::{module}`, outside the spec modules: {}",
                            file.display(),
                            n + 1,
                            line.trim()
                        ));
                    }
                }
            }
        }
    }
    // The modules exist: an empty scan means they moved and this test
    // checks nothing.
    assert!(
        read >= 10,
        "only {read} source files of the spec modules found"
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_checker_sees_what_it_must_refuse() {
    // The scanner itself, on lines that must and must not be flagged.
    assert_eq!(path_roots("use tokio::sync::watch;"), ["tokio"]);
    assert_eq!(path_roots("    let x = sled::open(p);"), ["sled"]);
    assert_eq!(path_roots("use tracing;"), ["tracing"]);
    assert!(path_roots("let tracing_ok = 1;").is_empty());
    assert_eq!(code("// use tokio::x;"), "");
    assert_eq!(code("let a = 1; // tokio::x"), "let a = 1; ");
    assert_eq!(crate_modules("use crate::store::Store;"), ["store"]);
    assert_eq!(
        crate_modules("crate::merkle::Hash, crate::note::Note"),
        ["merkle", "note"]
    );
}
