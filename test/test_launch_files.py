"""The launch files as `ros2 launch` reads them, and the pieces they decide with.

Starting them for real (ros2 launch from a colcon workspace, frames replayed, outputs checked)
is test_robot.py's; the launch test of the lifecycle is test_launch_lifecycle.py's. Here:
the arguments each launch file declares (`ros2 launch ... --show-args`), how the `inputs:=`
argument is read, and the middleware environment the launch files give the node.
"""
from __future__ import annotations

from pathlib import Path
import re

import pytest

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[1]
ARGUMENTS = {'params_file', 'model_path', 'image', 'inputs', 'namespace', 'node_name'}


def show_args(robot_ws, launch_file: str) -> dict:
    """{argument: default} from `ros2 launch faster_deployment_ros LAUNCH_FILE --show-args`."""
    from support.robot_harness import PACKAGE, ros2
    out = ros2(robot_ws.env, 'launch', PACKAGE, launch_file, '--show-args').stdout
    return dict(re.findall(r"^\s+'(\w+)':\n(?:.*\n)*?\s+\(default: '(.*)'\)", out, re.M))


@pytest.mark.ros
@pytest.mark.parametrize('launch_file,node,params', [
    ('detector.launch.py', 'detector', 'yolox_nano_onnxruntime.yaml'),
    ('depth.launch.py', 'depth', 'depth_anything_v2_onnxruntime.yaml'),
    ('segmentation.launch.py', 'segmentation', 'lraspp_segmentation_onnxruntime.yaml'),
])
def test_launch_arguments_as_ros2_launch_shows_them(robot_ws, launch_file, node, params):
    args = show_args(robot_ws, launch_file)
    assert set(args) == ARGUMENTS, args
    assert Path(args['params_file']) == robot_ws.share / 'config' / params
    assert args['node_name'] == node and args['image'] == 'image'
    assert args['model_path'] == args['inputs'] == args['namespace'] == ''


def test_inputs_argument_forms():
    pytest.importorskip('launch_ros', reason='ROS 2 launch not installed (scripts/setup_env.sh)')
    from faster_deployment_ros.ros.launch_common import parse_inputs
    assert parse_inputs('[/front/image_raw, /rear/image_raw]') == ['/front/image_raw',
                                                                   '/rear/image_raw']
    assert parse_inputs('/a/image,/b/image') == ['/a/image', '/b/image']
    assert parse_inputs("['/a/image']") == ['/a/image']
    assert parse_inputs('') == []
    with pytest.raises(ValueError, match='list of topics'):
        parse_inputs('{a: 1}')


def test_environment_is_the_shipped_profile_unless_the_user_chose_a_transport():
    from faster_deployment_ros.ros.middleware_env import camera_env
    profile = ROOT / 'config' / 'fastdds_large_data.xml'
    for distro, var in (('kilted', 'FASTDDS_DEFAULT_PROFILES_FILE'),
                        ('jazzy', 'FASTRTPS_DEFAULT_PROFILES_FILE'),
                        ('humble', 'FASTRTPS_DEFAULT_PROFILES_FILE')):
        env = camera_env({'ROS_DISTRO': distro}, str(ROOT))
        # only the variable this distro's Fast DDS reads (Kilted's rmw warns about the other)
        assert [k for k in env if 'FASTDDS' in k or 'FASTRTPS' in k] == [var]
        assert Path(env[var]) == profile and env['MALLOC_MMAP_THRESHOLD_'] == '33554432'
    # the user's choice stays, and no profile is added beside it (the two would not match)
    for chosen in ({'FASTDDS_BUILTIN_TRANSPORTS': 'LARGE_DATA'},
                   {'FASTRTPS_DEFAULT_PROFILES_FILE': '/robot.xml', 'ROS_DISTRO': 'kilted'}):
        assert not any(k.endswith('PROFILES_FILE') for k in camera_env(chosen, str(ROOT)))
