# Shared by the scripts that run a throwaway Veritrail server: a temporary
# work directory, a server started in it, and a cleanup that stops the
# server and removes the directory on every exit. Source it, then call
# `start_server ARGS...` (the arguments after `serve --data ... --listen
# 127.0.0.1:0`); it sets WORK, DATA, SERVER_PID and URL. Needs BIN and a
# `fail MESSAGE` function.

WORK="$(mktemp -d)"
DATA="$WORK/data"
SERVER_PID=""
URL=""

cleanup() {
  local status=$?
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts `$BIN serve` on a free loopback port with its data in $DATA and
# waits (at most 30 s) until it says where it listens.
start_server() {
  "$BIN" serve --data "$DATA" --listen 127.0.0.1:0 "$@" \
    >"$WORK/server.out" 2>"$WORK/server.err" &
  SERVER_PID=$!
  for _ in $(seq 1 300); do
    URL="$(sed -n 's/.*listening on \(http:\/\/[^ ]*\).*/\1/p' "$WORK/server.out" | head -n1)"
    [ -n "$URL" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.out" "$WORK/server.err" >&2; fail "the server exited"; }
    sleep 0.1
  done
  fail "the server did not start listening within 30 s"
}
