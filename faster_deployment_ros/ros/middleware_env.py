"""The middleware environment for camera-sized frames: one home for what every process needs.

Every process of a graph that carries 720p frames (the nodes, the demo's and benchmarks' players
and recorders, the tests) gets the shipped Fast DDS profile config/fastdds_large_data.xml (a
64 MB shared-memory segment plus UDP) and glibc settings that reuse multi-MB frame buffers.

Not FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA: its TCP transport now and then left two processes
that started together unmatched, and deadlocked one of them on exit (the TCP channel's
disconnect waits for a read that never returns); the profile has no TCP. Figures and the command
that reproduces them: README, "Middleware for camera-sized frames". A process with the profile
and one with LARGE_DATA do not match, so a user who chose a transport (a profile file or
FASTDDS_BUILTIN_TRANSPORTS) keeps it: then nothing is added.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Mapping, MutableMapping, Optional

PROFILE_NAME = 'fastdds_large_data.xml'
#: Fast DDS 3.x (Kilted) reads the first, 2.x (Humble, Jazzy) the second (Kilted's rmw warns
#: that the second is deprecated, so each distro gets only its own)
PROFILE_VARS = ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE')
#: every variable that chooses a Fast DDS transport (a profile file or a builtin set)
TRANSPORT_VARS = (*PROFILE_VARS, 'FASTDDS_BUILTIN_TRANSPORTS')
FAST_DDS_2_DISTROS = ('humble', 'jazzy')
#: reuse multi-MB frame buffers instead of mapping them afresh for every frame (latency stalls)
ALLOCATOR_ENV = {'MALLOC_MMAP_THRESHOLD_': '33554432', 'MALLOC_TRIM_THRESHOLD_': '268435456'}


def profile_path(share: Optional[str] = None) -> Optional[Path]:
    """config/fastdds_large_data.xml under `share`, the source tree or the installed package."""
    candidates = [Path(share) / 'config' / PROFILE_NAME] if share else []
    candidates.append(Path(__file__).resolve().parents[2] / 'config' / PROFILE_NAME)
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory('faster_deployment_ros'))
                          / 'config' / PROFILE_NAME)
    except Exception:  # noqa: B902 - not installed: the source tree's copy
        pass
    return next((c for c in candidates if c.is_file()), None)


def ros_distro(environ: Mapping[str, str] = os.environ) -> str:
    """Return the ROS 2 distribution: the sourced one, else the index wheels'.

    Jazzy's wheels are named ros-jazzy-*; Kilted's are the unprefixed ones.
    """
    if environ.get('ROS_DISTRO'):
        return environ['ROS_DISTRO']
    from importlib.metadata import PackageNotFoundError, version
    try:
        version('ros-jazzy-rclpy')
        return 'jazzy'
    except PackageNotFoundError:
        return 'kilted'


def profile_var(environ: Mapping[str, str] = os.environ) -> str:
    """Return the variable this distro's Fast DDS reads its profile file from."""
    return PROFILE_VARS[1] if ros_distro(environ) in FAST_DDS_2_DISTROS else PROFILE_VARS[0]


def user_chose_transport(environ: Mapping[str, str]) -> bool:
    """Return True when `environ` already names a Fast DDS transport (profile or builtin set)."""
    return any(environ.get(k) for k in TRANSPORT_VARS)


def camera_env(environ: Mapping[str, str], share: Optional[str] = None) -> Dict[str, str]:
    """Return the variables a camera-frame process needs; values already in `environ` win."""
    wanted = dict(ALLOCATOR_ENV)
    profile = profile_path(share)
    if profile is not None and not user_chose_transport(environ):
        wanted[profile_var(environ)] = str(profile)
    return {k: environ.get(k) or v for k, v in wanted.items()}


def apply_camera_env(environ: MutableMapping[str, str] = os.environ) -> Dict[str, str]:
    """Set camera_env in `environ` (before the process's first ROS context).

    Returns the transport and allocator variables now in effect, for reports.
    """
    environ.update(camera_env(environ))
    return {k: environ[k] for k in (*TRANSPORT_VARS, *ALLOCATOR_ENV) if environ.get(k)}


def private_domain(environ: MutableMapping[str, str] = os.environ,
                   seed: Optional[int] = None) -> str:
    """Give a benchmark or test graph its own ROS_DOMAIN_ID unless one is set; return it.

    1-100: ROS 2 documents 0-101 as safe on Linux, where higher ids put DDS ports in the
    ephemeral port range. `seed` (e.g. the pid) makes it reproducible, else it is random.
    """
    if not environ.get('ROS_DOMAIN_ID'):
        import random
        environ['ROS_DOMAIN_ID'] = str(1 + (seed if seed is not None
                                            else random.randrange(1 << 30)) % 100)
    return environ['ROS_DOMAIN_ID']
