# shellcheck shell=bash
# Shared by the container test scripts (sourced): check reporting and polling. The sourcing
# script sets `prefix` (its containers' name prefix), `started` (date +%s.%N) and
# `failures` (0) first.

pass() { echo "ok   $1"; }
fail() {
    echo "FAIL $1" >&2
    failures=$((failures + 1))
}
section() { echo "== $1 ($(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'))"; }
logs() { podman logs --tail 25 "$prefix-$1" 2>&1 | sed "s/^/    [$1] /" >&2 || true; }
x() { podman exec "$prefix-$1" "${@:2}"; }

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.3 s until it succeeds.
wait_for() {
    local deadline=$(($(date +%s) + $1)) what=$2 out
    shift 2
    while true; do
        if out=$("$@" 2>&1); then
            return 0
        fi
        if (($(date +%s) >= deadline)); then
            echo "timed out waiting for: $what; last output:" >&2
            printf '%s\n' "$out" | tail -n 10 >&2
            return 1
        fi
        sleep 0.3
    done
}
