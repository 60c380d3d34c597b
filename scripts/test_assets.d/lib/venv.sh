# shellcheck shell=bash
# One shape for the test-asset venvs that a requirements file defines (40_modelopt.sh,
# 50_triton.sh). Sourced, not run (setup_test_assets.sh runs only test_assets.d/*.sh, not lib/).
# The sourcing script sets
#   venv_label     the log prefix, e.g. triton
#   venv_dir       the venv to build, e.g. "$root/.venv-triton"
#   venv_req       its requirements file
#   venv_what      what it holds, for the "building" line
#   venv_quiet     optional: an extra grep -E pattern of pip noise to hide
# defines venv_install (the pip steps, through `pipv`) and venv_check (fails when the venv
# is not usable), then calls build_venv. build_venv does nothing while the venv's stamp matches
# the key (the calling script, this file and the requirements file); otherwise it removes the
# venv, creates it with $PYTHON (default python3), runs venv_install and venv_check, and writes
# the stamp only when both succeeded.

say() { printf '[%s] %s\n' "$venv_label" "$*"; }

quiet_pip() {
  grep -vE "is ignored: it is neither|dependency resolver does not${venv_quiet:+|$venv_quiet}" \
    || true
}

pipv() {  # pipv ARGS...: pip install into the venv being built, its known noise filtered
  "$venv_dir/bin/python" -m pip install --disable-pip-version-check -q "$@" 2>&1 | quiet_pip
}

venv_key() {  # the stamp this venv must carry: the recipe (script + this file) and requirements
  cat "$0" "${BASH_SOURCE[0]}" "$venv_req" | sha256sum | cut -c1-16
}

build_venv() {
  local key t0=$SECONDS
  key=$(venv_key)
  if [[ -f "$venv_dir/.fdr-stamp" && "$(cat "$venv_dir/.fdr-stamp")" == "$key" ]]; then
    return 0
  fi
  say "building $venv_dir ($venv_what)"
  rm -rf "$venv_dir"
  "${PYTHON:-python3}" -m venv "$venv_dir"
  venv_install
  venv_check
  echo "$key" >"$venv_dir/.fdr-stamp"
  say "venv ready in $((SECONDS - t0)) s"
}
