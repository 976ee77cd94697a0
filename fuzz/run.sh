#!/usr/bin/env bash
# Runs every fuzz target for a fixed time and prints, per target, the executions, the corpus size
# and the findings (crash, panic, timeout, leak or out-of-memory inputs libFuzzer saved).
#
#   fuzz/run.sh [SECONDS] [TARGET...]     (default: 60 s each, every target)
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). FUZZ_JOBS targets run
# at once (default 2). Inputs that found something are in fuzz/artifacts/<target>/; replay one
# with `cargo +nightly fuzz run <target> <file>`. The corpora grow in fuzz/corpus/<target>/,
# seeded from fuzz/seeds/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
jobs=${FUZZ_JOBS:-2}
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo +nightly fuzz list); fi
cargo +nightly fuzz build
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

run_one() {
    local t=$1 secs=$2 logs=$3
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    local seeds=()
    [ -d "fuzz/seeds/$t" ] && seeds=("fuzz/seeds/$t")
    # -rss_limit_mb / -malloc_limit_mb turn unbounded allocation into a finding.
    cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
        -print_final_stats=1 >"$logs/$t.log" 2>&1 || true
}
export -f run_one
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one "$@"' _ {} "$secs" "$logs"

printf '%-14s %14s %10s %8s  %s\n' target executions "exec/s" corpus findings
status=0
for t in "${targets[@]}"; do
    log="$logs/$t.log"
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    found=$(find "fuzz/artifacts/$t" -type f | wc -l)
    printf '%-14s %14s %10s %8s  %s\n' "$t" "${execs:-0}" "${rate:-0}" "$corpus" "$found"
    if [ "$found" -gt 0 ] || [ -z "$execs" ] || [ "$execs" = 0 ]; then
        status=1
        find "fuzz/artifacts/$t" -type f -printf '    %p\n'
        grep -m3 -E 'panicked|ERROR: libFuzzer|SUMMARY' "$log" | sed 's/^/    /' || true
    fi
done
exit $status
