#!/usr/bin/env bash
# replay.sh — how fast `coordinator replay` re-aggregates a big run.
#
# Writes a synthetic run of AGENTS agents x SECONDS one-second windows
# straight into a fresh event log (`coordinator generate-run`, the same
# records a real run logs), then times `coordinator replay` of it, release
# build. The target (issue 4): 100 agents x 1 hour (360,000 windows) in
# under 5 s on these 2-core machines.
#
# Usage: bench/replay.sh [AGENTS] [SECONDS]   (defaults 100 3600)
#   SKIP_BUILD=1 to use existing binaries; FLEETBENCH_BIN to point at them.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
AGENTS=${1:-100}
SECONDS_=${2:-3600}
BIN=${FLEETBENCH_BIN:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/x86_64-unknown-linux-gnu/release}
DATA=$(mktemp -d /tmp/fleetbench-replay-bench.XXXXXX)
trap 'rm -rf "$DATA"' EXIT

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    (cd "$REPO_ROOT" && cargo build --release -p coordinator >&2)
fi

echo "generating $AGENTS agents x $SECONDS_ s = $((AGENTS * SECONDS_)) windows ..." >&2
t0=$(date +%s.%N)
RUN=$("$BIN/coordinator" --data-dir "$DATA" generate-run --agents "$AGENTS" --seconds "$SECONDS_")
t1=$(date +%s.%N)
size=$(du -sh "$DATA" | cut -f1)

measure() {   # label, args...
    local label=$1; shift
    local s e
    s=$(date +%s.%N)
    /usr/bin/time -f "%M" -o "$DATA/rss" "$BIN/coordinator" --data-dir "$DATA" "$@" > /dev/null
    e=$(date +%s.%N)
    printf '  %-44s %6.2f s   max RSS %s MiB\n' "$label" "$(echo "$e - $s" | bc)" "$(( $(cat "$DATA/rss") / 1024 ))"
}

echo
echo "== replay of $AGENTS agents x $SECONDS_ s ($((AGENTS * SECONDS_)) windows, log $size; generated in $(printf '%.1f' "$(echo "$t1 - $t0" | bc)") s)"
measure "replay (table)"                    replay "$RUN"
measure "replay --format json"              replay "$RUN" --format json
measure "replay --window 10s --format json" replay "$RUN" --window 10s --format json
measure "replay --exclude-agent synthetic-1" replay "$RUN" --exclude-agent synthetic-1
measure "report --format csv"               report "$RUN" --format csv
