#!/usr/bin/env bash
# Scale benchmark (`scripts/bench.sh scale`): grows ONE log through the HTTP
# API of a real `serve` (rate limit off) in steps, to 100 k, 1 M, 3 M and
# 10 M events by default, with `bench ingest` (8 clients x 500 events, 10,000
# subjects, Zipf). At each step it records the server's resident memory
# (VmRSS, and its peak VmHWM, from /proc), the ingest rate of the step, the
# data directory's disk use and bytes per leaf, the p99 of a subject search
# (`bench search`, every answer checked), and the raw sled ceiling in the same
# run (`bench sled`, the same bytes per event in batches of the size the
# server committed during the step), so that the ratio is printed.
#
# Then the grown log and a fresh one of KEPT_SEED events take KEPT_EVENTS
# each, in turns, KEPT_ROUNDS times: the ingest kept at size, both measured
# in the same minutes (the growth's own steps run minutes apart).
#
# After that it restarts the server and times restart to listening
# (process start until the "listening on" line and a successful
# GET /checkpoint), then reads from the log with `bench read` (inclusion
# proofs, consistency proofs, full tiles at levels 0 and 1) and, with the
# same client, connections and duration, from nginx serving static 8 KiB
# files and copies of real tiles (started here on 127.0.0.1 with a minimal
# configuration in the work directory; installed with apt-get if missing).
# Prints one markdown table per part, with the targets beside each measure.
#
# READ_SERVERS ("name=<binary> ...", default the one build serving) reads
# the same log with each build in turn, restarted on it, between the two
# nginx runs: before and after a change in one run (name a build twice to
# alternate). Each read row also gives the server's CPU time per answer
# (utime + stime over the step, warm-up included, divided by the rate
# times the step's seconds), and nginx's, master and workers.
# READ_WARM=1 reads inclusion proofs a second time after the tiles, each
# build's caches then warm from its first runs (the first is just after
# its start).
# SCALE_CHECKS=0 skips the searches and sled ceilings of the growth (a
# read-only run: `scripts/bench.sh reads`).
#
# Exits non-zero only when something fails to run; a missed target is in the
# table. A server killed by the memory watchdog (SERVER_MAX_RSS_MB) ends the
# growth: the table then shows the steps reached.
#
# Environment: SCALE_STEPS (tree sizes, default "100000 1000000 3000000
# 10000000"), SCALE_CLIENTS, SCALE_BATCH_SIZE, SCALE_SUBJECTS,
# SCALE_SLED_EVENTS (events of each ceiling run), SEARCH_REQUESTS,
# SEARCH_CLIENTS, READ_CONNECTIONS, READ_SECONDS, READ_WARMUP_SECONDS,
# KEPT_EVENTS, KEPT_SEED, KEPT_ROUNDS, NGINX_FILES (static files), TIME_BUDGET (seconds after the build, default
# 14400), SERVER_MAX_RSS_MB, SKIP_BUILD / VERITRAIL_BIN as for bench.sh;
# VERITRAIL_SERVER_BIN serves the log with another build (the same client).
# SCALE_DATA (a directory outside the work directory) keeps the log after the
# run, with the records of its growth beside it (SCALE_DATA.steps); a later
# run with the same SCALE_DATA skips the growth and reads that log again.
set -euo pipefail

cd "$(dirname "$0")/.."

SCALE_STEPS=${SCALE_STEPS:-"100000 1000000 3000000 10000000"}
SCALE_CLIENTS=${SCALE_CLIENTS:-8}
SCALE_BATCH_SIZE=${SCALE_BATCH_SIZE:-500}
SCALE_SUBJECTS=${SCALE_SUBJECTS:-10000}
SCALE_SLED_EVENTS=${SCALE_SLED_EVENTS:-200000}
SEARCH_REQUESTS=${SEARCH_REQUESTS:-300}
SEARCH_CLIENTS=${SEARCH_CLIENTS:-4}
SCALE_CHECKS=${SCALE_CHECKS:-1}
READ_CONNECTIONS=${READ_CONNECTIONS:-16}
READ_SECONDS=${READ_SECONDS:-10}
READ_WARMUP_SECONDS=${READ_WARMUP_SECONDS:-2}
READ_WARM=${READ_WARM:-0}
NGINX_FILES=${NGINX_FILES:-1000}
TIME_BUDGET=${TIME_BUDGET:-14400}

# The targets of the storage issue (ratios against ceilings of the same run).
TARGET_RSS_MIB=512
TARGET_RSS_GROWTH_PCT=10
TARGET_INGEST_KEPT_PCT=90
TARGET_SLED_RATIO=0.5
TARGET_RESTART_MS=1000
TARGET_BYTES_PER_EVENT=1200
TARGET_PROOF_RATIO=0.8
TARGET_TILE_RATIO=0.9
TARGET_SEARCH_P99_MS=50

# shellcheck source=scripts/lib/bench.sh
. scripts/lib/bench.sh

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# --- nginx, the static-file ceiling ---------------------------------------------
nginx_bin() {
    command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true
}
if [[ -z "$(nginx_bin)" ]]; then
    echo "installing nginx..." >&2
    sudo_=""
    [[ "$(id -u)" != 0 ]] && sudo_=sudo
    $sudo_ apt-get install -y nginx >"$work/apt.log" 2>&1 ||
        { $sudo_ apt-get update >>"$work/apt.log" 2>&1 && $sudo_ apt-get install -y nginx >>"$work/apt.log" 2>&1; } ||
        { cat "$work/apt.log" >&2; echo "bench: could not install nginx" >&2; exit 1; }
fi
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
start_nginx() { # serves $work/static on a free loopback port; sets nginx_url
    local dir=$work/nginx port
    port=$(free_port)
    mkdir -p "$dir/tmp"
    cat >"$dir/nginx.conf" <<EOF
worker_processes $(nproc);
user $(id -un);
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 100000000;
    open_file_cache max=10000 inactive=60s;
    server {
        listen 127.0.0.1:$port;
        root $work/static;
    }
}
EOF
    "$(nginx_bin)" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' \
        >"$dir/out" 2>&1 &
    nginx_pid=$!
    extra_pids+=($!)
    nginx_url="http://127.0.0.1:$port"
    for _ in $(seq 1 500); do
        curl -fsS -o /dev/null "$nginx_url/f/0" 2>/dev/null && return 0
        sleep 0.01
    done
    echo "bench: nginx did not start:" >&2
    cat "$dir/out" "$dir/error.log" >&2
    exit 1
}

# --- growing the log --------------------------------------------------------------
tree_size() { # the size of the log's latest checkpoint
    curl -fsS "$url/v1/log" | sed -n 's/.*"tree_size":\([0-9]*\).*/\1/p'
}
committed_size() { # the entries the log has made durable (its own records included;
    #                 /healthz answers 503 while a checkpoint lags, with the same body)
    curl -sS "$url/healthz" | sed -n 's/.*"committed_size":\([0-9]*\).*/\1/p'
}
checkpointed_size() { # N: the checkpoint's size once it covers N leaves (at most 60 s)
    local size give_up=$((SECONDS + 60))
    size=$(tree_size)
    while ((size < $1 && SECONDS < give_up)); do
        sleep 0.1
        size=$(tree_size)
    done
    echo "$size"
}
proc_mib() { # /proc status field (VmRSS, VmHWM) of the server, in MiB
    awk -v k="$1:" '$1 == k { printf "%d", $2 / 1024 }' "/proc/$server_pid/status" 2>/dev/null || echo 0
}

data=${SCALE_DATA:-$work/data}
seeded=0
steps_done=0
stopped_why=""
rare=$((SCALE_SUBJECTS / 2))
if [[ -n "${SCALE_DATA:-}" && -f "$SCALE_DATA.steps/steps_done" ]]; then
    # A log grown by an earlier run: its growth records, then the reads.
    cp "$SCALE_DATA.steps"/* "$work/"
    steps_done=$(cat "$work/steps_done")
    echo "bench: reusing the log in $SCALE_DATA ($steps_done steps grown earlier)" >&2
    SCALE_STEPS=""
else
    start_server "$data"
    writer=$(new_key "$data" writer bench)
    auditor=$(new_key "$data" auditor bench-auditor)
fi
for target in $SCALE_STEPS; do
    if ((target <= seeded)); then
        echo "bench: SCALE_STEPS must grow ($target after $seeded)" >&2
        exit 1
    fi
    i=$steps_done
    if ! run_step "ingest.$i" "$BIN" bench ingest --url "$url" --key "$writer" \
        --clients "$SCALE_CLIENTS" --batch-size "$SCALE_BATCH_SIZE" --subjects "$SCALE_SUBJECTS" \
        --events $((target - seeded)) --first-event "$seeded"; then
        stopped_why="ingest to $target failed (see above)"
        break
    fi
    seeded=$target
    echo "$(proc_mib VmRSS) $(proc_mib VmHWM)" >"$work/rss.$i"
    # Measure disk and searches on a settled log: seeding leaves dirty pages
    # that every search's durable append would otherwise wait for.
    sync "$data/db/db" 2>/dev/null || sync
    # The log also holds its own records (its keys, earlier searches): wait
    # for a checkpoint of everything committed, not of `seeded` leaves.
    echo "$seeded $(checkpointed_size "$(committed_size)") $(du -s --block-size=1 "$data" | cut -f1)" >"$work/disk.$i"
    if ((SCALE_CHECKS == 0)); then
        echo '{}' >"$work/search.$i.json"
        echo '{}' >"$work/sled.$i.json"
    elif ! run_step "search.$i" "$BIN" bench search --url "$url" --key "$auditor" \
        --subject "person-$rare" --requests "$SEARCH_REQUESTS" --clients "$SEARCH_CLIENTS" \
        --seeded-events "$seeded" --seeded-subjects "$SCALE_SUBJECTS" --seeded-app bench; then
        stopped_why="search at $target failed (see above)"
        break
    else
        sled_step "sled.$i" "$SCALE_SLED_EVENTS" "$(cat "$work/ingest.$i.mean_batch")"
    fi
    # The peak so far includes the step's searches (VmRSS stays the one
    # read after its ingest).
    read -r rss _ <"$work/rss.$i"
    echo "$rss $(proc_mib VmHWM)" >"$work/rss.$i"
    steps_done=$((steps_done + 1))
done
if ((steps_done == 0)); then
    echo "bench: no step completed" >&2
    exit 1
fi
if [[ -n "${SCALE_DATA:-}" && -n "$SCALE_STEPS" ]]; then
    mkdir -p "$SCALE_DATA.steps"
    echo "$steps_done" >"$work/steps_done"
    for ((i = 0; i < steps_done; i++)); do
        cp "$work/rss.$i" "$work/disk.$i" "$work"/ingest."$i".* "$work"/search."$i".* "$work"/sled."$i".* "$SCALE_DATA.steps/"
    done
    cp "$work/steps_done" "$SCALE_DATA.steps/"
fi

# --- ingest kept: the grown log beside a fresh one, alternating -----------------------
# The growth's steps run minutes apart, so their rates also measure how busy
# the machine was. Here the grown log and a fresh one of KEPT_SEED events take
# KEPT_EVENTS each in turn, KEPT_ROUNDS times, each server restarted for its
# turn: the ratio of the two is the ingest kept at size, in one run.
KEPT_EVENTS=${KEPT_EVENTS:-200000}
KEPT_SEED=${KEPT_SEED:-100000}
KEPT_ROUNDS=${KEPT_ROUNDS:-2}
kept_rounds=0
if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    stop_server
fi
if ((KEPT_EVENTS > 0 && KEPT_ROUNDS > 0)); then
    fresh_next=0
    for ((r = 0; r < KEPT_ROUNDS; r++)); do
        start_server "$work/kept-fresh"
        fresh_writer=$(new_key "$work/kept-fresh" writer "kept-$r")
        if ((fresh_next == 0)); then
            step "kept.seed" "$BIN" bench ingest --url "$url" --key "$fresh_writer" \
                --clients "$SCALE_CLIENTS" --batch-size "$SCALE_BATCH_SIZE" --subjects "$SCALE_SUBJECTS" \
                --events "$KEPT_SEED" --first-event 0
            fresh_next=$KEPT_SEED
        fi
        step "kept.fresh.$r" "$BIN" bench ingest --url "$url" --key "$fresh_writer" \
            --clients "$SCALE_CLIENTS" --batch-size "$SCALE_BATCH_SIZE" --subjects "$SCALE_SUBJECTS" \
            --events "$KEPT_EVENTS" --first-event "$fresh_next"
        fresh_next=$((fresh_next + KEPT_EVENTS))
        echo "$(committed_size)" >"$work/kept.fresh.$r.size"
        stop_server
        start_server "$data"
        big_writer=$(new_key "$data" writer "kept-$r")
        big_size=$(committed_size)
        echo "$big_size" >"$work/kept.big.$r.size"
        # Event ids past every one used before: the log holds at least as
        # many leaves as events it was given.
        step "kept.big.$r" "$BIN" bench ingest --url "$url" --key "$big_writer" \
            --clients "$SCALE_CLIENTS" --batch-size "$SCALE_BATCH_SIZE" --subjects "$SCALE_SUBJECTS" \
            --events "$KEPT_EVENTS" --first-event "$big_size"
        stop_server
        kept_rounds=$((kept_rounds + 1))
    done
    rm -rf "$work/kept-fresh"
fi

# --- restart -------------------------------------------------------------------------
kill "$watchdog_pid" 2>/dev/null || true
server_pid=""
sync
started_ns=$(date +%s%N)
# At level info the server logs how long it took to open the database
# (`open_ms`, including the replay of sled's log since its last snapshot)
# and to load the log (`total_ms`).
SERVER_LOG=info start_server "$data"
listening_ns=$(date +%s%N)
until curl -fsS -o /dev/null "$url/checkpoint" 2>/dev/null; do
    kill -0 "$server_pid" 2>/dev/null || { echo "bench: the restarted server exited" >&2; exit 1; }
    sleep 0.01
done
ready_ns=$(date +%s%N)
restart_ms=$(((ready_ns - started_ns) / 1000000))
listening_ms=$(((listening_ns - started_ns) / 1000000))
size=$(tree_size)
cp "$work/server.err" "$work/restart.err"

# --- reads: the log beside nginx ------------------------------------------------------
mkdir -p "$work/static/f" "$work/static/tile"
for n in $(seq 0 $((NGINX_FILES - 1))); do
    head -c 8192 /dev/urandom >"$work/static/f/$n"
done
: >"$work/nginx.urls"
start_nginx
for n in $(seq 0 $((NGINX_FILES - 1))); do
    echo "$nginx_url/f/$n" >>"$work/nginx.urls"
done
# Copies of real full tiles (8 KiB each), served the same way.
tile_index_path() { # N: its path segments (c2sp.org/tlog-tiles: x001/234)
    local n=$1 path
    path=$(printf '%03d' $((n % 1000)))
    while ((n >= 1000)); do
        n=$((n / 1000))
        path="x$(printf '%03d' $((n % 1000)))/$path"
    done
    echo "$path"
}
full_tiles=$((size / 256))
for n in $(seq 0 $((full_tiles < 256 ? full_tiles - 1 : 255))); do
    t=$(((n * 7919) % full_tiles))
    if curl -fsS -o "$work/static/tile/$t" "$url/tile/0/$(tile_index_path "$t")"; then
        echo "$nginx_url/tile/$t" >>"$work/nginx.urls"
    fi
done

cpu_ticks() { # pids...: their utime + stime added up, in clock ticks
    local p t=0
    for p in "$@"; do
        t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}
read_step() { # name, pids, args...: one `bench read` of READ_SECONDS, and the CPU
    local name=$1 pids=$2 before #          ticks the (space-separated) pids spent in it;
    shift 2 #                               non-zero when it failed
    # shellcheck disable=SC2086 # a list of pids
    before=$(cpu_ticks $pids)
    run_step "$name" "$BIN" bench read --connections "$READ_CONNECTIONS" \
        --duration-s "$READ_SECONDS" --warmup-s "$READ_WARMUP_SECONDS" "$@" || return 1
    # shellcheck disable=SC2086
    echo $(($(cpu_ticks $pids) - before)) >"$work/$name.cpu_ticks"
}
nginx_pids() { echo "$nginx_pid $(pgrep -P "$nginx_pid" | tr '\n' ' ')"; }
READ_SERVERS=${READ_SERVERS:-"log=$SERVER_BIN"}
read_names=()
# nginx before and after the log's reads; the better run is the ceiling.
read_step nginx.a "$(nginx_pids)" --url-list "$work/nginx.urls" || exit 1
tile1=0
((size >= 65536)) && tile1=1
for spec in $READ_SERVERS; do
    # Each build restarted on the same log, so that each starts as cold
    # and logs at the same level.
    name=${spec%%=*}
    stop_server
    SERVER_BIN=${spec#*=}
    start_server "$data"
    until curl -fsS -o /dev/null "$url/checkpoint" 2>/dev/null; do sleep 0.01; done
    read_names+=("$name")
    read_step "inclusion.$name" "$server_pid" --url "$url" --mix inclusion || exit 1
    read_step "consistency.$name" "$server_pid" --url "$url" --mix consistency || exit 1
    read_step "tile0.$name" "$server_pid" --url "$url" --mix tile0 || exit 1
    if ((tile1)); then
        read_step "tile1.$name" "$server_pid" --url "$url" --mix tile1 || exit 1
    fi
    if ((READ_WARM)); then
        read_step "inclusion_warm.$name" "$server_pid" --url "$url" --mix inclusion || exit 1
    fi
done
nginx_best=nginx.a
if ! read_step nginx.b "$(nginx_pids)" --url-list "$work/nginx.urls"; then
    echo "bench: the second nginx run failed; the first is the ceiling" >&2
elif awk -v a="$(field nginx.a requests_per_s)" -v b="$(field nginx.b requests_per_s)" 'BEGIN { exit !(a < b) }'; then
    nginx_best=nginx.b
fi
cp "$work/$nginx_best.json" "$work/nginx.json"
cp "$work/$nginx_best.cpu_ticks" "$work/nginx.cpu_ticks"
stop_server

# --- the tables ---------------------------------------------------------------------
rows=""
for ((i = 0; i < steps_done; i++)); do
    read -r rss hwm <"$work/rss.$i"
    read -r events leaves disk <"$work/disk.$i"
    sled=$(field "sled.$i" events_per_s)
    p99=$(field "search.$i" p99_ms)
    rows+="$events $leaves $rss $hwm $(field "ingest.$i" events_per_s) ${sled:-0}"
    rows+=" $(cat "$work/ingest.$i.mean_batch") $disk ${p99:-0}"$'\n'
done
printf '\n## Storage at scale: one log, %s x %s-event batches, %s subjects (%s cores, load %s)\n\n' \
    "$SCALE_CLIENTS" "$SCALE_BATCH_SIZE" "$SCALE_SUBJECTS" "$(nproc)" "$(cut -d' ' -f1 /proc/loadavg)"
printf '%s' "$rows" | awk -v trss="$TARGET_RSS_MIB" -v tgrowth="$TARGET_RSS_GROWTH_PCT" \
    -v tsled="$TARGET_SLED_RATIO" -v tbytes="$TARGET_BYTES_PER_EVENT" \
    -v tsearch="$TARGET_SEARCH_P99_MS" '
function verdict(ok) { return ok ? "met" : "MISSED" }
function size(n) { return n >= 1e6 ? sprintf("%.3g M", n / 1e6) : sprintf("%.3g k", n / 1e3) }
{
    n++; events[n] = $1; leaves[n] = $2; rss[n] = $3; hwm[n] = $4; rate[n] = $5; sled[n] = $6
    batch[n] = $7; disk[n] = $8; p99[n] = $9
}
END {
    head = "| measure |"; rule = "| --- |"
    for (i = 1; i <= n; i++) { head = head " " size(events[i]) " |"; rule = rule " ---: |" }
    print head " target |"; print rule " --- |"
    row("server RSS (VmRSS), MiB", rss, "%d", "<= " trss " MiB, < " tgrowth "% growth from 1 M")
    row("server peak RSS (VmHWM), MiB", hwm, "%d", "<= " trss " MiB")
    row("ingest of the step, events/s", rate, "%.0f", "(kept: the turns below)")
    row("raw sled ceiling, events/s (server batches)", sled, "%.0f", "")
    for (i = 1; i <= n; i++) ratio[i] = sled[i] > 0 ? rate[i] / sled[i] : 0
    row("ingest / sled ceiling", ratio, "%.2f", ">= " tsled)
    for (i = 1; i <= n; i++) mb[i] = disk[i] / 1e6
    row("data directory, MB", mb, "%.0f", "")
    for (i = 1; i <= n; i++) bpe[i] = disk[i] / leaves[i]
    row("disk per leaf, bytes", bpe, "%.0f", "<= " tbytes)
    row("leaves (events and audit records of the searches)", leaves, "%d", "")
    row("subject search p99, ms", p99, "%.1f", "< " tsearch)
    printf "\n"
    maxrss = 0; for (i = 1; i <= n; i++) if (hwm[i] > maxrss) maxrss = hwm[i]
    printf "- RSS: peak %d MiB: %s", maxrss, verdict(maxrss <= trss)
    base = 0; for (i = 1; i <= n; i++) if (events[i] >= 1e6 && !base) base = i
    if (base && base < n)
        printf "; growth %s -> %s: %+.0f%%: %s", size(events[base]), size(events[n]), \
            100 * (rss[n] - rss[base]) / rss[base], verdict(rss[n] <= rss[base] * (1 + tgrowth / 100))
    printf "\n"
    if (n > 1) printf "- ingest of the last step beside the first (minutes apart, see the turns below): %.0f%%\n", \
        100 * rate[n] / rate[1]
    printf "- ingest / sled at the last step: %.3f: %s; disk per leaf %.0f B: %s; search p99 %.1f ms: %s\n", \
        ratio[n], verdict(ratio[n] >= tsled), bpe[n], verdict(bpe[n] <= tbytes), p99[n], verdict(p99[n] < tsearch)
}
function row(label, v, fmt, target,   line, i) {
    line = "| " label " |"
    for (i = 1; i <= n; i++) line = line " " sprintf(fmt, v[i]) " |"
    print line " " target " |"
}'
if [[ -n "$stopped_why" ]]; then
    echo "- growth stopped early: $stopped_why"
fi
echo "- sled ceiling: \`bench sled\`, $SCALE_SLED_EVENTS events in batches of the mean size the server committed in the step ($(for ((i = 0; i < steps_done; i++)); do printf '%s ' "$(cat "$work/ingest.$i.mean_batch")"; done)), flush + fsync each, better of two runs"
echo "- search: first page of rare subject person-$rare, $SEARCH_CLIENTS clients x $SEARCH_REQUESTS requests, each with its durable audit append"

if ((kept_rounds > 0)); then
    printf '\n## Ingest kept at size: the grown log beside a fresh one, in turns (%s x %s-event batches)\n\n' \
        "$SCALE_CLIENTS" "$SCALE_BATCH_SIZE"
    echo "| round | fresh log: leaves before, events/s | grown log: leaves before, events/s | grown / fresh |"
    echo "| --- | ---: | ---: | ---: |"
    sum_fresh=0
    sum_big=0
    for ((r = 0; r < kept_rounds; r++)); do
        f=$(field "kept.fresh.$r" events_per_s)
        b=$(field "kept.big.$r" events_per_s)
        sum_fresh=$(awk -v a="$sum_fresh" -v x="$f" 'BEGIN { print a + x }')
        sum_big=$(awk -v a="$sum_big" -v x="$b" 'BEGIN { print a + x }')
        awk -v r="$r" -v fs="$(($(cat "$work/kept.fresh.$r.size") - KEPT_EVENTS))" -v f="$f" \
            -v bs="$(cat "$work/kept.big.$r.size")" -v b="$b" \
            'BEGIN { printf "| %d | %d, %.0f | %d, %.0f | %.2f |\n", r + 1, fs, f, bs, b, b / f }'
    done
    awk -v f="$sum_fresh" -v b="$sum_big" -v t="$TARGET_INGEST_KEPT_PCT" -v e="$KEPT_EVENTS" 'BEGIN {
        printf "\n- ingest kept: %.0f%% (all rounds, %d events a turn): %s\n", 100 * b / f, e, \
            (100 * b / f >= t ? "met" : "MISSED") }'
fi

printf '\n## Restart, proofs and tiles at %s leaves: the log beside nginx (%s connections, %s s each, same client)\n\n' \
    "$size" "$READ_CONNECTIONS" "$READ_SECONDS"
nginx_rate=$(field nginx requests_per_s)
read_seconds=$(awk -v a="$READ_SECONDS" -v b="$READ_WARMUP_SECONDS" 'BEGIN { print a + b }')
clk_tck=$(getconf CLK_TCK)
us_per_answer() { # step: the server CPU time per answer, in microseconds
    awk -v t="$(cat "$work/$1.cpu_ticks")" -v r="$(field "$1" requests_per_s)" -v s="$read_seconds" \
        -v hz="$clk_tck" 'BEGIN { printf "%.1f", (r > 0 ? t / hz * 1e6 / (r * s) : 0) }'
}
nginx_us=$(us_per_answer nginx)
rrow() { # label, step, target ratio
    awk -v l="$1" -v r="$(field "$2" requests_per_s)" -v p50="$(field "$2" p50_ms)" \
        -v p99="$(field "$2" p99_ms)" -v e="$(field "$2" errors)" -v c="$nginx_rate" -v t="$3" \
        -v us="$(us_per_answer "$2")" -v nus="$nginx_us" 'BEGIN {
        printf "| %s | %.0f /s (p50 %.2f ms, p99 %.2f ms, %d errors) | %.0f /s | %.2f | %.1f / %.1f | >= %s: %s |\n", \
            l, r, p50, p99, e, c, (c > 0 ? r / c : 0), us, nus, t, (c > 0 && r / c >= t ? "met" : "MISSED") }'
}
echo "| measure | log | nginx, static 8 KiB | ratio | server CPU per answer, us: log / nginx | target |"
echo "| --- | ---: | ---: | ---: | ---: | --- |"
awk -v r="$restart_ms" -v l="$listening_ms" -v t="$TARGET_RESTART_MS" 'BEGIN {
    printf "| restart to listening and a served checkpoint, ms | %d (listening line at %d) | | | | <= %d: %s |\n", \
        r, l, t, (r <= t ? "met" : "MISSED") }'
for name in "${read_names[@]}"; do
    label=""
    ((${#read_names[@]} > 1)) && label=" ($name)"
    rrow "inclusion proofs$label" "inclusion.$name" "$TARGET_PROOF_RATIO"
    rrow "consistency proofs$label" "consistency.$name" "$TARGET_PROOF_RATIO"
    if ((READ_WARM)); then
        rrow "inclusion proofs, again (warm)$label" "inclusion_warm.$name" "$TARGET_PROOF_RATIO"
    fi
    rrow "full tiles, level 0$label" "tile0.$name" "$TARGET_TILE_RATIO"
    if ((tile1)); then
        rrow "full tiles, level 1$label" "tile1.$name" "$TARGET_TILE_RATIO"
    fi
done
if ((${#read_names[@]} > 1)); then
    echo
    echo "- builds read, in this order: $READ_SERVERS"
fi
if ((SCALE_CHECKS == 0)); then
    echo "- SCALE_CHECKS=0: no searches and no sled ceilings were measured (their rows above are empty)"
fi
awk -v p50="$(field nginx p50_ms)" -v p99="$(field nginx p99_ms)" -v e="$(field nginx errors)" \
    'BEGIN { printf "\n- nginx: p50 %.2f ms, p99 %.2f ms, %d errors; better of a run before and one after the log'"'"'s reads\n", p50, p99, e }'
sed 's/\x1b\[[0-9;]*m//g' "$work/restart.err" |
    sed -n 's/.*open_ms=\([0-9]*\) total_ms=\([0-9]*\).*/- restart: the database opened in \1 ms, the log (checkpoint and right edge) loaded in \2 ms/p' |
    head -n1
echo "- single-event ingest beside the axum parse-only ceiling: in the table of scripts/bench.sh (a fresh log)"
echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
echo
for f in "$work"/ingest.*.json "$work"/search.*.json "$work"/sled.?.json "$work"/sled.??.json \
    "$work"/inclusion.*.json "$work"/inclusion_warm.*.json "$work"/consistency.*.json "$work"/tile0.*.json "$work"/tile1.*.json "$work"/nginx.?.json; do
    if [[ -f "$f" ]]; then
        echo "$(basename "$f" .json): $(cat "$f")"
    fi
done
