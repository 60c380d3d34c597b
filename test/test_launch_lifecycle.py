"""The detector's lifecycle under launch, tested with launch_testing as ros2/demos does.

test/launch_tests/detector_lifecycle_launch.py is a launch_testing test (launch_ros drives
configure, activate, deactivate, cleanup and shutdown; a recording is replayed while active);
it runs here through `launch_test`, the command ament's add_launch_test runs, in a shell with
the colcon workspace sourced. (launch_testing's pytest plugin is switched off in setup.cfg: it
does not load under pytest 9.)
"""
from __future__ import annotations

from pathlib import Path
import subprocess

import pytest

pytestmark = pytest.mark.ros

LAUNCH_TEST = Path(__file__).resolve().parent / 'launch_tests' / 'detector_lifecycle_launch.py'


def test_detector_lifecycle_launch_test(robot_ws, yolox_model, campus_recording, tmp_path):
    cmd = ['launch_test', str(LAUNCH_TEST), f'model_path:={yolox_model}',
           f'bag:={campus_recording}', f'out_dir:={tmp_path / "replay"}']
    try:
        proc = subprocess.run(cmd, env=robot_ws.env, capture_output=True, text=True,
                              timeout=420, start_new_session=True)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f'launch_test still running after 420 s:\n{exc.stdout}'
                             f'{exc.stderr}') from None
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'launch_test failed ({proc.returncode}):\n{out[-6000:]}'
    # both phases ran their test and passed (launch_test prints unittest's summary per phase)
    assert out.count('Ran 1 test') == 2 and out.count('\nOK') >= 2, out[-3000:]
