#!/usr/bin/env bash
# accuracy.sh — how close fleetbench's open-loop latency is to the target's
# service time, side by side with oha, against one nginx in one run.
#
# Per round, against the same nginx (one worker, a ~100-byte file, pinned
# to TARGET_CORE), every generator pinned to GEN_CORE:
#   service  wrk -t1 -c1 (closed loop, one connection): the service time
#   oha      oha -c N -q R --latency-correction, for each rate R
#   fb       fleetbench `rate = R` over N connections, for each rate R and
#            each send_slack S in SLACKS ("0": every send at its instant)
# and the table of each one's p50/p99, fleetbench's send lag (p50/p99/max)
# and agent CPU, the median over the rounds. Open-loop latency counts from
# each request's intended send time in both oha (--latency-correction) and
# fleetbench, so a generator that sends late reads slower.
#
# Usage: bench/accuracy.sh [-c CONNS] [-d SECONDS] [--rates "1000 10000"] [--rounds N]
#        see bench/README.md, or run with -h.

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

CONNECTIONS=${CONNECTIONS:-8}         # connections of the open-loop generators
DURATION=${DURATION:-10}              # seconds per case (whole seconds)
RATES=${RATES:-"1000 10000"}          # open-loop rates, requests/s
SLACKS=${SLACKS:-0}                   # fleetbench send_slack values ("0", "250us", "1ms")
ROUNDS=${ROUNDS:-3}                   # rounds; the table shows each case's median
PORT=${PORT:-18091}                   # nginx listen port (always 127.0.0.1)
TARGET_CORE=${TARGET_CORE:-0}         # core nginx is pinned to
GEN_CORE=${GEN_CORE:-1}               # core the load generators are pinned to
RESULTS_DIR=${RESULTS_DIR:-}          # if set: copy every case's results JSON here
SKIP_BUILD=${SKIP_BUILD:-0}           # 1: do not run cargo build
BUILD_TIMEOUT=${BUILD_TIMEOUT:-1800}  # seconds allowed for cargo build (and for installing oha)
OHA=${OHA:-oha}                       # the oha binary
FLEETBENCH_BIN=${FLEETBENCH_BIN:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/x86_64-unknown-linux-gnu/release}

usage() {
    cat <<EOF
usage: $0 [options]

  -c, --connections N   connections of oha and fleetbench (default $CONNECTIONS, env CONNECTIONS)
  -d, --duration S      seconds per case (default $DURATION, env DURATION)
      --rates "R ..."   open-loop rates, requests/s (default "$RATES", env RATES)
      --slacks "S ..."  fleetbench send_slack values, e.g. "0 250us 1ms" (default "$SLACKS", env SLACKS)
      --rounds N        rounds; the table shows medians (default $ROUNDS, env ROUNDS)
  -h, --help            this text

environment:
  FLEETBENCH_BIN   directory holding coordinator and agent (default $FLEETBENCH_BIN)
  SKIP_BUILD=1     do not run 'cargo build --release -p coordinator -p agent'
  OHA              the oha binary (default: oha on PATH; installed with
                   'cargo install oha --locked' when missing)
  RESULTS_DIR      if set, every case's results JSON is copied there (rN-CASE.json)
  PORT, TARGET_CORE, GEN_CORE, BUILD_TIMEOUT   see the top of this script
EOF
}

while [[ $# -gt 0 ]]; do
    case $1 in
        -c|--connections) CONNECTIONS=${2:?}; shift 2 ;;
        -d|--duration)    DURATION=${2:?}; shift 2 ;;
        --rates)          RATES=${2:?}; shift 2 ;;
        --slacks)         SLACKS=${2:?}; shift 2 ;;
        --rounds)         ROUNDS=${2:?}; shift 2 ;;
        -h|--help)        usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

BENCH=accuracy
# shellcheck source=bench/harness.sh
source "$SCRIPT_DIR/harness.sh"

[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "connections must be a positive integer, not '$CONNECTIONS'"
[[ $DURATION =~ ^[1-9][0-9]*$ ]]    || die "duration must be a positive whole number of seconds, not '$DURATION'"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]]      || die "rounds must be a positive integer, not '$ROUNDS'"
[[ $PORT =~ ^[1-9][0-9]*$ ]]        || die "port must be a number, not '$PORT'"
for r in $RATES; do
    [[ $r =~ ^[1-9][0-9]*$ ]] || die "rates must be positive whole numbers, not '$r'"
done
for s in $SLACKS; do
    [[ $s =~ ^(0|[1-9][0-9]*(us|ms))$ ]] || die "slacks must be 0 or like 250us or 1ms, not '$s'"
done
if [[ -n $RESULTS_DIR ]]; then
    mkdir -p -- "$RESULTS_DIR" || die "cannot create RESULTS_DIR $RESULTS_DIR"
fi

HOST=127.0.0.1   # loopback only, on purpose
URL="http://$HOST:$PORT/file"

# ---------------------------------------------------------------- oha

# ensure_oha — oha on PATH (or $OHA), installed from crates.io when missing.
ensure_oha() {
    if command -v "$OHA" >/dev/null 2>&1; then
        return 0
    fi
    command -v cargo >/dev/null 2>&1 || die "oha not found and no cargo to install it ('cargo install oha --locked')"
    log "installing oha: cargo install oha --locked (several minutes)"
    run_bounded "$BUILD_TIMEOUT" cargo install oha --locked >&2 || die "cargo install oha failed"
    OHA=$(command -v oha || echo "${CARGO_HOME:-$HOME/.cargo}/bin/oha")
    [[ -x $OHA ]] || die "oha installed, but not found on PATH nor in ${CARGO_HOME:-$HOME/.cargo}/bin"
}

# run_oha CASE RATE — oha at RATE req/s over CONNECTIONS connections for
# DURATION on GEN_CORE, latency counted from each request's intended start
# (--latency-correction); writes results/CASE.json (p50/p99 µs, CPU seconds).
run_oha() {
    local case=$1 rate=$2
    log "$case: oha -q $rate --latency-correction, $CONNECTIONS connections, ${DURATION}s, core $GEN_CORE"
    run_bounded $(( DURATION + 30 )) /usr/bin/time -o "$WORK/$case.time" -f '%U %S' \
        taskset -c "$GEN_CORE" "$OHA" --no-tui --output-format json -c "$CONNECTIONS" -q "$rate" \
        --latency-correction -z "${DURATION}s" "$URL" \
        > "$WORK/$case.out" 2> "$WORK/$case.err" ||
        { tail -n 20 "$WORK/$case.out" "$WORK/$case.err" >&2; die "oha failed"; }
    python3 - "$WORK/$case.out" "$WORK/$case.time" "$WORK/results/$case.json" "$DURATION" <<'PY'
import json, sys
src, timef, dest, dur = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
r = json.load(open(src))
pct = r.get("latencyPercentiles") or {}
summary = r.get("summary") or {}
codes = r.get("statusCodeDistribution") or {}
ok = sum(v for k, v in codes.items() if k.startswith("2"))
user, sys_ = map(float, open(timef).read().split()[-2:])
json.dump({
    "requests": sum(codes.values()), "errors": sum(codes.values()) - ok + sum((r.get("errorDistribution") or {}).values()),
    "rps": summary.get("requestsPerSec"),
    "p50_us": pct["p50"] * 1e6 if pct.get("p50") is not None else None,
    "p99_us": pct["p99"] * 1e6 if pct.get("p99") is not None else None,
    "cpu_s": user + sys_, "duration_s": dur,
}, open(dest, "w"))
PY
}

# ---------------------------------------------------------------- the rounds

prepare
build_fleetbench
ensure_oha
start_nginx

for round in $(seq 1 "$ROUNDS"); do
    log "round $round of $ROUNDS"
    run_wrk "r$round-service" 1
    for rate in $RATES; do
        run_oha "r$round-oha-$rate" "$rate"
        for slack in $SLACKS; do
            name=fb-$rate
            [[ $slack == 0 ]] || name=fb-$rate-slack$slack
            write_workload "$WORK/$name.toml" "accuracy-$rate" "rate = $rate
concurrency = $CONNECTIONS
send_slack = \"$slack\""
            run_fleetbench "r$round-$name" "$WORK/$name.toml"
        done
    done
done

if [[ -n $RESULTS_DIR ]]; then
    cp -- "$WORK"/results/*.json "$RESULTS_DIR"/ 2>/dev/null || log "no results to copy to $RESULTS_DIR"
fi

# ---------------------------------------------------------------- the table

python3 - "$WORK/results" "$ROUNDS" "$RATES" "$CONNECTIONS" "$DURATION" "$(cat /proc/loadavg)" "$SLACKS" <<'PY'
import json, os, statistics as st, sys
res, rounds, rates, conns, dur, load, slacks = sys.argv[1:]
rounds, rates, slacks = int(rounds), rates.split(), slacks.split()

def load_case(name):
    out = []
    for r in range(1, rounds + 1):
        p = os.path.join(res, f"r{r}-{name}.json")
        if os.path.exists(p):
            out.append(json.load(open(p)))
    return out

def med(runs, f):
    vals = [v for v in (f(x) for x in runs) if v is not None]
    return st.median(vals) if vals else None

def us(v):
    if v is None:
        return "-"
    return f"{v:.0f} µs" if v < 1000 else f"{v / 1000:.2f} ms"

def lag(x, q):
    return (x.get("send_lag_us") or {}).get(q)

service = med(load_case("service"), lambda x: x["p50_us"])
print()
print(f"== open-loop accuracy: nginx (1 worker, ~100-byte file) on one core, generators on another; "
      f"{conns} connections, {dur}s per case, median of {rounds} round(s)")
print(f"   service time (wrk -t1 -c1, closed loop): p50 {us(service)}")
print()
head = ("rate", "generator", "p50", "p99", "p50 - service", "send lag p50 / p99 / max", "achieved", "gen CPU")
rows = []
verdicts = []
for rate in rates:
    oha = load_case(f"oha-{rate}")
    o50, o99 = med(oha, lambda x: x["p50_us"]), med(oha, lambda x: x["p99_us"])
    cpu = lambda x: 100 * x["cpu_s"] / x["duration_s"] if x.get("duration_s") else None
    if oha:
        rows.append((f"{int(rate):,}/s", "oha --latency-correction", us(o50), us(o99),
                     us(o50 - service) if o50 and service else "-", "",
                     f"{med(oha, lambda x: x['rps']):,.0f}/s" if med(oha, lambda x: x['rps']) else "-",
                     f"{med(oha, cpu):.1f}%"))
    for slack in slacks:
        fb = load_case(f"fb-{rate}" if slack == "0" else f"fb-{rate}-slack{slack}")
        f50, f99 = med(fb, lambda x: x["p50_us"]), med(fb, lambda x: x["p99_us"])
        gen = "fleetbench" if slack == "0" else f"fleetbench send_slack {slack}"
        if not fb:
            continue
        rows.append((f"{int(rate):,}/s", gen, us(f50), us(f99),
                     us(f50 - service) if f50 and service else "-",
                     " / ".join(us(med(fb, lambda x, q=q: lag(x, q))) for q in ("p50", "p99", "max")),
                     f"{med(fb, lambda x: x['rps']):,.0f}/s", f"{med(fb, cpu):.1f}%"))
        if slack == "0" and f50 is not None and service is not None:
            ok50 = f50 <= service + 40 and (o50 is None or f50 <= o50)
            ok99 = o99 is None or f99 <= o99
            verdicts.append(f"{int(rate):,}/s: p50 {'meets' if ok50 else 'MISSES'} "
                            f"(within 40 µs of the service time, no higher than oha's); "
                            f"p99 {'meets' if ok99 else 'MISSES'} (no higher than oha's)")
widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
for r in [head] + rows:
    print("  " + "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
print()
for v in verdicts:
    print("  " + v)
print("  gen CPU: the generator's user+system CPU over the case, % of one core (fleetbench: the agent's own)")
print(f"  load average at the end: {load}")
for rate in rates:
    for r, x in enumerate(load_case(f"fb-{rate}"), 1):
        print(f"  round {r} fleetbench {rate}/s: p50 {us(x['p50_us'])}, p99 {us(x['p99_us'])}, "
              f"lag {us(lag(x, 'p50'))}/{us(lag(x, 'p99'))}/{us(lag(x, 'max'))}, "
              f"errors {x['errors']}")
print()
PY
