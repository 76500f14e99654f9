#!/usr/bin/env bash
# Fuzzes the HTTP API against its own OpenAPI document with schemathesis:
# every answer must be documented (status, content type, schema, headers) and
# no input may cause a server error. Runs against a throwaway server (fresh
# data directory, removed on exit), because the admin run below really
# erases events, creates and revokes keys, holds and retention policies, and
# runs retention. Reproducible: deterministic generation, bounded example
# counts. Which checks run, and the few exceptions, are in
# scripts/schemathesis.toml.
#
# Two runs, one per key that can reach the operations:
#   1. the writer key on the writer operation (POST /v1/events), which admin
#      keys may not call;
#   2. an admin key on every other operation (admin may do what auditor may).
#
# schemathesis comes from PyPI into a virtualenv under target/ (installed on
# the first run only). VERITRAIL_BIN names the server binary (default: the
# debug build). SCHEMATHESIS_EXAMPLES overrides the examples per operation.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION="4.32.5"
EXAMPLES="${SCHEMATHESIS_EXAMPLES:-40}"

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'schemathesis.sh: %s\n' "$*" >&2; exit 1; }

command -v curl >/dev/null 2>&1 || fail "curl is required"
command -v python3 >/dev/null 2>&1 || fail "python3 is required"

BIN="${VERITRAIL_BIN:-$PWD/target/debug/veritrail}"
if [ -z "${VERITRAIL_BIN:-}" ]; then
  cargo build --locked --bin veritrail
fi
[ -x "$BIN" ] || fail "no veritrail binary at $BIN"

# shellcheck source=scripts/lib/python-venv.sh
PYTHON_VENV_ONLY=1 . "$(dirname "$0")/lib/python-venv.sh"
VENV="$PWD/target/schemathesis-venv"
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
  step "installing schemathesis $SCHEMATHESIS_VERSION into target/schemathesis-venv"
  make_venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# shellcheck source=scripts/lib/server.sh
. "$(dirname "$0")/lib/server.sh"

step "start a throwaway server"
# No rate limit: schemathesis sends requests as fast as the server answers,
# and a 429 would stand in for the answer under test.
cat >"$WORK/config.toml" <<'EOF'
rate_limit_per_second = 0.0
EOF
start_server --config "$WORK/config.toml" --origin schemathesis.example/log
echo "server at $URL"

WRITER="$("$BIN" keys create --url "$URL" --role writer --name fuzz-app \
  --admin-key-file "$DATA/admin.key")"
ADMIN="$("$BIN" keys create --url "$URL" --role admin --name fuzz-admin \
  --admin-key-file "$DATA/admin.key")"

step "seed a few events"
for n in 1 2 3 4 5; do
  curl -sS --fail-with-body -X POST "$URL/v1/events?wait=checkpoint" \
    -H "Authorization: Bearer $WRITER" -H 'Content-Type: application/json' \
    -d "{\"actor\":{\"id\":\"user-$n\",\"type\":\"user\"},\"action\":\"record.read\",
         \"resource\":{\"type\":\"record\",\"id\":\"rec-$n\"},\"subject\":\"subject-$n\",
         \"purpose\":\"care\",\"outcome\":\"success\",\"occurred_at\":\"2026-11-25T10:00:0${n}Z\"}" \
    >/dev/null
done

# Every check runs but positive_data_acceptance: some limits cannot be
# stated in JSON Schema, so schema-valid input can rightly be refused with a
# documented 400 (text limits count UTF-8 bytes where maxLength counts
# characters; text may hold no control or bidirectional formatting
# characters nor start or end with whitespace; times lie in 1970-9999;
# context is bounded by its canonical size and depth; wait=witnessed needs a
# witness policy). The document says so in prose.
# It runs in the temporary directory, where it keeps its crash cache.
# One worker: hypothesis parses lambdas' source with ast.parse, and CPython
# 3.11 can fail that with "AST constructor recursion depth mismatch" when two
# threads parse at once, a runtime error that is no finding about the API.
# POST /v1/logs takes OTLP protobuf, which schemathesis cannot generate; the
# OpenTelemetry SDK drives it in scripts/otlp-sdk.sh, tests/otlp.rs the rest.
CONFIG="$PWD/scripts/schemathesis.toml"
run() {
  (cd "$WORK" && "$VENV/bin/schemathesis" --config-file "$CONFIG" \
    run "$URL/v1/openapi.json" --exclude-path /v1/logs \
    --checks all --exclude-checks positive_data_acceptance \
    --max-examples "$EXAMPLES" --generation-deterministic \
    --workers 1 --request-timeout 30 --no-color \
    "$@")
}

step "schemathesis: writer key on POST /v1/events"
run --include-tag writer -H "Authorization: Bearer $WRITER"

step "schemathesis: admin key on every other operation (destructive ones included)"
run --exclude-tag writer -H "Authorization: Bearer $ADMIN"

step "the server answered every request without an internal error"
if grep -q '"internal error"\|a request handler panicked' "$WORK/server.err"; then
  grep '"internal error"\|a request handler panicked' "$WORK/server.err" | head >&2
  fail "the server logged internal errors"
fi
echo ok
