#!/usr/bin/env bash
# A tour of Veritrail over plain HTTP, end to end, against a fresh server in a
# temporary data directory: create a writer key, submit an audit event, fetch
# the signed checkpoint and an inclusion proof with curl, and check it all
# with `veritrail verify`. Stops the server and removes everything on exit.
# Exits non-zero if any step fails. Needs curl; builds the release binary if
# it is missing or older than the sources (VERITRAIL_BIN overrides it).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'demo: %s\n' "$*" >&2; exit 1; }

command -v curl >/dev/null 2>&1 || fail "curl is required"

BIN="${VERITRAIL_BIN:-$PWD/target/release/veritrail}"
if [ -z "${VERITRAIL_BIN:-}" ]; then
  if [ ! -x "$BIN" ] || [ -n "$(find src Cargo.toml Cargo.lock -newer "$BIN" -print -quit)" ]; then
    step "building the release binary"
    cargo build --release --locked --bin veritrail
  fi
fi
[ -x "$BIN" ] || fail "no veritrail binary at $BIN"

# shellcheck source=scripts/lib/server.sh
. "$(dirname "$0")/lib/server.sh"

# curl that fails on HTTP errors but still shows the JSON error body.
http() { curl -sS --fail-with-body "$@"; }

# The value of a top-level-or-nested JSON member in a one-line document, e.g.
# json_field index '{"events":[{"index":0}]}' -> 0. Enough for this tour's
# flat answers; no jq needed.
json_field() {
  printf '%s' "$2" | grep -o "\"$1\":\(\"[^\"]*\"\|[0-9][0-9]*\)" | head -n1 \
    | sed -e "s/^\"$1\"://" -e 's/^"//' -e 's/"$//'
}

step "start a fresh server (data in a temporary directory)"
start_server --origin demo.example/log
cat "$WORK/server.out"

step "create a writer key (admin key from $DATA/admin.key)"
WRITER="$("$BIN" keys create --url "$URL" --role writer --name demo-app \
  --admin-key-file "$DATA/admin.key")"
echo "writer key: ${WRITER:0:20}…"

step "submit an audit event: POST /v1/events?wait=checkpoint"
EVENT='{
  "actor": {"id": "dr-jones", "type": "user", "ip": "192.0.2.10"},
  "action": "record.read",
  "resource": {"type": "patient_record", "id": "rec-1042"},
  "subject": "patient-1042",
  "purpose": "treatment",
  "outcome": "success",
  "occurred_at": "2026-03-01T09:30:00Z",
  "id": "demo-event-1"
}'
ANSWER="$(http -X POST "$URL/v1/events?wait=checkpoint" \
  -H "Authorization: Bearer $WRITER" -H 'Content-Type: application/json' -d "$EVENT")"
echo "$ANSWER"
INDEX="$(json_field index "$ANSWER")"
LEAF_HASH="$(json_field leaf_hash "$ANSWER")"
[ -n "$INDEX" ] && [ -n "$LEAF_HASH" ] || fail "no index or leaf hash in the answer"
echo "event is leaf $INDEX, leaf hash $LEAF_HASH"

step "fetch the signed checkpoint: GET /checkpoint"
CHECKPOINT="$(http "$URL/checkpoint")"
echo "$CHECKPOINT"
SIZE="$(printf '%s\n' "$CHECKPOINT" | sed -n 2p)"
[ "$SIZE" -gt "$INDEX" ] || fail "the checkpoint (size $SIZE) does not cover leaf $INDEX"

step "get the inclusion proof: GET /v1/proof/inclusion?index=$INDEX&tree_size=$SIZE"
PROOF="$(http "$URL/v1/proof/inclusion?index=$INDEX&tree_size=$SIZE")"
echo "$PROOF"
[ "$(json_field leaf_hash "$PROOF")" = "$LEAF_HASH" ] || fail "the proof is for another leaf"

step "the log's public keys: GET /v1/log"
LOG="$(http "$URL/v1/log")"
echo "$LOG"
VKEY_ECDSA="$(json_field ecdsa "$LOG")"
VKEY_ED25519="$(json_field ed25519 "$LOG")"
[ -n "$VKEY_ECDSA" ] && [ -n "$VKEY_ED25519" ] || fail "no verifier keys in /v1/log"

step "verify checkpoint and inclusion: veritrail verify --index $INDEX --state FILE"
STATE="$WORK/verify-state.json"
"$BIN" verify --url "$URL" --vkey "$VKEY_ECDSA" --vkey "$VKEY_ED25519" \
  --index "$INDEX" --state "$STATE"

step "the log grows: submit a second event, verify consistency with the state"
SECOND="$(http -X POST "$URL/v1/events?wait=checkpoint" \
  -H "Authorization: Bearer $WRITER" -H 'Content-Type: application/json' \
  -d "${EVENT/demo-event-1/demo-event-2}")"
INDEX2="$(json_field index "$SECOND")"
"$BIN" verify --url "$URL" --vkey "$VKEY_ECDSA" --vkey "$VKEY_ED25519" \
  --index "$INDEX2" --state "$STATE"

step "stop the server (SIGTERM)"
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || fail "the server did not stop cleanly"
SERVER_PID=""
tail -n1 "$WORK/server.out"

step "demo complete"
