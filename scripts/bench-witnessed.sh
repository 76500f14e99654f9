#!/usr/bin/env bash
# Latency of POST /v1/events?wait=witnessed with two local witnesses (policy 2):
# runs the end-to-end witnessing test and prints its measurement. Set
# VERITRAIL_BIN to a release binary to measure that build.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --test witnessing two_witnesses -- --nocapture 2>&1 \
  | grep -E "wait=witnessed|test result"
