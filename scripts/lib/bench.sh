# Shared by the benchmark scripts (scripts/bench.sh and its scale mode):
# the release binary, a temporary work directory removed on every exit, a
# `serve` started on it with the rate limit off and a memory watchdog, and
# the steps that run one `veritrail bench` command each and keep its JSON
# report. Source it after setting TIME_BUDGET (seconds for the steps); it
# sets SERVER_MAX_RSS_MB unless set, BIN, work, deadline and, once a server
# runs, server_pid and url. Processes in `extra_pids` are stopped on exit too.
# VERITRAIL_SERVER_BIN runs another build's `serve` under the same load
# generators (e.g. the storage before and after a change).
# SERVER_CONFIG adds configuration lines to every `serve` started (e.g.
# `read_cache_bytes = 6291456`: a small log read as a large one's caches see it).

# The machine may be shared: a server whose resident memory passes this is
# killed and the run fails (default: half the machine's memory).
SERVER_MAX_RSS_MB=${SERVER_MAX_RSS_MB:-$(($(awk '/^MemTotal:/ { print $2 }' /proc/meminfo) / 2048))}

BIN=${VERITRAIL_BIN:-target/release/veritrail}
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    echo "building the release binary..." >&2
    cargo build --release --quiet
fi
[[ -x "$BIN" ]] || { echo "bench: $BIN is missing" >&2; exit 1; }
SERVER_BIN=${VERITRAIL_SERVER_BIN:-$BIN}

deadline=$((SECONDS + TIME_BUDGET))
work=$(mktemp -d "${TMPDIR:-/tmp}/veritrail-bench.XXXXXX")
server_pid=""
watchdog_pid=""
extra_pids=()
cleanup() {
    # Only the script itself cleans up: a background helper (the memory
    # watchdog, a sampler) killed before bash reset the traps it inherited
    # would otherwise run this and delete the work directory under the run.
    [[ $BASHPID == "$$" ]] || return 0
    if [[ -n "$watchdog_pid" ]]; then
        kill "$watchdog_pid" 2>/dev/null || true
    fi
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    local pid
    for pid in "${extra_pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the log -------------------------------------------------------------------
start_server() { # data dir [config lines]: starts `serve` on it, sets server_pid and url
    #              (its log lines at level SERVER_LOG, warn unless set, in $work/server.err)
    : >"$work/server.out"
    # The per-key rate limit (default 2000/s) would cap the load generator's
    # one key far below what the log can take: measure the log, not the limit.
    printf 'rate_limit_per_second = 0.0\n%s\n%s\n' "${SERVER_CONFIG:-}" "${2:-}" >"$work/bench.toml"
    VERITRAIL_LOG=${SERVER_LOG:-warn} "$SERVER_BIN" serve --config "$work/bench.toml" --data "$1" --listen 127.0.0.1:0 \
        >"$work/server.out" 2>"$work/server.err" &
    server_pid=$!
    await_listening
    watchdog "$server_pid" &
    watchdog_pid=$!
}
start_parse_server() { # the parse-only ceiling (`bench parse-server`); sets server_pid and url
    : >"$work/server.out"
    "$SERVER_BIN" bench parse-server >"$work/server.out" 2>"$work/server.err" &
    server_pid=$!
    await_listening
}
await_listening() { # until the server started as server_pid announces its URL (sets url)
    url=""
    # Polled often: the scale mode times start-up with it.
    local give_up=$((SECONDS + ${START_TIMEOUT:-300}))
    while ((SECONDS < give_up)); do
        url=$(sed -n 's/.*listening on \(http:\/\/[^ ]*\).*/\1/p' "$work/server.out" | head -n1)
        [[ -n "$url" ]] && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.01
    done
    if [[ -z "$url" ]]; then
        echo "bench: the server did not start:" >&2
        cat "$work/server.out" "$work/server.err" >&2
        exit 1
    fi
}
watchdog() { # pid: kills the server when its memory passes SERVER_MAX_RSS_MB
    local pid=$1 rss
    while kill -0 "$pid" 2>/dev/null; do
        rss=$(awk '/^VmRSS:/ { print int($2 / 1024) }' "/proc/$pid/status" 2>/dev/null || echo 0)
        if ((${rss:-0} > SERVER_MAX_RSS_MB)); then
            echo "bench: the server's resident memory reached $rss MB (SERVER_MAX_RSS_MB=$SERVER_MAX_RSS_MB); killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
            return
        fi
        sleep 1
    done
}
peak_rss_mb() { # the server's peak resident memory so far
    awk '/^VmHWM:/ { print int($2 / 1024) }' "/proc/$server_pid/status" 2>/dev/null || echo 0
}
stop_server() {
    kill "$watchdog_pid" 2>/dev/null || true
    watchdog_pid=""
    kill -TERM "$server_pid"
    wait "$server_pid" || { echo "bench: the server did not stop cleanly" >&2; exit 1; }
    server_pid=""
}
new_key() { # data dir, role, name: prints a new API key
    "$BIN" keys create --url "$url" --role "$2" --name "$3" \
        --admin-key-file "$1/admin.key" 2>/dev/null
}

# --- the steps -------------------------------------------------------------------
server_cpu_ticks() { # utime + stime of the server, in 1/100 s
    if [[ -n "$server_pid" ]]; then
        awk '{print $14 + $15}' "/proc/$server_pid/stat" 2>/dev/null || echo 0
    else
        echo 0
    fi
}
batch_totals() { # "entries batches" the sequencer committed so far, from /metrics
    if [[ -n "$server_pid" ]] && command -v curl >/dev/null; then
        curl -fsS "$url/metrics" 2>/dev/null | awk '/^veritrail_batch_entries_sum / { s = $2 }
            /^veritrail_batch_entries_count / { c = $2 } END { print s + 0, c + 0 }'
    else
        echo "0 0"
    fi
}
run_step() { # name, command...: runs it, keeps its JSON report, the server's CPU time
    local name=$1 #              and the mean size of the batches the server committed;
    shift #                      returns non-zero when it failed (its stderr is printed)
    echo "running: $name" >&2
    local before left=$((deadline - SECONDS)) totals_before
    if ((left <= 0)); then
        echo "bench: the time budget of ${TIME_BUDGET}s ran out before '$name'" >&2
        return 1
    fi
    before=$(server_cpu_ticks)
    totals_before=$(batch_totals)
    if ! timeout "$left" "$@" --json >"$work/$name.json" 2>"$work/$name.err"; then
        echo "bench: step '$name' failed:" >&2
        cat "$work/$name.err" >&2
        return 1
    fi
    echo $(($(server_cpu_ticks) - before)) >"$work/$name.server_ticks"
    echo "$totals_before $(batch_totals)" | awk '{ n = $4 - $2; printf "%d\n", (n > 0 ? ($3 - $1) / n + 0.5 : 0) }' \
        >"$work/$name.mean_batch"
}
step() { # like run_step; a failure ends the script
    run_step "$@" || exit 1
}
field() { # file, key: a numeric member of the flat JSON object in the file
    sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p" "$work/$1.json"
}

# The storage ceiling: raw sled with the same bytes per event (`bench sled`)
# in batches of the given size. A ceiling is an upper bound, and neighbours
# on a shared machine only ever slow a run down, so it is the better of two
# runs.
sled_step() { # name, events, batch
    local name=$1 events=$2 batch=$3
    if ((batch <= 0)); then
        echo '{}' >"$work/$name.json"
        return
    fi
    step "$name.a" "$BIN" bench sled --dir "$work/$name.a" --events "$events" --batch "$batch"
    rm -rf "$work/$name.a"
    step "$name.b" "$BIN" bench sled --dir "$work/$name.b" --events "$events" --batch "$batch"
    rm -rf "$work/$name.b"
    if awk -v a="$(field "$name.a" events_per_s)" -v b="$(field "$name.b" events_per_s)" \
        'BEGIN { exit !(a >= b) }'; then
        cp "$work/$name.a.json" "$work/$name.json"
    else
        cp "$work/$name.b.json" "$work/$name.json"
    fi
}
