"""The README's "On a robot" section, run: colcon build, `ros2 launch`, `ros2 run`.

The package is built in a colcon workspace exactly as the README says (robot_ws in conftest.py),
then each launch file is started with `ros2 launch` through the real launch_ros actions and a
real recording is replayed into it; the outputs must come back with the frames' headers.
"""
from __future__ import annotations

from pathlib import Path
import re

import pytest
from support.robot_harness import (Launched, launched_pid, PACKAGE, param_load,
                                   readme_robot_commands, replay, ros2, ros2_until)

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[1]
DEPTH_MODEL = ROOT / '.cache' / 'models' / 'depth_anything_v2_vits.onnx'

#: README robot-section commands no test runs, and why (the README says the same)
NOT_RUN = {
    r'^cd ~/ros2_ws/src$': 'the workspace is a temporary directory (build_workspace)',
    r'^git clone <this repo> faster_deployment_ros$':
        'the working tree is copied as a clone of it would hold it (clone_working_tree), so '
        'uncommitted work is what gets built',
    r'^sudo apt install ': 'no apt ROS here: the venv holds ROS 2 (index wheels, vision_msgs '
                           'built from interfaces/)',
    r'^pip install onnxruntime$': 'the venv has it (requirements/runtime.txt)',
    r'^cd ~/ros2_ws$': 'colcon runs in the workspace directory',
}
#: README robot-section commands and the tests that run them
RUN = {
    r'^colcon build --packages-select faster_deployment_ros$': 'robot_ws (conftest.py)',
    r'^source install/setup\.bash$': "robot_ws: its env is the shell's after sourcing",
    r'^ros2 launch faster_deployment_ros detector\.launch\.py ': 'test_detector_launch_...',
    r'^ros2 lifecycle set /detector (configure|activate)': 'test_ros2_cli.py::test_lifecycle_...',
    r'^ros2 run faster_deployment_ros detector_node --ros-args --params-file X$':
        'test_ros2_run_without_the_launch_file',
    r'^ros2 launch faster_deployment_ros detector\.launch\.py --show-args$':
        'test_launch_files.py::test_launch_arguments_as_ros2_launch_shows_them',
}


def test_every_readme_robot_command_is_run_or_explained():
    commands = readme_robot_commands()
    assert any(c.startswith('ros2 launch') for c in commands), commands
    unaccounted = [c for c in commands
                   if not any(re.search(p, c) for p in (*RUN, *NOT_RUN))]
    assert not unaccounted, f'README robot commands no test runs or explains: {unaccounted}'
    readme = (ROOT / 'README.md').read_text()
    assert 'What the robot tests leave out' in readme, 'README must say what stays untested'


def readme_launch_line(model: Path) -> str:
    line, = [c for c in readme_robot_commands()
             if c.startswith('ros2 launch faster_deployment_ros detector.launch.py')
             and 'model_path:=' in c]
    assert '/path/to/yolox_nano.onnx' in line
    return line.replace('/path/to/yolox_nano.onnx', str(model))


def test_colcon_build_installs_what_ros2_launch_needs(robot_ws):
    prefix = ros2(robot_ws.env, 'pkg', 'prefix', PACKAGE).stdout.strip()
    assert Path(prefix) == robot_ws.install / PACKAGE
    executables = ros2(robot_ws.env, 'pkg', 'executables', PACKAGE).stdout.split('\n')
    for exe in ('detector_node', 'depth_node'):
        assert f'{PACKAGE} {exe}' in executables
    for rel in ('launch/detector.launch.py', 'launch/depth.launch.py',
                'config/yolox_nano_onnxruntime.yaml', 'config/fastdds_large_data.xml'):
        assert (robot_ws.share / rel).is_file(), rel


def assert_from_workspace(robot_ws, pid: int, executable: str) -> None:
    """Assert the process runs the workspace's installed console script, not the venv's."""
    cmdline = Path(f'/proc/{pid}/cmdline').read_bytes().split(b'\0')
    script = str(robot_ws.install / PACKAGE / 'lib' / PACKAGE / executable).encode()
    assert script in cmdline, cmdline


def test_detector_launch_as_documented(robot_ws, yolox_model, campus_recording, tmp_path):
    """README: ros2 launch ... detector.launch.py params_file:=$(ros2 pkg prefix ...)/... ."""
    line = readme_launch_line(yolox_model)
    with Launched(['bash', '-c', 'exec ' + line], robot_ws.env) as launch:
        pid = launched_pid(launch, 'detector_node')
        assert_from_workspace(robot_ws, pid, 'detector_node')
        launch.wait_for(r'\[detector\]: active: /camera/image_raw', 120)
        report = replay(campus_recording, tmp_path, '/camera/image_raw', '/detections')
        assert launch.proc.poll() is None, launch.output()
    assert report['frames_out'] >= report['frames_in'] - 2 > 0, report
    assert report['header_mismatches'] == 0 and report['order_violations'] == 0, report
    assert 'person' in str(report), report


def test_multicamera_inputs_argument(robot_ws, yolox_model, campus_recording, tmp_path):
    """detector.launch.py model_path:=... inputs:="[/front/image_raw, /rear/image_raw]"."""
    with Launched(['ros2', 'launch', PACKAGE, 'detector.launch.py', f'model_path:={yolox_model}',
                   'inputs:=[/front/image_raw, /rear/image_raw]'], robot_ws.env) as launch:
        launch.wait_for(r'\[detector\]: active: .*front', 120)
        for camera in ('front', 'rear'):
            report = replay(campus_recording, tmp_path / camera, f'/{camera}/image_raw',
                            f'/{camera}/detections')
            assert report['frames_out'] >= report['frames_in'] - 2 > 0, (camera, report)
            assert report['header_mismatches'] == 0, (camera, report)
        assert launch.proc.poll() is None, launch.output()


def test_depth_launch(robot_ws, campus_recording, tmp_path):
    """depth.launch.py model_path:=... image:=/cam2/image_raw namespace:=robot1."""
    if not DEPTH_MODEL.exists():
        pytest.skip(f'{DEPTH_MODEL} not found (scripts/test_assets.d/20_test_models.sh builds it)')
    with Launched(['ros2', 'launch', PACKAGE, 'depth.launch.py', f'model_path:={DEPTH_MODEL}',
                   'image:=/cam2/image_raw', 'namespace:=robot1'], robot_ws.env) as launch:
        assert_from_workspace(robot_ws, launched_pid(launch, 'depth_node'), 'depth_node')
        launch.wait_for(r'\[robot1\.depth\]: active: /cam2/image_raw', 180)
        report = replay(campus_recording, tmp_path, '/cam2/image_raw', '/robot1/depth',
                        'sensor_msgs/msg/Image', max_frames=3, idle_timeout=60.0)
        # its shipped YAML through the command line while active: every parameter answered
        # (those that need a reconfigure refused with the reason), the node keeps serving
        param_load(robot_ws.env, '/robot1/depth',
                   robot_ws.share / 'config' / 'depth_anything_v2_onnxruntime.yaml')
        assert ros2(robot_ws.env, 'lifecycle', 'get', '/robot1/depth').stdout.strip() == \
            'active [3]'
        assert launch.proc.poll() is None, launch.output()
    assert report['frames_out'] >= 2 and report['header_mismatches'] == 0, report


def test_ros2_run_without_the_launch_file(robot_ws, yolox_model):
    """README: ros2 run faster_deployment_ros detector_node --ros-args --params-file X."""
    params = robot_ws.share / 'config' / 'yolox_nano_onnxruntime.yaml'
    with Launched(['ros2', 'run', PACKAGE, 'detector_node', '--ros-args', '--params-file',
                   str(params), '-p', f'model_path:={yolox_model}', '-r', '__node:=run_detector'],
                  robot_ws.env) as run:
        run.wait_for(r'\[run_detector\]: active: /image', 120)
        ros2_until(robot_ws.env, ['lifecycle', 'get', '/run_detector'],
                   lambda out: 'active [3]' in out)
