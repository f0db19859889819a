#!/usr/bin/env bash
# ab-rounds.sh — two builds of fleetbench side by side with wrk, in interleaved
# rounds of wrk-compare.sh, and the table of requests per agent CPU-second.
#
# Usage: bench/ab-rounds.sh OLD_BIN_DIR NEW_BIN_DIR [ROUNDS]
#   OLD_BIN_DIR, NEW_BIN_DIR: directories holding `coordinator` and `agent`
#   (release builds, e.g. WORKTREE/target/x86_64-unknown-linux-gnu/release).
#   ROUNDS: default 7. Each round runs wrk, old and new once (about 70 s),
#   in an order rotated from round to round so that neither build always
#   follows the other. Results land in $OUT (default a new /tmp directory).
set -euo pipefail
[[ $# -ge 2 ]] || { sed -n '2,11p' "$0" >&2; exit 2; }
OLD=$1 NEW=$2 ROUNDS=${3:-7}
for d in "$OLD" "$NEW"; do
    [[ -x $d/coordinator && -x $d/agent ]] || { echo "ab-rounds: no coordinator and agent in $d" >&2; exit 2; }
done
S=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/wrk-compare.sh
OUT=${OUT:-$(mktemp -d /tmp/fleetbench-ab.XXXXXX)}
mkdir -p "$OUT"
echo "ab-rounds: results in $OUT" >&2
for r in $(seq 1 "$ROUNDS"); do
    case $(( r % 3 )) in
        0) order="wrk old new" ;;
        1) order="new wrk old" ;;
        2) order="old new wrk" ;;
    esac
    for who in $order; do
        case $who in
            wrk) ONLY=wrk RESULTS_DIR=$OUT/r$r/wrk bash "$S" >/dev/null 2>>"$OUT/log" ;;
            old) ONLY=fleetbench SKIP_BUILD=1 FLEETBENCH_BIN=$OLD RESULTS_DIR=$OUT/r$r/old bash "$S" >/dev/null 2>>"$OUT/log" ;;
            new) ONLY=fleetbench SKIP_BUILD=1 FLEETBENCH_BIN=$NEW RESULTS_DIR=$OUT/r$r/new bash "$S" >/dev/null 2>>"$OUT/log" ;;
        esac
        echo "ab-rounds: round $r/$ROUNDS $who done" >&2
    done
done
python3 - "$OUT" <<'PY'
import glob, json, statistics as st, sys
out = sys.argv[1]
def load(p):
    try:
        return json.load(open(p))
    except (OSError, ValueError):
        return None
rows = []
for d in sorted(glob.glob(out + "/r*"), key=lambda p: int(p.rsplit("/r", 1)[1])):
    w, o, n = load(d + "/wrk/wrk.json"), load(d + "/old/closed.json"), load(d + "/new/closed.json")
    oo, no = load(d + "/old/open.json"), load(d + "/new/open.json")
    if not (w and o and n):
        print(f"{d}: a case is missing, round left out (see {out}/log)")
        continue
    rows.append({"round": d.rsplit("/", 1)[1], "wrk": w["requests"] / w["cpu_s"],
                 "old": o["requests"] / o["cpu_s"], "new": n["requests"] / n["cpu_s"],
                 "oo": oo and oo["cpu_s"], "no": no and no["cpu_s"]})
print(f"{'round':6} {'wrk req/cpu-s':>13} {'old':>9} {'new':>9} {'new/old':>8} {'new/wrk':>8} {'old/wrk':>8} | fixed rate: agent cpu_s old/new")
for x in rows:
    print(f"{x['round']:6} {x['wrk']:13.0f} {x['old']:9.0f} {x['new']:9.0f} {x['new']/x['old']:8.3f} "
          f"{x['new']/x['wrk']:8.3f} {x['old']/x['wrk']:8.3f} | {x['oo']}/{x['no']}")
if rows:
    med = lambda f: st.median(f(x) for x in rows)
    print(f"medians: req/CPU-s wrk {med(lambda x: x['wrk']):.0f}, old {med(lambda x: x['old']):.0f}, "
          f"new {med(lambda x: x['new']):.0f}; new/old {med(lambda x: x['new']/x['old']):.3f} "
          f"(new ahead in {sum(x['new'] > x['old'] for x in rows)} of {len(rows)})")
PY
