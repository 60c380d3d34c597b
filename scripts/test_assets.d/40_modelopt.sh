#!/usr/bin/env bash
# .venv-modelopt: NVIDIA ModelOpt (CPU torch, CPU ONNX Runtime) for the TensorRT 11.x precision
# path: AutoCast fp16 and Q/DQ int8 ONNX conversions (test_tensorrt_standins.py runs them; the
# backend finds this venv through FDR_MODELOPT_PYTHON or its modelopt_python option).
# About 1-2 min on 2 cores, about 1.3 GB. Idempotent: a stamp keyed on this script and the
# requirements file.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-python3}"
say() { printf '[modelopt] %s\n' "$*"; }
quiet_pip() { grep -vE "is ignored: it is neither|dependency resolver does not|nvidia-modelopt [0-9.]+ requires" || true; }

venv="$root/.venv-modelopt"
req="$root/requirements/modelopt.txt"
key=$(cat "$0" "$req" | sha256sum | cut -c1-16)
if [[ -f "$venv/.fdr-stamp" && "$(cat "$venv/.fdr-stamp")" == "$key" ]]; then
  exit 0
fi
say "building $venv (torch CPU, nvidia-modelopt, ONNX Runtime CPU)"
t0=$SECONDS
rm -rf "$venv"
"$python" -m venv "$venv"
pipv() { "$venv/bin/python" -m pip install --disable-pip-version-check -q "$@" 2>&1 | quiet_pip; }
pipv 'torch==2.13.0'  # first, from the local CPU wheel, so nothing below pulls a CUDA build
grep -E '#.*no-deps' "$req" | sed 's/#.*//' | xargs "$venv/bin/python" -m pip install \
  --disable-pip-version-check -q --no-deps 2>&1 | quiet_pip
grep -vE '^\s*(#|$)|no-deps' "$req" | sed 's/#.*//' >"$venv/.deps.txt"
pipv -r "$venv/.deps.txt"
"$venv/bin/python" -c 'import modelopt.onnx.autocast, modelopt.onnx.quantization' >/dev/null
echo "$key" >"$venv/.fdr-stamp"
say "venv ready in $((SECONDS - t0)) s"
