#!/usr/bin/env bash
# Issue #14's numbers in one command, on the 2-core machine (run it in a quiet window: other
# users' CPU is printed beside every row as "other users"). For YOLOX-nano 416 and YOLOv8n 640
# on 720p bgr8 frames: the bare model paced at half capacity, the transport floor and the node
# side by side (interleaved rounds, per-hop budget from the node's /diagnostics), overload
# (YOLOv8n at 15 Hz as in the issue, YOLOX at 2x capacity), saturation at 1.5x capacity vs the
# pipeline alone, ultralytics' own predict loop (YOLOv8n), and A/B variants of the defaults
# in the same rounds (VARIANTS; default: ONNX Runtime threads spinning, and spinning only inside
# a run). The node runs with the family's
# shipped YAML. Results: $OUT/<model>/benchmark.json, .png, and the printed targets in
# $OUT/<model>.log.
#
#   bash benchmarks/latency_budget.sh            # DUR=10 ROUNDS=2 OUT=out/latency_budget
#   VARIANTS='q2d5:queue_size=2,qos_depth=5' bash benchmarks/latency_budget.sh   # other A/B
#   VARIANTS=' ' V8_OVERLOAD=2x bash benchmarks/latency_budget.sh   # no A/B; YOLOv8n at 2x capacity
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/latency_budget}
BIN=${BIN:-.venv/bin}
DUR=${DUR:-10}
ROUNDS=${ROUNDS:-2}
VARIANTS=${VARIANTS:-spin:onnxruntime.allow_spinning=true spinstop:onnxruntime.allow_spinning=true,onnxruntime.force_spinning_stop=true}
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$((RANDOM % 100 + 1))}
mkdir -p "$OUT"
run() {  # name model overload-rate extra...
  local name=$1 model=$2 overload=$3; shift 3
  echo "== $name $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/$name.log"
  "$BIN/fdr-benchmark" --model "$model" --frames 60 --threads 1,2 --iters 30 \
    --skip serial,pipeline --ros-duration "$DUR" --budget-rounds "$ROUNDS" \
    --overload-rate "$overload" --saturate-rate 1.5x \
    $(for v in $VARIANTS; do printf -- '--variant %s ' "$v"; done) \
    --out "$OUT/$name" --no-progress "$@" 2>&1 | tee -a "$OUT/$name.log"
  echo "== $name done $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)" \
    | tee -a "$OUT/$name.log"
}
run yolox_nano ../shared/models/yolox_nano_coco_416.onnx 2x
run yolov8n .cache/models/yolov8n.onnx "${V8_OVERLOAD:-15}" --ultralytics-python auto
