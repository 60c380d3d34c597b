"""The auto-tuner's sequence.

Measure, choose, time the contended candidates, choose again, optionally validate.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .cost_model import Choice, choose, ranked
from .measurement import measure_concurrent, measure_stages
from .validation import validate

LOG = logging.getLogger('faster_deployment_ros.autotune')


def autotune(make_backend: Callable[[int], Any], make_adapter: Callable[[Any], Any],
             frames: Sequence[np.ndarray], camera_rate: float, latency_budget_ms: float,
             threads: Optional[Sequence[int]] = None, max_workers: Optional[int] = None,
             cores: Optional[int] = None, iters: int = 15, refine: int = 3,
             overhead_ms: float = 0.0, time_limit_s: Optional[float] = None,
             validate_s: float = 0.0, validate_top: int = 3,
             log: Callable[[str], None] = LOG.info) -> Choice:
    """Measure, choose, time the best candidates running at once, choose again.

    The `refine` best multi-worker candidates are timed with their sessions running at once
    (contention the model can only guess); with `validate_s` > 0 the short list finally runs
    through the real pipeline at the camera rate (see `validate`).
    """
    st = measure_stages(make_backend, make_adapter, frames, threads, iters=iters, cores=cores,
                        overhead_ms=overhead_ms, time_limit_s=time_limit_s, log=log)
    choice = choose(st, camera_rate, latency_budget_ms, max_workers)
    adapter = None
    if refine > 0 or validate_s > 0:
        backend = make_backend(min(st.infer_ms))
        try:
            adapter = make_adapter(backend)
        finally:
            backend.close()
    if refine > 0:
        short = [(c.workers, c.threads) for c in ranked(choice.candidates)
                 if c.workers > 1][:refine]
        if short:
            x, _ = adapter.preprocess(frames[0])
            st.concurrent_ms.update(measure_concurrent(
                make_backend, x, short, iters=max(4, iters // 2), log=log))
            choice = choose(st, camera_rate, latency_budget_ms, max_workers)
    if validate_s > 0:
        choice = validate(choice, make_backend, adapter, frames, validate_s, validate_top, log)
    log(f'autotune: {choice.reason}')
    return choice


__all__ = ['autotune']
