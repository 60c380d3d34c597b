#!/usr/bin/env bash
# .venv-modelopt: NVIDIA ModelOpt (CPU torch, CPU ONNX Runtime) for the TensorRT 11.x precision
# path: AutoCast fp16 and Q/DQ int8 ONNX conversions (test_tensorrt_standins.py runs them; the
# backend finds this venv through FDR_MODELOPT_PYTHON or its modelopt_python option).
# About 1-2 min on 2 cores, about 1.3 GB. Idempotent: lib/venv.sh's stamp.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$root/scripts/test_assets.d/lib/venv.sh"

venv_install() {
  pipv 'torch==2.13.0'  # first, from the local CPU wheel, so nothing below pulls a CUDA build
  grep -E '#.*no-deps' "$venv_req" | sed 's/#.*//' | xargs "$venv_dir/bin/python" -m pip install \
    --disable-pip-version-check -q --no-deps 2>&1 | quiet_pip
  grep -vE '^\s*(#|$)|no-deps' "$venv_req" | sed 's/#.*//' >"$venv_dir/.deps.txt"
  pipv -r "$venv_dir/.deps.txt"
}

venv_check() {
  "$venv_dir/bin/python" -c 'import modelopt.onnx.autocast, modelopt.onnx.quantization' >/dev/null
}

build_venv modelopt "$root/.venv-modelopt" "$root/requirements/modelopt.txt" \
  'torch CPU, nvidia-modelopt, ONNX Runtime CPU' 'nvidia-modelopt [0-9.]+ requires'
