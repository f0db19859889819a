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
        -h|--help)        usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

die() { echo "wrk-compare: $*" >&2; exit 1; }
log() { echo "[wrk-compare] $*" >&2; }

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
URL="http://$HOST:$PORT/file"
RUN_WRK=0; RUN_FB=0
[[ $ONLY == all || $ONLY == wrk ]] && RUN_WRK=1
[[ $ONLY == all || $ONLY == fleetbench ]] && RUN_FB=1

# ---------------------------------------------------------------- cleanup

WORK=""            # temporary directory for everything this script writes
NGINX_PID=""       # nginx master; it leads its own process group (setsid)
CURRENT_PID=""     # the bounded command running right now (a `timeout` process)
POLICY_RC_ADDED=0  # 1 when we created /usr/sbin/policy-rc.d and must remove it

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    # The running generator: `timeout` forwards TERM to its whole process group.
    if [[ -n $CURRENT_PID ]] && kill -0 "$CURRENT_PID" 2>/dev/null; then
        kill -TERM "$CURRENT_PID" 2>/dev/null
        wait "$CURRENT_PID" 2>/dev/null
    fi
    # nginx: master and worker share the process group the master leads.
    if [[ -n $NGINX_PID ]] && kill -0 "$NGINX_PID" 2>/dev/null; then
        kill -TERM -- "-$NGINX_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$NGINX_PID" 2>/dev/null
        wait "$NGINX_PID" 2>/dev/null
    fi
    if [[ $POLICY_RC_ADDED == 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
    if [[ -n $WORK && -d $WORK ]]; then rm -rf -- "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_bounded LIMIT CMD... — runs CMD under `timeout` in the background and
# waits for it, so a trapped Ctrl-C interrupts the wait at once and cleanup can
# kill it. Returns CMD's status (124 when it ran out of time).
run_bounded() {
    local limit=$1; shift
    timeout -k 10 "$limit" "$@" &
    CURRENT_PID=$!
    local rc=0
    wait "$CURRENT_PID" || rc=$?
    CURRENT_PID=""
    return "$rc"
}

# ---------------------------------------------------------------- prerequisites

# Installs the Debian packages the benchmark needs, if any is missing. A
# policy-rc.d that denies every start keeps apt from starting the system nginx
# service (we run our own nginx, by hand, on a loopback port).
install_packages() {
    local missing=()
    command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    [[ -x /usr/bin/time ]] || missing+=(time)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
    command -v setsid >/dev/null 2>&1 || missing+=(util-linux)
    [[ ${#missing[@]} -eq 0 ]] && return 0

    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to apt-get install ${missing[*]}"
        sudo=(sudo)
    fi
    log "installing ${missing[*]}"
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# added by fleetbench wrk-compare.sh for the duration of an install\nexit 101\n' |
            "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
        POLICY_RC_ADDED=1
    fi
    run_bounded 600 "${sudo[@]}" apt-get update -qq >&2
    run_bounded 600 "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    if [[ $POLICY_RC_ADDED == 1 ]]; then
        "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
        POLICY_RC_ADDED=0
    fi
}

install_packages
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cores=$(nproc --all)
(( GEN_CORE < cores && TARGET_CORE < cores )) ||
    die "need cores $TARGET_CORE and $GEN_CORE, this machine has $cores"
[[ $TARGET_CORE != "$GEN_CORE" ]] || die "TARGET_CORE and GEN_CORE must differ"

WORK=$(mktemp -d /tmp/fleetbench-wrk-compare.XXXXXX)
# nginx's worker runs as an unprivileged user when we are root: let it read
# the document root. Nothing secret lives here.
chmod 755 "$WORK"
mkdir -p "$WORK/www" "$WORK/results"

# ---------------------------------------------------------------- fleetbench build

if (( RUN_FB )); then
    if [[ $SKIP_BUILD != 1 ]]; then
        command -v cargo >/dev/null 2>&1 || die "cargo not found; build fleetbench yourself and set SKIP_BUILD=1"
        log "cargo build --release -p coordinator -p agent (in $REPO_ROOT)"
        # No subshell: run_bounded must record the pid in this shell for cleanup.
        cd "$REPO_ROOT"
        run_bounded "$BUILD_TIMEOUT" cargo build --release -p coordinator -p agent >&2 ||
            die "cargo build failed"
    fi
    for b in coordinator agent; do
        [[ -x $FLEETBENCH_BIN/$b ]] || die "$FLEETBENCH_BIN/$b not found (set FLEETBENCH_BIN, or drop SKIP_BUILD)"
    done
fi

# ---------------------------------------------------------------- target: nginx

# A ~100-byte body (99 characters and a newline).
printf '%s\n' "fleetbench wrk-compare static body: the same hundred bytes for every request, from nginx........" |
    head -c 99 > "$WORK/www/file"
echo >> "$WORK/www/file"

# Enough descriptors for the connections plus slack.
worker_connections=$(( CONNECTIONS * 2 + 256 ))
cat > "$WORK/nginx.conf" <<EOF
# Generated by wrk-compare.sh; lives and dies with $WORK.
worker_processes 1;
worker_rlimit_nofile $(( worker_connections + 64 ));
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;

events {
    worker_connections $worker_connections;
}

http {
    access_log off;
    default_type text/plain;
    server_tokens off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    open_file_cache max=16 inactive=600s;
    open_file_cache_valid 600s;
    client_body_temp_path $WORK/client_body;
    proxy_temp_path $WORK/proxy;
    fastcgi_temp_path $WORK/fastcgi;
    uwsgi_temp_path $WORK/uwsgi;
    scgi_temp_path $WORK/scgi;

    server {
        listen $HOST:$PORT backlog=4096;
        root $WORK/www;
        location = /file { }
    }
}
EOF

# port_open: 0 when something accepts TCP on HOST:PORT.
port_open() {
    python3 - "$HOST" "$PORT" <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(0.5)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
except OSError:
    sys.exit(1)
PY
}

port_open && die "$HOST:$PORT is already in use; stop whatever listens there or set PORT"

log "starting nginx on $HOST:$PORT, core $TARGET_CORE"
"$NGINX" -t -q -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" ||
    die "nginx rejected the generated config ($WORK/nginx.conf)"
# exec setsid: the background job becomes nginx itself (no fork, we are not a
# group leader), leading a new process group cleanup can kill whole.
( exec setsid taskset -c "$TARGET_CORE" "$NGINX" -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" \
    </dev/null >"$WORK/nginx.out" 2>&1 ) &
NGINX_PID=$!

for _ in $(seq 100); do
    port_open && break
    kill -0 "$NGINX_PID" 2>/dev/null || { cat "$WORK/nginx-error.log" >&2 || true; die "nginx exited"; }
    sleep 0.1
done
port_open || die "nginx did not start listening on $HOST:$PORT within 10s"

# Check the target answers 200 with the body we wrote.
python3 - "$HOST" "$PORT" "$WORK/www/file" <<'PY' || die "nginx does not serve /file correctly"
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=5)
c.request("GET", "/file")
r = c.getresponse()
body = r.read()
want = open(sys.argv[3], "rb").read()
if r.status != 200 or body != want:
    print(f"got status {r.status}, {len(body)} bytes", file=sys.stderr)
    sys.exit(1)
PY

# nginx's worker pid, to read its CPU time around each run (how busy the
# target was: ~100% means the target, not the generator, set the pace).
NGINX_WORKER=$(awk -v ppid="$NGINX_PID" '{ sub(/.*\) /, ""); if ($2 == ppid) { print FILENAME; exit } }' \
    /proc/[0-9]*/stat 2>/dev/null | cut -d/ -f3 || true)
nginx_cpu_ticks() {
    if [[ -n $NGINX_WORKER && -r /proc/$NGINX_WORKER/stat ]]; then
        # Fields 14 and 15 (utime, stime) after the ")" that ends the command name.
        sed 's/.*) //' "/proc/$NGINX_WORKER/stat" | awk '{print $12 + $13}'
    else
        echo 0
    fi
}
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- case 1a: wrk

if (( RUN_WRK )); then
    log "wrk: $CONNECTIONS connections, ${DURATION}s, core $GEN_CORE"
    t0=$(nginx_cpu_ticks)
    # /usr/bin/time is the direct child of timeout and waits for wrk, so its
    # user and system seconds are wrk's own.
    run_bounded $(( DURATION + 30 )) /usr/bin/time -o "$WORK/wrk.time" -f '%U %S' \
        taskset -c "$GEN_CORE" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$URL" \
        > "$WORK/wrk.out" 2> "$WORK/wrk.err" ||
        { cat "$WORK/wrk.out" "$WORK/wrk.err" >&2; die "wrk failed"; }
    t1=$(nginx_cpu_ticks)
    cat "$WORK/wrk.out" >&2

    # Parse wrk's --latency output into results/wrk.json.
    python3 - "$WORK/wrk.out" "$WORK/wrk.time" "$(( t1 - t0 ))" "$CLK_TCK" "$WORK/results/wrk.json" <<'PY'
import json, re, sys
out, timef, ticks, clk, dest = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
text = open(out).read()
UNIT_US = {"us": 1, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}

def to_us(v):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", v)
    if not m:
        raise SystemExit(f"cannot read wrk latency {v!r}")
    return float(m.group(1)) * UNIT_US[m.group(2)]

def to_s(v):
    return to_us(v) / 1e6

m = re.search(r"^\s*(\d+) requests in ([0-9.]+\w+),", text, re.M)
if not m:
    raise SystemExit("wrk output has no 'N requests in T' line")
requests, duration = int(m.group(1)), to_s(m.group(2))
rps = float(re.search(r"^Requests/sec:\s*([0-9.]+)", text, re.M).group(1))
pct = {p: to_us(v) for p, v in re.findall(r"^\s*(50|75|90|99)%\s+(\S+)", text, re.M)}
errors = 0
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
if m:
    errors += sum(int(x) for x in m.groups())
m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if m:
    errors += int(m.group(1))
# /usr/bin/time -o may hold a "Command exited with non-zero status" line first.
user, sys_ = map(float, open(timef).read().split()[-2:])
json.dump({
    "requests": requests, "duration_s": duration, "rps": rps,
    "p50_us": pct.get("50"), "p99_us": pct.get("99"), "errors": errors,
    "cpu_s": user + sys_, "cpu_user_s": user, "cpu_sys_s": sys_,
    "target_cpu_s": ticks / clk,
}, open(dest, "w"))
PY
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

# write_workload FILE NAME LOAD_LINES — a one-phase workload against nginx.
write_workload() {
    cat > "$1" <<EOF
# Generated by wrk-compare.sh.
[run]
name = "$2"

[agents]
local = 1
$GENERATORS
[[phase]]
name = "load"
duration = "${DURATION}s"

[phase.http]
url = "$FB_URL"
$FB_HEADERS
$3
EOF
}

# run_fleetbench CASE WORKLOAD — runs the coordinator (and the agent it starts)
# on the generator core and writes results/CASE.json.
run_fleetbench() {
    local case=$1 workload=$2 rc=0
    local data="$WORK/data-$case"
    mkdir -p "$data"
    log "fleetbench $case: $(grep -E '^(concurrency|rate)' "$workload" | tr '\n' ' ')${DURATION}s, core $GEN_CORE"
    local t0 t1
    t0=$(nginx_cpu_ticks)
    # The whole coordinator+agent tree runs on the generator core; the
    # coordinator's gRPC server listens on loopback and starts the agent from
    # FLEETBENCH_BIN (not whatever $FLEETBENCH_AGENT says). /usr/bin/time
    # reports the coordinator plus every child it waited for (its agent).
    run_bounded $(( DURATION + 120 )) /usr/bin/time -o "$WORK/$case.time" -f '%U %S' \
        taskset -c "$GEN_CORE" "$FLEETBENCH_BIN/coordinator" run "$workload" --data-dir "$data" --json \
        --listen "$HOST:0" --agent-binary "$FLEETBENCH_BIN/agent" \
        > "$WORK/$case.json" 2> "$WORK/$case.err" || rc=$?
    t1=$(nginx_cpu_ticks)
    if (( rc != 0 )); then
        tail -n 30 "$WORK/$case.err" >&2 || true
        (( rc == 124 )) && die "fleetbench $case did not finish within $(( DURATION + 120 ))s"
        # A run that ended with errors may still print its report; use it if so.
        log "coordinator exited with status $rc; reading its report anyway"
    fi
    python3 - "$WORK/$case.json" "$WORK/$case.time" "$(( t1 - t0 ))" "$CLK_TCK" "$WORK/results/$case.json" <<'PY'
import json, sys
src, timef, ticks, clk, dest = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
try:
    report = json.load(open(src))
except ValueError as e:
    raise SystemExit(f"coordinator printed no JSON report on stdout ({e})")
phase = report["phases"][0]
lat = phase.get("latency_us") or {}
agents = phase.get("agents") or []
try:
    user, sys_ = map(float, open(timef).read().split()[-2:])
    tree = user + sys_
except (OSError, ValueError):
    tree = None
json.dump({
    "status": report.get("status"), "reason": report.get("reason"),
    "requests": phase["requests"], "duration_s": phase["duration_s"],
    "rps": phase["throughput_rps"],
    "p50_us": lat.get("p50"), "p99_us": lat.get("p99"),
    "errors": sum((phase.get("errors") or {}).values()),
    "error_classes": phase.get("errors") or {},
    "max_send_lag_us": phase.get("max_send_lag_us"),
    "agents": len(agents), "agents_ended": sum(1 for a in agents if a.get("ended")),
    "agent_windows": sum(a.get("windows", 0) for a in agents),
    "window_requests": [t.get("requests", 0) for t in phase.get("timeline") or []],
    "cpu_s": sum(a.get("cpu_s", 0.0) for a in agents),
    "tree_cpu_s": tree,
    "target_cpu_s": ticks / clk,
}, open(dest, "w"))
PY
}

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
