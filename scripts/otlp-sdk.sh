#!/usr/bin/env bash
# The OpenTelemetry Python SDK, with its OTLP/HTTP exporter, exports audit
# records to a throwaway Veritrail server through a proxy that makes it retry
# one request the server already accepted; scripts/python/otlp_sdk_check.py
# then checks that the log holds every record exactly once, each found by
# subject, with inclusion proofs that verify.
#
# The SDK comes from PyPI into target/python-venv (installed on the first run
# only). VERITRAIL_BIN names the server binary (default: the debug build);
# OTLP_RECORDS the number of records (default 10000).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'otlp-sdk.sh: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/lib/python-server.sh
. scripts/lib/python-server.sh

step "start a throwaway server"
APP="otlp-sdk-check"
start_keyed_server otlp-sdk.example/log "$APP" otlp-auditor
echo "server at $URL"

step "export ${OTLP_RECORDS:-10000} records with the OpenTelemetry SDK, one retry injected"
VERITRAIL_URL="$URL" VERITRAIL_WRITER="$WRITER" VERITRAIL_AUDITOR="$AUDITOR" \
  VERITRAIL_APP="$APP" VERITRAIL_BIN="$BIN" \
  "$VENV_PY" scripts/python/otlp_sdk_check.py
