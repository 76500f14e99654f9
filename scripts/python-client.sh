#!/usr/bin/env bash
# Runs the Python client's pytest suite (clients/python) against a throwaway
# Veritrail server. Its packages come from PyPI into target/python-venv
# (installed on the first run only). VERITRAIL_BIN names the server binary
# (default: the debug build).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { printf 'python-client.sh: %s\n' "$*" >&2; exit 1; }

BIN="${VERITRAIL_BIN:-$PWD/target/debug/veritrail}"
if [ -z "${VERITRAIL_BIN:-}" ]; then
  cargo build --locked --bin veritrail
fi
[ -x "$BIN" ] || fail "no veritrail binary at $BIN"

# shellcheck source=scripts/lib/python-venv.sh
. "$(dirname "$0")/lib/python-venv.sh"
# shellcheck source=scripts/lib/server.sh
. "$(dirname "$0")/lib/server.sh"

cat >"$WORK/config.toml" <<'TOML'
rate_limit_per_second = 0.0
TOML
start_server --config "$WORK/config.toml" --origin python-client.example/log
WRITER="$("$BIN" keys create --url "$URL" --role writer --name python-app \
  --admin-key-file "$DATA/admin.key" 2>/dev/null)"
AUDITOR="$("$BIN" keys create --url "$URL" --role auditor --name python-auditor \
  --admin-key-file "$DATA/admin.key" 2>/dev/null)"

VERITRAIL_URL="$URL" VERITRAIL_WRITER="$WRITER" VERITRAIL_AUDITOR="$AUDITOR" \
  PYTHONPATH="$PWD/clients/python" \
  "$VENV_PY" -m pytest -q -p no:cacheprovider clients/python/tests
