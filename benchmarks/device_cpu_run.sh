#!/usr/bin/env bash
# The ROS-free benchmark sections on the GPU machine's CPU cores (no rclpy there), both models,
# results to $OUT. Inputs travel in .devdata/ (git-excluded): yolov8n.onnx,
# yolox_nano_coco_416.onnx and the 720p plaza clip.
set -uo pipefail
OUT=${OUT:-out/device}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
VIDEO=.devdata/pedestrians_plaza_1280x720_50fps.avi
{
  echo "== $(date -u) $(uname -m) nproc=$(nproc)"; lscpu | grep -E 'Model name|^CPU\(s\)|Thread|Core|Socket|NUMA node\(s\)|L3' ;
  $PY -c 'import onnxruntime, numpy, cv2, sys; print(sys.version.split()[0], "ort", onnxruntime.__version__, "numpy", numpy.__version__, "cv2", cv2.__version__)'
} 2>&1 | tee "$OUT/log.txt"
# AUTOTUNE=0 skips the auto-tuner (and its 30 Hz run); SKIP lists sections to leave out.
if [ "${AUTOTUNE:-1}" = 1 ]; then AT=(--autotune --camera-rate 30 --latency-budget-ms 100); else AT=(); fi
run() {  # name model extra...
  local name=$1 model=$2; shift 2
  $PY -m faster_deployment_ros.tools.benchmark --model "$model" --video "$VIDEO" --frames ${FRAMES:-40} \
    --iters ${ITERS:-30} --duration ${DUR:-5} --workers ${WORKERS:-1,2,3,4,6,8,12,16} "${AT[@]}" \
    --write-params "$OUT/${name}_tuned.yaml" --skip ${SKIP:-ros} \
    --out "$OUT/$name" --no-progress "$@" 2>&1 | tee -a "$OUT/log.txt"
}
run yolov8n .devdata/yolov8n.onnx --family yolov8
run yolox .devdata/yolox_nano_coco_416.onnx --family yolox
