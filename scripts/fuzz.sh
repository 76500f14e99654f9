#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/, one after the other, each for a given
# time, and reports per target the executions, the corpus size and whether a
# crash was found. Exits non-zero if any target crashed; crash inputs are left
# in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; TARGET defaults to every target below.
# Environment:
#   FUZZ_SANITIZER  address (default) or none
#   FUZZ_NICE       niceness of the fuzzer (default 19: the machine is shared)
#   FUZZ_ARGS       extra libFuzzer arguments, e.g. "-max_len=4096"
#
# cargo fuzz needs nightly-only compiler flags; the stable toolchain accepts
# them with RUSTC_BOOTSTRAP=1, so no nightly toolchain is required. Only one
# fuzzer process runs at a time.
#
# Not part of scripts/test.sh (it takes minutes per target). The committed
# inputs (fuzz/seeds, fuzz/corpus) are replayed by `cargo test --test
# fuzz_corpus` instead. To shrink a grown corpus before committing it:
#   RUSTC_BOOTSTRAP=1 cargo fuzz cmin <target> fuzz/corpus/<target>
set -euo pipefail

cd "$(dirname "$0")/.."

DEFAULT_TARGETS=(signed_note checkpoint tile_path entry_bundle event_json leaf_record proof_verify
    witness_request bundle_line evidence_report)

seconds="${1:-60}"
if [[ $# -gt 0 ]]; then shift; fi
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then targets=("${DEFAULT_TARGETS[@]}"); fi

sanitizer="${FUZZ_SANITIZER:-address}"
niceness="${FUZZ_NICE:-19}"
read -r -a extra_args <<< "${FUZZ_ARGS:-}"

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

echo "== building fuzz targets (sanitizer: $sanitizer)"
nice -n "$niceness" cargo fuzz build --sanitizer "$sanitizer"

mkdir -p fuzz/logs
crashed=()
summary=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t"
    log="fuzz/logs/$t.log"
    echo "== $t: ${seconds}s"
    # New inputs go to fuzz/corpus/<t> (the first directory); fuzz/seeds/<t>
    # holds the spec vectors and regression inputs, read only.
    set +e
    nice -n "$niceness" cargo fuzz run --sanitizer "$sanitizer" "$t" \
        "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${extra_args[@]}" \
        >"$log" 2>&1
    rc=$?
    set -e
    # libFuzzer ends with "Done N runs in S second(s)" and, with
    # -print_final_stats, "stat::number_of_executed_units: N".
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    if [[ -z "$execs" ]]; then
        execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
    fi
    if [[ -z "$execs" ]]; then
        # A crash ends the run before the final lines: take the last status line.
        execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    fi
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    if [[ $rc -ne 0 ]] || grep -qE '^(==[0-9]+==ERROR|SUMMARY: libFuzzer)|panicked at' "$log"; then
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        result="CRASH (exit $rc) ${artifact:-see $log}"
        crashed+=("$t")
        tail -n 40 "$log" | sed 's/^/    /'
    else
        result="no crash"
    fi
    line=$(printf '%-16s %12s execs  corpus %6s  %s' "$t" "${execs:-?}" "$corpus" "$result")
    echo "$line"
    summary+=("$line")
done

echo
echo "== summary (${seconds}s per target; logs in fuzz/logs/)"
printf '%s\n' "${summary[@]}"
if [[ ${#crashed[@]} -gt 0 ]]; then
    echo "crashed: ${crashed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
