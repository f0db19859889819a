#!/usr/bin/env bash
# kill9.sh — SIGKILL the coordinator at many instants of a run (start-up,
# the phases, the wind-down) and check, after each, what must hold:
#   - no process of the run is left (local agents and the service die with
#     their coordinator);
#   - the run's log opens: `coordinator verify` says whole (it finished
#     first) or incomplete, never damaged, and `report` reads it;
#   - every event an agent saw acked is in the log, with no gap.
#
# Usage: bench/kill9.sh [-n ROUNDS]   (default 30; instants spread over 0-7 s)
#        env FLEETBENCH_BIN (default target/x86_64-unknown-linux-gnu/debug)

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
ROUNDS=30
[[ ${1:-} == -n ]] && ROUNDS=${2:?}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "rounds must be a positive integer" >&2; exit 2; }
BIN=${FLEETBENCH_BIN:-$REPO_ROOT/target/x86_64-unknown-linux-gnu/debug}
[[ -x $BIN/coordinator && -x $BIN/agent ]] || { echo "no coordinator/agent in $BIN (cargo build first)" >&2; exit 2; }

WORK=$(mktemp -d)
trap 'pkill -KILL -f -- "$WORK" 2>/dev/null || true; rm -rf -- "$WORK"' EXIT

cat > "$WORK/w.toml" <<EOF
[agents]
local = 2

[[service]]
name = "target"
command = ["{agent}", "serve", "--listen", "127.0.0.1:0", "--record", "$WORK/served.txt"]

[[phase]]
name = "load"
duration = "3s"
rate = 500

[phase.synthetic]
latency = "1ms"

[[phase]]
name = "more"
duration = "2s"
concurrency = 4

[phase.synthetic]
latency = "2ms"
EOF

fail=0
printf '%-5s %-8s %-11s %-8s %s\n' round "kill at" verify leftover acked
for round in $(seq 1 "$ROUNDS"); do
    data="$WORK/data-$round"
    acks="$WORK/acks-$round"
    mkdir -p "$data" "$acks"
    # Instants from 0 to ~7 s: start-up, both phases and the wind-down.
    at=$(python3 -c "print(f'{($round - 1) * 7.0 / max($ROUNDS - 1, 1):.2f}')")
    FLEETBENCH_ACK_TRACE=$acks "$BIN/coordinator" --data-dir "$data" run "$WORK/w.toml" \
        > "$data/out" 2> "$data/err" &
    pid=$!
    sleep "$at"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    # Whatever the run started dies with it: wait (bounded) for none left.
    left=""
    for _ in $(seq 1 100); do
        left=$(pgrep -f -- "$data" || true)
        [[ -z $left ]] && break
        sleep 0.1
    done
    run=$(ls "$data/runs" 2>/dev/null | head -1 || true)
    if [[ -z $run ]]; then
        verdict="no run yet"
    else
        verdict=$("$BIN/coordinator" --data-dir "$data" verify "$run" | awk '{print $2}') || verdict="ERROR"
    fi
    acked="-"
    if [[ -n $run && $verdict != "no run yet" ]]; then
        report=$("$BIN/coordinator" --data-dir "$data" report "$run" --format json 2>/dev/null || true)
        acked=$(python3 - "$acks" "$report" <<'PY'
import json, os, sys
acks, report = sys.argv[1], sys.argv[2]
try:
    events = json.loads(report)["log"]["agent_events"] if report else {}
except (ValueError, KeyError):
    events = {}
bad = []
for agent in (os.listdir(acks) if os.path.isdir(acks) else []):
    n = int(open(os.path.join(acks, agent)).read().strip() or 0)
    e = events.get(agent, {})
    if e.get("highest_seq", 0) < n or e.get("highest_seq") != e.get("events"):
        bad.append(f"{agent}: acked {n}, log {e}")
print("ok" if not bad else "LOST " + "; ".join(bad))
PY
)
    fi
    status=ok
    [[ -n $left ]] && status=FAIL
    [[ $verdict == DAMAGED || $verdict == ERROR ]] && status=FAIL
    [[ $acked == LOST* ]] && status=FAIL
    [[ $status == FAIL ]] && fail=$((fail + 1))
    printf '%-5s %-8s %-11s %-8s %s\n' "$round" "${at}s" "$verdict" "${left:+yes}${left:-no}" "$acked"
    pkill -KILL -f -- "$data" 2>/dev/null || true
done
echo
if (( fail > 0 )); then
    echo "$fail of $ROUNDS rounds broke a guarantee"
    exit 1
fi
echo "all $ROUNDS rounds: nothing left running, every log readable and never damaged, every acked event logged"
