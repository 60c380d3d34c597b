#!/usr/bin/env bash
# Builds what the tests need beyond .venv (test models, converter environments), each step
# idempotent and cached under .cache/. Steps live in scripts/test_assets.d/*.sh, run in name order.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shopt -s nullglob
for step in "$root"/scripts/test_assets.d/*.sh; do
  bash "$step"
done
