#!/usr/bin/env bash
# grpc.sh — gRPC unary calls per generator CPU-second, beside HTTP/2 (h2c)
# requests of the same size, against `agent serve` (which answers both).
#
# The target is pinned to one core and the generator (coordinator and its
# local agent) to the other; each case runs closed loop with the same
# connections for the same time. The figure that ranks is requests per
# CPU-second of the generator: what the call costs the agent beyond a plain
# HTTP/2 request (building the message from JSON, framing, trailers).
#
# Usage: bench/grpc.sh [-c CONNS] [-d SECONDS]   (release build; SKIP_BUILD=1 to skip it)
set -euo pipefail
CONNS=64 DURATION=8
while [[ $# -gt 0 ]]; do
    case $1 in
        -c) CONNS=${2:?}; shift 2 ;;
        -d) DURATION=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FLEETBENCH_BIN:-$ROOT/target/x86_64-unknown-linux-gnu/release}
[[ ${SKIP_BUILD:-0} == 1 ]] || (cd "$ROOT" && cargo build --release -q -p coordinator -p agent)
WORK=$(mktemp -d)
SERVE_PID=
cleanup() { [[ -n $SERVE_PID ]] && kill "$SERVE_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
cp "$ROOT"/tests/fixtures/grpc/*.proto "$WORK/"
taskset -c 0 "$BIN/agent" serve --listen 127.0.0.1:0 > "$WORK/serve.out" 2>&1 &
SERVE_PID=$!
for _ in $(seq 50); do grep -q "listening on" "$WORK/serve.out" && break; sleep 0.1; done
ADDR=$(sed -n 's/^listening on //p' "$WORK/serve.out")
[[ -n $ADDR ]] || { echo "agent serve did not start" >&2; exit 1; }
MSG='{"text": "fleetbench grpc bench: the same message every call", "n": 42, "tags": ["a", "b"]}'

write() { # FILE KIND
    local table
    if [[ $2 == grpc ]]; then
        table="[phase.grpc]
url = \"http://$ADDR\"
proto = \"echo.proto\"
method = \"fleetbench.test.Echo/Say\"
message = '$MSG'"
    else
        table="[phase.http]
url = \"http://$ADDR/\"
method = \"POST\"
version = \"2\"
body = '$MSG'"
    fi
    printf '[agents]\nlocal = 1\n\n[[phase]]\nname = "load"\nduration = "%ss"\nconcurrency = %s\n\n%s\n' \
        "$DURATION" "$CONNS" "$table" > "$1"
}

run() { # KIND
    write "$WORK/$1.toml" "$1"
    /usr/bin/time -o "$WORK/$1.time" -f '%U %S' taskset -c 1 "$BIN/coordinator" \
        --data-dir "$WORK/data-$1" run "$WORK/$1.toml" --json > "$WORK/$1.json" 2> "$WORK/$1.err" ||
        { cat "$WORK/$1.err" >&2; exit 1; }
    python3 - "$WORK/$1.json" "$WORK/$1.time" "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["phases"][0]
u, s = map(float, open(sys.argv[2]).read().split()[-2:])
cpu = u + s
errs = sum(r["errors"].values())
lat = r["latency_us"]
print(f"  {sys.argv[3]:<6} {r['throughput_rps']:>10,.0f} req/s  p50 {lat['p50']}us  p99 {lat['p99']}us  errors {errs}  "
      f"gen CPU {cpu:.2f}s  {r['requests'] / cpu:>10,.0f} req per CPU-second")
open(sys.argv[1] + ".rate", "w").write(str(r['requests'] / cpu))
PY
}

echo "== closed loop, $CONNS connections, ${DURATION}s, agent serve on core 0, generator on core 1"
run h2c
run grpc
python3 -c "
h = float(open('$WORK/h2c.json.rate').read()); g = float(open('$WORK/grpc.json.rate').read())
print(f'  ratio grpc/h2c, requests per generator CPU-second: {g / h:.2f}x')"
