#!/usr/bin/env bash
# Erasure and backup at scale (`scripts/bench.sh erasure`): grows one log
# through the HTTP API of a real `serve` (rate limit off) to ERASURE_EVENTS
# events (default 10 M; 8 clients x 500 events, 10,000 subjects, Zipf, as
# the scale mode), then measures, with the targets of the erasure issue:
#
# - erase latency: `POST /v1/erasure` of one subject, for subjects of very
#   different sizes (person-0 is the largest under Zipf), with the answer's
#   `cleanup` state; then how long the background deletion of the erased
#   subjects' events takes (until `/healthz` counts no erasure cleanup);
# - ingest p99 while erasures run: single-event ingest (`bench ingest`,
#   INGEST_CLIENTS clients, INGEST_EVENTS events) while the background
#   cleanup of the subjects above runs, alone, then again while subjects
#   are erased one after the other, without pause, for as long as it
#   lasts; the ratios of the p99s to the one alone;
# - backup: `veritrail backup` of the whole log, its duration, the
#   server's peak resident memory during it (VmRSS sampled every 100 ms)
#   and before it, and the client's (GNU time).
#
# ERASURE_DATA=DIR keeps the grown log in DIR (reused by the next run when
# it holds one: growth is skipped), so the measures can be repeated without
# growing again; without it, everything is in a temporary directory removed
# at exit. Needs about 1.1 KB of disk per event (11 GB at 10 M) plus the
# backup (about as much again).
#
# Environment: ERASURE_EVENTS, ERASURE_SUBJECTS, ERASURE_CLIENTS,
# ERASURE_BATCH_SIZE, INGEST_EVENTS, INGEST_CLIENTS, ERASE_SUBJECTS (the
# subjects erased one at a time, largest first), ERASE_DURING_FROM (the
# first person-N erased while ingest runs, default 2: a kept log whose
# subjects were erased by an earlier run starts past them), TIME_BUDGET,
# ERASE_TIMEOUT_S (the server's request timeout, default 600, so that a
# long erasure is timed rather than cut), SERVER_MAX_RSS_MB, SKIP_BUILD /
# VERITRAIL_BIN as for bench.sh.
set -euo pipefail

cd "$(dirname "$0")/.."

ERASURE_EVENTS=${ERASURE_EVENTS:-10000000}
ERASURE_SUBJECTS=${ERASURE_SUBJECTS:-10000}
ERASURE_CLIENTS=${ERASURE_CLIENTS:-8}
ERASURE_BATCH_SIZE=${ERASURE_BATCH_SIZE:-500}
INGEST_EVENTS=${INGEST_EVENTS:-20000}
INGEST_CLIENTS=${INGEST_CLIENTS:-16}
ERASE_SUBJECTS=${ERASE_SUBJECTS:-"person-0 person-10 person-100 person-1000 person-5000"}
ERASE_DURING_FROM=${ERASE_DURING_FROM:-2}
ERASE_TIMEOUT_S=${ERASE_TIMEOUT_S:-600}
TIME_BUDGET=${TIME_BUDGET:-14400}

# The targets of the erasure issue.
TARGET_ERASE_S=1
TARGET_INGEST_P99_RATIO=2

# shellcheck source=scripts/lib/bench.sh
. scripts/lib/bench.sh

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
data=${ERASURE_DATA:-$work/data}
committed_size() { # once the log says it is healthy (a restart may first catch up)
    local give_up=$((SECONDS + 600))
    until curl -fsS -o "$work/healthz" "$url/healthz" 2>/dev/null; do
        ((SECONDS < give_up)) || { echo "bench: the log stays unhealthy: $(cat "$work/healthz")" >&2; exit 1; }
        sleep 1
    done
    sed -n 's/.*"committed_size":\([0-9]*\).*/\1/p' "$work/healthz"
}
server_rss_mib() { # [VmRSS|VmHWM]: the server's resident memory now (or its peak), MiB
    awk -v f="${1:-VmRSS}:" '$1 == f { printf "%d", $2 / 1024 }' "/proc/$server_pid/status" 2>/dev/null || echo 0
}
ratio() { # a b: a / b with two decimals
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'
}

grow=1
[[ -f "$data/admin.key" ]] && grow=0
# Erasing a large subject may take longer than the default request
# timeout: measure how long it takes.
start_server "$data" "request_timeout_s = $ERASE_TIMEOUT_S"
admin=$(cat "$data/admin.key")
writer=$(new_key "$data" writer "bench-$RANDOM")
if ((grow)); then
    step grow "$BIN" bench ingest --url "$url" --key "$writer" \
        --clients "$ERASURE_CLIENTS" --batch-size "$ERASURE_BATCH_SIZE" \
        --subjects "$ERASURE_SUBJECTS" --events "$ERASURE_EVENTS"
    sync
fi
size=$(committed_size)
echo "log: $size entries, $(du -sh "$data" | cut -f1) on disk" >&2

erase() { # subject: one erasure; prints "cleanup seconds status"
    local out=$work/erase.json answer
    rm -f "$out"
    answer=$(curl -sS -o "$out" -w '%{http_code} %{time_total}' -H "Authorization: Bearer $admin" \
        -H 'content-type: application/json' \
        --data "{\"subject\":\"$1\",\"reason\":\"bench\"}" "$url/v1/erasure" || echo "000 0")
    local status=${answer% *} secs=${answer#* }
    if [[ $status == 200 ]]; then
        echo "$(jq -r '.cleanup // (.erased | length)' "$out") $secs $status"
    else
        echo "- $secs $status"
    fi
}

# --- erase latency: one subject at a time, the log otherwise idle ------------------
: >"$work/erasures"
for s in $ERASE_SUBJECTS; do
    echo "$s $(erase "$s")" >>"$work/erasures"
done

cleanups_pending() {
    curl -fsS "$url/healthz" | jq '.erasure_cleanups_pending // 0'
}
cleanup_started=$(date +%s%N)
# Single-event ingest while that cleanup runs (the cleanup yields to it,
# so it also takes longer), then the cleanup's end.
first=$((size + 1000000000))
step ingest.cleaning "$BIN" bench ingest --url "$url" --key "$writer" --clients "$INGEST_CLIENTS" \
    --batch-size 1 --events "$INGEST_EVENTS" --first-event "$((first + 2 * INGEST_EVENTS))"
pending_after_ingest=$(cleanups_pending)
until [[ $(cleanups_pending) == 0 ]]; do sleep 0.2; done
cleanup_ms=$((($(date +%s%N) - cleanup_started) / 1000000))

# --- ingest p99 alone, then while erasures run --------------------------------------
step ingest.alone "$BIN" bench ingest --url "$url" --key "$writer" --clients "$INGEST_CLIENTS" \
    --batch-size 1 --events "$INGEST_EVENTS" --first-event "$first"
: >"$work/erasures.during"
(
    n=$((ERASE_DURING_FROM - 1))
    while [[ ! -f "$work/ingest.done" ]]; do
        # Subjects not erased above, largest first (Zipf: smaller number, more events).
        n=$((n + 1))
        [[ " $ERASE_SUBJECTS " == *" person-$n "* ]] && continue
        echo "person-$n $(erase "person-$n")" >>"$work/erasures.during"
    done
) &
eraser=$!
extra_pids+=("$eraser")
step ingest.erasing "$BIN" bench ingest --url "$url" --key "$writer" --clients "$INGEST_CLIENTS" \
    --batch-size 1 --events "$INGEST_EVENTS" --first-event "$((first + INGEST_EVENTS))"
touch "$work/ingest.done"
wait "$eraser" || true

# --- backup ---------------------------------------------------------------------------
peak_before_backup=$(server_rss_mib VmHWM)
rss_before=$(server_rss_mib)
(
    peak=0
    while [[ ! -f "$work/backup.done" ]]; do
        r=$(server_rss_mib)
        ((r > peak)) && peak=$r
        echo "$peak" >"$work/backup.server_peak"
        sleep 0.1
    done
) &
sampler=$!
extra_pids+=("$sampler")
backup_started=$(date +%s%N)
/usr/bin/time -f '%M' -o "$work/backup.client_kib" "$BIN" backup --url "$url" \
    --admin-key-file "$data/admin.key" --to "$work/backup" >"$work/backup.out" 2>&1 ||
    { cat "$work/backup.out" >&2; exit 1; }
backup_ms=$((($(date +%s%N) - backup_started) / 1000000))
touch "$work/backup.done"
wait "$sampler" || true
backup_bytes=$(stat -c %s "$work/backup/snapshot.vtb")
rm -rf "$work/backup"
stop_server

# --- the tables -----------------------------------------------------------------------
echo
echo "Erasure and backup at $size entries ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "| erase one subject | cleanup | seconds | HTTP status | target |"
echo "|---|---|---:|---|---|"
while read -r s n secs status; do
    echo "| $s | $n | $secs | $status | ≤ $TARGET_ERASE_S s |"
done <"$work/erasures"
echo
echo "Background cleanup of those subjects' events: done $((cleanup_ms / 1000)).$(printf '%03d' $((cleanup_ms % 1000))) s after the last answer ($pending_after_ingest of their jobs still pending when the ingest beside it ended)."
during=$(wc -l <"$work/erasures.during")
events_during=$(awk '$4 == 200 { n += 1 } END { print n + 0 }' "$work/erasures.during")
p99_alone=$(field ingest.alone p99_ms)
p99_erasing=$(field ingest.erasing p99_ms)
echo
echo "| single-event ingest, $INGEST_CLIENTS clients | events/s | p50 ms | p99 ms | target |"
echo "|---|---:|---:|---:|---|"
echo "| alone | $(field ingest.alone events_per_s) | $(field ingest.alone p50_ms) | $p99_alone | |"
p99_cleaning=$(field ingest.cleaning p99_ms)
echo "| while the cleanup above ran | $(field ingest.cleaning events_per_s) | $(field ingest.cleaning p50_ms) | $p99_cleaning | p99 ≤ $TARGET_INGEST_P99_RATIO × alone ($(ratio "$p99_cleaning" "$p99_alone") ×) |"
echo "| while $during erasures ($events_during answered 200) ran | $(field ingest.erasing events_per_s) | $(field ingest.erasing p50_ms) | $p99_erasing | p99 ≤ $TARGET_INGEST_P99_RATIO × alone ($(ratio "$p99_erasing" "$p99_alone") ×) |"
echo
echo "Server resident peak (VmHWM) through the erasures, their cleanup and the ingest: $peak_before_backup MiB (target ≤ 512)."
echo
echo "| backup | value |"
echo "|---|---:|"
echo "| duration | $((backup_ms / 1000)).$(printf '%03d' $((backup_ms % 1000))) s |"
echo "| snapshot | $((backup_bytes / 1048576)) MiB |"
echo "| server resident before | $rss_before MiB |"
echo "| server resident peak during | $(cat "$work/backup.server_peak") MiB |"
echo "| client (veritrail backup) peak resident | $(($(cat "$work/backup.client_kib") / 1024)) MiB |"
