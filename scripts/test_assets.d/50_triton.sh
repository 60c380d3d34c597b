#!/usr/bin/env bash
# .venv-triton: a Triton Inference Server for the triton backend's tests and benchmark
# (pytriton with its bundled tritonserver, ONNX Runtime CPU; scripts/triton_onnx_server.py runs
# in it). About 40 s and 450 MB. Idempotent: a stamp keyed on this script and the
# requirements file.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-python3}"
say() { printf '[triton] %s\n' "$*"; }
quiet_pip() { grep -vE "is ignored: it is neither|dependency resolver does not" || true; }

venv="$root/.venv-triton"
req="$root/requirements/triton-server.txt"
key=$(cat "$0" "$req" | sha256sum | cut -c1-16)
if [[ -f "$venv/.fdr-stamp" && "$(cat "$venv/.fdr-stamp")" == "$key" ]]; then
  exit 0
fi
if [[ "$(uname -m)" != x86_64 && "$(uname -m)" != aarch64 ]]; then
  say "skipping $venv: nvidia-pytriton ships tritonserver for x86_64 and aarch64 Linux only"
  exit 0
fi
say "building $venv (nvidia-pytriton with tritonserver, ONNX Runtime CPU)"
t0=$SECONDS
rm -rf "$venv"
"$python" -m venv "$venv"
pipv() { "$venv/bin/python" -m pip install --disable-pip-version-check -q "$@" 2>&1 | quiet_pip; }
pipv --upgrade 'pip>=23'
pipv -r "$req"
# The server's Python-backend stub must load this interpreter's libpython (the script sets
# LD_LIBRARY_PATH for it); check the binary and the imports now, not in the first test.
"$venv/bin/python" -c 'import pytriton.triton, tritonclient.grpc, onnxruntime' >/dev/null
find "$venv" -path '*pytriton/tritonserver/bin/tritonserver' -type f | grep -q . \
  || { say "ERROR: nvidia-pytriton installed without its tritonserver binary" >&2; exit 1; }
echo "$key" >"$venv/.fdr-stamp"
say "venv ready in $((SECONDS - t0)) s"
