"""Worker-process specs for the process-pipeline tests: the runtime's real worker, observable.

`GatedSpec` wraps a `runtime.workers.FrameWorkerSpec` (the real backend and adapter, built in
the worker process): every frame reports ('start', worker, pid, tag) and ('done', worker, pid,
tag) on `reports[worker]`, and a frame whose tag (pixel (0, 0), channel 0) is `HOLD` takes a
pass from `gate` (a multiprocessing semaphore starting at 0; `open_gate` gives passes) before
it runs, so a test can make a frame slow, or keep a worker busy, and know when, without
sleeping. A pipe per worker and a semaphore, not a multiprocessing queue and an Event: a worker
killed inside a queue's put leaves its lock held, and an Event whose waiter was killed hangs
`set()`. Picklable: it travels to the worker processes (spawn), which import this module.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Tuple

import numpy as np

#: tag of a frame that waits for the gate
HOLD = 200
#: seconds a held frame waits for the gate at most (a failing test must not hang)
GATE_TIMEOUT_S = 120.0


def tagged(frame: np.ndarray, tag: int) -> np.ndarray:
    """Return a copy of `frame` carrying `tag` in pixel (0, 0), channel 0."""
    out = frame.copy()
    out[0, 0, 0] = tag
    return out


def open_gate(gate: Any, passes: int = 64) -> None:
    """Let the next `passes` held frames run."""
    for _ in range(passes):
        gate.release()


class GatedWorker:
    """The real FrameWorker, reporting each frame and holding HOLD-tagged ones at the gate."""

    def __init__(self, inner: Any, gate: Any, report: Any, index: int) -> None:
        self.inner, self.gate, self.report, self.index = inner, gate, report, index

    def __call__(self, frame: np.ndarray) -> Tuple[Any, Dict[str, float]]:
        tag = int(frame[0, 0, 0])
        self.report.send(('start', self.index, os.getpid(), tag))
        if tag == HOLD:
            self.gate.acquire(timeout=GATE_TIMEOUT_S)
        out = self.inner(frame)
        self.report.send(('done', self.index, os.getpid(), tag))
        return out

    def control(self, settings: Any) -> None:
        self.inner.control(settings)

    def close(self) -> None:
        self.inner.close()


class GatedSpec:
    """Build a GatedWorker around `inner.build(index)` in the worker process."""

    def __init__(self, inner: Any, gate: Any, reports: Any) -> None:
        self.inner, self.gate, self.reports = inner, gate, reports

    def build(self, index: int) -> GatedWorker:
        return GatedWorker(self.inner.build(index), self.gate, self.reports[index], index)


class FailingSpec:
    """A spec whose worker cannot be built (as a model file that does not load)."""

    def build(self, index: int) -> Any:
        raise RuntimeError(f'worker {index}: this model cannot be loaded (on purpose)')


__all__ = ['FailingSpec', 'GATE_TIMEOUT_S', 'GatedSpec', 'GatedWorker', 'HOLD', 'open_gate',
           'tagged']
