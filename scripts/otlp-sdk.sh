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

BIN="${VERITRAIL_BIN:-$PWD/target/debug/veritrail}"
if [ -z "${VERITRAIL_BIN:-}" ]; then
  cargo build --locked --bin veritrail
fi
[ -x "$BIN" ] || fail "no veritrail binary at $BIN"

# shellcheck source=scripts/lib/python-venv.sh
. "$(dirname "$0")/lib/python-venv.sh"
# shellcheck source=scripts/lib/server.sh
. "$(dirname "$0")/lib/server.sh"

step "start a throwaway server"
# No rate limit: the searches below come as fast as the server answers.
cat >"$WORK/config.toml" <<'TOML'
rate_limit_per_second = 0.0
TOML
start_server --config "$WORK/config.toml" --origin otlp-sdk.example/log
echo "server at $URL"

APP="otlp-sdk-check"
WRITER="$("$BIN" keys create --url "$URL" --role writer --name "$APP" \
  --admin-key-file "$DATA/admin.key")"
AUDITOR="$("$BIN" keys create --url "$URL" --role auditor --name otlp-auditor \
  --admin-key-file "$DATA/admin.key")"

step "export ${OTLP_RECORDS:-10000} records with the OpenTelemetry SDK, one retry injected"
VERITRAIL_URL="$URL" VERITRAIL_WRITER="$WRITER" VERITRAIL_AUDITOR="$AUDITOR" \
  VERITRAIL_APP="$APP" VERITRAIL_BIN="$BIN" \
  "$VENV_PY" scripts/python/otlp_sdk_check.py
