#!/usr/bin/env bash
# Converter environments kept apart from the node's .venv (they need torch and pinned old numpy):
#   .venv-convert  ONNX -> ncnn with pnnx
#   .venv-rknn     ONNX -> .rknn with rknn-toolkit2, and its PC simulator for the RKNN tests
# then the converted test models under .cache/models/. Idempotent: stamps keyed on the inputs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-python3}"
say() { printf '[converters] %s\n' "$*"; }

make_venv() {  # make_venv DIR KEY -- returns 0 when it must be (re)built
  local dir=$1 key=$2
  [[ -f "$dir/.fdr-stamp" && "$(cat "$dir/.fdr-stamp")" == "$key" ]] && return 1
  rm -rf "$dir"
  "$python" -m venv "$dir"
  "$dir/bin/python" -m pip install --disable-pip-version-check -q --upgrade 'pip>=23'
  return 0
}
pipv() { local dir=$1; shift; "$dir/bin/python" -m pip install --disable-pip-version-check -q "$@"; }

# --- .venv-convert (pnnx) ---------------------------------------------------------------------
conv="$root/.venv-convert"
key=$(cat "$0" "$root/requirements/convert.txt" | sha256sum | cut -c1-16)
if make_venv "$conv" "$key"; then
  say "building $conv (torch CPU + pnnx)"
  pipv "$conv" 'torch==2.13.0'
  pipv "$conv" -r "$root/requirements/convert.txt"
  echo "$key" >"$conv/.fdr-stamp"
fi

# --- .venv-rknn (rknn-toolkit2) ---------------------------------------------------------------
rk="$root/.venv-rknn"
key=$(cat "$0" "$root/requirements/rknn.txt" | sha256sum | cut -c1-16)
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
