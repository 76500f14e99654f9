#!/usr/bin/env bash
# Runs every check the project has: formatting, lints, the whole test suite
# (unit, property, integration, crash and browser tests). Installs what a
# fresh machine lacks. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# A fresh clone gains nothing from incremental state, and it costs gigabytes.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  step "installing rustfmt and clippy"
  rustup component add rustfmt clippy
fi

# The browser tests need Chromium (Debian's package) and playwright-core.
if [ -f tests/browser/package.json ]; then
  scripts/install-browser-deps.sh
fi

# The remote-backend tests start a throwaway PostgreSQL 15 (Debian's
# package) and the S3 server s3s-fs (from crates.io, cached in target/);
# each test starts its own from scripts/lib/, and fails if it cannot.
step "PostgreSQL 15 and s3s-fs for the remote-backend tests"
scripts/lib/pg.sh install
scripts/lib/s3.sh bin

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test"
# Integration tests drive the real binary that cargo builds for them.
cargo test --locked -- --test-threads 2

step "schemathesis against the OpenAPI document (scripts/schemathesis.sh)"
# Installs schemathesis from PyPI into target/ on the first run only.
VERITRAIL_BIN="$PWD/target/debug/veritrail" scripts/schemathesis.sh

step "OpenTelemetry SDK export, with a retry (scripts/otlp-sdk.sh)"
# Installs the SDK from PyPI into target/python-venv on the first run only.
VERITRAIL_BIN="$PWD/target/debug/veritrail" scripts/otlp-sdk.sh

step "Python client against a server (scripts/python-client.sh)"
VERITRAIL_BIN="$PWD/target/debug/veritrail" scripts/python-client.sh

step "demo (scripts/demo.sh)"
demo_log="$(mktemp)"
if VERITRAIL_BIN="$PWD/target/debug/veritrail" scripts/demo.sh >"$demo_log" 2>&1; then
  echo "ok"
  rm -f "$demo_log"
else
  tail -n 30 "$demo_log"
  rm -f "$demo_log"
  echo "scripts/demo.sh failed" >&2
  exit 1
fi

step "checkpoint-policy vectors in the console's JavaScript (node --test, no browser)"
node --test tests/js/

if [ -f tests/browser/package.json ]; then
  step "browser tests"
  VERITRAIL_BIN="$PWD/target/debug/veritrail" node tests/browser/run.mjs
fi

step "all checks passed"
