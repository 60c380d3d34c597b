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
    'queue_size': (2, 'input queue length before the full policy applies'),
    'full_policy': ('drop_oldest', 'when the input queue is full: drop_oldest or block'),
    'input_type': ('raw', 'raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage)'),
    'qos_reliability': ('best_effort', 'input QoS reliability: best_effort or reliable'),
    'qos_depth': (5, 'input and output QoS history depth'),
    'input_size': ([0, 0], 'model input [height, width] for models with dynamic shapes'),
    'diagnostics_period': (1.0, 'seconds between /diagnostics updates; 0 disables them'),
    'autotune': (False, 'at configure, measure the model and choose workers, threads and '
                 'queue_size for camera_rate within latency_budget_ms (overrides them)'),
    'camera_rate': (30.0, 'expected input rate in Hz (autotune)'),
    'latency_budget_ms': (100.0, 'accepted latency, frame in to result out, in ms (autotune)'),
    'autotune_image': ('', 'image to time pre/post-processing on (autotune); empty: a '
                       'synthetic 1280x720 frame'),
}


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
    backend_options: Dict[str, Any] = field(default_factory=dict)
    autotune: bool = False
    camera_rate: float = 30.0
    latency_budget_ms: float = 100.0
    autotune_image: str = ''


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
        diagnostics_period=float(value(node, 'diagnostics_period')),
        backend_options=backend_options(node, backend),
        autotune=autotune,
        camera_rate=camera_rate,
        latency_budget_ms=budget,
        autotune_image=value(node, 'autotune_image'),
    )


def unknown_parameters(node, known: Sequence[str], backends: Sequence[str]) -> List[str]:
    """Parameters set (e.g. in the YAML) that no code reads: most likely typos."""
    prefixes = tuple(b + '.' for b in backends)
    return sorted(name for name in node.get_parameters_by_prefix('')
                  if name not in known
                  and name not in ('use_sim_time', 'start_type_description_service')
                  and not name.startswith(prefixes) and not name.startswith('qos_overrides.'))
