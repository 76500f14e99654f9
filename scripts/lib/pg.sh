#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests: the machine's PostgreSQL 15 server
# binaries (Debian's postgresql-15, installed with apt when missing), a
# cluster made by initdb in DIR, listening on 127.0.0.1:PORT only, with
# trust authentication for user "veritrail" and database "veritrail".
# As root the server runs as the "postgres" user (initdb refuses root).
#
#   scripts/lib/pg.sh install         installs the server binaries if they are missing
#   scripts/lib/pg.sh start DIR PORT   creates the cluster if DIR has none, starts it, waits
#   scripts/lib/pg.sh stop DIR         stops it (fast shutdown), keeping DIR
#   scripts/lib/pg.sh kill DIR         stops it immediately (SIGQUIT-like immediate mode)
set -euo pipefail
pgbin="${PG_BIN:-/usr/lib/postgresql/15/bin}"

ensure_binaries() {
  if [ ! -x "$pgbin/initdb" ]; then
    echo "installing postgresql-15 (its server binaries are missing)" >&2
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends postgresql-15 >&2 \
      || { $sudo apt-get update >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends postgresql-15 >&2; }
  fi
}

# Runs a server binary as the cluster's owner.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "${1:-}" in
  install)
    ensure_binaries
    ;;
  start)
    dir="$2"
    port="$3"
    ensure_binaries
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
      chown postgres "$dir"
      # The owner must reach DIR: its parent (a private temporary directory) gets o+x.
      chmod o+x "$(dirname "$dir")"
    fi
    chmod 700 "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
      as_owner "$pgbin/initdb" -D "$dir" -U veritrail --auth=trust --no-instructions -E UTF8 >"$dir.initdb.log" 2>&1 \
        || { cat "$dir.initdb.log" >&2; exit 1; }
    fi
    as_owner "$pgbin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 30 \
      -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='$dir' -c max_connections=100 -c fsync=on" \
      start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    if ! as_owner "$pgbin/psql" -h 127.0.0.1 -p "$port" -U veritrail -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = 'veritrail'" | grep -q 1; then
      as_owner "$pgbin/createdb" -h 127.0.0.1 -p "$port" -U veritrail veritrail
    fi
    ;;
  stop)
    as_owner "$pgbin/pg_ctl" -D "$2" -m fast -w stop >/dev/null
    ;;
  kill)
    as_owner "$pgbin/pg_ctl" -D "$2" -m immediate -w stop >/dev/null
    ;;
  *)
    echo "usage: $0 install | start DIR PORT | stop DIR | kill DIR" >&2
    exit 2
    ;;
esac
