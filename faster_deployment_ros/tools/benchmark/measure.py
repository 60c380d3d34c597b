"""The ROS-free measurements.

The bare model per stage, a serial loop, the ordered pipeline (free-running or at a camera rate),
the auto-tuner, and ultralytics' own predict loop.

Every bare number comes from core.stage_timing.time_stages, the loop the auto-tuner uses too.
"""
from __future__ import annotations

import json
from pathlib import Path
import subprocess
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .common import foreign, lat_summary, Model, Progress, REPO
from ..processes import CpuWatch, load_avg
from ..report import order_violations
from ...core.autotune import autotune, Choice
from ...core.pipeline import FrameResult
from ...core.stage_timing import time_stages
from ...core.stats import summarize

_now = time.perf_counter


def bench_bare(model: Model, frames: List[np.ndarray], threads: Sequence[int], iters: int,
               progress: Progress) -> List[Dict[str, Any]]:
    """Each stage timed alone, frame after frame, for every thread count."""
    out = []
    for t in threads:
        backend = model.make(t)
        watch = CpuWatch()
        s = time_stages(backend.infer, model.adapter, frames, iters=iters, warmup=3,
                        on_frame=lambda k, s: progress.update(
                            f'bare {t} thr', k, iters, f'infer {1e3 * s.infer[-1]:.1f} ms'))
        cw = watch.read()
        backend.close()
        r = {'threads': t, 'iters': iters, 'pre_ms': lat_summary(s.pre),
             'infer_ms': lat_summary(s.infer), 'post_ms': lat_summary(s.post),
             'frame_ms': lat_summary(s.frame), 'cpu_cores': round(cw['own'], 3),
             'foreign_cpu_cores': round(cw['foreign'], 2),
             'infer_fps': round(1.0 / float(np.mean(s.infer)), 2),
             'frame_fps': round(1.0 / float(np.mean(s.frame)), 2),
             'load_avg_1m': load_avg()}
        out.append(r)
        progress.done(f'bare     {t:2d} thread(s): pre {r["pre_ms"]["p50"]:6.2f}  infer '
                      f'{r["infer_ms"]["p50"]:7.2f}  post {r["post_ms"]["p50"]:6.2f} ms (p50); '
                      f'infer-only {r["infer_fps"]:7.1f} fps, frame '
                      f'{r["frame_ms"]["p50"]:.2f} ms, '
                      f'CPU {r["cpu_cores"]:.2f} cores{foreign(r)}')
    return out


def bench_serial(model: Model, frames: List[np.ndarray], threads: int, duration_s: float,
                 progress: Progress) -> Dict[str, Any]:
    """Pre -> infer -> post per frame, one after the other: what a plain node does."""
    backend = model.make(threads)
    adapter = model.adapter
    for i in range(3):
        backend.infer(adapter.preprocess(frames[i])[0] if i < len(frames) else
                      adapter.preprocess(frames[0])[0])
    lat, n = [], 0
    watch, t0 = CpuWatch(), _now()
    while _now() - t0 < duration_s:
        s = _now()
        x, meta = adapter.preprocess(frames[n % len(frames)])
        adapter.postprocess(backend.infer(x), meta)
        lat.append(_now() - s)
        n += 1
        progress.update('serial', _now() - t0, duration_s, f'{n} frames')
    wall = _now() - t0
    cw = watch.read()
    cpu = cw['own']
    backend.close()
    r = {'config': f'serial 1x{threads}', 'threads': threads, 'frames': n,
         'fps': round(n / wall, 2), 'latency_ms': lat_summary(lat), 'cpu_cores': round(cpu, 3),
         'foreign_cpu_cores': round(cw['foreign'], 2),
         'frames_in': n, 'frames_out': n, 'dropped': 0, 'order_violations': 0}
    progress.done(f'serial    1x{threads}: {r["fps"]:7.1f} fps, latency p50 '
                  f'{r["latency_ms"]["p50"]:.1f} ms, CPU {cpu:.2f} cores{foreign(r)}')
    return r


def run_pipeline(model: Model, frames: List[np.ndarray], workers: int, threads: int,
                 queue_size: int, full_policy: str, rate: float, duration_s: float,
                 progress: Progress, label: str = '', window_s: float = 0.0,
                 schedule: str = 'eager') -> Dict[str, Any]:
    """Feed the pipeline for `duration_s`.

    Free-running (rate 0, the producer blocks) or at `rate` Hz. Latency runs from the producer
    taking the frame to its delivery.
    """
    lock = threading.Lock()
    # index, t_capture, t_delivered, worker, ok
    got: List[Tuple[int, float, float, int, bool]] = []

    def on_result(fr: FrameResult) -> None:
        t = _now()
        with lock:
            got.append((fr.context[0], fr.context[1], t, fr.worker, fr.ok))

    name = label or f'{workers}x{threads}'
    rt = model.runtime(workers, threads, queue_size, full_policy, on_result, f'bench-{name}',
                       schedule)
    x, _ = model.adapter.preprocess(frames[0])
    for b in rt.backends:
        for _ in range(2):
            b.infer(x)
    warm = min(1.0, 0.2 * duration_s)
    i = 0
    watch, t0 = CpuWatch(), _now()
    try:
        while True:
            now = _now()
            if now - t0 >= duration_s:
                break
            if rate > 0:
                due = t0 + i / rate
                if due > now:
                    time.sleep(due - now)
            rt.submit(frames[i % len(frames)], context=(i, _now()))
            i += 1
            if i % 8 == 0:
                with lock:
                    n = len(got)
                progress.update(f'pipeline {name}', _now() - t0, duration_s, f'{n} out')
        t_stop = _now()
        rt.flush(timeout=60)
        stats = rt.stats()
    finally:
        rt.close()
    cw = watch.read()
    cpu = cw['own']
    idx = [g[0] for g in got]
    steady = [g for g in got if g[1] >= t0 + warm and g[4]]
    lat = [g[2] - g[1] for g in steady]
    if len(steady) > 1:
        fps = (len(steady) - 1) / (steady[-1][2] - steady[0][2])
    else:
        fps = 0.0
    sched = {'eager': '', 'just_in_time': ' jit'}[schedule]
    r = {'config': f'pipeline {name}' + ('' if rate <= 0 else f' @{rate:.4g}Hz{sched}'),
         'workers': workers, 'threads': threads, 'queue_size': queue_size,
         'full_policy': full_policy, 'schedule': schedule, 'input_rate': rate or None,
         'duration_s': duration_s,
         'frames_in': stats['frames_in'], 'frames_out': stats['frames_out'],
         'dropped': stats['dropped'], 'failed': stats['failed'], 'delivered': len(got),
         'order_violations': order_violations(idx), 'fps': round(fps, 2),
         'latency_ms': lat_summary(lat), 'cpu_cores': round(cpu, 3),
         'foreign_cpu_cores': round(cw['foreign'], 2), 'per_worker': stats['per_worker'],
         'stages_ms': {k: {q: round(v, 3) for q, v in s.items() if q in ('p50', 'p99')}
                       for k, s in stats['stages'].items()},
         'submitted_s': round(t_stop - t0, 3), 'load_avg_1m': load_avg()}
    if window_s > 0 and steady:
        r['windows'] = windows(np.array([g[1] for g in steady]) - t0, np.array(lat), window_s,
                               workers)
    progress.done(f'pipeline {r["config"]:<22}: {r["fps"]:7.1f} fps, latency p50 '
                  f'{r["latency_ms"]["p50"]:7.1f} p99 {r["latency_ms"]["p99"]:7.1f} ms, in '
                  f'{r["frames_in"]} out {r["frames_out"]} dropped {r["dropped"]}, order '
                  f'violations {r["order_violations"]}, CPU {cpu:.2f}{foreign(r)}')
    return r


def windows(t_s: np.ndarray, lat_s: np.ndarray, window_s: float,
            workers: int = 1) -> List[Dict[str, float]]:
    """Latency p50/p99 and delivered rate per `window_s` slice of a long run.

    `excess` is p50 minus the time the workers need per frame (workers / rate): what waiting adds,
    so it grows with a queue but not when the machine merely slows down.
    """
    out = []
    if t_s.size == 0:
        return out
    for k in range(int(t_s.max() // window_s) + 1):
        sel = (t_s >= k * window_s) & (t_s < (k + 1) * window_s)
        if sel.any():
            s = summarize(lat_s[sel])
            fps = int(sel.sum()) / window_s
            out.append({'t_s': round(k * window_s, 1), 'n': int(sel.sum()),
                        'fps': round(fps, 2), 'p50': round(s['p50'], 2),
                        'p99': round(s['p99'], 2),
                        'excess': round(s['p50'] - 1000.0 * workers / fps, 2)})
    return out


def flatness(win: List[Dict[str, float]]) -> Dict[str, Any]:
    """First vs last full window, and the trend: flat = the waiting (`excess`) did not grow."""
    full = win[1:-1] if len(win) > 3 else win
    if len(full) < 2:
        return {'flat': None}
    first, last = full[0], full[-1]
    ts = [w['t_s'] for w in full]
    slope = float(np.polyfit(ts, [w['p50'] for w in full], 1)[0]) * 60.0
    ex_slope = float(np.polyfit(ts, [w['excess'] for w in full], 1)[0]) * 60.0
    return {'first_p50': first['p50'], 'last_p50': last['p50'], 'first_p99': first['p99'],
            'last_p99': last['p99'], 'p50_slope_ms_per_min': round(slope, 3),
            'first_fps': first['fps'], 'last_fps': last['fps'],
            'first_excess': first['excess'], 'last_excess': last['excess'],
            'excess_slope_ms_per_min': round(ex_slope, 3),
            'max_window_p99': max(w['p99'] for w in full),
            'flat': bool(last['excess'] <= 1.25 * max(first['excess'], 0.0) + 5.0
                         and ex_slope < 5.0)}


def bench_autotune(model: Model, frames: List[np.ndarray], camera_rate: float, budget_ms: float,
                   iters: int, max_workers: Optional[int], validate_s: float, cores: int,
                   log: Callable[[str], None]) -> Choice:
    return autotune(model.make, lambda b: model.adapter, frames, camera_rate, budget_ms,
                    max_workers=max_workers, iters=iters, cores=cores,
                    validate_s=validate_s, log=log)


def bare_reference(backend, adapter, frames: List[np.ndarray], seconds: float,
                   rate_hz: float = 0.0) -> Dict[str, Any]:
    """Return the bare backend, frame after frame (or paced at `rate_hz`), for `seconds`.

    The reference a ROS run right after it is compared with (on a shared machine the load drifts).
    """
    watch = CpuWatch()
    s = time_stages(backend.infer, adapter, frames, iters=5, seconds=seconds, warmup=2,
                    rate_hz=rate_hz)
    cw = watch.read()
    return {'iters': len(s), 'rate_hz': rate_hz or None,
            'infer_fps': round(1.0 / float(np.mean(s.infer)), 2),
            'frame_fps': round(1.0 / float(np.mean(s.frame)), 2),
            'infer_p50_ms': round(1e3 * float(np.median(s.infer)), 3),
            'frame_p50_ms': round(1e3 * float(np.median(s.frame)), 3),
            'frame_ms': lat_summary(s.frame), 'pre_ms': lat_summary(s.pre),
            'infer_ms': lat_summary(s.infer), 'post_ms': lat_summary(s.post),
            'cpu_ms_per_frame': round(1e3 * s.cpu_s / max(1, len(s)), 3),
            'foreign_cpu_cores': round(cw['foreign'], 2), 'load_avg_1m': load_avg()}


def infer_cpu_ms(backend, adapter, frames: List[np.ndarray], iters: int = 20) -> float:
    """CPU milliseconds (all threads of this process) one inference costs, alone."""
    prepared = [adapter.preprocess(f) for f in frames[:4]]
    s = time_stages(backend.infer, adapter, frames, iters=iters, warmup=2, prepared=prepared)
    return round(1e3 * s.cpu_s / max(1, len(s)), 3)


def bench_ultralytics(python: str, model: str, video: Path, frames: int,
                      imgsz: int, conf: float, timeout: float = 600) -> Dict[str, Any]:
    """Ultralytics' own predict loop on the same ONNX file and frames (another process)."""
    script = REPO / 'benchmarks' / 'ultralytics_predict.py'
    cmd = [python, str(script), '--model', model, '--video', str(video), '--frames', str(frames),
           '--imgsz', str(imgsz), '--conf', str(conf)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {'error': str(exc)}
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith('{')]
    if res.returncode != 0 or not lines:
        return {'error': (res.stderr or res.stdout)[-800:]}
    out = json.loads(lines[-1])
    out['load_avg_1m'] = load_avg()
    return out
