#!/usr/bin/env bash
# Creates .venv with everything the node, the demo and the tests need.
#
# Without a sourced ROS 2 it installs ROS 2 from the package index wheels (Kilted by default;
# FDR_ROS_WHEELS=jazzy for the LTS, into .venv-jazzy unless FDR_VENV says otherwise) and builds
# the interfaces no index has (vision_msgs, bond, composition_interfaces) from interfaces/, and
# installs ROS 2's launch system and command line (launch, launch_ros, ros2cli, rosidl_runtime_py)
# from the source archives in ../shared/vendor (FDR_VENDOR overrides; the rolling branches for
# Kilted, the jazzy ones for Jazzy). With a sourced ROS 2 the venv sees the system packages and
# only what is missing gets installed or built.
# Idempotent: a stamp keyed on the inputs makes later runs return at once.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
wheels="${FDR_ROS_WHEELS:-kilted}"
case "$wheels" in
  kilted) wheel_reqs="$root/requirements/ros-wheels.txt"; default_venv="$root/.venv"
          vendor_branch=rolling ;;
  jazzy) wheel_reqs="$root/requirements/ros-wheels-jazzy.txt"; default_venv="$root/.venv-jazzy"
         vendor_branch=jazzy ;;
  *) printf '[setup] ERROR: FDR_ROS_WHEELS=%s: choose kilted or jazzy\n' "$wheels" >&2; exit 1 ;;
esac
venv="${FDR_VENV:-$default_venv}"
python="${PYTHON:-python3}"
stamp="$venv/.fdr-setup-stamp"

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

command -v "$python" >/dev/null || die "no '$python' on PATH; install Python 3.10 or newer"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "Python 3.10 or newer is needed ($("$python" --version 2>&1))"

vendor="${FDR_VENDOR:-$root/../shared/vendor}"
ci=0
case "${CI:-}" in true|TRUE|True|1|yes) ci=1 ;; esac
vendor_key=none
if [[ -d "$vendor" ]]; then
  vendor_key=$({ cat "$vendor"/*-"$vendor_branch".tar.gz 2>/dev/null || true; } | sha256sum | cut -c1-16)
fi
key=$(cat "$0" "$root"/requirements/*.txt "$root"/interfaces/*/msg/*.msg \
        "$root"/interfaces/*/srv/*.srv "$root"/interfaces/*/CMakeLists.txt "$root/setup.py" \
        | sha256sum | cut -c1-16)
key="$key-${ROS_DISTRO:-wheels-$wheels}-vendor-$vendor_key"
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
  say "ROS 2 $wheels from the package index ($(basename "$wheel_reqs"))"
  pip -r "$wheel_reqs"
fi
pip -r "$root/requirements/runtime.txt" -r "$root/requirements/triton.txt" \
  -r "$root/requirements/dev.txt"

# The index's ament/rosidl wheels hard-code the include paths of the machine that built them.
patched=0
patch_wheel_paths() {
  [[ $patched == 1 ]] && return 0
  local inc npinc
  inc=$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  npinc=$("$vpy" -c 'import numpy; print(numpy.get_include())')
  grep -rlE '/opt/python/cp3[0-9]+-cp3[0-9]+' "$venv/share" "$venv"/lib/python3*/site-packages \
      --include='*.cmake' 2>/dev/null \
    | xargs -r sed -i -E \
        -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#$inc#g" \
        -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#$npinc#g" \
    || true  # nothing left to patch (an earlier run did it)
  patched=1
}

# build_interfaces NAME [msg|srv]: interfaces/NAME (an interface-only ament package) into the venv.
build_interfaces() {
  local name="$1" kind="${2:-msg}"
  command -v cmake >/dev/null || die "cmake is needed to build $name (apt-get install cmake g++)"
  command -v c++ >/dev/null || die "a C/C++ compiler is needed to build $name (apt-get install g++)"
  patch_wheel_paths
  local bdir="$root/build/$name-$wheels" log="$root/build/$name-$wheels.log"
  rm -rf "$bdir"
  mkdir -p "$root/build"
  if ! { cmake -S "$root/interfaces/$name" -B "$bdir" -DBUILD_TESTING=OFF \
           -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$venv" \
           -DCMAKE_PREFIX_PATH="$venv" -DPython3_EXECUTABLE="$vpy" \
         && cmake --build "$bdir" -j"$(nproc)" && cmake --install "$bdir"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "building $name failed; full log: $log"
  fi
  "$vpy" -c "import $name.$kind" || die "$name built but does not import"
}

if ! "$vpy" -c 'import vision_msgs.msg' 2>/dev/null; then
  say "vision_msgs not importable: building it from interfaces/vision_msgs"
  if [[ $system_ros == 1 ]]; then
    die "vision_msgs is missing from ROS 2 $ROS_DISTRO: apt-get install ros-$ROS_DISTRO-vision-msgs"
  fi
  build_interfaces vision_msgs
fi
# bond: the heartbeat nav2's lifecycle_manager expects (ros/bond.py); Nav2 installs it.
if ! "$vpy" -c 'import bond.msg' 2>/dev/null; then
  if [[ $system_ros == 1 ]]; then
    say "bond not importable: no bond heartbeat (apt-get install ros-$ROS_DISTRO-bond for Nav2)"
  else
    say "bond not importable: building it from interfaces/bond"
    build_interfaces bond
  fi
fi

# ROS 2's launch system and command line: `ros2 launch`, `ros2 lifecycle/param/topic/node/pkg`,
# launch_testing and launch_pytest. No index serves them; ../shared/vendor has the upstream
# source archives (shared/README.md). Installed, never copied into the project.
if [[ $system_ros == 1 ]]; then
  "$vpy" -c 'import launch_ros, ros2cli' 2>/dev/null \
    || say "launch_ros / ros2cli not importable: apt-get install ros-$ROS_DISTRO-ros2launch ros-$ROS_DISTRO-ros2cli-common-extensions"
  "$vpy" -c 'import message_filters' 2>/dev/null \
    || say "message_filters not importable: apt-get install ros-$ROS_DISTRO-message-filters"
elif [[ ! -d "$vendor" ]]; then
  [[ $ci == 1 ]] && die "$vendor not found: CI must have ../shared/vendor (ros2 launch and the ros2 command line come from it)"
  say "$vendor not found: ros2 launch and the ros2 command line not installed (their tests skip)"
else
  say "ROS 2 launch and command line from $vendor ($vendor_branch branches)"
  pip -r "$root/requirements/ros-tools.txt"
  src=$(mktemp -d)
  trap 'rm -rf "$src"' EXIT
  for repo in launch launch_ros ros2cli rosidl_runtime_py message_filters; do
    archive="$vendor/$repo-$vendor_branch.tar.gz"
    [[ -f "$archive" ]] || die "$archive not found (shared/README.md, vendor/, lists what it holds)"
    tar -xzf "$archive" -C "$src"
  done
  b="$src/launch-$vendor_branch" r="$src/launch_ros-$vendor_branch" c="$src/ros2cli-$vendor_branch"
  pip --no-deps --no-build-isolation \
    "$b/launch" "$b/launch_xml" "$b/launch_yaml" "$b/launch_testing" "$b/launch_pytest" \
    "$r/launch_ros" "$r/ros2launch" "$r/launch_testing_ros" \
    "$c/ros2cli" "$c/ros2node" "$c/ros2topic" "$c/ros2param" "$c/ros2lifecycle" \
    "$c/ros2service" "$c/ros2pkg" "$c/ros2run" "$c/ros2interface" "$c/ros2action" \
    "$c/ros2component" "$src/rosidl_runtime_py-$vendor_branch"
  # message_filters (TimeSynchronizer: the sync Nav2's semantic_segmentation_layer uses;
  # test_nav2_segmentation_sync.py). Its setup.py is catkin's (catkin_pkg + distutils), so its
  # one pure-Python package is installed into site-packages as it is.
  site=$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  rm -rf "$site/message_filters"
  cp -r "$src/message_filters-$vendor_branch/src/message_filters" "$site/message_filters"
  # launch_ros imports composition_interfaces (its container actions): built like vision_msgs.
  if ! "$vpy" -c 'import composition_interfaces.srv' 2>/dev/null; then
    say "composition_interfaces not importable: building it from interfaces/composition_interfaces"
    build_interfaces composition_interfaces srv
  fi
  "$vpy" -c 'import launch_ros.actions, ros2cli, launch_testing, launch_pytest, message_filters' \
    || die "launch_ros / ros2cli / message_filters installed but do not import"
fi

say "installing faster_deployment_ros (editable)"
# PEP 660, so the console scripts land in the venv's bin/ whatever setuptools and wheel the venv
# holds (pip's legacy `setup.py develop` would honour setup.cfg's [develop] script_dir, the
# lib/<package> layout ros2 run needs in a colcon install, and the tests would not find them).
pip --no-deps --use-pep517 -e "$root"
rm -rf "$venv/lib/faster_deployment_ros"  # scripts of an earlier legacy install
echo "$key" >"$stamp"
say "ready: $venv"
