#!/usr/bin/env bash
# `make demo` of two checkouts, interleaved, to compare a change with what came before it.
#
#   benchmarks/demo_ab.sh BASE_CHECKOUT [ROUNDS] [RATES]
#
# BASE_CHECKOUT is another working tree of this repository (e.g. `git worktree add --detach
# /tmp/base <commit>`); both run with this checkout's .venv, the base through PYTHONPATH (its
# package, config/ and tools shadow the editable install, also in the node processes the demo
# starts). Each round runs base then this checkout at every rate (RATES, default "1.0 0.5":
# the plaza video at 50 and 25 fps), so both see the same machine load. One line per run:
# frames in / out / dropped, order violations, latency p50 / p90 / p99 (publish -> receipt).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
base="$(cd "${1:?give the base checkout}" && pwd)"
rounds="${2:-3}"
rates="${3:-1.0 0.5}"
py="$here/.venv/bin/python"
shared="${FDR_SHARED:-$here/../shared}"
out="${OUT_DIR:-$here/out/demo_ab}"
mkdir -p "$out"
summary() {
  "$py" - "$1" <<'PY'
import json
import sys
r = json.load(open(sys.argv[1]))
lat = r['latency_ms']
print('in {} out {} dropped {} order {} p50 {:.1f} p90 {:.1f} p99 {:.1f} ms'.format(
    r['frames_in'], r['frames_out'], r['dropped'], r['order_violations'], lat['p50'],
    lat['p90'], lat['p99']))
PY
}
for round in $(seq "$rounds"); do
  for rate in $rates; do
    for side in base head; do
      tree="$here"; [[ $side == base ]] && tree="$base"
      dir="$out/$side-r$round-x$rate"
      (cd "$tree" && PYTHONPATH="$tree" "$py" -m faster_deployment_ros.tools.demo \
          --input "$shared/data/pedestrians_plaza_1280x720_50fps.avi" \
          --model "$shared/models/yolox_nano_coco_416.onnx" --out "$dir" --rate "$rate" \
          >"$dir.log" 2>&1) || { echo "$side round $round rate $rate failed: $dir.log"; exit 1; }
      echo "round $round rate $rate $side: $(summary "$dir/report.json")"
    done
  done
done
