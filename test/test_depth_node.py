"""The depth node in a real ROS 2 graph.

Real rclpy, Fast DDS, ONNX Runtime, real frames, and the Depth Anything V2 / MiDaS-style test
models (scripts/test_assets.d/20_test_models.sh).
"""
from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys
import time

import numpy as np
import pytest
from support.ros_nodes import destroy_node

rclpy = pytest.importorskip('rclpy')
from faster_deployment_ros.backends import create_backend  # noqa: E402, I100
from faster_deployment_ros.core.image_codec import fill_image_msg, msg_to_numpy  # noqa: E402
from faster_deployment_ros.models import create_adapter  # noqa: E402
from faster_deployment_ros.ros.depth_node import DepthNode  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from support.golden import model_path, read_frame  # noqa: E402
from support.node_harness import (header_key, image_msg, NodeHarness, RELIABLE,  # noqa: E402
                                  TEST_PARAMETERS)

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[1]


class Harness(NodeHarness):
    """A depth node and a peer (publisher + recorder) spinning in one executor."""

    def __init__(self, model: Path, **params) -> None:
        super().__init__(DepthNode, {'model_path': str(model), 'model_family': 'auto',
                                     **TEST_PARAMETERS, **params}, 'depth_test_peer',
                         inputs={'image': (Image, 'image')},
                         outputs={'depth': (Image, 'depth'), 'colored': (Image, 'depth_colored')})
        self.image_pub = self.pubs['image']
        self.depth, self.colored = self.got['depth'], self.got['colored']

    def wait_for(self, into: list, n: int, timeout: float = 60.0) -> list:
        return self.wait_count(into, n, timeout)

    def publish(self, frame: np.ndarray, stamp_ns: int, frame_id: str = 'camera') -> Image:
        msg = image_msg(frame, stamp_ns, frame_id)
        self.image_pub.publish(msg)
        return msg


@pytest.fixture
def harness(ros):
    made = []

    def make(model, **params):
        h = Harness(model, **params)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


@pytest.fixture(scope='module')
def frames(plaza_video, campus_video):
    return [read_frame(plaza_video, 10), read_frame(campus_video, 5), read_frame(plaza_video, 40),
            read_frame(campus_video, 25)]


def expected_depth(model: Path, frame: np.ndarray, family: str, **params) -> np.ndarray:
    with create_backend('onnxruntime', str(model)) as b:
        adapter = create_adapter(family, b.inputs, b.outputs, b.metadata, **params)
        inputs, meta = adapter.preprocess(frame)
        return adapter.postprocess(b.infer(inputs), meta).depth


def test_depth_32fc1_with_source_header_and_size(harness, frames):
    model = model_path('midas_small_style')
    h = harness(model)
    h.start()
    assert type(h.node.adapter).__name__ == 'DepthAdapter' and h.node.adapter.family == 'midas'
    sent = [h.publish(f, 1_000_000_000 + 33_000_000 * i, f'cam{i % 2}')
            for i, f in enumerate(frames)]
    got = h.wait_for(h.depth, len(frames))
    assert len(got) == len(frames)
    assert [header_key(m.header) for m in got] == [header_key(m.header) for m in sent]
    for msg, frame in zip(got, frames):
        assert msg.encoding == '32FC1' and (msg.height, msg.width) == frame.shape[:2]
        assert msg.step == 4 * msg.width
        depth = msg_to_numpy(msg)
        assert depth.dtype == np.float32 and depth.shape == frame.shape[:2]
    # The values are the adapter's, frame by frame (not a stale or mixed-up buffer).
    for msg, frame in [(got[0], frames[0]), (got[-1], frames[-1])]:
        np.testing.assert_allclose(msg_to_numpy(msg), expected_depth(model, frame, 'midas'),
                                   rtol=1e-4, atol=1e-4)
    assert not h.colored


def test_depth_anything_v2_metric_and_colored(harness, frames):
    model = model_path('depth_anything_v2_vits')
    h = harness(model, model_family='depth_anything_v2', depth_output='metric_from_inverse',
                depth_scale=0.5, depth_shift=0.2, publish_colored=True, colormap='turbo')
    h.start()
    frame = frames[1]
    sent = h.publish(frame, 5_000_000_123, 'left')
    got = h.wait_for(h.depth, 1)[0]
    colored = h.wait_for(h.colored, 1)[0]
    assert header_key(got.header) == header_key(sent.header) == header_key(colored.header)
    assert (got.height, got.width) == frame.shape[:2] == (colored.height, colored.width)
    assert colored.encoding == 'bgr8' and got.encoding == '32FC1'
    inv = expected_depth(model, frame, 'depth_anything_v2')
    np.testing.assert_allclose(msg_to_numpy(got), 1.0 / (0.5 * inv + 0.2), rtol=1e-4)
    img = msg_to_numpy(colored)
    assert img.shape == frame.shape and img.std() > 10  # a real colour map, not a flat image


def test_detection_model_is_refused(harness, yolox_model):
    h = harness(yolox_model)
    assert h.node.trigger_configure() == TransitionCallbackReturn.FAILURE
    h2 = harness(yolox_model, model_family='yolox')
    assert h2.node.trigger_configure() == TransitionCallbackReturn.FAILURE


def test_bad_depth_parameters_fail_configure(harness):
    model = model_path('midas_small_style')
    assert harness(model, depth_output='disparity').node.trigger_configure() == \
        TransitionCallbackReturn.FAILURE
    assert harness(model, colormap='rainbowish').node.trigger_configure() == \
        TransitionCallbackReturn.FAILURE


def test_console_script_across_processes(ros, frames):
    model = model_path('midas_small_style')
    exe = Path(sys.executable).with_name('depth_node')
    if not exe.exists():
        pytest.skip(f'{exe} not installed (pip install -e .)')
    env = dict(os.environ)
    proc = subprocess.Popen(
        [str(exe), '--ros-args', '-p', f'model_path:={model}', '-p', 'autostart:=true',
         '-p', 'full_policy:=block', '-p', 'queue_size:=4', '-r', '__node:=depth_proc'],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peer = rclpy.create_node('depth_proc_peer')
    got = []
    peer.create_subscription(Image, 'depth', got.append, RELIABLE)
    # best effort: the node's default input QoS (sensor data), as a camera driver publishes
    pub = peer.create_publisher(Image, 'image',
                                QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
    try:
        deadline = time.monotonic() + 60
        while pub.get_subscription_count() == 0 or peer.count_publishers('depth') == 0:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, 'depth_node never came up'
            rclpy.spin_once(peer, timeout_sec=0.1)
        # Discovery is asynchronous on both sides: resend (new stamps) until results come back.
        msg = fill_image_msg(Image(), frames[0], 'bgr8')
        msg.header.frame_id = 'proc'
        deadline = time.monotonic() + 45
        sent = 0
        while not got and time.monotonic() < deadline:
            msg.header.stamp.sec = 42 + sent
            pub.publish(msg)
            sent += 1
            end = time.monotonic() + 1.0
            while not got and time.monotonic() < end:
                rclpy.spin_once(peer, timeout_sec=0.05)
        assert got, f'no depth image from the depth_node process after {sent} frames'
        assert got[0].header.frame_id == 'proc' and 42 <= got[0].header.stamp.sec < 42 + sent
        assert (got[0].height, got[0].width, got[0].encoding) == (720, 1280, '32FC1')
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        destroy_node(peer)
