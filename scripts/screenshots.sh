#!/usr/bin/env bash
# Regenerates the console's pictures in docs/img/ (README "For auditors"):
# the real server with realistic events, Debian's Chromium driven by
# playwright-core, at laptop (1366x768) and phone (390x844) sizes. Not run
# by scripts/test.sh; run it after changing the console, then look at
# every picture before committing it.
#
#   scripts/screenshots.sh                   # builds the debug binary
#   VERITRAIL_BIN=target/release/veritrail scripts/screenshots.sh
#   SCREENSHOTS_OUT=/tmp/shots scripts/screenshots.sh   # elsewhere than docs/img
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-browser-deps.sh
if [ -z "${VERITRAIL_BIN:-}" ]; then
  cargo build --locked --bin veritrail
  VERITRAIL_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/veritrail"
fi
VERITRAIL_BIN="$(realpath "$VERITRAIL_BIN")" node tests/browser/screenshots.mjs
