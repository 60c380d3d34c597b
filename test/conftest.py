"""Fixtures and hooks of the test run: real data from ../shared, an isolated ROS 2 domain.

Helpers live in the `support` package (test/support); nothing imports this file as a module.
The markers ros / gpu / slow are registered in setup.cfg; `gpu` tests skip here without a GPU.
"""
from __future__ import annotations

import os
from pathlib import Path

from faster_deployment_ros.ros.middleware_env import apply_camera_env, private_domain
import pytest
from support.shared_data import shared_file


def pytest_configure(config) -> None:
    """Give every process of the tests' graphs a private ROS domain and the README's transports.

    Concurrent test runs on one machine must not hear each other's topics (ros/middleware_env.py).
    """
    private_domain(os.environ, seed=os.getpid())
    apply_camera_env(os.environ)
    os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')


def pytest_collection_modifyitems(config, items) -> None:
    """Skip the tests marked `gpu` where no usable GPU is (cuda-python, driver, device)."""
    gpu_items = [item for item in items if item.get_closest_marker('gpu') is not None]
    if not gpu_items:
        return
    from faster_deployment_ros.gpu import gpu_status
    ok, why = gpu_status()
    if not ok:
        skip = pytest.mark.skip(reason=f'needs a usable GPU and cuda-python: {why}')
        for item in gpu_items:
            item.add_marker(skip)


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


@pytest.fixture(scope='session')
def robot_ws(tmp_path_factory):
    """Build the package in a colcon workspace as the README's robot section says.

    Yields robot_harness.Workspace (its `env` is the shell's after `source install/setup.bash`);
    the ros2 daemon the command line starts for this test domain is stopped at the end.
    """
    from support import robot_harness
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
