#!/usr/bin/env bash
# handshakes.sh — new TLS connections per generator CPU-second: fleetbench
# with `new_connection = true` (a TCP connection and a full TLS handshake,
# resumption off, per request) beside `openssl s_time -new` (the same:
# a new connection and full handshake each time, one at a time), against
# the same nginx (TLS 1.3, ECDSA P-256 leaf made by openssl), nginx pinned
# to core 0, the generators to core 1. wrk cannot do this (it keeps its
# connections).
#
# Usage: bench/handshakes.sh [-d SECONDS]   (release build; SKIP_BUILD=1 to skip it)
set -euo pipefail
DURATION=8
while [[ $# -gt 0 ]]; do
    case $1 in
        -d) DURATION=${2:?}; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FLEETBENCH_BIN:-$ROOT/target/x86_64-unknown-linux-gnu/release}
[[ ${SKIP_BUILD:-0} == 1 ]] || (cd "$ROOT" && cargo build --release -q -p coordinator -p agent)
WORK=$(mktemp -d)
PORT=${PORT:-18443}
cleanup() { [[ -f $WORK/nginx.pid ]] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout ca.key -out ca.pem -subj "/CN=bench CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout leaf.key -out leaf.csr -subj "/CN=127.0.0.1" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > leaf.ext
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -out leaf.pem -extfile leaf.ext 2>/dev/null
mkdir -p www && echo ok > www/index.html
cat > nginx.conf <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  ssl_session_tickets off;
  ssl_session_cache off;
  server { listen 127.0.0.1:$PORT ssl; ssl_protocols TLSv1.3;
    ssl_certificate $WORK/leaf.pem; ssl_certificate_key $WORK/leaf.key;
    root $WORK/www; location / { return 200 "ok"; } }
}
CONF
taskset -c 0 nginx -c "$WORK/nginx.conf"
sleep 0.5

echo "== new TLS 1.3 connections (full handshakes), ${DURATION}s, nginx on core 0, generator on core 1"
/usr/bin/time -o s_time.cpu -f '%U %S' taskset -c 1 openssl s_time -connect 127.0.0.1:$PORT \
    -new -time "$DURATION" -CAfile ca.pem > s_time.out 2>&1 || true
python3 - <<'PY'
import re
t = open("s_time.out").read()
m = re.search(r"(\d+) connections in ([0-9.]+) real seconds", t)
if not m:
    raise SystemExit("openssl s_time printed no 'N connections in T real seconds' line:\n" + t)
n, real = int(m.group(1)), float(m.group(2))
u, s = map(float, open("s_time.cpu").read().split()[-2:])
print(f"  openssl s_time -new   {n / real:>8,.0f} conn/s  gen CPU {u + s:.2f}s  {n / (u + s):>8,.0f} handshakes per CPU-second")
open("s_time.rate", "w").write(str(n / (u + s)))
PY
cat > w.toml <<W
[agents]
local = 1

[[phase]]
name = "handshakes"
duration = "${DURATION}s"
concurrency = 8

[phase.http]
url = "https://127.0.0.1:$PORT/"
version = "1.1"
new_connection = true
tls = { ca = "ca.pem", resumption = false }
W
/usr/bin/time -o fb.cpu -f '%U %S' taskset -c 1 "$BIN/coordinator" --data-dir data run w.toml --json > fb.json 2> fb.err ||
    { cat fb.err >&2; exit 1; }
python3 - <<'PY'
import json
p = json.load(open("fb.json"))["phases"][0]
u, s = map(float, open("fb.cpu").read().split()[-2:])
errs = sum(p["errors"].values())
tls = p.get("stages_us", {}).get("tls", {})
print(f"  fleetbench            {p['throughput_rps']:>8,.0f} conn/s  gen CPU {u + s:.2f}s  {p['requests'] / (u + s):>8,.0f} handshakes per CPU-second"
      f"  (errors {errs}, TLS handshake p50 {tls.get('p50')}us)")
r = (p['requests'] / (u + s)) / float(open("s_time.rate").read())
print(f"  ratio fleetbench/openssl s_time, handshakes per generator CPU-second: {r:.2f}x")
PY
