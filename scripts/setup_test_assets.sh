#!/usr/bin/env bash
# Builds what the tests need beyond .venv (test models, converter environments), each step
# idempotent and cached under .cache/. Steps live in scripts/test_assets.d/*.sh, run in name order.
# After each step, identical files across the venvs (torch in four of them) become hard links
# (scripts/link_identical_files.py): a fresh clone's venvs take about 4 GB instead of 7 GB.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shopt -s nullglob
for step in "$root"/scripts/test_assets.d/*.sh; do
  bash "$step"
  "${PYTHON:-python3}" "$root/scripts/link_identical_files.py" "$root"/.venv "$root"/.venv-*
done
