"""Shared test fixtures: real data from ../shared, and an isolated ROS 2 domain per test run."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from faster_deployment_ros.ros.middleware_env import apply_camera_env, private_domain
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('FDR_SHARED', ROOT.parent / 'shared'))
CACHE = ROOT / '.cache'

# Concurrent test runs on one machine must not hear each other's topics; every process of the
# tests' graphs gets the transports the README prescribes (ros/middleware_env.py).
private_domain(os.environ, seed=os.getpid())
apply_camera_env(os.environ)


os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')


def shared_file(rel: str) -> Path:
    """Return a file of the shared test data.

    Skipped where it is absent, except in CI (CI=true), where the data is laid beside the clone and
    a missing file is a failure.
    """
    path = SHARED / rel
    if not path.exists():
        reason = f'{path} not found (the shared test data lives in ../shared)'
        if os.environ.get('CI', '').lower() in ('true', '1', 'yes'):
            pytest.fail(f'{reason}; CI must have it', pytrace=False)
        pytest.skip(reason)
    return path


@pytest.fixture(scope='session')
def yolox_model() -> Path:
    return shared_file('models/yolox_nano_coco_416.onnx')


@pytest.fixture(scope='session')
def dog_image_path() -> Path:
    return shared_file('data/dog_bicycle_truck.jpg')


@pytest.fixture(scope='session')
def plaza_video() -> Path:
    return shared_file('data/pedestrians_plaza_1280x720_50fps.avi')


@pytest.fixture(scope='session')
def campus_video() -> Path:
    return shared_file('data/campus_walkway_480x360_10fps.avi')


@pytest.fixture(scope='session')
def ros():
    """One rclpy context for the whole test run.

    Initialising and shutting rclpy down per module left later in-process teardown
    (Node.destroy_node) hanging in a full run.
    """
    rclpy = pytest.importorskip('rclpy')
    if not rclpy.ok():
        rclpy.init()
    yield
    rclpy.try_shutdown()


def destroy_node(*nodes) -> None:
    """Destroy test nodes without letting rclpy's teardown hang the run.

    Node.destroy_node waits until no executor holds the node's entities; a generator of a
    spin_once (rclpy's global executor keeps its last one) can hold them indefinitely. The
    garbage is collected first, the global executor forgets its generator, and each destroy
    is bounded: a node still stuck after 10 s is left to the process exit, with a warning.
    """
    import gc
    import threading
    import warnings

    executor = _global_executor()
    if executor is not None:
        for node in nodes:
            with contextlib.suppress(Exception):
                executor.remove_node(node)
        executor._cb_iter = None  # its last wait's generator holds entity handles
    gc.collect()
    for node in nodes:
        t = threading.Thread(target=node.destroy_node, name='test-destroy-node', daemon=True)
        t.start()
        t.join(10.0)
        if t.is_alive():
            warnings.warn(f'destroy_node of {node.get_name()} still blocked after 10 s')


def _global_executor():
    try:
        import rclpy
        return rclpy.get_global_executor() if rclpy.ok() else None
    except Exception:  # noqa: BLE001 - no rclpy, no executor to reset
        return None


@pytest.fixture(scope='session')
def robot_ws(tmp_path_factory):
    """Build the package in a colcon workspace as the README's robot section says.

    Yields robot_harness.Workspace (its `env` is the shell's after `source install/setup.bash`);
    the ros2 daemon the command line starts for this test domain is stopped at the end.
    """
    import robot_harness
    robot_harness.require_ros2_tools()
    ws = robot_harness.build_workspace(tmp_path_factory.mktemp('robot'))
    try:
        yield ws
    finally:
        robot_harness.stop_daemon(ws.env)


@pytest.fixture(scope='session')
def campus_recording(campus_video, tmp_path_factory) -> Path:
    """Return the first 12 campus frames (people, cars) as a rosbag2 recording on /image."""
    from faster_deployment_ros.tools.video_to_bag import video_to_bag
    path = tmp_path_factory.mktemp('campus_bag') / 'campus'
    video_to_bag(campus_video, path, max_frames=12, frame_id='campus')
    return path
