# shellcheck shell=bash
# One shape for the test-asset venvs that a requirements file defines (40_modelopt.sh,
# 50_triton.sh). Sourced, not run (setup_test_assets.sh runs only test_assets.d/*.sh, not lib/).
# The sourcing script defines venv_install (the pip steps, through `pipv`) and venv_check
# (fails when the venv is not usable), then calls
#   build_venv LABEL VENV REQUIREMENTS WHAT [NOISE]
# (LABEL the log prefix, WHAT what the venv holds for the "building" line, NOISE an extra grep -E
# pattern of pip lines to hide). build_venv does nothing while VENV's stamp matches the key (the
# calling script, this file and the requirements file); otherwise it removes VENV, creates it
# with $PYTHON (default python3), runs venv_install and venv_check, and writes the stamp only
# when both succeeded. Inside those two, $venv_dir and $venv_req are VENV and REQUIREMENTS.

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
  venv_label=$1 venv_dir=$2 venv_req=$3 venv_quiet=${5:-}
  local what=$4 key t0=$SECONDS
  key=$(venv_key)
  if [[ -f "$venv_dir/.fdr-stamp" && "$(cat "$venv_dir/.fdr-stamp")" == "$key" ]]; then
    return 0
  fi
  say "building $venv_dir ($what)"
  rm -rf "$venv_dir"
  "${PYTHON:-python3}" -m venv "$venv_dir"
  venv_install
  venv_check
  echo "$key" >"$venv_dir/.fdr-stamp"
  say "venv ready in $((SECONDS - t0)) s"
}
