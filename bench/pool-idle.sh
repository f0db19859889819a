#!/usr/bin/env bash
# pool-idle.sh — what an idle pool agent costs while no coordinator is up.
#
# Makes a pool with no SSH hosts on a loopback port nothing else uses,
# enrolls one agent, starts it by hand (`agent attach --credentials FILE`),
# lets the pool's coordinator exit, and then watches the agent for MINUTES
# minutes while it redials a port with nobody listening: its resident memory
# (VmRSS, sampled every 10 s: first, max, last), its CPU time over the
# window (utime + stime from /proc/PID/stat) as a share of one core. Then it
# starts a coordinator (`pool ls`) and reports how long until the agent was
# seen dialing in.
#
# Usage: bench/pool-idle.sh [MINUTES]   (default 10)
#   FLEETBENCH_BIN: directory of `coordinator` and `agent` (default: the
#   release build, else the debug build, of this checkout).
#   PORT: the pool's port (default 17990).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MINUTES=${1:-10}
PORT=${PORT:-17990}
T=${CARGO_TARGET_DIR:-$REPO_ROOT/target}/x86_64-unknown-linux-gnu
if [[ -n ${FLEETBENCH_BIN:-} ]]; then
    BIN=$FLEETBENCH_BIN
elif [[ -x $T/release/agent && -x $T/release/coordinator ]]; then
    BIN=$T/release
else
    BIN=$T/debug
fi
[[ -x $BIN/agent && -x $BIN/coordinator ]] || { echo "no agent/coordinator in $BIN: build first" >&2; exit 2; }
DATA=$(mktemp -d /tmp/fleetbench-pool-idle.XXXXXX)
AGENT_PID=
cleanup() {
    [[ -n $AGENT_PID ]] && kill "$AGENT_PID" 2>/dev/null || true
    rm -rf "$DATA"
}
trap cleanup EXIT

"$BIN/coordinator" --data-dir "$DATA" pool up idle --listen "127.0.0.1:$PORT" 2>/dev/null
"$BIN/coordinator" --data-dir "$DATA" enroll idle --output "$DATA/agent.creds" 2>/dev/null
RUST_LOG=warn "$BIN/agent" attach --credentials "$DATA/agent.creds" </dev/null >"$DATA/agent.log" 2>&1 &
AGENT_PID=$!

ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$AGENT_PID/stat"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$AGENT_PID/status"; }
hz=$(getconf CLK_TCK)

sleep 2 # let it start and settle into dialing
rss_first=$(rss_kb)
rss_max=$rss_first
cpu0=$(ticks)
t0=$(date +%s.%N)
echo "agent $AGENT_PID ($BIN/agent), no coordinator on 127.0.0.1:$PORT, watching for $MINUTES min ..." >&2
end=$(( $(date +%s) + MINUTES * 60 ))
while (( $(date +%s) < end )); do
    sleep 10
    kill -0 "$AGENT_PID" 2>/dev/null || { echo "the agent exited:" >&2; cat "$DATA/agent.log" >&2; exit 1; }
    r=$(rss_kb)
    (( r > rss_max )) && rss_max=$r
done
cpu1=$(ticks)
t1=$(date +%s.%N)
rss_last=$(rss_kb)

# A coordinator appears: how long until the agent dials in?
a0=$(date +%s.%N)
"$BIN/coordinator" --data-dir "$DATA" pool ls idle --wait 10s >"$DATA/ls.txt"
a1=$(date +%s.%N)
attached=$(grep -c ' attached ' "$DATA/ls.txt" || true)

awk -v c0="$cpu0" -v c1="$cpu1" -v t0="$t0" -v t1="$t1" -v hz="$hz" \
    -v rf="$rss_first" -v rm="$rss_max" -v rl="$rss_last" -v a0="$a0" -v a1="$a1" -v att="$attached" \
    -v bin="$BIN" 'BEGIN {
    secs = t1 - t0; cpu = (c1 - c0) / hz
    printf "binary            %s/agent\n", bin
    printf "idle window       %.0f s with no coordinator\n", secs
    printf "CPU               %.2f s = %.4f%% of one core\n", cpu, 100 * cpu / secs
    printf "RSS               first %.1f MiB, max %.1f MiB, last %.1f MiB\n", rf/1024, rm/1024, rl/1024
    printf "coordinator up -> %s in %.2f s (pool ls, which stops waiting once every agent is seen)\n", (att > 0 ? "agent attached" : "agent NOT attached"), a1 - a0
}'
