#!/usr/bin/env bash
# Second GPU-machine run (CPU only): where the p99 at a 30 Hz camera comes from (latency_probe:
# all cores vs one free, ONNX Runtime spinning on/off), then the auto-tuner with validation at
# 30 Hz / 100 ms for both models, spinning on and off. Everything lands in $OUT/results.tar.gz.
set -uo pipefail
OUT=${OUT:-out/device2}
W=$(mktemp -d)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
VIDEO=.devdata/pedestrians_plaza_1280x720_50fps.avi
V8=.devdata/yolov8n.onnx
YX=.devdata/yolox_nano_coco_416.onnx
DUR=${DUR:-6}
CONFIGS=${CONFIGS:-1x16,1x15,1x14,2x8,2x7,4x4,4x3}
echo "== $(date -u) nproc=$(nproc)" | tee "$OUT/log.txt"
for m in v8:$V8:yolov8 yx:$YX:yolox; do
  IFS=: read -r name model fam <<<"$m"
  timeout 200 $PY benchmarks/latency_probe.py --model "$model" --family "$fam" --video "$VIDEO" \
    --frames 30 --duration "$DUR" --configs "$CONFIGS" --out "$W/probe_$name.json" 2>&1 \
    | tee -a "$OUT/log.txt"
done
for m in v8:$V8:yolov8 yx:$YX:yolox; do
  IFS=: read -r name model fam <<<"$m"
  for spin in true false; do
    timeout 150 $PY -m faster_deployment_ros.tools.benchmark --model "$model" --family "$fam" \
      --video "$VIDEO" --frames 30 --iters ${ITERS:-30} --duration ${ADUR:-10} \
      --skip bare,serial,pipeline,ros --autotune --validate-s ${VAL:-3} --camera-rate 30 \
      --latency-budget-ms 100 --backend-option allow_spinning=$spin \
      --write-params "$W/tuned_${name}_spin_$spin.yaml" --out "$W/at_${name}_spin_$spin" \
      --no-progress 2>&1 | tee -a "$OUT/log.txt"
  done
done
tar -czf "$OUT/results.tar.gz" -C "$W" .
