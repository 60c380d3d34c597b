"""What the README promises about the middleware.

Best-effort 1280x720 bgr8 frames cross processes with the shipped settings (LARGE_DATA builtin
transports, or the XML profile).
"""
from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys
import textwrap

from conftest import ros_distro
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
    env = {k: v for k, v in os.environ.items()
           if k not in ('FASTDDS_BUILTIN_TRANSPORTS', 'FASTDDS_DEFAULT_PROFILES_FILE',
                        'FASTRTPS_DEFAULT_PROFILES_FILE')}
    env.update(env_changes)
    sub = subprocess.Popen([sys.executable, '-c', SUB], env=env, stdout=subprocess.PIPE, text=True)
    pub = subprocess.run([sys.executable, '-c', PUB], env=env, timeout=60)
    out, _ = sub.communicate(timeout=60)
    assert pub.returncode == 0
    return int(out.split('GOT')[1])


# Fast DDS 2.x (Humble, Jazzy) reads the profile from FASTRTPS_DEFAULT_PROFILES_FILE, 3.x
# (Kilted) from FASTDDS_DEFAULT_PROFILES_FILE; the README says which setting each distro needs.
PROFILE_VAR = ('FASTRTPS_DEFAULT_PROFILES_FILE' if ros_distro() in ('humble', 'jazzy')
               else 'FASTDDS_DEFAULT_PROFILES_FILE')


@pytest.mark.parametrize('settings', [
    {'FASTDDS_BUILTIN_TRANSPORTS': 'LARGE_DATA'},
    {PROFILE_VAR: str(ROOT / 'config/fastdds_large_data.xml')},
], ids=['LARGE_DATA', 'xml_profile'])
def test_best_effort_720p_crosses_processes(settings):
    if 'FASTDDS_BUILTIN_TRANSPORTS' in settings and ros_distro() in ('humble', 'jazzy'):
        pytest.skip(f'{ros_distro()}: the README prescribes the XML profile, not LARGE_DATA '
                    '(on Jazzy LARGE_DATA alone lost most frames here)')
    assert run_pair(settings) >= 9
