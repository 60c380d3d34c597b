#!/usr/bin/env bash
# Builds what the tests need beyond .venv (test models, converter environments), each step
# idempotent and cached under .cache/. Steps live in scripts/test_assets.d/*.sh, run in name order.
# After each step, identical files across the venvs (torch in four of them) become hard links
# (scripts/link_identical_files.py): a fresh clone's venvs take about 4 GB instead of 7 GB.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shopt -s nullglob
# A first build writes about 5 GB (venvs, models, converted models); say so before pip runs out.
free_kb=$(df -Pk "$root" | awk 'NR == 2 {print $4}')
if [[ ! -f "$root/.venv-triton/.fdr-stamp" && -n "$free_kb" ]] && ((free_kb < 6 * 1024 * 1024)); then
  echo "[test-assets] WARNING: $((free_kb / 1024 / 1024)) GB free on the disk of $root; a" \
    "first build of the test assets writes about 5 GB. Free some space (old clones, venvs) if" \
    "pip stops with 'No space left on device'." >&2
fi
for step in "$root"/scripts/test_assets.d/*.sh; do
  bash "$step"
  "${PYTHON:-python3}" "$root/scripts/link_identical_files.py" "$root"/.venv "$root"/.venv-*
done
