"""The parameter table (runtime/parameters.py) against what users see and send.

Every shipped YAML and the README's parameter tables agree with the table; every value a graph
client can send (NaN, infinities, huge numbers, wrong types, odd lists and strings, combinations
that are valid alone but not together) is refused with a reason or applied, through the real
parameter service of a detector_node in another process, which keeps running and detecting.
"""
from __future__ import annotations

import math
from pathlib import Path
import re
import time

from hypothesis import given, HealthCheck, settings, strategies as st
import pytest
import yaml

from faster_deployment_ros.backends import available_backends  # noqa: I100
from faster_deployment_ros.runtime import check, ParameterError, table, TASKS

ROOT = Path(__file__).resolve().parents[1]
YAMLS = sorted((ROOT / 'config').glob('*.yaml'))
NUMBERS = sorted({n for task in TASKS for n, p in table(task).items()
                  if p.kind in ('int', 'float')})
#: every parameter of every task (a name means the same thing wherever it appears)
EVERY = {n: p for task in TASKS for n, p in table(task).items()}


def task_of(path: Path) -> str:
    for task in ('depth', 'segmentation'):
        if task in path.name:
            return task
    return 'detection'


# ---- the table against the files users read --------------------------------------------------
@pytest.mark.parametrize('path', YAMLS, ids=lambda p: p.name)
def test_every_shipped_yaml_fits_the_table(path):
    """No unknown key, every value accepted by its check, options only for known backends."""
    doc = yaml.safe_load(path.read_text())
    values = doc['/**']['ros__parameters']
    params = table(task_of(path))
    unknown = [k for k, v in values.items() if k not in params
               and not (k in available_backends() and isinstance(v, dict))]
    assert not unknown, f'{path.name}: parameters no node reads: {unknown}'
    for name, value in values.items():
        if name in params:
            check(params[name], value)  # raises with the reason
    assert values['backend'] in available_backends()


def test_every_default_passes_its_own_check():
    for task in TASKS:
        for name, param in table(task).items():
            assert check(param, param.default) == param.default, name
            assert param.description and param.applies in ('startup', 'runtime', 'reconfigure')


def readme_parameter_names(section: str) -> set:
    """Backticked names in the first cell of each row of the README table under `section`."""
    text = (ROOT / 'README.md').read_text()
    start = text.index(section)
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith('#') or (rows and not line.startswith('|')):
            break
        if line.startswith('| `'):
            rows.append(line.split('|')[1])
    return {name for cell in rows for name in re.findall(r'`([a-z_0-9.]+)`', cell)}


def test_readme_tables_name_every_parameter_and_nothing_else():
    common = readme_parameter_names('Parameters (all in `config/*.yaml`')
    depth = readme_parameter_names('backend parameters as the detector, plus')
    want_detector = set(table('detection'))
    want_depth = set(TASKS['depth'])
    assert common == want_detector, (f'README detector table: missing {want_detector - common}, '
                                     f'unknown {common - want_detector}')
    assert depth == want_depth, (f'README depth table: missing {want_depth - depth}, '
                                 f'unknown {depth - want_depth}')
    seg = readme_parameter_names("`class_names` and `labels_file` as the detector's")
    want_seg = set(TASKS['segmentation']) - {'class_names', 'labels_file'}
    assert seg == want_seg, (f'README segmentation table: missing {want_seg - seg}, '
                             f'unknown {seg - want_seg}')


# ---- the checks themselves -----------------------------------------------------------------
@pytest.mark.parametrize('name', NUMBERS)
def test_numbers_refuse_nan_infinities_huge_and_wrong_types(name):
    param = EVERY[name]
    bad = [math.nan, math.inf, -math.inf, 1e300, -1e300, 'two', True, [1], '']
    if param.kind == 'int':
        bad += [2.5, 2 ** 62]
    for value in bad:
        with pytest.raises(ParameterError, match=re.escape(name)):
            check(param, value)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(EVERY)),
       value=st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                       st.text(max_size=20), st.lists(st.integers(), max_size=4),
                       st.lists(st.text(max_size=5), max_size=4),
                       st.lists(st.floats(), max_size=3), st.binary(max_size=4)))
def test_check_accepts_a_value_or_refuses_it_with_a_reason(name, value):
    param = EVERY[name]
    try:
        out = check(param, value)
    except ParameterError as exc:
        assert name in str(exc)
        return
    if param.kind == 'float':
        assert math.isfinite(out)
        assert param.lo is None or out >= param.lo
        assert param.hi is None or out <= param.hi


# ---- a real client against a running node, from another process -------------------------------


class ParamClient:
    """SetParameters / GetParameters of a node in another process, as `ros2 param` calls them."""

    def __init__(self, node_name: str) -> None:
        import rclpy
        from rcl_interfaces.srv import GetParameters, SetParameters
        from lifecycle_msgs.srv import GetState
        self.rclpy = rclpy
        self.node = rclpy.create_node(f'param_client_{int(time.monotonic() * 1000) % 100000}')
        self.set_client = self.node.create_client(SetParameters, f'/{node_name}/set_parameters')
        self.get_client = self.node.create_client(GetParameters, f'/{node_name}/get_parameters')
        self.state_client = self.node.create_client(GetState, f'/{node_name}/get_state')
        for c in (self.set_client, self.get_client, self.state_client):
            assert c.wait_for_service(timeout_sec=30), f'no service {c.srv_name}'
        # one answered request each (empty ones change nothing, so they may be re-sent): the
        # reply path is matched before a set request, which is never re-sent
        self.call(self.set_client, SetParameters.Request(), read_only=True)
        self.call(self.get_client, GetParameters.Request(), read_only=True)

    def call(self, client, request, timeout: float = 20.0, read_only: bool = False):
        from support.ros_nodes import call_service
        return call_service(self.node, client, request, timeout, read_only)

    def set_value(self, name: str, value):
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter
        req = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        return self.call(self.set_client, req).results[0]

    def get_value(self, name: str):
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python
        res = self.call(self.get_client, GetParameters.Request(names=[name]), read_only=True)
        return parameter_value_to_python(res.values[0])

    def state(self) -> str:
        from lifecycle_msgs.srv import GetState
        return self.call(self.state_client, GetState.Request(), read_only=True).current_state.label

    def close(self) -> None:
        from support.ros_nodes import destroy_node
        destroy_node(self.node)


@pytest.fixture(scope='module')
def running_detector(ros, yolox_model):
    """Run a detector_node process (shipped YAML, autostart); yield it and a client."""
    from support.node_harness import console_script
    args = ['--ros-args', '--params-file', str(ROOT / 'config/yolox_nano_onnxruntime.yaml'),
            '-p', f'model_path:={yolox_model}', '-p', 'diagnostics_period:=0.0',
            '-r', '__node:=param_fuzz_target']
    with console_script('detector_node', args) as proc:
        client = ParamClient('param_fuzz_target')
        deadline = time.monotonic() + 60
        while client.state() != 'active':
            assert proc.poll() is None, 'detector_node exited while starting'
            assert time.monotonic() < deadline, 'detector_node never became active'
            time.sleep(0.2)  # polling a remote state: nothing to wait on locally
        try:
            yield proc, client
        finally:
            client.close()


REFUSED = [
    ('conf_threshold', math.nan, 'conf_threshold'), ('conf_threshold', math.inf, 'conf_threshold'),
    ('nms_threshold', -math.inf, 'nms_threshold'), ('conf_threshold', 1e308, 'conf_threshold'),
    ('max_detections', 2 ** 62, 'max_detections'), ('max_detections', 'many', 'max_detections'),
    ('diagnostics_stale_after', math.nan, 'diagnostics_stale_after'),
    ('diagnostics_window', 1e9, 'diagnostics_window'),
    ('diagnostics_window', math.inf, 'diagnostics_window'),
    ('bond_heartbeat_period', math.inf, 'bond_heartbeat_period'),
    ('max_input_pixels', -1, 'max_input_pixels'), ('bit_depth', 0, 'bit_depth'),
    ('classes', ['person', 'unicorn'], 'unicorn'), ('class_id_mode', 'both', 'class_id_mode'),
    ('queue_size', 8, 'needs reconfigure'), ('workers', 'two', 'workers'),
    ('input_size', [1, 2, 3], 'input_size'), ('labels_file', '/etc/passwd', 'labels_file'),
    ('diagnostics_period', 5.0, 'restart'), ('onnxruntime.providers', ['X'], 'needs reconfigure'),
]


@pytest.mark.ros
@pytest.mark.parametrize('name,value,reason', REFUSED, ids=[f'{n}={v!r}' for n, v, _ in REFUSED])
def test_a_client_sending_bad_values_gets_a_reason_and_the_node_runs_on(
        running_detector, name, value, reason):
    proc, client = running_detector
    before = client.get_value(name) if '.' not in name else None
    res = client.set_value(name, value)
    assert not res.successful and reason in res.reason, res.reason
    assert proc.poll() is None, 'the node died'
    if before is not None:
        assert client.get_value(name) == before, 'a refused value must not be stored'
    assert client.state() == 'active'


@pytest.mark.ros
def test_combination_valid_alone_but_not_together_is_refused(running_detector):
    """class_id_mode index while `classes` holds names: refused, nothing changes."""
    proc, client = running_detector
    assert client.set_value('classes', ['person']).successful
    try:
        res = client.set_value('class_id_mode', 'index')
        assert not res.successful and 'classes' in res.reason, res.reason
        assert client.get_value('class_id_mode') == 'name'
        assert proc.poll() is None and client.state() == 'active'
    finally:
        assert client.set_value('classes', ['']).successful


INT64 = st.integers(min_value=-2 ** 63, max_value=2 ** 63 - 1)


@pytest.mark.ros
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(table('detection'))),
       value=st.one_of(st.booleans(), INT64, st.floats(), st.text(max_size=12),
                       st.lists(INT64, max_size=3), st.lists(st.text(max_size=6), max_size=3),
                       st.lists(st.floats(), max_size=3)))
def test_fuzzed_parameter_service_never_kills_or_wedges_the_node(running_detector, name, value):
    proc, client = running_detector
    res = client.set_value(name, value)
    assert res.successful or res.reason, 'a refusal must say why'
    assert proc.poll() is None, f'the node died on {name}={value!r}'
    assert client.state() == 'active'


@pytest.mark.ros
def test_a_wrong_type_at_start_is_a_clear_configure_failure(ros, yolox_model):
    """`-p workers:=two`: the node starts, refuses to configure and says why."""
    from support.node_harness import console_script
    args = ['--ros-args', '-p', f'model_path:={yolox_model}', '-p', 'workers:=two',
            '-p', 'autostart:=true', '-p', 'diagnostics_period:=0.0',
            '-r', '__node:=wrong_type_probe']
    with console_script('detector_node', args) as proc:
        client = ParamClient('wrong_type_probe')
        try:
            assert client.get_value('workers') == 'two'
            assert client.state() == 'unconfigured'
            assert proc.poll() is None
        finally:
            client.close()
