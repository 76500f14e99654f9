#!/usr/bin/env bash
# The S3-compatible object server of the tests: s3s-fs, a real S3 server
# over a directory (a bucket is a sub-directory), installed from crates.io
# with the project's own toolchain into target/tools/s3s-fs, once per
# machine: later runs reuse the installed binary.
#
#   scripts/lib/s3.sh bin                  installs if needed, prints the binary's path
#   scripts/lib/s3.sh start DIR PORT       starts it over DIR on 127.0.0.1:PORT (access key
#                                          "veritrail", secret "veritrail-secret"), bucket "log";
#                                          prints its pid once it answers
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
version="0.14.1"
tools="${CARGO_TARGET_DIR:-$root/target}/tools/s3s-fs-$version"
bin="$tools/bin/s3s-fs"

install() {
  [ -x "$bin" ] && return 0
  # Tests start at the same time: one installs, the others wait for it.
  mkdir -p "$tools"
  exec 9>"$tools.lock"
  flock 9
  if [ ! -x "$bin" ]; then
    echo "installing s3s-fs $version into $tools (once per machine)" >&2
    # A build directory of its own: the project's compiled dependencies stay as they are.
    CARGO_TARGET_DIR="$tools/build" cargo install s3s-fs --version "$version" \
      --features binary --locked --root "$tools" >&2
    rm -rf "$tools/build"
  fi
  flock -u 9
}

case "${1:-}" in
  bin)
    install
    echo "$bin"
    ;;
  start)
    dir="$2"
    port="$3"
    install
    mkdir -p "$dir/log"
    "$bin" --host 127.0.0.1 --port "$port" --access-key veritrail --secret-key veritrail-secret "$dir" \
      >"$dir.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
      if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "$pid"
        exit 0
      fi
      if ! kill -0 "$pid" 2>/dev/null; then break; fi
      sleep 0.1
    done
    echo "s3s-fs did not start on port $port:" >&2
    cat "$dir.log" >&2 || true
    kill "$pid" 2>/dev/null || true
    exit 1
    ;;
  *)
    echo "usage: $0 bin | start DIR PORT" >&2
    exit 2
    ;;
esac
