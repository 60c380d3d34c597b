"""The launch files, exercised without ROS's launch system.

`launch` and `launch_ros` are on no package index this project can install from (checked: no
ros-launch, ros-launch-ros or ros-jazzy-launch-ros wheels; the `launch` 0.1.x on PyPI is the 2017
pre-release with another API), so `ros2 launch` itself is not run here. What each launch file
decides lives in ros/launch_spec.py as plain data; these tests take each launch file's own
arguments (read from the file), resolve them with the README's documented launch line, and start
the node exactly as launch_ros would (its --ros-args command line and environment), then check
it configured itself, listens on the remapped topic and answers a real frame.
"""
from __future__ import annotations

import ast
import contextlib
import os
from pathlib import Path
import threading
import time

import cv2
from faster_deployment_ros.core.image_codec import fill_image_msg
from faster_deployment_ros.ros.launch_spec import (ARGUMENTS, env_defaults, launch_arguments,
                                                   node_spec, parse_inputs, ros_command)
import pytest
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from support.node_harness import console_script
from support.ros_nodes import destroy_node
from vision_msgs.msg import Detection2DArray

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / '.cache' / 'models'


def launch_for_args(name: str) -> tuple:
    """Return (executable, default node name, default YAML) as the launch file passes them."""
    tree = ast.parse((ROOT / 'launch' / name).read_text())
    call, = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and getattr(n.func, 'id', '') == 'launch_for']
    return tuple(a.value for a in call.args)


def test_launch_arguments_and_spec():
    executable, name, yaml_name = launch_for_args('detector.launch.py')
    args = launch_arguments(name, yaml_name, str(ROOT))
    assert set(args) == {a for a, _, _ in ARGUMENTS}
    assert Path(args['params_file']).is_file() and args['node_name'] == 'detector'
    spec = node_spec(executable, name, {**args, 'model_path': '/m.onnx',
                                        'image': '/camera/image_raw'})
    assert spec['parameters'] == [args['params_file'], {'model_path': '/m.onnx'}]
    assert spec['remappings'] == [('image', '/camera/image_raw'),
                                  ('image/compressed', '/camera/image_raw/compressed')]
    assert parse_inputs('[/front/image_raw, /rear/image_raw]') == ['/front/image_raw',
                                                                   '/rear/image_raw']
    multi = node_spec(executable, name, {**args, 'inputs': '/a/image,/b/image'})
    assert multi['parameters'][1] == {'inputs': ['/a/image', '/b/image']}


def test_environment_is_the_shipped_profile_unless_the_user_chose_a_transport():
    profile = ROOT / 'config' / 'fastdds_large_data.xml'
    for distro, var in (('kilted', 'FASTDDS_DEFAULT_PROFILES_FILE'),
                        ('jazzy', 'FASTRTPS_DEFAULT_PROFILES_FILE'),
                        ('humble', 'FASTRTPS_DEFAULT_PROFILES_FILE')):
        env = env_defaults({'ROS_DISTRO': distro}, str(ROOT))
        # only the variable this distro's Fast DDS reads (Kilted's rmw warns about the other)
        assert [k for k in env if 'FASTDDS' in k or 'FASTRTPS' in k] == [var]
        assert Path(env[var]) == profile and env['MALLOC_MMAP_THRESHOLD_'] == '33554432'
    # the user's choice stays, and no profile is added beside it (the two would not match)
    for chosen in ({'FASTDDS_BUILTIN_TRANSPORTS': 'LARGE_DATA'},
                   {'FASTRTPS_DEFAULT_PROFILES_FILE': '/robot.xml', 'ROS_DISTRO': 'kilted'}):
        assert not any(k.endswith('PROFILES_FILE') for k in env_defaults(chosen, str(ROOT)))


@contextlib.contextmanager
def launched(launch_file: str, **launch_line: str):
    """Return the node of `launch_file` started as launch_ros would start it for `launch_line`."""
    executable, name, yaml_name = launch_for_args(launch_file)
    args = {**launch_arguments(name, yaml_name, str(ROOT)), **launch_line}
    spec = node_spec(executable, name, args)
    env = {**os.environ, **env_defaults(os.environ, str(ROOT))}
    with console_script(executable, command=lambda exe: ros_command(spec, exe), env=env):
        yield spec


def answers_a_frame(frame, image_topic: str, out_topic: str, out_type, node_name: str):
    peer = rclpy.create_node(f'launch_peer_{os.getpid()}_{int(time.monotonic() * 1e3)}')
    got = threading.Event()
    received = []

    def on_out(msg):
        received.append(msg)
        got.set()

    reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    peer.create_subscription(out_type, out_topic, on_out, reliable)
    pub = peer.create_publisher(Image, image_topic, reliable)
    try:
        # autostart (the shipped YAMLs): the node configures and activates itself
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            subs = [s.node_name for s in peer.get_subscriptions_info_by_topic(image_topic)]
            if node_name in subs:
                break
            rclpy.spin_once(peer, timeout_sec=0.1)
        assert node_name in subs, f'{node_name} never subscribed to {image_topic}'
        msg = fill_image_msg(Image(), frame, 'bgr8')
        msg.header.frame_id = 'launch_test'
        deadline = time.monotonic() + 60
        while not got.is_set() and time.monotonic() < deadline:
            pub.publish(msg)  # best-effort input: repeat until one result comes back
            end = time.monotonic() + 1.0
            while not got.is_set() and time.monotonic() < end:
                rclpy.spin_once(peer, timeout_sec=0.1)
        assert got.is_set(), f'no {out_topic} from {node_name}'
        return received[0]
    finally:
        destroy_node(peer)


@pytest.fixture(scope='module')
def small_frame(plaza_video):
    cap = cv2.VideoCapture(str(plaza_video))
    ok, frame = cap.read()
    cap.release()
    assert ok
    return cv2.resize(frame, (640, 360))


def test_detector_launch_as_documented(ros, yolox_model, small_frame):
    """README: detector.launch.py params_file:=<shipped YAML> model_path:=... image:=/camera/..."""
    with launched('detector.launch.py', model_path=str(yolox_model),
                  image='/camera/image_raw'):
        out = answers_a_frame(small_frame, '/camera/image_raw', '/detections', Detection2DArray,
                              'detector')
    assert out.header.frame_id == 'launch_test' and out.detections


@pytest.mark.slow
def test_depth_launch_as_documented(ros, small_frame):
    model = MODELS / 'depth_anything_v2_vits.onnx'
    if not model.exists():
        pytest.skip(f'{model} not found (scripts/test_assets.d/20_test_models.sh builds it)')
    with launched('depth.launch.py', model_path=str(model), image='/cam2/image_raw',
                  namespace='robot1'):
        out = answers_a_frame(small_frame, '/cam2/image_raw', '/robot1/depth', Image, 'depth')
    assert (out.width, out.height, out.encoding) == (640, 360, '32FC1')
