#!/usr/bin/env bash
# Ingest benchmark of the log: durable batched ingest, single-event ingest
# with 64 clients, submit → signed checkpoint latency, and in the same run
# the storage ceiling (raw sled, same configuration, same bytes per event,
# same flush + fsync per batch), and for single events also the parse-only
# ceiling (`bench parse-server`: the same HTTP listener and JSON parse step,
# then an answer, nothing stored). Prints one table: measured, target,
# ceiling.
#
# Exits non-zero only when something fails (build, server, a request);
# a missed target is reported in the table, not as a failure.
#
# Then, unless SEARCH_EVENTS=0, the search and encryption-cost section
# (issue #4), in a second table:
# - seeds a fresh log with SEARCH_EVENTS events (default 1,000,000) through
#   the HTTP API of a real `serve` (batched, `bench ingest --subjects`:
#   SEARCH_SUBJECTS subjects, Zipf-like by default, 500 actors, 8 actions),
#   then `bench search` measures the first page of a subject search (a hot,
#   a one-page and a rare subject), the next page through the cursor, and an
#   actor and an action search; every answer is checked, and walking every
#   page must find exactly the seeded events of the subject and the actor.
#   Each search is appended to the log durably before it is answered, so
#   its latency includes that append.
# - `bench pipeline` compares ingest with and without encryption at rest and
#   indexes side by side, in one process: the real sequencer over real sled
#   (fsync per batch), the same prepared batches, the vault in front of sled
#   or not. That is the path `serve` takes minus HTTP, which costs the same
#   in both modes (so the ratio is if anything stricter). It is done in
#   process on purpose: the server has no plaintext mode, and gets none.
#
# `scripts/bench.sh scale` runs the scale benchmark instead
# (scripts/bench-scale.sh: one log grown to 10 M events, memory, disk,
# restart, proofs and tiles beside nginx).
# `scripts/bench.sh reads` runs only its read part on a log of 1 M events
# (SCALE_STEPS to change it), without the searches and sled ceilings of
# the growth; READ_SERVERS="a=<binary> b=<binary>" compares builds.
# `scripts/bench.sh erasure` runs the erasure and backup benchmark instead
# (scripts/bench-erasure.sh: erase latency, ingest p99 during erasures,
# backup duration and memory, on one large log).
# `scripts/bench.sh pg` runs the remote backend's benchmark instead
# (scripts/bench-pg.sh: PostgreSQL + s3s-fs beside sled, batched,
# single-event and receipt latency, with the issue's targets).
# Then, unless RECEIVERS=0, the receivers sections (issue #16), in a third
# and fourth table: OTLP/JSON log records to POST /v1/logs against our own JSON batches
# to POST /v1/events, the same generated events, the same server, the same
# run, alternating twice (best of each: a neighbour only ever slows a run);
# and the shipping agent alone: `veritrail ship --exit-at-eof` delivering a
# pre-written JSON-lines file of SHIP_LINES lines to acknowledged, verified
# events (wait=checkpoint), its lines/s and its peak resident memory.
# RECEIVER_EVENTS scales the first; SHIP_LINES, SHIP_CHECKPOINT_MS (the
# server's checkpoint interval for the agent run, default 1000 as served)
# the second; SHIP_ARGS adds flags to `veritrail ship` (e.g. --in-flight 8).
#
# Environment: SKIP_BUILD=1 uses the existing target/release/veritrail
# (or VERITRAIL_BIN);
# BATCH_EVENTS, SINGLE_EVENTS, CHECKPOINT_REQUESTS scale the runs;
# TIME_BUDGET (seconds, default 270) bounds the ingest section after the build.
# SEARCH_EVENTS (0 skips the section), SEARCH_SUBJECTS, SEARCH_DISTRIBUTION
# (zipf|uniform), SEARCH_REQUESTS, SEARCH_CLIENTS, PIPELINE_EVENTS,
# PIPELINE_ROUNDS scale it; SEARCH_TIME_BUDGET (seconds, default 1500) bounds
# it; SKIP_INGEST=1 runs only this section.
#
# ALERTS_EVENTS=N (default 0: skipped) adds the alert-rules section
# (issue #17): batched ingest of N events (SEARCH_SUBJECTS subjects) into a
# fresh log with no alert rules and into one with 20 active rules that
# every generated event passes through (thresholds, breadth, time of day,
# first seen), alternating ALERTS_ROUNDS times (default 2); the best run
# of each is compared, by rate and by the server's CPU per event (from
# /proc/PID/stat: the figure that a loaded machine does not move; target:
# with rules >= 90% of without). Then
# `bench alerts` feeds ALERTS_CPU_EVENTS (default 200,000) of the same
# events to the same rules in this process, batch by batch as a write
# route does, and reports the rules' own CPU per event and the size of
# their checkpoint.
set -euo pipefail

cd "$(dirname "$0")/.."

if [[ "${1:-}" == scale ]]; then
    exec scripts/bench-scale.sh
fi
if [[ "${1:-}" == reads ]]; then
    SCALE_STEPS=${SCALE_STEPS:-1000000} SCALE_CHECKS=0 exec scripts/bench-scale.sh
fi
if [[ "${1:-}" == pg ]]; then
    exec scripts/bench-pg.sh
fi
if [[ "${1:-}" == erasure ]]; then
    exec scripts/bench-erasure.sh
fi
# One section alone, each measured beside its baseline in the same run:
#   scripts/bench.sh otlp     OTLP/JSON vs own JSON batches
#   scripts/bench.sh ship     the agent alone (lines/s, memory)
#   scripts/bench.sh alerts   ingest with 20 alert rules vs none
MODE=${1:-all}
case "$MODE" in
all) ;;
otlp | ship | alerts)
    SKIP_INGEST=1
    SEARCH_EVENTS=0
    RECEIVERS=0
    ALERTS_EVENTS=${ALERTS_EVENTS:-$([[ $MODE == alerts ]] && echo 100000 || echo 0)}
    ;;
*)
    echo "usage: scripts/bench.sh [scale|pg|erasure|otlp|ship|alerts]" >&2
    exit 2
    ;;
esac

BATCH_EVENTS=${BATCH_EVENTS:-200000}
BATCH_CLIENTS=${BATCH_CLIENTS:-8}
BATCH_SIZE=${BATCH_SIZE:-500}
SINGLE_EVENTS=${SINGLE_EVENTS:-100000}
SINGLE_CLIENTS=${SINGLE_CLIENTS:-64}
CHECKPOINT_REQUESTS=${CHECKPOINT_REQUESTS:-5000}
CHECKPOINT_CLIENTS=${CHECKPOINT_CLIENTS:-16}
TIME_BUDGET=${TIME_BUDGET:-270}
SEARCH_EVENTS=${SEARCH_EVENTS:-1000000}
SEARCH_SUBJECTS=${SEARCH_SUBJECTS:-10000}
SEARCH_DISTRIBUTION=${SEARCH_DISTRIBUTION:-zipf}
SEARCH_REQUESTS=${SEARCH_REQUESTS:-1000}
SEARCH_CLIENTS=${SEARCH_CLIENTS:-4}
SEARCH_TIME_BUDGET=${SEARCH_TIME_BUDGET:-1500}
PIPELINE_EVENTS=${PIPELINE_EVENTS:-200000}
PIPELINE_ROUNDS=${PIPELINE_ROUNDS:-3}
SKIP_INGEST=${SKIP_INGEST:-0}
RECEIVERS=${RECEIVERS:-1}
RECEIVER_EVENTS=${RECEIVER_EVENTS:-100000}
SHIP_LINES=${SHIP_LINES:-100000}
SHIP_CHECKPOINT_MS=${SHIP_CHECKPOINT_MS:-1000}
ALERTS_EVENTS=${ALERTS_EVENTS:-0}
ALERTS_ROUNDS=${ALERTS_ROUNDS:-2}
ALERTS_TIME_BUDGET=${ALERTS_TIME_BUDGET:-1200}
ALERTS_CPU_EVENTS=${ALERTS_CPU_EVENTS:-200000}

TARGET_BATCHED=50000
TARGET_SINGLE=20000
TARGET_SINGLE_PARSE_PCT=25
TARGET_CHECKPOINT_P50_MS=100
TARGET_SEARCH_P99_MS=50
TARGET_SEALED_RATIO_PCT=75
TARGET_OTLP_RATIO_PCT=80
TARGET_SHIP_LINES=20000
TARGET_SHIP_RSS_MB=64
TARGET_ALERTS_RATIO_PCT=90

# shellcheck source=scripts/lib/bench.sh
. scripts/lib/bench.sh

server_us_per_event() { # step: server CPU microseconds per event
    awk -v t="$(cat "$work/$1.server_ticks")" -v n="$(field "$1" events)" \
        'BEGIN { printf "%.1f", (n > 0 ? t * 10000 / n : 0) }'
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

ingest_section() {
start_server "$work/data"
key=$(new_key "$work/data" writer bench)

# --- the runs ------------------------------------------------------------------
step batched "$BIN" bench ingest --url "$url" --key "$key" \
    --clients "$BATCH_CLIENTS" --events "$BATCH_EVENTS" --batch-size "$BATCH_SIZE"
step single "$BIN" bench ingest --url "$url" --key "$key" \
    --clients "$SINGLE_CLIENTS" --events "$SINGLE_EVENTS" --batch-size 1
step checkpoint "$BIN" bench ingest --url "$url" --key "$key" \
    --clients "$CHECKPOINT_CLIENTS" --events "$CHECKPOINT_REQUESTS" --batch-size 1 \
    --wait-checkpoint
stop_server

# The parse-only ceiling of single-event ingest (issue #13): the same
# events and clients against `bench parse-server`, which answers after the
# log's own parse step and nothing else (no keys, sealing or storage).
start_parse_server
step parse_single "$BIN" bench ingest --url "$url" --key unused \
    --clients "$SINGLE_CLIENTS" --events "$SINGLE_EVENTS" --batch-size 1
stop_server

# The ceiling of each run: raw sled with the same bytes, (a) with the
# batches that run can reach at most (every event in flight in one commit),
# (b) with the batches the server actually committed (mean size).
sled_step sled_batched "$BATCH_EVENTS" $((BATCH_CLIENTS * BATCH_SIZE))
sled_step sled_batched_seen "$BATCH_EVENTS" "$(cat "$work/batched.mean_batch")"
sled_step sled_single "$SINGLE_EVENTS" "$SINGLE_CLIENTS"
sled_step sled_single_seen "$SINGLE_EVENTS" "$(cat "$work/single.mean_batch")"
sled_step sled_checkpoint "$CHECKPOINT_REQUESTS" "$CHECKPOINT_CLIENTS"

# --- the table -------------------------------------------------------------------
awk -v b="$(field batched events_per_s)" -v bc="$(field sled_batched events_per_s)" \
    -v bcs="$(field sled_batched_seen events_per_s)" -v bmb="$(cat "$work/batched.mean_batch")" \
    -v s="$(field single events_per_s)" -v sc="$(field sled_single events_per_s)" \
    -v scs="$(field sled_single_seen events_per_s)" -v smb="$(cat "$work/single.mean_batch")" \
    -v sp="$(field parse_single events_per_s)" -v tsp="$TARGET_SINGLE_PARSE_PCT" \
    -v c50="$(field checkpoint p50_ms)" -v c99="$(field checkpoint p99_ms)" \
    -v cc50="$(field sled_checkpoint commit_p50_ms)" -v cc99="$(field sled_checkpoint commit_p99_ms)" \
    -v cmb="$(cat "$work/checkpoint.mean_batch")" \
    -v bl50="$(field batched p50_ms)" -v bl99="$(field batched p99_ms)" \
    -v sl50="$(field single p50_ms)" -v sl99="$(field single p99_ms)" \
    -v fs="$(field sled_single fsync_p50_ms)" \
    -v bcpu="$(server_us_per_event batched)" -v scpu="$(server_us_per_event single)" \
    -v ccpu="$(server_us_per_event checkpoint)" \
    -v bgen="$(field batched client_cpu_us_per_event)" -v sgen="$(field single client_cpu_us_per_event)" \
    -v cgen="$(field checkpoint client_cpu_us_per_event)" \
    -v bscpu="$(field sled_batched cpu_us_per_event)" -v sscpu="$(field sled_single cpu_us_per_event)" \
    -v cscpu="$(field sled_checkpoint cpu_us_per_event)" \
    -v load="$(cut -d' ' -f1 /proc/loadavg)" -v cores="$(nproc)" \
    -v tb="$TARGET_BATCHED" -v ts="$TARGET_SINGLE" -v tc="$TARGET_CHECKPOINT_P50_MS" \
    -v bin_flight=$((BATCH_CLIENTS * BATCH_SIZE)) -v sin_flight="$SINGLE_CLIENTS" -v cin_flight="$CHECKPOINT_CLIENTS" \
    -v bdesc="$BATCH_CLIENTS clients x $BATCH_SIZE" -v sdesc="$SINGLE_CLIENTS clients x 1" \
    -v cdesc="$CHECKPOINT_CLIENTS clients x 1" '
function verdict(ok) { return ok ? "met" : "MISSED" }
function pct(a, c) { return c > 0 ? sprintf("%.0f%%", 100 * a / c) : "n/a" }
function rate(c) { return c > 0 ? sprintf("%.0f", c) : "n/a" }
BEGIN {
    printf "\n%-44s %10s %10s %7s | %-24s %6s | %-24s %6s\n", "metric", "measured", "target", "", \
        "sled ceiling (batch)", "ratio", "sled at server batches", "ratio"
    printf "%-44s %10.0f %10s %7s | %-24s %6s | %-24s %6s\n", "batched ingest, events/s (" bdesc ")", b, ">= " tb, \
        verdict(b >= tb), rate(bc) " (" bin_flight ")", pct(b, bc), rate(bcs) " (" bmb ")", pct(b, bcs)
    printf "%-44s %10.0f %10s %7s | %-24s %6s | %-24s %6s\n", "single-event ingest, events/s (" sdesc ")", s, ">= " ts, \
        verdict(s >= ts), rate(sc) " (" sin_flight ")", pct(s, sc), rate(scs) " (" smb ")", pct(s, scs)
    printf "%-44s %10.0f %10s %7s | %-24s %6s |\n", "  beside the parse-only ceiling (same clients)", s, ">= " tsp "%", \
        verdict(sp > 0 && 100 * s >= tsp * sp), rate(sp) " (axum + parse)", pct(s, sp)
    printf "%-44s %10.1f %10s %7s | %-24s %6s |\n", "checkpoint latency p50, ms (" cdesc ")", c50, "<= " tc, \
        verdict(c50 <= tc), sprintf("%.1f (%d)", cc50, cin_flight), sprintf("%.1fx", c50 / cc50)
    printf "%-44s %10.1f %10s %7s | %-24s %6s |\n", "checkpoint latency p99, ms", c99, "-", "", \
        sprintf("%.1f (%d)", cc99, cin_flight), sprintf("%.1fx", c99 / cc99)
    printf "\n%-44s %10s %10s %12s %10s\n", "CPU per event, microseconds", "server", "load gen", "sled ceiling", "mean batch"
    printf "%-44s %10.1f %10.1f %12.1f %10d\n", "batched", bcpu, bgen, bscpu, bmb
    printf "%-44s %10.1f %10.1f %12.1f %10d\n", "single-event", scpu, sgen, sscpu, smb
    printf "%-44s %10.1f %10.1f %12.1f %10d\n", "checkpoint", ccpu, cgen, cscpu, cmb
    printf "\nrequest latency: batched p50 %.1f ms / p99 %.1f ms; single p50 %.1f ms / p99 %.1f ms\n", bl50, bl99, sl50, sl99
    printf "sled ceiling = raw sled apply_batch + flush + fsync of the same keys and bytes per event, in batches\n"
    printf "of the size in brackets: every event in flight, or the mean batch the server committed; latency\n"
    printf "ceiling = one such commit of %d events. fsync alone p50 %.2f ms.\n", cin_flight, fs
    printf "load average at the end: %s on %d cores (other work on the machine slows every rate above)\n", load, cores
}'
for f in batched single checkpoint parse_single sled_batched sled_batched_seen sled_single sled_single_seen sled_checkpoint; do
    echo "$f: $(cat "$work/$f.json")"
done

echo
echo "== witnessed receipts: POST /v1/events?wait=witnessed, two local witnesses, policy 2 (target p50 <= 250 ms)"
scripts/bench-witnessed.sh || echo "bench-witnessed.sh failed"
}

# --- search and the cost of encryption at rest (issue #4) ----------------------
search_section() {
    deadline=$((SECONDS + SEARCH_TIME_BUDGET))
    echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) (search section)" >&2
    local pipeline_desc="-"
    if ((PIPELINE_EVENTS > 0)); then
        step pipeline "$BIN" bench pipeline --dir "$work/pipeline" --events "$PIPELINE_EVENTS" \
            --batch-size "$BATCH_SIZE" --clients "$BATCH_CLIENTS" --rounds "$PIPELINE_ROUNDS" \
            --subjects "$SEARCH_SUBJECTS" --distribution "$SEARCH_DISTRIBUTION"
        rm -rf "$work/pipeline"
        pipeline_desc="$PIPELINE_EVENTS events, $BATCH_CLIENTS x $BATCH_SIZE, best of $PIPELINE_ROUNDS"
    fi
    local load_pipeline
    load_pipeline=$(cut -d' ' -f1 /proc/loadavg)

    start_server "$work/search-data"
    local writer auditor
    writer=$(new_key "$work/search-data" writer seed)
    auditor=$(new_key "$work/search-data" auditor bench-auditor)
    step seed "$BIN" bench ingest --url "$url" --key "$writer" --clients "$BATCH_CLIENTS" \
        --events "$SEARCH_EVENTS" --batch-size "$BATCH_SIZE" \
        --subjects "$SEARCH_SUBJECTS" --distribution "$SEARCH_DISTRIBUTION"
    # Seeding leaves gigabytes of dirty pages for the kernel to write back;
    # every search makes one durable append (fsync), which would wait for
    # that backlog. Searches are measured on a settled log.
    sync "$work/search-data/db/db" 2>/dev/null || sync
    local seeded=(--seeded-events "$SEARCH_EVENTS" --seeded-subjects "$SEARCH_SUBJECTS"
        --seeded-app seed --distribution "$SEARCH_DISTRIBUTION")
    # A hot subject (first in the Zipf order), one with about a page of
    # events, and a rare one; with the hot subject also a later page, an
    # actor and an action search.
    local one_page=$((SEARCH_SUBJECTS / 10)) rare=$((SEARCH_SUBJECTS / 2))
    # The first searches after a bulk load are several times slower at the
    # tail, whatever the subject (the server is still shedding the load's
    # memory and caches), so one run settles the log first; it is reported
    # on its own row, not counted against the target.
    step search_settle "$BIN" bench search --url "$url" --key "$auditor" --subject "person-$rare" \
        --requests "$SEARCH_REQUESTS" --clients "$SEARCH_CLIENTS" "${seeded[@]}"
    step search_hot "$BIN" bench search --url "$url" --key "$auditor" --subject person-0 \
        --actor staff-7 --action record.export \
        --requests "$SEARCH_REQUESTS" --clients "$SEARCH_CLIENTS" "${seeded[@]}"
    step search_page "$BIN" bench search --url "$url" --key "$auditor" --subject "person-$one_page" \
        --requests "$SEARCH_REQUESTS" --clients "$SEARCH_CLIENTS" "${seeded[@]}"
    step search_rare "$BIN" bench search --url "$url" --key "$auditor" --subject "person-$rare" \
        --requests "$SEARCH_REQUESTS" --clients "$SEARCH_CLIENTS" "${seeded[@]}"
    local disk peak
    disk=$(du -sh "$work/search-data" | cut -f1)
    peak=$(peak_rss_mb)
    stop_server
    rm -rf "$work/search-data"

    srow() { # label, step: one search row (p50, p99 of the first page) and its verdict
        awk -v l="$1" -v p50="$(field "$2" p50_ms)" -v p99="$(field "$2" p99_ms)" \
            -v n="$(field "$2" expected_subject_events)" -v t="$TARGET_SEARCH_P99_MS" \
            'BEGIN { printf "%-58s %9.1f %9.1f %8s %7s\n", l " (" n " seeded)", p50, p99, "< " t, (p99 < t ? "met" : "MISSED") }'
    }
    printf "\n== search: %s events seeded through the API (%s subjects, %s), %s clients x %s requests, first page of 100\n" \
        "$SEARCH_EVENTS" "$SEARCH_SUBJECTS" "$SEARCH_DISTRIBUTION" "$SEARCH_CLIENTS" "$SEARCH_REQUESTS"
    printf "%-58s %9s %9s %8s %7s\n" "metric (latency includes the durable audit append)" "p50 ms" "p99 ms" "target" "met?"
    awk -v a="$(field search_settle p50_ms)" -v b="$(field search_settle p99_ms)" \
        'BEGIN { printf "%-58s %9.1f %9.1f %8s %7s\n", "(settling run right after seeding, person-'"$rare"')", a, b, "-", "" }'
    srow "first page, hot subject person-0" search_hot
    srow "first page, subject person-$one_page" search_page
    srow "first page, rare subject person-$rare" search_rare
    awk -v a="$(field search_hot next_p50_ms)" -v b="$(field search_hot next_p99_ms)" \
        'BEGIN { printf "%-58s %9.1f %9.1f %8s %7s\n", "next page via cursor, person-0", a, b, "-", "" }'
    awk -v a="$(field search_hot actor_p50_ms)" -v b="$(field search_hot actor_p99_ms)" \
        -v n="$(field search_hot expected_actor_events)" \
        'BEGIN { printf "%-58s %9.1f %9.1f %8s %7s\n", "first page, actor staff-7 (" n " seeded)", a, b, "-", "" }'
    awk -v a="$(field search_hot action_p50_ms)" -v b="$(field search_hot action_p99_ms)" \
        'BEGIN { printf "%-58s %9.1f %9.1f %8s %7s\n", "first page, action record.export", a, b, "-", "" }'
    awk -v r="$(field seed events_per_s)" -v p50="$(field seed p50_ms)" -v p99="$(field seed p99_ms)" -v d="$disk" \
        -v m="$peak" 'BEGIN { printf "seeding through the API: %.0f events/s (request p50 %.1f ms, p99 %.1f ms); data dir %s; server peak RSS %d MB\n", r, p50, p99, d, m }'
    if ((PIPELINE_EVENTS > 0)); then
        printf "\n== ingest with vs without encryption at rest + indexes (bench pipeline: %s)\n" "$pipeline_desc"
        printf "%-58s %9s %9s %8s %7s\n" "metric" "plain" "sealed" "target" "met?"
        awk -v p="$(field pipeline plain_events_per_s)" -v s="$(field pipeline sealed_events_per_s)" \
            -v r="$(field pipeline sealed_over_plain)" -v t="$TARGET_SEALED_RATIO_PCT" \
            -v pc="$(field pipeline plain_cpu_us_per_event)" -v sc="$(field pipeline sealed_cpu_us_per_event)" \
            -v pd="$(field pipeline plain_disk_bytes_per_event)" -v sd="$(field pipeline sealed_disk_bytes_per_event)" \
            -v pr="$(field pipeline plain_rss_mb)" -v sr="$(field pipeline sealed_rss_mb)" 'BEGIN {
            printf "%-58s %9.0f %9.0f %8s %7s\n", "ingest, events/s (sealed/plain " sprintf("%.1f%%", 100 * r) ")", p, s, ">= " t "%", (100 * r >= t ? "met" : "MISSED")
            printf "%-58s %9.1f %9.1f %8s %7s\n", "CPU per event, microseconds (whole process)", pc, sc, "-", ""
            printf "%-58s %9.0f %9.0f %8s %7s\n", "bytes on disk per event", pd, sd, "-", ""
            printf "%-58s %9.0f %9.0f %8s %7s\n", "process RSS at the end of the run, MB", pr, sr, "-", ""
        }'
        echo "load average: $load_pipeline during the pipeline runs"
    fi
    echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
    for f in pipeline seed search_settle search_hot search_page search_rare; do
        [[ -f "$work/$f.json" ]] && echo "$f: $(cat "$work/$f.json")"
    done
}

# --- OTLP against our own JSON batches, and the shipping agent (issue #16) ----
section_start() { # name, seconds: the section's deadline, and the load average at its start (load_start)
    deadline=$((SECONDS + $2))
    load_start=$(cut -d' ' -f1-3 /proc/loadavg)
    echo "machine: $(nproc) cores, load average $load_start ($1)" >&2
}
otlp_section() {
    section_start "OTLP section" "$TIME_BUDGET"
    start_server "$work/receivers-data"
    local key
    key=$(new_key "$work/receivers-data" writer receivers)
    local round
    for round in 1 2; do
        step "json_$round" "$BIN" bench ingest --url "$url" --key "$key" \
            --clients "$BATCH_CLIENTS" --events "$RECEIVER_EVENTS" --batch-size "$BATCH_SIZE"
        step "otlp_$round" "$BIN" bench ingest --url "$url" --key "$key" \
            --clients "$BATCH_CLIENTS" --events "$RECEIVER_EVENTS" --batch-size "$BATCH_SIZE" --otlp
    done
    stop_server
    rm -rf "$work/receivers-data"
    best() { # step prefix: the better events/s of rounds 1 and 2
        awk -v a="$(field "$1_1" events_per_s)" -v b="$(field "$1_2" events_per_s)" \
            'BEGIN { printf "%.0f", (a > b ? a : b) }'
    }
    local json_rate otlp_rate
    json_rate=$(best json)
    otlp_rate=$(best otlp)
    printf "\n== OTLP/JSON vs own JSON batches (%s events, %s clients x %s, alternating, best of 2 each)\n" \
        "$RECEIVER_EVENTS" "$BATCH_CLIENTS" "$BATCH_SIZE"
    printf "%-58s %12s %10s %7s\n" "metric" "measured" "target" "met?"
    awk -v j="$json_rate" -v o="$otlp_rate" -v t="$TARGET_OTLP_RATIO_PCT" 'BEGIN {
        printf "%-58s %12.0f %10s %7s\n", "own JSON batches, POST /v1/events, events/s", j, "-", ""
        printf "%-58s %12.0f %10s %7s\n", "OTLP/JSON, POST /v1/logs, events/s", o, "-", ""
        printf "%-58s %11.0f%% %9s%% %7s\n", "OTLP / own JSON", 100 * o / j, ">= " t, (100 * o >= t * j ? "met" : "MISSED")
    }'
    echo "load average: $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end, on $(nproc) cores"
    for f in json_1 otlp_1 json_2 otlp_2; do
        echo "$f: $(cat "$work/$f.json")"
    done
}

ship_section() {
    section_start "agent section" "$TIME_BUDGET"
    # The agent alone: a pre-written file to acknowledged, verified events.
    start_server "$work/ship-data" "checkpoint_interval_ms = $SHIP_CHECKPOINT_MS"
    local key
    key=$(new_key "$work/ship-data" writer shipper)
    local vkeys=()
    mapfile -t vkeys < <(sed -n 's/^  \(ecdsa\|ed25519\) *\(.*\)$/--vkey\n\2/p' "$work/server.out")
    "$BIN" bench lines --out "$work/ship-input.jsonl" --events "$SHIP_LINES"
    echo "running: ship" >&2
    local before
    before=$(server_cpu_ticks)
    if ! /usr/bin/time -f '%e %M %U %S' -o "$work/ship.time" timeout $((deadline - SECONDS)) \
        "$BIN" ship --url "$url" --key "$key" "${vkeys[@]}" --include "$work/ship-input.jsonl" \
        --dir "$work/ship-agent" --exit-at-eof ${SHIP_ARGS:-} >"$work/ship.out" 2>"$work/ship.err"; then
        echo "bench: the agent failed:" >&2
        cat "$work/ship.out" "$work/ship.err" >&2
        exit 1
    fi
    local ship_ticks=$(($(server_cpu_ticks) - before))
    stop_server
    rm -rf "$work/ship-data" "$work/ship-input.jsonl"
    local appended
    appended=$(sed -n 's/.*appended=\([0-9]*\).*/\1/p' "$work/ship.out")
    if [[ "$appended" != "$SHIP_LINES" ]]; then
        echo "bench: the agent appended ${appended:-?} of $SHIP_LINES lines: $(cat "$work/ship.out")" >&2
        exit 1
    fi
    read -r ship_s ship_kb ship_user ship_sys <"$work/ship.time"
    printf "\n== the agent alone: veritrail ship, a %s-line file to acknowledged, receipt-verified events\n" "$SHIP_LINES"
    printf "%-58s %12s %10s %7s\n" "metric" "measured" "target" "met?"
    awk -v n="$SHIP_LINES" -v s="$ship_s" -v kb="$ship_kb" -v t="$TARGET_SHIP_LINES" -v m="$TARGET_SHIP_RSS_MB" \
        -v cp="$SHIP_CHECKPOINT_MS" -v st="$ship_ticks" -v u="$ship_user" -v y="$ship_sys" 'BEGIN {
        printf "%-58s %12.0f %10s %7s\n", "agent alone, lines/s (" n " lines, checkpoint " cp " ms)", n / s, ">= " t, (n / s >= t ? "met" : "MISSED")
        printf "%-58s %12.1f %10s %7s\n", "agent peak resident memory, MiB", kb / 1024, "< " m, (kb / 1024 < m ? "met" : "MISSED")
        printf "%-58s %12.1f %10s %7s\n", "agent CPU per line, microseconds", (u + y) * 1000000 / n, "-", ""
        printf "%-58s %12.1f %10s %7s\n", "server CPU per shipped line, microseconds", st * 10000 / n, "-", ""
    }'
    echo "agent: $(cat "$work/ship.out")"
    echo "load average: $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end, on $(nproc) cores"
}

# --- ingest with 20 alert rules vs none (issue #17) ------------------------------
alert_rules() { # 20 distinct rules of the four kinds, as a records system would set
    #             them; the generated events (record.* and consent.check on
    #             patient_record, purpose treatment, outcome success, occurred
    #             Wed 2026-11-25T10:00Z) pass through 9 to 15 of them each
    local rule
    echo "[alerts]"
    for rule in \
        'reads-per-actor|threshold|{ action = "record.read" }|group_by = "actor"\nmore_than = 2000\nwindow = "1h"' \
        'exports-per-actor|threshold|{ action = ["record.export", "record.print"] }|group_by = "actor"\nmore_than = 500\nwindow = "1h"' \
        'deletes-per-actor|threshold|{ action = "record.delete", outcome = ["success", "failure"] }|group_by = "actor"\nmore_than = 200\nwindow = "1d"' \
        'hot-record|threshold|{ resource_type = "patient_record" }|group_by = "subject"\nmore_than = 10000\nwindow = "1h"' \
        'address-burst|threshold|{ actor_type = "user" }|group_by = "actor_ip"\nmore_than = 5000\nwindow = "10m"' \
        'shared-record|threshold|{ action = "record.share" }|group_by = "resource"\nmore_than = 5\nwindow = "1h"' \
        'app-spike|threshold|{ purpose = { prefix = "treat" } }|group_by = "app"\nmore_than = 10000\nwindow = "10m"' \
        'patient-browsing|breadth|{ action = "record.read", resource_type = "patient_record" }|distinct = "subject"\nmore_than = 1000\nwindow = "5m"' \
        'record-sweep|breadth|{ action = { prefix = "record." } }|distinct = "resource"\nmore_than = 2000\nwindow = "10m"' \
        'export-breadth|breadth|{ action = ["record.export", "record.print", "record.share"] }|distinct = "subject"\nmore_than = 300\nwindow = "1h"' \
        'address-breadth|breadth|{ actor_type = "user" }|group_by = "actor_ip"\ndistinct = "subject"\nmore_than = 5000\nwindow = "10m"' \
        'write-breadth|breadth|{ action = ["record.update", "record.create", "record.delete"] }|distinct = "resource"\nmore_than = 1000\nwindow = "1h"' \
        'office-hours-paris|time_of_day|{ purpose = "treatment" }|time_zone = "Europe/Paris"\nallowed_hours = "07:00-20:00"\nallowed_days = ["mon", "tue", "wed", "thu", "fri"]' \
        'evening-tokyo|time_of_day|{ action = { prefix = "record." } }|time_zone = "Asia/Tokyo"\nallowed_hours = "08:00-22:00"' \
        'night-address-utc|time_of_day|{ actor_type = "user" }|group_by = "actor_ip"\ntime_zone = "UTC"\nallowed_hours = "06:00-22:00"\nwindow = "30m"' \
        'early-export-sao-paulo|time_of_day|{ action = ["record.export", "record.delete"] }|time_zone = "America/Sao_Paulo"\nallowed_hours = "06:00-19:00"\nallowed_days = ["mon", "tue", "wed", "thu", "fri", "sat"]' \
        'first-action|first_seen|{ actor_type = "user" }|of = "action"\nlearning = "7d"' \
        'first-resource-type|first_seen|{ actor_type = "user" }|of = "resource_type"\nlearning = "7d"' \
        'first-treatment-action|first_seen|{ purpose = "treatment", outcome = "success" }|of = "action"\nlearning = "30d"' \
        'first-export-type|first_seen|{ action = ["record.export", "record.share"] }|of = "resource_type"\nlearning = "14d"'; do
        IFS='|' read -r name kind match rest <<<"$rule"
        printf '[[alerts.rule]]\nname = "%s"\nkind = "%s"\nmatch = %s\n%b\n' "$name" "$kind" "$match" "$rest"
    done
}

alerts_section() {
    section_start "alerts section" "$ALERTS_TIME_BUDGET"
    local round mode writer best_none=0 best_rules=0 r c cpu_none=0 cpu_rules=0
    for round in $(seq 1 "$ALERTS_ROUNDS"); do
        for mode in none rules; do
            if [[ $mode == rules ]]; then
                start_server "$work/alerts-data" "$(alert_rules)"
            else
                start_server "$work/alerts-data"
            fi
            writer=$(new_key "$work/alerts-data" writer bench)
            step "alerts_${mode}_$round" "$BIN" bench ingest --url "$url" --key "$writer" \
                --clients "$BATCH_CLIENTS" --events "$ALERTS_EVENTS" --batch-size "$BATCH_SIZE" \
                --subjects "$SEARCH_SUBJECTS" --distribution "$SEARCH_DISTRIBUTION"
            stop_server
            rm -rf "$work/alerts-data"
            r=$(field "alerts_${mode}_$round" events_per_s)
            c=$(server_us_per_event "alerts_${mode}_$round")
            if [[ $mode == rules ]]; then
                best_rules=$(awk -v a="$best_rules" -v b="$r" 'BEGIN { print (b > a ? b : a) }')
                cpu_rules=$(awk -v a="$cpu_rules" -v b="$c" 'BEGIN { print (a == 0 || b < a ? b : a) }')
            else
                best_none=$(awk -v a="$best_none" -v b="$r" 'BEGIN { print (b > a ? b : a) }')
                cpu_none=$(awk -v a="$cpu_none" -v b="$c" 'BEGIN { print (a == 0 || b < a ? b : a) }')
            fi
        done
    done
    alert_rules >"$work/alert-rules.toml"
    step alerts_cpu "$BIN" bench alerts --rules "$work/alert-rules.toml" --events "$ALERTS_CPU_EVENTS" \
        --batch-size "$BATCH_SIZE" --subjects "$SEARCH_SUBJECTS" --distribution "$SEARCH_DISTRIBUTION"
    printf "\n== ingest with 20 alert rules vs none: %s events, %s clients x %s, best of %s alternating runs\n" \
        "$ALERTS_EVENTS" "$BATCH_CLIENTS" "$BATCH_SIZE" "$ALERTS_ROUNDS"
    printf "%-58s %9s %9s %8s %7s\n" "metric" "no rules" "20 rules" "target" "met?"
    awk -v n="$best_none" -v w="$best_rules" -v t="$TARGET_ALERTS_RATIO_PCT" 'BEGIN {
        r = (n > 0 ? 100 * w / n : 0)
        printf "%-58s %9.0f %9.0f %8s %7s\n", "batched ingest, events/s (rules/none " sprintf("%.1f%%", r) ")", n, w, ">= " t "%", (r >= t ? "met" : "MISSED")
    }'
    # On a shared machine the rates move with the neighbours' load; the
    # server's own CPU per event does not, and its inverse is the rate when
    # the server is CPU-bound.
    awk -v n="$cpu_none" -v w="$cpu_rules" -v t="$TARGET_ALERTS_RATIO_PCT" 'BEGIN {
        r = (w > 0 ? 100 * n / w : 0)
        printf "%-58s %9.1f %9.1f %8s %7s\n", "server CPU per event, us (none/rules " sprintf("%.1f%%", r) ")", n, w, ">= " t "%", (r >= t ? "met" : "MISSED")
    }'
    awk -v cpu="$(field alerts_cpu cpu_ns_per_event)" -v n="$ALERTS_CPU_EVENTS" \
        -v bytes="$(field alerts_cpu state_bytes)" -v ms="$(field alerts_cpu state_serialize_ms)" 'BEGIN {
        printf "the 20 rules alone, in process (%d events): %.0f ns of CPU per event; checkpoint %.1f MB, serialized in %.0f ms\n", n, cpu, bytes / 1e6, ms
    }'
    echo "load average: $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end, on $(nproc) cores"
    for round in $(seq 1 "$ALERTS_ROUNDS"); do
        for mode in none rules; do
            echo "alerts_${mode}_$round: $(cat "$work/alerts_${mode}_$round.json") server_us_per_event=$(server_us_per_event "alerts_${mode}_$round")"
        done
    done
    echo "alerts_cpu: $(cat "$work/alerts_cpu.json")"
}

if [[ "$SKIP_INGEST" != 1 ]]; then
    ingest_section
fi
if [[ "$RECEIVERS" != 0 || $MODE == otlp ]]; then
    otlp_section
fi
if [[ "$RECEIVERS" != 0 || $MODE == ship ]]; then
    ship_section
fi
if ((ALERTS_EVENTS > 0)); then
    alerts_section
fi
if ((SEARCH_EVENTS > 0)); then
    search_section
fi
