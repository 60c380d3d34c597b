"""The ros2 command line against the detector as `ros2 launch` starts it from a colcon workspace.

What a robot engineer types: `ros2 node list/info`, `ros2 topic echo/hz` on the outputs,
`ros2 param list/get/set/dump/load` (every shipped YAML), `ros2 lifecycle get/set/list/nodes`
through every transition. Each call is a real `ros2` process; outputs are asserted. The node is
started once for the module (the README's launch line); tests that would end it start their own.
"""
from __future__ import annotations

import contextlib
import re

import pytest
from support.robot_harness import (FrameStream, Launched, PACKAGE, param_dump, param_load,
                                   ros2, ros2_until, same_value, video_frames, yaml_parameters)
import yaml

pytestmark = pytest.mark.ros

NODE = '/detector'
DEFAULT_YAML = 'yolox_nano_onnxruntime.yaml'


@contextlib.contextmanager
def launched_detector(robot_ws, model, namespace=''):
    """`ros2 launch faster_deployment_ros detector.launch.py ... image:=/camera/image_raw`."""
    cmd = ['ros2', 'launch', PACKAGE, 'detector.launch.py', f'model_path:={model}',
           'image:=/camera/image_raw'] + ([f'namespace:={namespace}'] if namespace else [])
    with Launched(cmd, robot_ws.env) as launch:
        logger = f'{namespace}.detector' if namespace else 'detector'
        launch.wait_for(rf'\[{logger}\]: active: /camera/image_raw', 120)
        ros2_until(robot_ws.env, ['lifecycle', 'get', f'{namespace and "/" + namespace}/detector'],
                   lambda out: 'active [3]' in out)
        yield launch


@pytest.fixture(scope='module')
def detector(robot_ws, yolox_model):
    with launched_detector(robot_ws, yolox_model) as launch:
        yield launch


@pytest.fixture(scope='module')
def frames(campus_video):
    return video_frames(campus_video, 12)


def lifecycle_set(env, node, transition, state):
    out = ros2(env, 'lifecycle', 'set', node, transition).stdout
    assert 'Transitioning successful' in out, out
    assert ros2(env, 'lifecycle', 'get', node).stdout.strip() == state


def detections_arrive(env, frames, frame_id='cli_stream', topic='/detections') -> str:
    """One detections message (`ros2 topic echo --once`) for frames streamed into the node."""
    with FrameStream('/camera/image_raw', frames, 10.0, frame_id=frame_id):
        out = ros2(env, 'topic', 'echo', topic, '--once', timeout=90).stdout
    assert f'frame_id: {frame_id}' in out and 'class_id: person' in out, out
    return out


def test_node_list_and_info(robot_ws, detector):
    ros2_until(robot_ws.env, ['node', 'list'], lambda out: NODE in out.split())
    info = ros2(robot_ws.env, 'node', 'info', NODE).stdout
    subs, rest = info.split('Publishers:')
    pubs, services = rest.split('Service Servers:')
    assert '/camera/image_raw: sensor_msgs/msg/Image' in subs, info
    for line in ('/detections: vision_msgs/msg/Detection2DArray',
                 '/label_info: vision_msgs/msg/LabelInfo',
                 '/diagnostics: diagnostic_msgs/msg/DiagnosticArray'):
        assert line in pubs, info
    for line in ('/detector/change_state: lifecycle_msgs/srv/ChangeState',
                 '/detector/get_state: lifecycle_msgs/srv/GetState',
                 '/detector/set_parameters: rcl_interfaces/srv/SetParameters'):
        assert line in services, info


def test_topic_echo_and_hz_on_the_outputs(robot_ws, detector, frames, ros):
    env = robot_ws.env
    detections_arrive(env, frames)
    label_info = ros2(env, 'topic', 'echo', '/label_info', '--once', '--qos-durability',
                      'transient_local', '--qos-reliability', 'reliable', timeout=60).stdout
    assert 'threshold: 0.3' in label_info and 'class_name: person' in label_info, label_info
    with FrameStream('/camera/image_raw', frames, 10.0):
        with Launched(['ros2', 'topic', 'hz', '/detections'], env) as hz:
            first = hz.wait_for(r'average rate: ([\d.]+)', 60)
            rate = float(hz.wait_for(r'average rate: ([\d.]+)', 30, start=hz.mark()).group(1))
    # frames go in at 10 Hz; the node keeps up with them on any machine this runs on
    assert 3.0 <= rate <= 12.0, (first.group(0), rate, hz.output())


def test_param_list_get_set_dump(robot_ws, detector, yolox_model):
    env = robot_ws.env
    listed = {line.strip() for line in ros2(env, 'param', 'list', NODE).stdout.splitlines()}
    shipped = yaml_parameters(robot_ws.share / 'config' / DEFAULT_YAML)
    assert set(shipped) <= listed, sorted(set(shipped) - listed)

    def get(name):
        return ros2(env, 'param', 'get', NODE, name).stdout.strip()

    assert get('conf_threshold') == 'Double value is: 0.3'
    assert get('model_path') == f'String value is: {yolox_model}'  # the launch line's
    out = ros2(env, 'param', 'set', NODE, 'conf_threshold', '0.5').stdout
    assert 'Set parameter successful' in out, out
    assert get('conf_threshold') == 'Double value is: 0.5'
    # the node republishes its label map with the threshold in use
    label_info = ros2(env, 'topic', 'echo', '/label_info', '--once', '--qos-durability',
                      'transient_local', '--qos-reliability', 'reliable', timeout=60).stdout
    assert 'threshold: 0.5' in label_info, label_info
    dumped = param_dump(env, NODE)
    assert dumped['conf_threshold'] == 0.5 and dumped['model_path'] == str(yolox_model)
    for name, value in shipped.items():
        if name not in ('conf_threshold', 'model_path'):
            assert same_value(dumped[name], value), (name, dumped[name], value)
    # a parameter the active node cannot take: refused with a reason, the node keeps running
    refused = ros2(env, 'param', 'set', NODE, 'workers', '2', check=False)
    assert re.search(r'Setting parameter failed: \S', refused.stdout + refused.stderr), refused
    assert get('workers') == 'Integer value is: 1'
    assert 'Set parameter successful' in ros2(env, 'param', 'set', NODE, 'conf_threshold',
                                              '0.3').stdout
    assert ros2(env, 'lifecycle', 'get', NODE).stdout.strip() == 'active [3]'


REJECTED = {
    'nan_threshold': [('conf_threshold', '.nan')],
    'index_mode_with_class_names': [('classes', '[person, car]'), ('class_id_mode', 'index')],
}


@pytest.mark.parametrize('case', sorted(REJECTED))
def test_invalid_parameter_is_rejected_and_the_node_keeps_running(
        robot_ws, yolox_model, frames, ros, case):
    """`ros2 param set` with a value the node cannot use: refused with a reason, still serving."""
    env = robot_ws.env
    *accepted, (name, value) = REJECTED[case]
    node = '/rejecting/detector'  # its own node: the module's /detector must outlive this
    with launched_detector(robot_ws, yolox_model, 'rejecting') as launch:
        for ok_name, ok_value in accepted:
            out = ros2(env, 'param', 'set', node, ok_name, ok_value, timeout=20).stdout
            assert 'Set parameter successful' in out, out
        proc = ros2(env, 'param', 'set', node, name, value, timeout=20, check=False)
        out = proc.stdout + proc.stderr
        assert re.search(r'Setting parameter failed: \S', out), out
        assert launch.proc.poll() is None, launch.output()
        assert ros2(env, 'lifecycle', 'get', node, timeout=20).stdout.strip() == 'active [3]'
        detections_arrive(env, frames, topic='/rejecting/detections')


def test_lifecycle_every_transition(robot_ws, detector, frames, ros):
    """README: drive it with `ros2 lifecycle set /detector configure` / `activate`."""
    env = robot_ws.env
    assert NODE in ros2(env, 'lifecycle', 'nodes').stdout.split()
    assert ros2(env, 'lifecycle', 'get', NODE).stdout.strip() == 'active [3]'
    available = ros2(env, 'lifecycle', 'list', NODE).stdout
    assert 'deactivate [4]' in available and 'shutdown [7]' in available, available
    lifecycle_set(env, NODE, 'deactivate', 'inactive [2]')
    detector.wait_for(r'\[detector\]: inactive', 30)
    lifecycle_set(env, NODE, 'cleanup', 'unconfigured [1]')
    detector.wait_for(r'\[detector\]: cleaned up', 30)
    mark = detector.mark()
    lifecycle_set(env, NODE, 'configure', 'inactive [2]')
    detector.wait_for(r'\[detector\]: configured: YoloxAdapter', 30, start=mark)
    lifecycle_set(env, NODE, 'activate', 'active [3]')
    detections_arrive(env, frames, 'after_reactivation')


def test_param_load_every_shipped_yaml(robot_ws, detector, frames, tmp_path, ros):
    """`ros2 param load` of each config/*.yaml, while unconfigured.

    Every parameter answered (a refusal with its reason), the values taken are the node's, it
    keeps running, and its parameters dumped before load back.
    """
    env = robot_ws.env
    # the dump as a `/**` file like the shipped ones: this ros2param's `load` reads only the
    # `/**` entry of a file (a dump's `/detector:` entry gives 'Param file does not contain
    # any valid parameters')
    dump = yaml.safe_load(ros2(env, 'param', 'dump', NODE).stdout)
    snapshot = tmp_path / 'detector_params.yaml'
    snapshot.write_text(yaml.safe_dump({'/**': dump[NODE]}))
    before = yaml_parameters(snapshot)
    lifecycle_set(env, NODE, 'deactivate', 'inactive [2]')
    lifecycle_set(env, NODE, 'cleanup', 'unconfigured [1]')
    yamls = sorted((robot_ws.share / 'config').glob('*.yaml'))
    assert len(yamls) >= 10, yamls
    for path in yamls:
        if 'depth' in path.name:
            continue  # the depth node's: test_robot.py::test_depth_launch loads it
        results = param_load(env, NODE, path)
        expected = yaml_parameters(path)
        dumped = param_dump(env, NODE)
        for name, why in results.items():
            if why is None:
                assert same_value(dumped[name], expected[name]), (path.name, name)
        if path.name == DEFAULT_YAML:
            refused = {n: w for n, w in results.items() if w is not None}
            assert not {'conf_threshold', 'backend', 'model_family', 'queue_size'} & set(
                refused), refused
    assert ros2(env, 'lifecycle', 'get', NODE).stdout.strip() == 'unconfigured [1]'
    # back to what it was (the dump loads back), then configured and serving again
    param_load(env, NODE, snapshot)
    after = param_dump(env, NODE)
    changed = [n for n in before if not same_value(before[n], after.get(n))]
    assert not changed, changed
    lifecycle_set(env, NODE, 'configure', 'inactive [2]')
    lifecycle_set(env, NODE, 'activate', 'active [3]')
    detections_arrive(env, frames, 'after_param_load')


def test_lifecycle_shutdown(robot_ws, detector):
    """The last transition (active -> finalized); the module's node ends here."""
    env = robot_ws.env
    lifecycle_set(env, NODE, 'shutdown', 'finalized [4]')
    assert detector.proc.poll() is None, detector.output()
