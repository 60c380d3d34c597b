"""What the README promises about the middleware.

Best-effort 1280x720 bgr8 frames cross processes with the shipped settings (the XML profile that
ros/middleware_env.py gives every process, on every distro).
"""
from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys
import textwrap

from faster_deployment_ros.ros.middleware_env import (apply_camera_env, camera_env, private_domain,
                                                      profile_var, TRANSPORT_VARS)
import pytest

ROOT = Path(__file__).resolve().parents[1]

SUB = textwrap.dedent("""
    import time, rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    rclpy.init(); n = rclpy.create_node('mw_sub'); got = []
    n.create_subscription(Image, 'mw_image', lambda m: got.append(m.header.stamp.sec),
                          QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
    end = time.monotonic() + 20
    while time.monotonic() < end and len(got) < 10:
        rclpy.spin_once(n, timeout_sec=0.05)
    print('GOT', len(got), flush=True)
""")

PUB = textwrap.dedent("""
    import time, numpy as np, rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from faster_deployment_ros.core.image_codec import fill_image_msg
    rclpy.init(); n = rclpy.create_node('mw_pub')
    p = n.create_publisher(Image, 'mw_image',
                           QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
    end = time.monotonic() + 15
    while p.get_subscription_count() == 0 and time.monotonic() < end:
        rclpy.spin_once(n, timeout_sec=0.1)
    time.sleep(0.5)
    m, frame = Image(), np.random.randint(0, 255, (720, 1280, 3), np.uint8)
    for i in range(10):
        fill_image_msg(m, frame, 'bgr8'); m.header.stamp.sec = i; p.publish(m); time.sleep(0.1)
""")


def run_pair(env_changes: dict) -> int:
    env = {k: v for k, v in os.environ.items() if k not in TRANSPORT_VARS}
    env.update(env_changes)
    sub = subprocess.Popen([sys.executable, '-c', SUB], env=env, stdout=subprocess.PIPE, text=True)
    pub = subprocess.run([sys.executable, '-c', PUB], env=env, timeout=60)
    out, _ = sub.communicate(timeout=60)
    assert pub.returncode == 0
    return int(out.split('GOT')[1])


@pytest.mark.ros
def test_best_effort_720p_crosses_processes_with_the_shipped_profile():
    env = camera_env({})
    assert Path(env[profile_var()]) == ROOT / 'config' / 'fastdds_large_data.xml'
    assert run_pair(env) >= 9


def test_camera_env_is_applied_once_and_keeps_the_users_choice():
    environ = {}
    env = apply_camera_env(environ)
    assert environ == env and profile_var() in env
    robot = {'FASTDDS_BUILTIN_TRANSPORTS': 'LARGE_DATA', 'MALLOC_MMAP_THRESHOLD_': '1'}
    apply_camera_env(robot)  # another transport on the robot: ours would not even match it
    assert robot == {'FASTDDS_BUILTIN_TRANSPORTS': 'LARGE_DATA', 'MALLOC_MMAP_THRESHOLD_': '1',
                     'MALLOC_TRIM_THRESHOLD_': '268435456'}


def test_private_domain_stays_in_the_ids_ros_documents_as_safe():
    assert {private_domain({}, seed=s) for s in range(1000)} == {str(i) for i in range(1, 101)}
    assert private_domain({'ROS_DOMAIN_ID': '7'}, seed=3) == '7'
