"""Measurement for the cost model.

Stage times of one session, several sessions at once, and the real pipeline fed at a camera rate.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .cost_model import StageTimes, thread_candidates
from ..pipeline import Pipeline
from ..stage_timing import time_stages

LOG = logging.getLogger('faster_deployment_ros.autotune')

_now = time.perf_counter


def available_cores() -> int:
    """Return how many CPUs this process may run on (affinity-aware, unlike os.cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _median_p90(samples_s: Sequence[float]) -> Tuple[float, float]:
    a = np.asarray(samples_s, np.float64) * 1000.0
    return float(np.median(a)), float(np.percentile(a, 90))


def measure_stages(make_backend: Callable[[int], Any], make_adapter: Callable[[Any], Any],
                   frames: Sequence[np.ndarray], threads: Optional[Sequence[int]] = None,
                   iters: int = 20, warmup: int = 3, cores: Optional[int] = None,
                   overhead_ms: float = 0.0, time_limit_s: Optional[float] = None,
                   log: Callable[[str], None] = LOG.info) -> StageTimes:
    """Time pre and post on `frames`, and one session's inference for each thread count.

    `make_backend(threads)` loads a session; `make_adapter(backend)` builds the model adapter.
    Thread counts are measured from the most to the fewest; once `time_limit_s` is spent the
    remaining ones are skipped (logged), keeping at least one.
    """
    cores = cores or available_cores()
    threads = sorted({int(t) for t in (threads or thread_candidates(cores))}, reverse=True)
    if not frames:
        raise ValueError('measure_stages needs at least one frame')
    t_start = _now()
    pre_s: List[float] = []
    post_s: List[float] = []
    infer_ms: Dict[int, float] = {}
    infer_p90: Dict[int, float] = {}
    adapter = None
    for k, t in enumerate(threads):
        if k and time_limit_s is not None and _now() - t_start > time_limit_s:
            log(f'autotune: time limit {time_limit_s:g} s reached, not measuring threads '
                f'{", ".join(map(str, threads[k:]))}')
            break
        backend = make_backend(t)
        try:
            if adapter is None:
                adapter = make_adapter(backend)
                tensors = [adapter.preprocess(f) for f in frames[:max(1, min(len(frames), 8))]]
            # the benchmark's timing loop; pre and post once, next to the first session
            s = time_stages(backend.infer, adapter, frames, iters=iters, warmup=warmup,
                            prepared=None if k == 0 else tensors)
            pre_s += s.pre
            post_s += s.post
            infer_ms[t], infer_p90[t] = _median_p90(s.infer)
            log(f'autotune: {t} thread(s): inference {infer_ms[t]:.2f} ms '
                f'(p90 {infer_p90[t]:.2f})')
        finally:
            close = getattr(backend, 'close', None)
            if close:
                close()
    pre, pre90 = _median_p90(pre_s)
    post, post90 = _median_p90(post_s)
    log(f'autotune: pre {pre:.2f} ms, post {post:.2f} ms, overhead {overhead_ms:.2f} ms')
    return StageTimes(pre, post, infer_ms, cores, pre90, post90, infer_p90, {}, float(overhead_ms))


def measure_concurrent(make_backend: Callable[[int], Any], inputs: Sequence[np.ndarray],
                       configs: Sequence[Tuple[int, int]], iters: int = 10, warmup: int = 2,
                       log: Callable[[str], None] = LOG.info) -> Dict[Tuple[int, int], float]:
    """Median per-call inference ms with W sessions of T threads all running at once."""
    out: Dict[Tuple[int, int], float] = {}
    for w, t in configs:
        backends = [make_backend(t) for _ in range(w)]
        samples: List[List[float]] = [[] for _ in range(w)]
        barrier = threading.Barrier(w)
        errors: List[BaseException] = []

        def run(i: int) -> None:
            b = backends[i]
            try:
                for _ in range(warmup):
                    b.infer(inputs)
                barrier.wait()
                for _ in range(iters):
                    t0 = _now()
                    b.infer(inputs)
                    samples[i].append(_now() - t0)
            except BaseException as e:  # noqa: BLE001 - re-raised below
                errors.append(e)
                barrier.abort()

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(w)]
        try:
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        finally:
            for b in backends:
                close = getattr(b, 'close', None)
                if close:
                    close()
        real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
        if real:
            raise real[0]
        out[(w, t)] = _median_p90([s for per in samples for s in per])[0]
        log(f'autotune: {w} sessions x {t} thread(s) at once: {out[(w, t)]:.2f} ms per call')
    return out


def measure_at_rate(make_backend: Callable[[int], Any], adapter: Any,
                    frames: Sequence[np.ndarray], workers: int, threads: int, queue_size: int,
                    rate: float, seconds: float) -> Dict[str, Any]:
    """Run the real pipeline (drop_oldest, just in time) fed at `rate` Hz for `seconds`.

    Latency from submit to delivery, delivered rate and drops, the first 20% left out.
    """
    backends = [make_backend(threads) for _ in range(workers)]
    lat: List[Tuple[float, float]] = []
    lock = threading.Lock()

    def on_result(fr: Any) -> None:
        t = _now()
        if fr.ok:
            with lock:
                lat.append((fr.context, t))

    try:
        x, _ = adapter.preprocess(frames[0])
        for b in backends:
            b.infer(x)
        p = Pipeline(adapter.preprocess, [b.infer for b in backends], adapter.postprocess,
                     on_result, queue_size=queue_size, full_policy='drop_oldest',
                     name=f'autotune-{workers}x{threads}', schedule='just_in_time')
        t0 = _now()
        n = int(seconds * rate)
        for i in range(n):
            due = t0 + i / rate
            wait = due - _now()
            if wait > 0:
                time.sleep(wait)
            p.submit(frames[i % len(frames)], context=_now())
        p.close(drain=True, timeout=30.0)
        stats = p.stats()
    finally:
        for b in backends:
            close = getattr(b, 'close', None)
            if close:
                close()
    warm = t0 + 0.2 * seconds
    steady = sorted((t_in, t_out) for t_in, t_out in lat if t_in >= warm)
    ms = np.asarray([t_out - t_in for t_in, t_out in steady]) * 1000.0
    span = steady[-1][1] - steady[0][1] if len(steady) > 1 else 0.0
    pct = np.percentile(ms, (50, 90, 99)) if ms.size else (float('inf'),) * 3
    return {'workers': workers, 'threads': threads, 'queue_size': queue_size,
            'p50_ms': round(float(pct[0]), 2), 'p90_ms': round(float(pct[1]), 2),
            'p99_ms': round(float(pct[2]), 2),
            'fps': round((len(steady) - 1) / span, 2) if span > 0 else 0.0,
            'frames_in': stats['frames_in'], 'frames_out': stats['frames_out'],
            'dropped': stats['dropped']}


__all__ = ['available_cores', 'measure_stages', 'measure_concurrent', 'measure_at_rate']
