"""N runtimes of the package fed by camera-like threads: the client side of the Triton benchmarks.

ROS-free (benchmarks/triton_clients.py on this machine, benchmarks/triton_gpu_row.py on the GPU
machine, which has no rclpy, both import it): `serial` times one backend's `infer` alone,
`clients` runs N `PerceptionRuntime`s (one worker each) on one backend kind and reports
delivered frames/s and latency.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Dict, List

import numpy as np

#: the decode each benchmark's model needs: family, conf_threshold
FAMILIES = {'yolox': 0.3, 'yolov8': 0.25}


def pct(values: List[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1e3 if values else float('nan')


def adapter_maker(family: str):
    """`make_adapter(backend)` for `family` at its benchmark threshold."""
    def make_adapter(backend):
        from faster_deployment_ros.models import create_adapter
        return create_adapter(family, backend.inputs, backend.outputs, backend.metadata,
                              conf_threshold=FAMILIES[family])
    return make_adapter


def serial(model_path: str, backend: str, x: List[np.ndarray], iters: int,
           **options: Any) -> Dict[str, Any]:
    """`infer` alone, one request at a time, after 10 warm-up calls: p50 / p99 ms."""
    from faster_deployment_ros.backends import create_backend
    with create_backend(backend, model_path, **options) as b:
        for _ in range(10):
            b.infer(x)
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            b.infer(x)
            times.append(time.perf_counter() - t0)
        shm = getattr(b, 'shared_memory', None)
    return {'p50': pct(times, 50), 'p99': pct(times, 99), 'shared_memory': shm}


def clients(model_path: str, backend: str, n: int, frames: List[np.ndarray], duration: float,
            rate: float = 0.0, threads: int = 0, family: str = 'yolov8',
            **options: Any) -> Dict[str, float]:
    """N runtimes (one worker each) fed for `duration` s after 1 s of warm-up.

    rate 0: flat out (block, queue 2: throughput); rate > 0: each client a `rate` Hz camera
    (drop_oldest, queue 1, the robot default: latency, and the share of frames delivered).
    """
    from faster_deployment_ros.runtime import PerceptionRuntime, RuntimeConfig
    lat: List[float] = []
    lock = threading.Lock()
    window = {'start': float('inf'), 'end': float('inf')}
    count, failed = [0], [0]

    def on_result(r) -> None:
        now = time.monotonic()
        if r.ok and window['start'] <= now <= window['end']:
            with lock:
                lat.append(r.timings['total'])
                count[0] += 1
        elif not r.ok:
            failed[0] += 1
            if failed[0] <= 3:
                print(f'  frame failed: {r.error}', file=sys.stderr)

    policy, queue = ('drop_oldest', 1) if rate > 0 else ('block', 2)
    runtimes = [PerceptionRuntime(
        RuntimeConfig(model_path=model_path, backend=backend, model_family=family, workers=1,
                      threads=threads, queue_size=queue, full_policy=policy,
                      backend_options=dict(options), name=f'client{i}'),
        adapter_maker(family), on_result) for i in range(n)]
    stop = threading.Event()
    sent = [0] * n

    def feed(k: int) -> None:
        rt, i, t0 = runtimes[k], k, time.monotonic()
        while not stop.is_set():
            if rate > 0:
                due = t0 + (i - k) / rate
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
            now = time.monotonic()
            if rt.submit(frames[i % len(frames)], context=i, timeout=1.0) and (
                    window['start'] <= now <= window['end']):
                sent[k] += 1
            i += 1

    feeders = [threading.Thread(target=feed, args=(k,), daemon=True) for k in range(n)]
    for t in feeders:
        t.start()
    time.sleep(1.0)
    window['start'] = time.monotonic()
    window['end'] = window['start'] + duration
    time.sleep(duration)
    stop.set()
    for t in feeders:
        t.join(5)
    for rt in runtimes:
        rt.close()
    return {'fps': count[0] / duration, 'p50': pct(lat, 50), 'p99': pct(lat, 99),
            'frames': count[0], 'sent': sum(sent), 'failed': failed[0]}
