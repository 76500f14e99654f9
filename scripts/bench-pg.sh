#!/usr/bin/env bash
# The remote backend beside sled, in one run (`scripts/bench.sh pg`): a real
# `serve` (release build) on a throwaway PostgreSQL and s3s-fs
# (scripts/lib/pg.sh, scripts/lib/s3.sh), and one on sled, each measured
# with the same three runs of `veritrail bench ingest`:
# - batched ingest: BATCH_CLIENTS clients x BATCH_SIZE events per request;
# - single-event ingest: SINGLE_CLIENTS clients x 1 event;
# - receipts: CHECKPOINT_CLIENTS clients x 1 event with wait=checkpoint
#   (the answer carries a signed checkpoint that includes the event), p50/p99.
# Prints one table with the targets of the remote backend; also how many
# statements PostgreSQL ran per committed batch (pg_stat_database and the
# server's batch counter), the round trips a batch costs.
#
# Exits non-zero only when something fails; a missed target is reported.
# Environment: SKIP_BUILD=1 (or VERITRAIL_BIN) as in scripts/bench.sh;
# BATCH_EVENTS, SINGLE_EVENTS, CHECKPOINT_REQUESTS scale the runs;
# CHECKPOINT_MS the servers' checkpoint interval (default: the server's);
# TIME_BUDGET (seconds, default 600) bounds the runs after the build;
# PG_PROFILE=1 loads pg_stat_statements and prints, for each run of the
# remote backend, the statements PostgreSQL ran per committed batch.
set -euo pipefail

cd "$(dirname "$0")/.."

BATCH_EVENTS=${BATCH_EVENTS:-100000}
BATCH_CLIENTS=${BATCH_CLIENTS:-8}
BATCH_SIZE=${BATCH_SIZE:-500}
SINGLE_EVENTS=${SINGLE_EVENTS:-30000}
SINGLE_CLIENTS=${SINGLE_CLIENTS:-64}
CHECKPOINT_REQUESTS=${CHECKPOINT_REQUESTS:-2000}
CHECKPOINT_CLIENTS=${CHECKPOINT_CLIENTS:-16}
TIME_BUDGET=${TIME_BUDGET:-600}

TARGET_BATCHED=10000
TARGET_SINGLE=3000
TARGET_RECEIPT_P50_MS=50

# shellcheck source=scripts/lib/bench.sh
. scripts/lib/bench.sh

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- the services ------------------------------------------------------------------
pg_dir="$work/pg"
pg_port=$(free_port)
stop_pg() { scripts/lib/pg.sh kill "$pg_dir" >/dev/null 2>&1 || true; }
trap 'stop_pg; cleanup' EXIT
scripts/lib/pg.sh start "$pg_dir" "$pg_port"
psql() { /usr/lib/postgresql/15/bin/psql -h 127.0.0.1 -p "$pg_port" -U veritrail -d veritrail -tAq "$@"; }
if [[ "${PG_PROFILE:-0}" == 1 ]]; then
    psql -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"
    scripts/lib/pg.sh stop "$pg_dir"
    scripts/lib/pg.sh start "$pg_dir" "$pg_port"
    psql -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
fi
s3_port=$(free_port)
extra_pids+=("$(scripts/lib/s3.sh start "$work/s3" "$s3_port")")
export AWS_ACCESS_KEY_ID=veritrail AWS_SECRET_ACCESS_KEY=veritrail-secret
pg_url="postgres://veritrail@127.0.0.1:$pg_port/veritrail"
psql_stat() { # the number of transactions PostgreSQL has run and rows written
    psql -c "SELECT xact_commit + xact_rollback, tup_inserted + tup_updated + tup_deleted FROM pg_stat_database WHERE datname = 'veritrail'" \
        | tr '|' ' '
}
profile() { # run name: with PG_PROFILE=1, the statements of that run per committed batch
    [[ "${PG_PROFILE:-0}" == 1 && "$1" == pg.* ]] || return 0
    local batches
    batches=$(batch_totals | awk '{ print $2 }')
    if [[ "$1" == *.start ]]; then
        psql -c "SELECT pg_stat_statements_reset()" >/dev/null
        profile_batches=$batches
        return 0
    fi
    echo "statements per committed batch in $1 ($((batches - ${profile_batches:-0})) batches; calls, ms, statement):" >"$work/$1.profile"
    psql -F ' | ' -c "SELECT round(calls::numeric / greatest($batches - ${profile_batches:-0}, 1), 2),
            round(total_exec_time::numeric / greatest($batches - ${profile_batches:-0}, 1), 3),
            left(regexp_replace(query, '\s+', ' ', 'g'), 110)
        FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'veritrail')
        ORDER BY calls DESC LIMIT 15" >>"$work/$1.profile"
    psql -c "SELECT pg_stat_statements_reset()" >/dev/null
    profile_batches=$batches
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
checkpoint_line=""
if [[ -n "${CHECKPOINT_MS:-}" ]]; then
    checkpoint_line="checkpoint_interval_ms = $CHECKPOINT_MS"
fi

runs() { # backend prefix: the three runs against the running server
    local p=$1 key
    key=$(new_key "$work/$p-data" writer bench)
    profile "$p.start"
    step "$p.batched" "$BIN" bench ingest --url "$url" --key "$key" \
        --clients "$BATCH_CLIENTS" --events "$BATCH_EVENTS" --batch-size "$BATCH_SIZE"
    profile "$p.batched"
    step "$p.single" "$BIN" bench ingest --url "$url" --key "$key" \
        --clients "$SINGLE_CLIENTS" --events "$SINGLE_EVENTS" --batch-size 1
    profile "$p.single"
    step "$p.receipt" "$BIN" bench ingest --url "$url" --key "$key" \
        --clients "$CHECKPOINT_CLIENTS" --events "$CHECKPOINT_REQUESTS" --batch-size 1 \
        --wait-checkpoint
    profile "$p.receipt"
}

start_server "$work/sled-data" "$checkpoint_line"
runs sled
stop_server

start_server "$work/pg-data" "$(printf 'store = "%s"\nobjects = "s3://log/bench"\nobjects_endpoint = "http://127.0.0.1:%s"\n%s' \
    "$pg_url" "$s3_port" "$checkpoint_line")"
read -r tx0 rows0 <<<"$(psql_stat)"
runs pg
read -r tx1 rows1 <<<"$(psql_stat)"
batches=$(batch_totals | awk '{ print $2 }')
stop_server

# --- the table ------------------------------------------------------------------------
awk -v sb="$(field sled.batched events_per_s)" -v pb="$(field pg.batched events_per_s)" \
    -v ss="$(field sled.single events_per_s)" -v ps="$(field pg.single events_per_s)" \
    -v s50="$(field sled.receipt p50_ms)" -v p50="$(field pg.receipt p50_ms)" \
    -v s99="$(field sled.receipt p99_ms)" -v p99="$(field pg.receipt p99_ms)" \
    -v sbm="$(cat "$work/sled.batched.mean_batch")" -v pbm="$(cat "$work/pg.batched.mean_batch")" \
    -v ssm="$(cat "$work/sled.single.mean_batch")" -v psm="$(cat "$work/pg.single.mean_batch")" \
    -v tb="$TARGET_BATCHED" -v ts="$TARGET_SINGLE" -v tc="$TARGET_RECEIPT_P50_MS" \
    -v tx=$((tx1 - tx0)) -v rows=$((rows1 - rows0)) -v batches="$batches" \
    -v bdesc="$BATCH_CLIENTS x $BATCH_SIZE" -v sdesc="$SINGLE_CLIENTS x 1" -v cdesc="$CHECKPOINT_CLIENTS x 1" \
    -v load="$(cut -d' ' -f1 /proc/loadavg)" -v cores="$(nproc)" -v bin="$SERVER_BIN" '
function verdict(ok) { return ok ? "met" : "MISSED" }
BEGIN {
    printf "\nserver binary: %s (both backends, same run)\n", bin
    printf "%-40s %12s %12s %10s %7s\n", "metric", "sled", "pg+s3s-fs", "target", ""
    printf "%-40s %12.0f %12.0f %10s %7s\n", "batched ingest, events/s (" bdesc ")", sb, pb, ">= " tb, verdict(pb >= tb)
    printf "%-40s %12.0f %12.0f %10s %7s\n", "single-event ingest, events/s (" sdesc ")", ss, ps, ">= " ts, verdict(ps >= ts)
    printf "%-40s %12.1f %12.1f %10s %7s\n", "receipt p50, ms (wait=checkpoint, " cdesc ")", s50, p50, "<= " tc, verdict(p50 <= tc)
    printf "%-40s %12.1f %12.1f %10s\n", "receipt p99, ms", s99, p99, "-"
    printf "%-40s %12d %12d\n", "mean batch, batched run", sbm, pbm
    printf "%-40s %12d %12d\n", "mean batch, single-event run", ssm, psm
    printf "\nPostgreSQL: %d transactions (reads included: each is one), %d rows written, %d committed batches (%.1f per batch)\n", \
        tx, rows, batches, (batches > 0 ? tx / batches : 0)
    printf "load average at the end: %s on %d cores (other work on the machine slows every rate above)\n", load, cores
}'
for f in sled.batched sled.single sled.receipt pg.batched pg.single pg.receipt; do
    echo "$f: $(cat "$work/$f.json")"
done
for f in "$work"/pg.*.profile; do
    [[ -f "$f" ]] && { echo; cat "$f"; }
done
true
