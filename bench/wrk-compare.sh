#!/usr/bin/env bash
# wrk-compare.sh — fleetbench's agent HTTP load generator side by side with wrk.
#
# Both generators hit the same target (a hand-started nginx serving a ~100-byte
# static file on 127.0.0.1:18090), with the same number of connections for the
# same duration. nginx is pinned to one core and the generator to another, so
# on a 2-core machine the target is usually the bottleneck and requests/s
# alone does not rank the generators: requests per generator CPU-second does.
#
# Cases:
#   1. closed loop: wrk -t1 -cN -dD  vs  fleetbench `concurrency = N`
#   2. fixed rate:  fleetbench open loop `rate = R` over N connections
#      (Debian's wrk has no fixed-rate mode, so there is no wrk row)
# With --template, both fleetbench cases send a templated request (a zipf key
# and a sequence id in the query, the id again in a header) instead of a
# constant one, so the cost of rendering per request shows; wrk is unchanged.
#
# Usage: bench/wrk-compare.sh [-c CONNS] [-d SECONDS] [-r RATE] [--only wrk|fleetbench] [--no-rate] [--template]
#        see bench/README.md, or run with -h.
#
# Everything runs on loopback, every external command is bounded in time, and
# nginx plus the temporary directory are removed on exit, failure or Ctrl-C.

set -euo pipefail

# ---------------------------------------------------------------- settings

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

CONNECTIONS=${CONNECTIONS:-64}        # connections for both generators
DURATION=${DURATION:-10}              # seconds per run (whole seconds)
RATE=${RATE:-10000}                   # fleetbench open-loop rate, requests/s
PORT=${PORT:-18090}                   # nginx listen port (always 127.0.0.1)
TARGET_CORE=${TARGET_CORE:-0}         # core nginx is pinned to
GEN_CORE=${GEN_CORE:-1}               # core the load generator is pinned to
ONLY=${ONLY:-all}                     # all | wrk | fleetbench
SKIP_RATE=${SKIP_RATE:-0}             # 1: skip the fixed-rate case
TEMPLATE=${TEMPLATE:-0}               # 1: fleetbench sends a templated request
HTTPS=${HTTPS:-0}                     # 1: nginx serves https (both generators keep connections)
RESULTS_DIR=${RESULTS_DIR:-}          # if set: copy each case's results JSON here
SKIP_BUILD=${SKIP_BUILD:-0}           # 1: do not run cargo build
BUILD_TIMEOUT=${BUILD_TIMEOUT:-1800}  # seconds allowed for cargo build
# Where the coordinator and agent binaries are. Default: the release dir of the
# cargo target dir the build below uses.
# .cargo/config.toml names the target triple, so binaries land under it.
FLEETBENCH_BIN=${FLEETBENCH_BIN:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/x86_64-unknown-linux-gnu/release}

usage() {
    cat <<EOF
usage: $0 [options]

  -c, --connections N   connections for wrk and fleetbench (default $CONNECTIONS, env CONNECTIONS)
  -d, --duration S      seconds per run (default $DURATION, env DURATION)
  -r, --rate R          fleetbench fixed-rate case, requests/s (default $RATE, env RATE)
      --only WHAT       wrk | fleetbench | all (default $ONLY, env ONLY)
      --no-rate         skip the fixed-rate case (env SKIP_RATE=1)
      --template        fleetbench sends a templated request: zipf key and sequence
                        id in the query, the id in a header (env TEMPLATE=1)
      --https           nginx serves https (TLS 1.3, a CA and leaf made by openssl);
                        both generators keep their connections alive (env HTTPS=1)
  -h, --help            this text

environment:
  FLEETBENCH_BIN   directory holding coordinator and agent (default $FLEETBENCH_BIN)
  SKIP_BUILD=1     do not run 'cargo build --release -p coordinator -p agent'
  RESULTS_DIR      if set, each case's results (wrk.json, closed.json, open.json) are copied there
  PORT, TARGET_CORE, GEN_CORE, BUILD_TIMEOUT   see the top of this script
EOF
}

while [[ $# -gt 0 ]]; do
    case $1 in
        -c|--connections) CONNECTIONS=${2:?}; shift 2 ;;
        -d|--duration)    DURATION=${2:?}; shift 2 ;;
        -r|--rate)        RATE=${2:?}; shift 2 ;;
        --only)           ONLY=${2:?}; shift 2 ;;
        --no-rate)        SKIP_RATE=1; shift ;;
        --template)       TEMPLATE=1; shift ;;
        --https)          HTTPS=1; shift ;;
        -h|--help)        usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

BENCH=wrk-compare
# shellcheck source=bench/harness.sh
source "$SCRIPT_DIR/harness.sh"

[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "connections must be a positive integer, not '$CONNECTIONS'"
[[ $DURATION =~ ^[1-9][0-9]*$ ]]    || die "duration must be a positive whole number of seconds, not '$DURATION'"
[[ $RATE =~ ^[0-9]+([.][0-9]+)?$ ]] || die "rate must be a positive number, not '$RATE'"
[[ $PORT =~ ^[1-9][0-9]*$ ]]        || die "port must be a number, not '$PORT'"
case $ONLY in all|wrk|fleetbench) ;; *) die "--only takes wrk, fleetbench or all, not '$ONLY'" ;; esac
case $TEMPLATE in 0|1) ;; *) die "TEMPLATE must be 0 or 1, not '$TEMPLATE'" ;; esac
if [[ -n $RESULTS_DIR ]]; then
    mkdir -p -- "$RESULTS_DIR" || die "cannot create RESULTS_DIR $RESULTS_DIR"
fi

HOST=127.0.0.1   # loopback only, on purpose
if [[ $HTTPS == 1 ]]; then
    URL="https://$HOST:$PORT/file"
else
    URL="http://$HOST:$PORT/file"
fi
RUN_WRK=0; RUN_FB=0
[[ $ONLY == all || $ONLY == wrk ]] && RUN_WRK=1
[[ $ONLY == all || $ONLY == fleetbench ]] && RUN_FB=1

# ---------------------------------------------------------------- setup

prepare
# The fleetbench op trusts the CA start_nginx makes for https.
[[ $HTTPS == 1 ]] && FB_TLS="tls = { ca = \"$WORK/ca.pem\" }"
if (( RUN_FB )); then
    build_fleetbench
fi
start_nginx

# ---------------------------------------------------------------- case 1a: wrk

if (( RUN_WRK )); then
    run_wrk wrk "$CONNECTIONS"
fi

# ---------------------------------------------------------------- case 1b/2: fleetbench

# The fleetbench request. With --template: two generators fill the query and
# a header per request (nginx serves /file whatever the query says).
GENERATORS=""
FB_URL=$URL
FB_HEADERS=""
if [[ $TEMPLATE == 1 ]]; then
    GENERATORS='
[generator.key]
kind = "zipf"
n = 100000
exponent = 1.1

[generator.id]
kind = "sequence"
'
    FB_URL="$URL?k={{key}}&id={{id}}"
    FB_HEADERS='headers = { "x-request-id" = "{{id}}" }'
fi

if (( RUN_FB )); then
    write_workload "$WORK/closed.toml" "bench-closed" "concurrency = $CONNECTIONS"
    run_fleetbench closed "$WORK/closed.toml"
    if [[ $SKIP_RATE != 1 ]]; then
        write_workload "$WORK/open.toml" "bench-open" "rate = $RATE
concurrency = $CONNECTIONS"
        run_fleetbench open "$WORK/open.toml"
    fi
fi

# ---------------------------------------------------------------- report

if [[ -n $RESULTS_DIR ]]; then
    cp -- "$WORK"/results/*.json "$RESULTS_DIR"/ 2>/dev/null || log "no results to copy to $RESULTS_DIR"
fi

python3 - "$WORK/results" "$CONNECTIONS" "$DURATION" "$RATE" "$SKIP_RATE" "$RUN_FB" "$cores" "$TEMPLATE" <<'PY'
import json, os, sys
res, conns, dur, rate, skip_rate, run_fb, cores, template = sys.argv[1:]
fb = "fleetbench agent" + (" (template)" if template == "1" else "")

def load(name):
    p = os.path.join(res, name + ".json")
    return json.load(open(p)) if os.path.exists(p) else None

def lat(us):
    if us is None:
        return "-"
    return f"{us:.0f}us" if us < 1000 else f"{us / 1000:.2f}ms"

def num(v, fmt="{:,.0f}"):
    return "-" if v is None else fmt.format(v)

def windows_note(r):
    # Windows the coordinator got from the agent(s) vs the phase's timeline:
    # a window lost on the way counts as 0 requests in the report.
    got, shown = r.get("agent_windows"), len(r.get("window_requests") or [])
    if got is not None and r.get("agents") == 1 and got < shown:
        print(f"  note: the coordinator received {got} windows from the agent for the phase's {shown}; "
              f"requests and req/s count only those")

def per_cpu(r, key="cpu_s"):
    c = r.get(key)
    return r["requests"] / c if c else None

wrk, closed, opened = load("wrk"), load("closed"), load("open")
print()
print(f"== closed loop: {conns} connections, {dur}s, target nginx on 1 core, generator on 1 core ({cores} cores total)")
head = ("generator", "req/s", "p50", "p99", "errors", "gen CPU s", "req/CPU-s", "nginx CPU")
rows = []
if wrk:
    rows.append(("wrk -t1", num(wrk["rps"]), lat(wrk["p50_us"]), lat(wrk["p99_us"]), num(wrk["errors"]),
                 num(wrk["cpu_s"], "{:.2f}"), num(per_cpu(wrk)),
                 f"{100 * wrk['target_cpu_s'] / wrk['duration_s']:.0f}%"))
if closed:
    rows.append((fb, num(closed["rps"]), lat(closed["p50_us"]), lat(closed["p99_us"]),
                 num(closed["errors"]), num(closed["cpu_s"], "{:.2f}"), num(per_cpu(closed)),
                 f"{100 * closed['target_cpu_s'] / max(closed['duration_s'], 1e-9):.0f}%"))
    rows.append(("  coordinator+agent tree", "", "", "", "", num(closed["tree_cpu_s"], "{:.2f}"),
                 num(per_cpu(closed, "tree_cpu_s")), ""))
widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
for r in [head] + rows:
    print("  " + "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))))

if wrk and closed:
    w, f, t = per_cpu(wrk), per_cpu(closed), per_cpu(closed, "tree_cpu_s")
    if w and f:
        ratio = f / w
        verdict = "meets" if ratio >= 0.8 else "BELOW"
        print(f"  ratio fleetbench/wrk, requests per generator CPU-second: {ratio:.2f}x "
              f"(agent CPU; {verdict} the >= 0.8x target)")
    if w and t:
        print(f"  ratio with the whole coordinator+agent tree's CPU:        {t / w:.2f}x")
if closed:
    if closed["errors"]:
        print(f"  fleetbench errors: {closed['error_classes']}")
    windows_note(closed)
    if closed["agents_ended"] != closed["agents"]:
        print(f"  note: {closed['agents'] - closed['agents_ended']} agent(s) did not report the phase's end; agent CPU may read 0")
    if closed["tree_cpu_s"] is not None and closed["tree_cpu_s"] + 0.05 < closed["cpu_s"]:
        print("  note: tree CPU < agent CPU: the coordinator did not wait for its agent, so /usr/bin/time missed it")
if wrk and wrk["errors"]:
    print(f"  wrk errors (socket + non-2xx): {wrk['errors']}")
print("  req/CPU-s = requests / (user + system CPU seconds of the generator); nginx CPU = its worker's share of one core")
if template == "1" and run_fb == "1":
    print("  template: fleetbench sends GET /file?k={{key}}&id={{id}} with x-request-id: {{id}} (key zipf n=100000 s=1.1, id a sequence)")

if run_fb == "1" and skip_rate != "1":
    print()
    print(f"== fixed rate: {rate} req/s over {conns} connections, {dur}s")
    print("  wrk: Debian's wrk has no fixed-rate mode (that is wrk2), so there is no wrk row for this case.")
    if opened:
        d = opened["duration_s"] or float(dur)
        achieved = opened["requests"] / d
        head = ("generator", "target req/s", "achieved req/s", "p50", "p99", "errors", "max send lag", "gen CPU s", "gen CPU share")
        row = (fb, num(float(rate)), num(achieved), lat(opened["p50_us"]), lat(opened["p99_us"]),
               num(opened["errors"]), lat(opened["max_send_lag_us"]), num(opened["cpu_s"], "{:.2f}"),
               f"{100 * opened['cpu_s'] / d:.1f}%")
        widths = [max(len(str(a)), len(str(b))) for a, b in zip(head, row)]
        for r in (head, row):
            print("  " + "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if opened["tree_cpu_s"] is not None:
            print(f"  coordinator+agent tree CPU: {opened['tree_cpu_s']:.2f}s ({100 * opened['tree_cpu_s'] / d:.1f}% of one core over the phase)")
        if opened["errors"]:
            print(f"  fleetbench errors: {opened['error_classes']}")
        windows_note(opened)
        print("  gen CPU share = agent CPU seconds / phase duration (100% = one core); latency counts from the intended send time")
print()
PY
