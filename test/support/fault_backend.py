"""A backend that misbehaves on purpose, for test_reliability.py.

It runs the real model on ONNX Runtime and, as its `mode` option says, raises, hangs or is slow.
Registered through the real backend registry (`register_backend('fault', 'support.fault_backend',
'FaultBackend')`), so the node loads it exactly as it loads any backend: `backend: fault`, options
`fault.mode` etc.
"""
from __future__ import annotations

import threading
import time
from typing import Any, List, Sequence

from faster_deployment_ros.backends.base import Backend
from faster_deployment_ros.backends.onnxruntime_backend import OnnxRuntimeBackend
import numpy as np

#: set() releases every hung infer call (tests call it in teardown)
RELEASE = threading.Event()
#: set by the first infer call that hangs
HANGING = threading.Event()


class FaultBackend(Backend):
    name = 'fault'

    def __init__(self, model_path: str, mode: str = 'ok', delay_s: float = 0.2,
                 **options: Any) -> None:
        super().__init__(model_path, mode=mode, delay_s=delay_s, **options)
        if mode not in ('ok', 'raise', 'hang', 'slow'):
            raise ValueError(f'fault mode {mode!r}: ok, raise, hang or slow')
        self.mode, self.delay_s = mode, float(delay_s)
        self._real = OnnxRuntimeBackend(model_path, threads=1)
        self._inputs, self._outputs = self._real.inputs, self._real.outputs
        self._metadata = self._real.metadata
        self.calls = 0

    def infer(self, inputs: Sequence[np.ndarray]) -> List[np.ndarray]:
        self.calls += 1
        if self.mode == 'raise':
            raise RuntimeError(f'injected model failure (call {self.calls})')
        if self.mode == 'hang':
            HANGING.set()
            RELEASE.wait()
        elif self.mode == 'slow':
            time.sleep(self.delay_s)
        return self._real.infer(inputs)

    def close(self) -> None:
        self._real.close()
