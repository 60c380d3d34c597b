"""What a `PerceptionRuntime` is built from: plain values, no ROS.

`RuntimeConfig.from_values` takes the parameter values of the table (runtime/parameters.py),
already checked one by one, and adds the checks that involve several of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, Mapping, Optional, Tuple

from .parameters import FULL_POLICIES, ParameterError, WORKER_MODES
from ..backends import available_backends


@dataclass
class RuntimeConfig:
    """Model, backend, pipeline shape and autotune settings of one runtime."""

    model_path: str
    model_family: str = 'auto'
    backend: str = 'onnxruntime'
    workers: int = 1
    threads: int = 0
    queue_size: int = 1
    full_policy: str = 'drop_oldest'
    #: model input (height, width) for models with dynamic shapes; None: the model's own
    input_size: Optional[Tuple[int, int]] = None
    #: `<backend>.<option>` parameters without the prefix, passed to every worker's backend
    backend_options: Dict[str, Any] = field(default_factory=dict)
    autotune: bool = False
    camera_rate: float = 30.0       # per camera (source)
    latency_budget_ms: float = 100.0
    autotune_image: str = ''
    #: letterbox, decode and NMS on the GPU where every worker's backend offers it
    gpu_pipeline: bool = True
    #: cameras sharing the model (autotune sizes for camera_rate x sources)
    sources: int = 1
    name: str = 'perception'
    #: the pipeline's schedule ('eager', 'just_in_time'); empty: just in time under
    #: drop_oldest (the frame inferred is the newest), eager under block
    schedule: str = ''
    #: 'threads' (workers are threads of this process) or 'processes' (worker processes doing
    #: whole frames: core.process_pipeline)
    worker_mode: str = 'threads'

    def pipeline_schedule(self) -> str:
        if self.schedule:
            return self.schedule
        return 'just_in_time' if self.full_policy == 'drop_oldest' else 'eager'

    def with_shape(self, workers: int, threads: int, queue_size: int) -> 'RuntimeConfig':
        return replace(self, workers=workers, threads=threads, queue_size=queue_size)

    def replace(self, **changes: Any) -> 'RuntimeConfig':
        """Return a copy with `changes` (dataclasses.replace)."""
        return replace(self, **changes)

    @classmethod
    def from_values(cls, values: Mapping[str, Any], backend_options: Mapping[str, Any],
                    name: str = 'perception', sources: int = 1) -> 'RuntimeConfig':
        """Build from checked table values; raise ParameterError where they do not fit together."""
        model_path = values['model_path']
        if not model_path:
            raise ParameterError('model_path is empty: set it to the model file')
        backend = values['backend']
        if backend not in available_backends():
            raise ParameterError(f'backend={backend!r}: choose one of '
                                 f'{", ".join(available_backends())}')
        if values['full_policy'] not in FULL_POLICIES:
            raise ParameterError(f'full_policy={values["full_policy"]!r}: choose one of '
                                 f'{", ".join(FULL_POLICIES)}')
        worker_mode = values.get('worker_mode', 'threads')
        if worker_mode not in WORKER_MODES:
            raise ParameterError(f'worker_mode={worker_mode!r}: choose one of '
                                 f'{", ".join(WORKER_MODES)}')
        autotune = values['autotune']
        rate, budget = values['camera_rate'], values['latency_budget_ms']
        if autotune and (rate <= 0 or budget <= 0):
            raise ParameterError(f'autotune needs camera_rate > 0 and latency_budget_ms > 0, got '
                                 f'{rate} and {budget}')
        size = list(values.get('input_size') or [])
        return cls(
            model_path=model_path, model_family=values['model_family'] or 'auto',
            backend=backend, workers=values['workers'], threads=values['threads'],
            queue_size=values['queue_size'], full_policy=values['full_policy'],
            input_size=(size[0], size[1]) if size and any(size) else None,
            backend_options=dict(backend_options), autotune=autotune, camera_rate=rate,
            latency_budget_ms=budget, autotune_image=values['autotune_image'],
            gpu_pipeline=values.get('gpu_pipeline', True), sources=max(1, sources), name=name,
            worker_mode=worker_mode)
