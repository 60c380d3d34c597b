#!/usr/bin/env bash
# .venv-triton: a Triton Inference Server for the triton backend's tests and benchmark
# (pytriton with its bundled tritonserver, ONNX Runtime CPU; scripts/triton_onnx_server.py runs
# in it). About 40 s and 450 MB. Idempotent: lib/venv.sh's stamp.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$root/scripts/test_assets.d/lib/venv.sh"

venv_install() {
  pipv --upgrade 'pip>=23'
  pipv -r "$venv_req"
}

venv_check() {
  # The server's Python-backend stub must load this interpreter's libpython (the script sets
  # LD_LIBRARY_PATH for it); check the binary and the imports now, not in the first test.
  "$venv_dir/bin/python" -c 'import pytriton.triton, tritonclient.grpc, onnxruntime' >/dev/null
  find "$venv_dir" -path '*pytriton/tritonserver/bin/tritonserver' -type f | grep -q . \
    || { say "ERROR: nvidia-pytriton installed without its tritonserver binary" >&2; exit 1; }
}

if [[ "$(uname -m)" != x86_64 && "$(uname -m)" != aarch64 ]]; then
  echo "[triton] skipping .venv-triton: nvidia-pytriton ships tritonserver for x86_64 and" \
    "aarch64 Linux only"
  exit 0
fi
build_venv triton "$root/.venv-triton" "$root/requirements/triton-server.txt" \
  'nvidia-pytriton with tritonserver, ONNX Runtime CPU'
