#!/usr/bin/env bash
# wake-cost.sh — what one sleep and wake-up of a thread costs on this
# machine (the thread's own CPU per wake-up, and how late it wakes), at
# several gaps between wake-ups, on one core. See bench/wake-cost.c and
# bench/README.md ("What a wake-up costs").
#
# Usage: bench/wake-cost.sh [SECONDS]   (per gap and mode; default 3)
#        env GAPS="100 250 1000" (µs), CORE=1

set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SECONDS_EACH=${1:-3}
GAPS=${GAPS:-"100 250 1000"}
CORE=${CORE:-1}
[[ $SECONDS_EACH =~ ^[1-9][0-9]*$ ]] || { echo "seconds must be a whole number above zero" >&2; exit 2; }
command -v cc >/dev/null || { echo "needs a C compiler (cc)" >&2; exit 2; }

WORK=$(mktemp -d)
trap 'rm -rf -- "$WORK"' EXIT
cc -O2 -Wall -o "$WORK/wake-cost" "$SCRIPT_DIR/wake-cost.c"

echo "== one thread sleeping until instants GAP apart, on core $CORE; load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-16s %11s %11s %13s %9s %13s %11s\n' mode gap wakes "CPU per wake" "of a core" "lag p50" "lag p99"
for gap in $GAPS; do
    timeout $(( SECONDS_EACH * 2 + 30 )) taskset -c "$CORE" "$WORK/wake-cost" "$gap" "$SECONDS_EACH"
done
