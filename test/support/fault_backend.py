"""A backend that misbehaves on purpose, for test_reliability.py and test_teardown.py.

It runs the real model on ONNX Runtime and, as its `mode` option says, raises, hangs or is slow;
`fail_worker: k` makes the construction of worker k fail. Every instance is kept in `INSTANCES`
and records whether `close` came while one of its calls was running (`closed_in_call`), so a
test can prove that nothing is freed under a running call.
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


#: every FaultBackend constructed, in order (tests clear it)
INSTANCES: List['FaultBackend'] = []


class FaultBackend(Backend):
    name = 'fault'
    pins_workers = True  # so the runtime passes worker_index (fail_worker)

    def __init__(self, model_path: str, mode: str = 'ok', delay_s: float = 0.2,
                 fail_worker: int = -1, worker_index: int = 0, **options: Any) -> None:
        super().__init__(model_path, mode=mode, delay_s=delay_s, **options)
        if mode not in ('ok', 'raise', 'hang', 'slow'):
            raise ValueError(f'fault mode {mode!r}: ok, raise, hang or slow')
        if int(fail_worker) == int(worker_index):
            raise RuntimeError(f'injected load failure of worker {worker_index}')
        self.mode, self.delay_s = mode, float(delay_s)
        self.worker_index = int(worker_index)
        self._real = OnnxRuntimeBackend(model_path, threads=1)
        self._inputs, self._outputs = self._real.inputs, self._real.outputs
        self._metadata = self._real.metadata
        self.calls = 0
        self.in_call = False
        self.closed = threading.Event()
        self.closed_in_call = False
        INSTANCES.append(self)

    def infer(self, inputs: Sequence[np.ndarray]) -> List[np.ndarray]:
        self.calls += 1
        self.in_call = True
        try:
            if self.mode == 'raise':
                raise RuntimeError(f'injected model failure (call {self.calls})')
            if self.mode == 'hang':
                HANGING.set()
                RELEASE.wait()
            elif self.mode == 'slow':
                time.sleep(self.delay_s)
            return self._real.infer(inputs)
        finally:
            self.in_call = False

    def close(self) -> None:
        self.closed_in_call = self.closed_in_call or self.in_call
        self._real.close()
        self.closed.set()
