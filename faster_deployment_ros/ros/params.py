"""Parameter declaration and validation shared by the perception nodes.

Every parameter a node reads is declared here with its default and a description, so
`ros2 param describe` documents it and a YAML typo shows up as a warning instead of being
silently ignored. Backend-specific options live under `<backend>.` (e.g. `onnxruntime.providers`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from rcl_interfaces.msg import ParameterDescriptor

FULL_POLICIES = ('drop_oldest', 'block')
INPUT_TYPES = ('raw', 'compressed')
RELIABILITIES = ('best_effort', 'reliable')

# name -> (default, description)
COMMON_PARAMETERS: Dict[str, tuple] = {
    'autostart': (False, 'configure and activate on start'),
    'model_path': ('', 'model file (.onnx, .param, .rknn, .engine)'),
    'model_family': ('auto', 'model family; auto infers it from the model signature'),
    'backend': ('onnxruntime', 'inference backend: onnxruntime, ncnn, rknn, tensorrt'),
    'workers': (1, 'inference workers (sessions / contexts / NPU cores); results stay in order'),
    'threads': (0, 'threads per inference worker; 0 lets the runtime decide'),
    'queue_size': (1, 'input queue length before the full policy applies (1: with '
                   'drop_oldest only the newest frame waits, the low-latency choice)'),
    'full_policy': ('drop_oldest', 'when the input queue is full: drop_oldest or block'),
    'input_type': ('raw', 'raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage)'),
    'inputs': ([''], "several cameras, one model: image topics, each camera's results in its "
               'namespace (/front/image_raw -> /front/detections); an entry ending in '
               '/compressed is a CompressedImage topic; empty: the single image topic'),
    'qos_reliability': ('best_effort', 'input QoS reliability: best_effort or reliable'),
    'qos_depth': (1, 'input QoS history depth (1: DDS keeps only the newest frame, so no '
                  'stale frame waits there); outputs keep at least 10'),
    'input_size': ([0, 0], 'model input [height, width] for models with dynamic shapes'),
    'diagnostics_period': (1.0, 'seconds between /diagnostics updates; 0 disables them'),
    'autotune': (False, 'at configure, measure the model and choose workers, threads and '
                 'queue_size for camera_rate within latency_budget_ms (overrides them)'),
    'camera_rate': (30.0, 'expected input rate in Hz of each camera (autotune)'),
    'latency_budget_ms': (100.0, 'accepted latency, frame in to result out, in ms (autotune)'),
    'autotune_image': ('', 'image to time pre/post-processing on (autotune); empty: a '
                       'synthetic 1280x720 frame'),
    'bit_depth': (16, 'significant bits of 16-bit input (mono16, 16UC1, rgb16, bayer_*16): '
                  "that range maps to 0..255; 16 is cv_bridge's convention, 10 or 12 for "
                  'sensors that put fewer bits in 16-bit words'),
    'bond_heartbeat_period': (0.1, "seconds between bond heartbeats to Nav2's lifecycle_manager "
                              '(bond opened on activate, broken on deactivate); 0 disables it'),
    'max_input_pixels': (7680 * 4320, 'frames with more pixels are refused before decoding '
                         '(raw width x height, jpeg/png header size); 0 = no limit'),
    'diagnostics_window': (5.0, 'seconds of recent frames the /diagnostics level and fps use'),
    'diagnostics_stale_after': (3.0, 'seconds without input before /diagnostics says STALE'),
    'diagnostics_max_latency_ms': (500.0, 'median input age + pipeline time above this: WARN '
                                   'on /diagnostics; 0 = no check'),
}

# Parameters a running node applies to the next frame; every other one is read at configure
# and a change to it while configured is rejected with "needs reconfigure: <name>".
RUNTIME_PARAMETERS = ('max_input_pixels', 'bit_depth', 'diagnostics_window',
                      'diagnostics_stale_after', 'diagnostics_max_latency_ms')
# Read once when the node starts (a change needs a restart).
STARTUP_PARAMETERS = ('autostart', 'diagnostics_period')


class ParameterError(ValueError):
    """A parameter has a value the node cannot work with; the message names it."""


@dataclass
class CommonConfig:
    model_path: str
    model_family: str
    backend: str
    workers: int
    threads: int
    queue_size: int
    full_policy: str
    input_type: str
    qos_reliability: str
    qos_depth: int
    input_size: Optional[List[int]]
    diagnostics_period: float
    max_input_pixels: int = 7680 * 4320
    bit_depth: int = 16
    backend_options: Dict[str, Any] = field(default_factory=dict)
    autotune: bool = False
    camera_rate: float = 30.0
    latency_budget_ms: float = 100.0
    autotune_image: str = ''
    inputs: List[str] = field(default_factory=list)


def declare(node, table: Dict[str, tuple]) -> None:
    for name, (default, description) in table.items():
        if not node.has_parameter(name):
            node.declare_parameter(name, default, ParameterDescriptor(description=description))


def value(node, name: str) -> Any:
    return node.get_parameter(name).value


def _choice(name: str, val: str, choices: Sequence[str]) -> str:
    if val not in choices:
        raise ParameterError(f'{name}={val!r}: choose one of {", ".join(choices)}')
    return val


def _at_least(name: str, val: int, lo: int) -> int:
    if not isinstance(val, int) or val < lo:
        raise ParameterError(f'{name}={val!r}: must be an integer >= {lo}')
    return val


def backend_options(node, backend: str) -> Dict[str, Any]:
    """Parameters named `<backend>.<option>` (declared from the YAML overrides) as kwargs."""
    return {name: p.value for name, p in node.get_parameters_by_prefix(backend).items()}


def read_common(node) -> CommonConfig:
    model_path = value(node, 'model_path')
    if not model_path:
        raise ParameterError('model_path is empty: set it to the model file')
    input_size = list(value(node, 'input_size') or [])
    if input_size and any(input_size):
        if len(input_size) != 2 or min(input_size) <= 0:
            raise ParameterError(f'input_size={input_size}: give [height, width], both > 0')
    else:
        input_size = None
    backend = value(node, 'backend')
    camera_rate = float(value(node, 'camera_rate'))
    budget = float(value(node, 'latency_budget_ms'))
    autotune = bool(value(node, 'autotune'))
    if autotune and (camera_rate <= 0 or budget <= 0):
        raise ParameterError(f'autotune needs camera_rate > 0 and latency_budget_ms > 0, got '
                             f'{camera_rate} and {budget}')
    return CommonConfig(
        model_path=model_path,
        model_family=value(node, 'model_family'),
        backend=backend,
        workers=_at_least('workers', value(node, 'workers'), 1),
        threads=_at_least('threads', value(node, 'threads'), 0),
        queue_size=_at_least('queue_size', value(node, 'queue_size'), 1),
        full_policy=_choice('full_policy', value(node, 'full_policy'), FULL_POLICIES),
        input_type=_choice('input_type', value(node, 'input_type'), INPUT_TYPES),
        qos_reliability=_choice('qos_reliability', value(node, 'qos_reliability'), RELIABILITIES),
        qos_depth=_at_least('qos_depth', value(node, 'qos_depth'), 1),
        input_size=input_size,
        diagnostics_period=float(_non_negative('diagnostics_period',
                                               value(node, 'diagnostics_period'))),
        max_input_pixels=_non_negative_int('max_input_pixels', value(node, 'max_input_pixels')),
        bit_depth=_bit_depth('bit_depth', value(node, 'bit_depth')),
        backend_options=backend_options(node, backend),
        autotune=autotune,
        camera_rate=camera_rate,
        latency_budget_ms=budget,
        autotune_image=value(node, 'autotune_image'),
        inputs=[t for t in (value(node, 'inputs') or []) if t],
    )


def _bit_depth(name: str, val: Any) -> int:
    if isinstance(val, bool) or not isinstance(val, int) or not 1 <= val <= 16:
        raise ParameterError(f'{name}={val!r}: must be an integer in 1..16')
    return val


def _non_negative_int(name: str, val: Any) -> Any:
    return _at_least(name, val, 0)


def _positive(name: str, val: Any) -> Any:
    if isinstance(val, bool) or not isinstance(val, (int, float)) or val <= 0:
        raise ParameterError(f'{name}={val!r}: must be > 0')
    return val


def _non_negative(name: str, val: Any) -> Any:
    if isinstance(val, bool) or not isinstance(val, (int, float)) or val < 0:
        raise ParameterError(f'{name}={val!r}: must be >= 0')
    return val


# name -> check(name, value) raising ParameterError: what configure and a runtime change accept.
VALIDATORS: Dict[str, Any] = {
    'workers': lambda n, v: _at_least(n, v, 1),
    'threads': lambda n, v: _at_least(n, v, 0),
    'queue_size': lambda n, v: _at_least(n, v, 1),
    'qos_depth': lambda n, v: _at_least(n, v, 1),
    'full_policy': lambda n, v: _choice(n, v, FULL_POLICIES),
    'input_type': lambda n, v: _choice(n, v, INPUT_TYPES),
    'qos_reliability': lambda n, v: _choice(n, v, RELIABILITIES),
    'diagnostics_period': _non_negative,
    'max_input_pixels': _non_negative_int,
    'bit_depth': _bit_depth,
    'bond_heartbeat_period': _non_negative,
    'diagnostics_window': _positive,
    'diagnostics_stale_after': _positive,
    'diagnostics_max_latency_ms': _non_negative,
    'camera_rate': _non_negative,
    'latency_budget_ms': _non_negative,
}


def validate(name: str, val: Any) -> None:
    """Raise ParameterError if `val` is not acceptable for the common parameter `name`."""
    check = VALIDATORS.get(name)
    if check is not None:
        check(name, val)


def health_limits(node):
    """Return the /diagnostics thresholds from the node's parameters."""
    from ..core.health import HealthLimits
    return HealthLimits(window_s=float(value(node, 'diagnostics_window')),
                        stale_s=float(value(node, 'diagnostics_stale_after')),
                        max_latency_ms=float(value(node, 'diagnostics_max_latency_ms')))


def unknown_parameters(node, known: Sequence[str], backends: Sequence[str]) -> List[str]:
    """Parameters set (e.g. in the YAML) that no code reads: most likely typos."""
    prefixes = tuple(b + '.' for b in backends)
    return sorted(name for name in node.get_parameters_by_prefix('')
                  if name not in known
                  and name not in ('use_sim_time', 'start_type_description_service')
                  and not name.startswith(prefixes) and not name.startswith('qos_overrides.'))
