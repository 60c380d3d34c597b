#!/usr/bin/env bash
# Test models of the YOLOv8/YOLO11, RT-DETR, depth and semantic segmentation families, built
# offline from the architectures' reference code with random (conditioned) weights, into .cache/models/:
#   yolov8n.onnx yolo11n.onnx yolo11n-obb.onnx yolo26n.onnx yolov8n-seg.onnx yolo11n-seg.onnx
#   rtdetr-l.onnx rtdetr-l-legacy.onnx rtdetr-l-orig.onnx depth_anything_v2_vits.onnx
#   midas_small_style.onnx depth_anything_v2_metric_hypersim_vits.onnx (the official metric
#   model, metres) lraspp_mobilenet_v3_large.onnx
#   (scripts/build_test_models.py)
# in a tools venv .venv-export (torch CPU + ultralytics + depth-anything-v2, requirements/export.txt).
# The builds are deterministic; when a model's sha256 differs from the one its golden fixture
# (test/fixtures/golden_*.npz) was made with, the golden results are recomputed with the
# reference code into .cache/golden/ (scripts/make_golden.py). Idempotent: stamps keyed on inputs.
# About 1 min for the venv, 3 min for the models on 2 cores; 1.5 GB venv + 0.5 GB models.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-python3}"
shared="${FDR_SHARED:-$root/../shared}"
say() { printf '[test-models] %s\n' "$*"; }

venv="$root/.venv-export"
req="$root/requirements/export.txt"
key=$(cat "$0" "$req" | sha256sum | cut -c1-16)
if [[ ! -f "$venv/.fdr-stamp" || "$(cat "$venv/.fdr-stamp")" != "$key" ]]; then
  say "building $venv (torch CPU, ultralytics, depth-anything-v2)"
  t0=$SECONDS
  rm -rf "$venv"
  "$python" -m venv "$venv"
  pipv() { "$venv/bin/python" -m pip install --disable-pip-version-check -q "$@"; }
  # torch first, from the local CPU wheel, so nothing below pulls a CUDA build.
  pipv 'torch==2.13.0'
  grep -E '#.*no-deps' "$req" | sed 's/#.*//' | xargs "$venv/bin/python" -m pip install \
    --disable-pip-version-check -q --no-deps --ignore-requires-python
  grep -vE '^\s*(#|$)|no-deps' "$req" | sed 's/#.*//' >"$venv/.deps.txt"
  pipv -r "$venv/.deps.txt"
  YOLO_OFFLINE=1 YOLO_CONFIG_DIR="$root/.cache/ultralytics-config" \
    "$venv/bin/python" -c 'import ultralytics, onnx, onnxslim, depth_anything_v2' >/dev/null
  echo "$key" >"$venv/.fdr-stamp"
  say "venv ready in $((SECONDS - t0)) s"
fi

if [[ ! -f "$shared/data/dog_bicycle_truck.jpg" ]]; then
  say "skipping the models: $shared/data not found (the tests that need them skip too)"
  exit 0
fi

models="$root/.cache/models"
mkdir -p "$models"
names=(yolov8n yolo11n yolo11n-obb yolo26n yolov8n-seg yolo11n-seg rtdetr-l rtdetr-l-legacy rtdetr-l-orig depth_anything_v2_vits midas_small_style)
names+=(depth_anything_v2_metric_hypersim_vits lraspp_mobilenet_v3_large)
mkey=$(cat "$venv/.fdr-stamp" "$root/scripts/build_test_models.py" \
  "$root/scripts/depth_anything_v2_shim.py" | sha256sum | cut -c1-16)
missing=0
for n in "${names[@]}"; do [[ -f "$models/$n.onnx" ]] || missing=1; done
if [[ $missing == 1 || ! -f "$models/.export-stamp" || "$(cat "$models/.export-stamp")" != "$mkey" ]]; then
  say "building the test models into $models"
  t0=$SECONDS
  rm -f "$models/.export-stamp"
  (cd "$models" && "$venv/bin/python" "$root/scripts/build_test_models.py" --out "$models")
  echo "$mkey" >"$models/.export-stamp"
  say "models built in $((SECONDS - t0)) s"
fi

# Golden results: the committed fixtures when they were made with these exact models, else
# recomputed here with the reference code (same script, same frames).
"$venv/bin/python" "$root/scripts/make_golden.py" --models "$models" --out "$root/.cache/golden" \
  --stale-only "$root/test/fixtures"
