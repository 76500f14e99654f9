# Shared by the scripts that run Python against a throwaway Veritrail server:
# the binary (VERITRAIL_BIN, else the debug build, built here), the Python
# test virtualenv (VENV_PY) and a server (scripts/lib/server.sh). Source it,
# then call `start_keyed_server ORIGIN WRITER_APP AUDITOR_NAME`: it starts the
# server without a rate limit and sets URL, WRITER and AUDITOR (key tokens).
# Needs a `fail MESSAGE` function.

BIN="${VERITRAIL_BIN:-$PWD/target/debug/veritrail}"
if [ -z "${VERITRAIL_BIN:-}" ]; then
  cargo build --locked --bin veritrail
fi
[ -x "$BIN" ] || fail "no veritrail binary at $BIN"

# shellcheck source=scripts/lib/python-venv.sh
. "$PWD/scripts/lib/python-venv.sh"
# shellcheck source=scripts/lib/server.sh
. "$PWD/scripts/lib/server.sh"

start_keyed_server() {
  # No rate limit: the tests send requests as fast as the server answers.
  printf 'rate_limit_per_second = 0.0\n' >"$WORK/config.toml"
  start_server --config "$WORK/config.toml" --origin "$1"
  WRITER="$("$BIN" keys create --url "$URL" --role writer --name "$2" \
    --admin-key-file "$DATA/admin.key" 2>/dev/null)"
  AUDITOR="$("$BIN" keys create --url "$URL" --role auditor --name "$3" \
    --admin-key-file "$DATA/admin.key" 2>/dev/null)"
}
