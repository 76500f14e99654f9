#!/usr/bin/env bash
# Runs the Python client's pytest suite (clients/python) against a throwaway
# Veritrail server. Its packages come from PyPI into target/python-venv
# (installed on the first run only). VERITRAIL_BIN names the server binary
# (default: the debug build).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { printf 'python-client.sh: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/lib/python-server.sh
. scripts/lib/python-server.sh
start_keyed_server python-client.example/log python-app python-auditor

VERITRAIL_URL="$URL" VERITRAIL_WRITER="$WRITER" VERITRAIL_AUDITOR="$AUDITOR" \
  PYTHONPATH="$PWD/clients/python" \
  "$VENV_PY" -m pytest -q -p no:cacheprovider clients/python/tests
