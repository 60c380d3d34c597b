#!/usr/bin/env bash
# Issue #23 items 1-2 in one command (run it in a quiet window; every row records the CPU other
# users took meanwhile). For YOLOX-nano 416 and YOLOv8n 640 on 720p bgr8 frames at half
# capacity, both views side by side in one fdr-benchmark run per model:
#   inside:  the in-process harness (bare model with the node's settings, transport floor, node)
#   outside: separate publisher and receiver processes (latency = receipt - publish call), the
#            transport floor (empty answers, and `floor_answer`: the same detections as the
#            node's, from a table), plain ONNX Runtime with default options at the best thread
#            count (paced at the same rate), the node; node - floor - bare split per hop from
#            the node's /diagnostics, and node - floor_answer - bare.
# Interleaved rounds; VARIANTS are the same node with other settings in the same rounds
# (default: ONNX Runtime threads spinning only inside a run; a 100 us GIL switch interval
# instead of Python's 5 ms). The node runs with the family's
# shipped YAML. Results: $OUT/<model>/benchmark.json and the printed targets in $OUT/<model>.log.
# About 3.5 minutes per model with the defaults (about 7 in all).
#
#   bash benchmarks/outside_view.sh          # DUR=5 ROUNDS=3 OUT=out/outside_view
#   VARIANTS=' ' bash benchmarks/outside_view.sh                    # no A/B
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/outside_view}
BIN=${BIN:-.venv/bin}
DUR=${DUR:-5}
ROUNDS=${ROUNDS:-3}
VARIANTS=${VARIANTS:-spinstop:onnxruntime.allow_spinning=true,onnxruntime.force_spinning_stop=true gil100us:env.FDR_SWITCH_INTERVAL_US=100}
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$((RANDOM % 100 + 1))}
mkdir -p "$OUT"
run() {  # name model extra...
  local name=$1 model=$2; shift 2
  echo "== $name $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/$name.log"
  "$BIN/fdr-benchmark" --model "$model" --frames 30 --threads 1,2 \
    --skip bare,serial,pipeline --ros-duration "$DUR" --budget-rounds "$ROUNDS" \
    --saturate-rate '' --outside-view \
    $(for v in $VARIANTS; do printf -- '--variant %s ' "$v"; done) \
    --out "$OUT/$name" --no-progress "$@" 2>&1 | tee -a "$OUT/$name.log"
  echo "== $name done $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)" \
    | tee -a "$OUT/$name.log"
}
run yolox_nano ../shared/models/yolox_nano_coco_416.onnx
run yolov8n .cache/models/yolov8n.onnx
