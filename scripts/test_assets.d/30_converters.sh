#!/usr/bin/env bash
# Converter environments kept apart from the node's .venv (they need torch and pinned old numpy):
#   .venv-convert  ONNX -> ncnn with pnnx
#   .venv-rknn     ONNX -> .rknn with rknn-toolkit2, and its PC simulator for the RKNN tests
# then the converted test models under .cache/models/. Idempotent: stamps keyed on the inputs.
set -euo pipefail
export LC_ALL=C  # glob order (hashed below) must not depend on the locale
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-python3}"
say() { printf '[converters] %s\n' "$*"; }

make_venv() {  # make_venv DIR KEY -- returns 0 when it must be (re)built
  local dir=$1 key=$2
  [[ -f "$dir/.fdr-stamp" && "$(cat "$dir/.fdr-stamp")" == "$key" ]] && return 1
  rm -rf "$dir"
  "$python" -m venv "$dir"
  "$dir/bin/python" -m pip install --disable-pip-version-check -q --upgrade 'pip>=23' 2>&1 | quiet_pip
  return 0
}
# pip's notes about this machine's local index paths, and the toolkit's deliberately unmet pins
# (installed without its dependencies), are noise here.
quiet_pip() { grep -vE "is ignored: it is neither|dependency resolver does not|rknn-toolkit2 [0-9.]+ requires" || true; }
pipv() {
  local dir=$1; shift
  "$dir/bin/python" -m pip install --disable-pip-version-check -q "$@" 2>&1 | quiet_pip
}

# --- .venv-convert (pnnx) ---------------------------------------------------------------------
conv="$root/.venv-convert"
recipe=1  # bump when the install steps below change
key=$(cat "$root/requirements/convert.txt" | sha256sum | cut -c1-16)-$recipe
if make_venv "$conv" "$key"; then
  say "building $conv (torch CPU + pnnx)"
  pipv "$conv" 'torch==2.13.0'
  pipv "$conv" -r "$root/requirements/convert.txt"
  echo "$key" >"$conv/.fdr-stamp"
fi

# --- .venv-rknn (rknn-toolkit2) ---------------------------------------------------------------
rk="$root/.venv-rknn"
key=$(cat "$root/requirements/rknn.txt" | sha256sum | cut -c1-16)-$recipe
if [[ "$(uname -m)" != x86_64 ]] || ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  say "skipping $rk: rknn-toolkit2 2.3.2 is used here for CPython 3.11 on x86_64 only"
elif make_venv "$rk" "$key"; then
  say "building $rk (torch CPU + rknn-toolkit2 without deps)"
  pipv "$rk" 'torch==2.13.0'
  toolkit=$(grep -E '^rknn-toolkit2' "$root/requirements/rknn.txt")
  pipv "$rk" --no-deps "$toolkit"
  grep -vE '^(#|rknn-toolkit2|$)' "$root/requirements/rknn.txt" >"$rk/.deps.txt"
  pipv "$rk" -r "$rk/.deps.txt"
  "$rk/bin/python" -c 'from rknn.api import RKNN' >/dev/null
  echo "$key" >"$rk/.fdr-stamp"
fi

# --- converted test models ----------------------------------------------------------------------
# Tests use these when their sidecar's source hash matches the ONNX, else convert on the fly.
out="$root/.cache/models/converted"
mkdir -p "$out"
tools="$root/faster_deployment_ros/tools"
code=$(cat "$tools"/{convert,convert_ncnn,convert_rknn,onnx_info,rknn_toolkit}.py | sha256sum | cut -c1-16)
convert() {  # convert TARGET ONNX PRECISION OUTPUT; redone when the model or the converter changes
  local target=$1 onnx=$2 precision=$3 dst=$4
  [[ -f "$onnx" ]] || { say "skipping $(basename "$dst"): $onnx not found"; return 0; }
  local key; key="$(sha256sum "$onnx" | cut -c1-16)-$code-$precision"
  [[ -f "$dst.stamp" && "$(cat "$dst.stamp")" == "$key" ]] && return 0
  say "converting $(basename "$onnx") -> $(basename "$dst")"
  "$root/.venv/bin/python" -m faster_deployment_ros.tools.convert "$target" "$onnx" \
      --precision "$precision" -o "$dst" >"$out/convert.log" 2>&1 \
    || { cat "$out/convert.log" >&2; exit 1; }
  echo "$key" >"$dst.stamp"
}
yolox="$root/../shared/models/yolox_nano_coco_416.onnx"
# detection, then the new outputs (test/test_backends_new_outputs.py): instance masks (-seg: two
# outputs), oriented boxes (-obb), semantic segmentation (LR-ASPP)
models=("$root/.cache/models/"{yolov8n,yolov8n-seg,yolo11n-obb,lraspp_mobilenet_v3_large}.onnx)
for p in fp32 fp16; do
  convert ncnn "$yolox" $p "$out/yolox_nano_coco_416.$p.ncnn.param"
  for m in "${models[@]}"; do
    convert ncnn "$m" $p "$out/$(basename "$m" .onnx).$p.ncnn.param"
  done
done
if [[ -x "$rk/bin/python" ]]; then
  convert rknn "$yolox" fp16 "$out/yolox_nano_coco_416.fp16.rknn"
  for m in "${models[@]}"; do
    convert rknn "$m" fp16 "$out/$(basename "$m" .onnx).fp16.rknn"
  done
fi
