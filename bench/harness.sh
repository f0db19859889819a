# harness.sh — what the benchmarks against nginx share, sourced by
# wrk-compare.sh and accuracy.sh: messages, cleanup on exit, bounded
# commands, the Debian packages, the fleetbench build, the nginx target (one
# worker serving a ~100-byte file on 127.0.0.1, pinned to TARGET_CORE), and
# one run each of wrk and of fleetbench on GEN_CORE, whose numbers land in
# $WORK/results/CASE.json.
#
# The sourcing script sets BENCH (its name, for messages and the temporary
# directory) and the settings these functions read: PORT, TARGET_CORE,
# GEN_CORE, CONNECTIONS (nginx's descriptors), DURATION, URL, HOST,
# SKIP_BUILD, BUILD_TIMEOUT, FLEETBENCH_BIN, REPO_ROOT. Sourcing installs
# the cleanup trap.

die() { echo "$BENCH: $*" >&2; exit 1; }
log() { echo "[$BENCH] $*" >&2; }

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
        printf '#!/bin/sh\n# added by fleetbench %s.sh for the duration of an install\nexit 101\n' "$BENCH" |
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

# prepare — the packages, the cores, and $WORK (with www/ and results/).
prepare() {
    install_packages
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)

    cores=$(nproc --all)
    (( GEN_CORE < cores && TARGET_CORE < cores )) ||
        die "need cores $TARGET_CORE and $GEN_CORE, this machine has $cores"
    [[ $TARGET_CORE != "$GEN_CORE" ]] || die "TARGET_CORE and GEN_CORE must differ"

    WORK=$(mktemp -d "/tmp/fleetbench-$BENCH.XXXXXX")
    # nginx's worker runs as an unprivileged user when we are root: let it read
    # the document root. Nothing secret lives here.
    chmod 755 "$WORK"
    mkdir -p "$WORK/www" "$WORK/results"
}

# ---------------------------------------------------------------- fleetbench build

# build_fleetbench — the release coordinator and agent (unless SKIP_BUILD=1),
# checked to be in FLEETBENCH_BIN.
build_fleetbench() {
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
}

# ---------------------------------------------------------------- target: nginx

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

# start_nginx — nginx serving $WORK/www/file on HOST:PORT, pinned to
# TARGET_CORE, checked to answer; sets NGINX_PID and NGINX_WORKER.
start_nginx() {
    # A ~100-byte body (99 characters and a newline).
    printf '%s\n' "fleetbench wrk-compare static body: the same hundred bytes for every request, from nginx........" |
        head -c 99 > "$WORK/www/file"
    echo >> "$WORK/www/file"

    # Enough descriptors for the connections plus slack.
    local worker_connections=$(( CONNECTIONS * 2 + 256 ))
    # HTTPS=1: TLS (1.2 and 1.3, http/1.1 only: wrk speaks no h2) with a CA
    # and a leaf certificate made here.
    local listen="listen $HOST:$PORT backlog=4096;" tls=""
    if [[ ${HTTPS:-0} == 1 ]]; then
        make_certs
        listen="listen $HOST:$PORT ssl backlog=4096;"
        tls="ssl_certificate $WORK/leaf.pem; ssl_certificate_key $WORK/leaf.key; ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:S:10m;"
    fi
    cat > "$WORK/nginx.conf" <<EOF
# Generated by $BENCH.sh; lives and dies with $WORK.
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
        $listen
        $tls
        root $WORK/www;
        location = /file { }
    }
}
EOF

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
    python3 - "$HOST" "$PORT" "$WORK/www/file" "${HTTPS:-0}" "$WORK/ca.pem" <<'PY' || die "nginx does not serve /file correctly"
import http.client, ssl, sys
if sys.argv[4] == "1":
    ctx = ssl.create_default_context(cafile=sys.argv[5])
    c = http.client.HTTPSConnection(sys.argv[1], int(sys.argv[2]), timeout=5, context=ctx)
else:
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
}

# make_certs — a CA ($WORK/ca.pem) and a leaf for 127.0.0.1 it signed
# ($WORK/leaf.pem, leaf.key), with openssl.
make_certs() {
    command -v openssl >/dev/null || die "HTTPS=1 needs openssl (Debian package openssl)"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -keyout "$WORK/ca.key" -out "$WORK/ca.pem" -subj "/CN=bench CA" 2>/dev/null ||
        die "openssl could not make the CA"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$WORK/leaf.key" -out "$WORK/leaf.csr" -subj "/CN=$HOST" 2>/dev/null ||
        die "openssl could not make the leaf key"
    printf 'subjectAltName=IP:%s\nbasicConstraints=CA:FALSE\n' "$HOST" > "$WORK/leaf.ext"
    openssl x509 -req -in "$WORK/leaf.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
        -days 2 -out "$WORK/leaf.pem" -extfile "$WORK/leaf.ext" 2>/dev/null ||
        die "openssl could not sign the leaf"
}

nginx_cpu_ticks() {
    if [[ -n $NGINX_WORKER && -r /proc/$NGINX_WORKER/stat ]]; then
        # Fields 14 and 15 (utime, stime) after the ")" that ends the command name.
        sed 's/.*) //' "/proc/$NGINX_WORKER/stat" | awk '{print $12 + $13}'
    else
        echo 0
    fi
}
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- wrk

# run_wrk CASE CONNS — wrk -t1 -cCONNS for DURATION on GEN_CORE; writes
# results/CASE.json (requests, rps, p50/p99 µs, errors, CPU seconds).
run_wrk() {
    local case=$1 conns=$2
    log "$case: $conns connections, ${DURATION}s, core $GEN_CORE"
    local t0 t1
    t0=$(nginx_cpu_ticks)
    # /usr/bin/time is the direct child of timeout and waits for wrk, so its
    # user and system seconds are wrk's own.
    run_bounded $(( DURATION + 30 )) /usr/bin/time -o "$WORK/$case.time" -f '%U %S' \
        taskset -c "$GEN_CORE" wrk -t1 -c"$conns" -d"${DURATION}s" --latency "$URL" \
        > "$WORK/$case.out" 2> "$WORK/$case.err" ||
        { cat "$WORK/$case.out" "$WORK/$case.err" >&2; die "wrk failed"; }
    t1=$(nginx_cpu_ticks)
    cat "$WORK/$case.out" >&2

    # Parse wrk's --latency output into results/CASE.json.
    python3 - "$WORK/$case.out" "$WORK/$case.time" "$(( t1 - t0 ))" "$CLK_TCK" "$WORK/results/$case.json" <<'PY'
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
}

# ---------------------------------------------------------------- fleetbench

# write_workload FILE NAME PHASE_LINES — a one-phase workload against nginx
# (FB_URL, and GENERATORS and FB_HEADERS when the caller sets them);
# PHASE_LINES are phase keys (concurrency, rate, send_slack).
write_workload() {
    cat > "$1" <<EOF
# Generated by $BENCH.sh.
[run]
name = "$2"

[agents]
local = 1
${GENERATORS:-}
[[phase]]
name = "load"
duration = "${DURATION}s"
$3

[phase.http]
url = "${FB_URL:-$URL}"
${FB_HEADERS:-}
${FB_TLS:-}
EOF
}

# run_fleetbench CASE WORKLOAD — runs the coordinator (and the agent it starts)
# on the generator core and writes results/CASE.json (the first phase's
# numbers, the agent's CPU seconds, the coordinator+agent tree's).
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
    "send_lag_us": phase.get("send_lag_us"),
    "agents": len(agents), "agents_ended": sum(1 for a in agents if a.get("ended")),
    "agent_windows": sum(a.get("windows", 0) for a in agents),
    "window_requests": [t.get("requests", 0) for t in phase.get("timeline") or []],
    "cpu_s": sum(a.get("cpu_s", 0.0) for a in agents),
    "tree_cpu_s": tree,
    "target_cpu_s": ticks / clk,
}, open(dest, "w"))
PY
}
