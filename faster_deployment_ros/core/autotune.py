"""Pick workers x threads x queue depth for a camera rate and a latency budget.

Why a model instead of a sweep: running every (workers, threads) pair through the pipeline takes
minutes; measuring pre/post once and one inference per thread count takes seconds, and how a
configuration behaves follows from those closely enough to rank the candidates. Where sessions
slow each other down (memory bandwidth, shared caches), `measure_concurrent` times W sessions
running at once for the short-listed configurations and the choice is redone with those numbers.

Policy (in this order):
1. among configurations that sustain the camera rate (with headroom) and whose predicted tail
   latency fits the budget, the lowest predicted latency (fewer cores on a tie);
2. if none sustains the rate within the budget: the highest throughput within the budget
   (frames will be dropped, the results stay fresh);
3. if nothing fits the budget at all: the lowest-latency configuration, and the reason says so.

ROS-free: the node calls `autotune` at configure, the benchmark command calls it too and writes
the chosen parameters as YAML.
"""
from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

LOG = logging.getLogger('faster_deployment_ros.autotune')

_now = time.perf_counter


def available_cores() -> int:
    """CPUs this process may run on (affinity-aware, unlike os.cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def reuse_large_buffers() -> bool:
    """glibc: keep freed multi-MB blocks (camera frames, tensors) in the heap for reuse.

    By default glibc maps every block over its (adaptive) mmap threshold afresh and unmaps it on
    free, so each 2.7 MB frame costs page faults and, at times, long stalls. This is what
    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=268435456 do, but those variables
    only work when set before the process starts. Returns False where it does not apply.
    """
    try:
        libc = ctypes.CDLL('libc.so.6')
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)
                    and libc.mallopt(m_trim_threshold, 256 * 1024 * 1024))
    except (OSError, AttributeError):
        return False


def thread_candidates(cores: int) -> List[int]:
    """Threads per worker that split `cores` evenly among 1..cores workers, and (4+ cores) the
    splits of all cores but one: a free core for the pipeline's own threads avoids intra-op
    stragglers, which validation then measures."""
    out = {cores // w for w in range(1, cores + 1)}
    if cores >= 4:
        out |= {(cores - 1) // w for w in range(1, cores)}
    return sorted(t for t in out if t > 0)


@dataclass
class StageTimes:
    """Measured stage times in ms (medians, with p90 for the tail)."""

    pre_ms: float
    post_ms: float
    infer_ms: Dict[int, float]                  # threads -> one session alone
    cores: int
    pre_p90_ms: Optional[float] = None
    post_p90_ms: Optional[float] = None
    infer_p90_ms: Dict[int, float] = field(default_factory=dict)
    # (workers, threads) -> per-call ms while `workers` sessions run at once
    concurrent_ms: Dict[Tuple[int, int], float] = field(default_factory=dict)
    overhead_ms: float = 0.0  # per-frame work outside the stages (decode, publish)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d['infer_ms'] = {str(k): round(v, 3) for k, v in self.infer_ms.items()}
        d['infer_p90_ms'] = {str(k): round(v, 3) for k, v in self.infer_p90_ms.items()}
        d['concurrent_ms'] = {f'{w}x{t}': round(v, 3) for (w, t), v in self.concurrent_ms.items()}
        return d


@dataclass
class Candidate:
    workers: int
    threads: int
    queue_size: int
    fps: float               # predicted capacity
    latency_ms: float        # predicted typical latency at the camera rate (queueing included)
    latency_tail_ms: float   # predicted ~p90, compared with the budget
    load: float              # camera rate / capacity (> 1: overloaded, frames dropped)
    sustains: bool
    within_budget: bool

    @property
    def label(self) -> str:
        return f'{self.workers}x{self.threads}'

    def to_dict(self) -> Dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class Choice:
    workers: int
    threads: int
    queue_size: int
    feasible: bool           # sustains the camera rate within the budget
    reason: str
    predicted: Candidate
    candidates: List[Candidate]
    camera_rate: float
    latency_budget_ms: float
    stage_times: Optional[StageTimes] = None
    measured: List[Dict[str, Any]] = field(default_factory=list)  # validation runs, if any

    def params(self) -> Dict[str, int]:
        return {'workers': self.workers, 'threads': self.threads, 'queue_size': self.queue_size}

    def to_dict(self) -> Dict[str, Any]:
        return {**self.params(), 'feasible': self.feasible, 'reason': self.reason,
                'camera_rate': self.camera_rate, 'latency_budget_ms': self.latency_budget_ms,
                'predicted': self.predicted.to_dict(),
                'candidates': [c.to_dict() for c in self.candidates],
                'stage_times': self.stage_times.to_dict() if self.stage_times else None,
                'measured': self.measured}


# ------------------------------------------------------------------------------ prediction
def predict(st: StageTimes, workers: int, threads: int, camera_rate: float,
            latency_budget_ms: float = float('inf'), max_load: float = 0.9) -> Candidate:
    """Capacity and latency of `workers` sessions of `threads` threads at `camera_rate` Hz.

    Capacity is the slowest of: the pre and post threads, W workers at their contended call time,
    and the CPU (pre + post + overhead + threads x one inference, in core-ms per frame). Latency
    is one frame's pass (its inference slowed by the workers busy at that rate, Little's law, and
    by oversubscribed cores) plus an M/D/1 queueing wait capped at one bottleneck period; when
    overloaded, the age of the newest frame (the pipeline's just-in-time schedule).
    """
    W, T = int(workers), int(threads)
    t1 = st.infer_ms[T]
    t1_tail = st.infer_p90_ms.get(T, t1)
    measured = (W, T) in st.concurrent_ms
    t_full = st.concurrent_ms[(W, T)] if measured else t1 * max(1.0, W * T / st.cores)
    side = st.pre_ms + st.post_ms + st.overhead_ms
    limits = [1000.0 * W / t_full, 1000.0 * st.cores / (side + T * t1)]
    limits += [1000.0 / v for v in (st.pre_ms, st.post_ms) if v > 0]
    fps = min(limits)

    rate = camera_rate if camera_rate > 0 else fps
    load = rate / fps
    busy = min(float(W), max(1.0, min(rate, fps) * t1 / 1000.0))
    t_at = t1 + (t_full - t1) * (busy - 1.0) / (W - 1) if W > 1 else t_full
    if not measured:
        demand = busy * T + min(rate, fps) * side / 1000.0
        t_at *= max(1.0, demand / st.cores)
    period = 1000.0 / fps
    if load >= 1.0:
        # overloaded, drop_oldest with just-in-time pre-processing takes the newest frame: its
        # age is half a camera period on average
        wait = 500.0 / rate
    else:  # M/D/1 mean wait; the bounded drop_oldest queue caps it near one period
        wait = min(period, load / (2.0 * (1.0 - load)) * period)
    service = st.pre_ms + t_at + st.post_ms + st.overhead_ms
    latency = service + wait
    tail = ((st.pre_p90_ms or st.pre_ms) + t_at * (t1_tail / t1) + (st.post_p90_ms or st.post_ms)
            + st.overhead_ms + 2.0 * wait)
    sustains = camera_rate <= 0 or fps * max_load >= camera_rate
    queue = 1 if (load <= 0.5 or load >= 1.0) else 2
    return Candidate(W, T, queue, fps, latency, tail, load, bool(sustains),
                     bool(tail <= latency_budget_ms))


def candidate_configs(st: StageTimes, max_workers: Optional[int] = None) -> List[Tuple[int, int]]:
    """(workers, threads) with workers x threads <= cores, for every measured thread count."""
    max_w = max_workers or st.cores
    return [(w, t) for t in sorted(st.infer_ms) for w in range(1, max_w + 1) if w * t <= st.cores]


def choose(st: StageTimes, camera_rate: float, latency_budget_ms: float,
           max_workers: Optional[int] = None, max_load: float = 0.9) -> Choice:
    """Rank every candidate configuration and pick one by the module's policy."""
    budget = (float(latency_budget_ms) if latency_budget_ms and latency_budget_ms > 0
              else float('inf'))
    cands = [predict(st, w, t, camera_rate, budget, max_load)
             for w, t in candidate_configs(st, max_workers)]
    if not cands:
        raise ValueError('no candidate configuration: measure at least one thread count')

    def cores_used(c: Candidate) -> int:
        return c.workers * c.threads

    ok = [c for c in cands if c.sustains and c.within_budget]
    in_budget = [c for c in cands if c.within_budget]
    rate_txt = f'{camera_rate:g} Hz' if camera_rate > 0 else 'free-running input'
    budget_txt = f'{budget:g} ms' if budget != float('inf') else 'no latency budget'
    head = f'camera {rate_txt}, {budget_txt}, {st.cores} cores'
    if ok:
        ok.sort(key=lambda c: (c.latency_ms, cores_used(c), c.workers))
        best, feasible = ok[0], True
        runner = f'; next: {ok[1].label} at {ok[1].latency_ms:.1f} ms' if len(ok) > 1 else ''
        why = (f'the lowest predicted latency of {len(ok)} of {len(cands)} configurations that '
               f'sustain the rate within the budget{runner}')
    elif in_budget:
        in_budget.sort(key=lambda c: (-c.fps, c.latency_ms))
        best, feasible = in_budget[0], False
        why = (f'no configuration sustains {rate_txt} within {budget_txt}: the highest throughput '
               f'within the budget; drop_oldest will drop about '
               f'{max(0.0, 100.0 * (1 - best.fps / camera_rate)):.0f}% of the frames')
    else:
        cands_by_lat = sorted(cands, key=lambda c: (c.latency_tail_ms, cores_used(c)))
        best, feasible = cands_by_lat[0], False
        fastest = max(cands, key=lambda c: c.fps)
        why = (f'NO configuration fits {budget_txt} (the fastest, {fastest.label}, gives '
               f'{fastest.fps:.1f} fps at {fastest.latency_tail_ms:.1f} ms): chose the lowest '
               f'latency one' + ('' if best.sustains else
                                 f', which cannot sustain {rate_txt} either'))
    reason = (f'{head}: chose {best.workers} worker(s) x {best.threads} thread(s), queue '
              f'{best.queue_size}: predicted {best.fps:.1f} fps (load {100 * best.load:.0f}%), '
              f'latency {best.latency_ms:.1f} ms, tail {best.latency_tail_ms:.1f} ms; {why}')
    return Choice(best.workers, best.threads, best.queue_size, feasible, reason, best,
                  sorted(cands, key=lambda c: (c.threads, c.workers)), float(camera_rate),
                  budget, st)


# ------------------------------------------------------------------------------ measurement
def _cycle(frames: Sequence[Any], n: int):
    for i in range(n):
        yield frames[i % len(frames)]


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
    threads = sorted(set(int(t) for t in (threads or thread_candidates(cores))), reverse=True)
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
            for i in range(warmup):
                backend.infer(tensors[i % len(tensors)][0])
            samples: List[float] = []
            for i in range(iters):
                if k == 0:  # pre and post once, next to the first session
                    frame = frames[i % len(frames)]
                    t0 = _now()
                    x, meta = adapter.preprocess(frame)
                    pre_s.append(_now() - t0)
                else:
                    x, meta = tensors[i % len(tensors)]
                t0 = _now()
                out = backend.infer(x)
                samples.append(_now() - t0)
                if k == 0:
                    t0 = _now()
                    adapter.postprocess(out, meta)
                    post_s.append(_now() - t0)
            infer_ms[t], infer_p90[t] = _median_p90(samples)
            log(f'autotune: {t} thread(s): inference {infer_ms[t]:.2f} ms (p90 {infer_p90[t]:.2f})')
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
    """Run the real pipeline (drop_oldest, just in time) fed at `rate` Hz for `seconds`:
    latency from submit to delivery, delivered rate and drops, the first 20% left out."""
    from .pipeline import Pipeline  # here: the chooser above stays importable on its own

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


def validate(choice: Choice, make_backend: Callable[[int], Any], adapter: Any,
             frames: Sequence[np.ndarray], seconds: float = 3.0, top: int = 3,
             log: Callable[[str], None] = LOG.info) -> Choice:
    """Run the model's `top` picks, and their variants that leave one core free, at the
    camera rate; choose again by what was measured (same policy, measured p99 for the tail)."""
    st = choice.stage_times
    rate = choice.camera_rate if choice.camera_rate > 0 else choice.predicted.fps
    ranked = sorted(choice.candidates, key=lambda c: (not (c.sustains and c.within_budget),
                                                      c.latency_ms, -c.fps))
    by_cfg = {(c.workers, c.threads): c for c in choice.candidates}
    short: List[Candidate] = []
    for c in ranked[:top]:
        short.append(c)
        if st is not None and st.cores >= 4 and c.workers * c.threads >= st.cores:
            spare = by_cfg.get((c.workers, (st.cores - 1) // c.workers))
            if spare is not None and spare not in short:
                short.append(spare)
    rows = []
    for c in short:
        m = measure_at_rate(make_backend, adapter, frames, c.workers, c.threads, c.queue_size,
                            rate, seconds)
        m['drop_rate'] = round(m['dropped'] / max(1, m['frames_in']), 4)
        m['sustains'] = bool(m['drop_rate'] <= 0.02)
        m['within_budget'] = bool(m['p99_ms'] <= choice.latency_budget_ms)
        rows.append(m)
        log(f'autotune: measured {c.label} q{c.queue_size} at {rate:g} Hz: p50 {m["p50_ms"]:.1f} '
            f'p99 {m["p99_ms"]:.1f} ms, {m["fps"]:.1f} fps, dropped {m["dropped"]}/'
            f'{m["frames_in"]}')
    ok = [m for m in rows if m['sustains'] and m['within_budget']]
    if ok:
        best = min(ok, key=lambda m: (m['p50_ms'], m['p99_ms']))
        why = 'the lowest measured p50 of those that kept up within the budget'
    elif any(m['within_budget'] for m in rows):
        best = max((m for m in rows if m['within_budget']), key=lambda m: m['fps'])
        why = 'none kept up within the budget: the highest measured rate within it'
    else:
        best = min(rows, key=lambda m: m['p99_ms'])
        why = 'NONE met the budget: the lowest measured p99'
    cand = by_cfg[(best['workers'], best['threads'])]
    table = ', '.join(f'{m["workers"]}x{m["threads"]} p50 {m["p50_ms"]:.1f}/p99 '
                      f'{m["p99_ms"]:.1f} ms drop {100 * m["drop_rate"]:.0f}%' for m in rows)
    reason = (f'{choice.reason.split(": chose", 1)[0]}: chose {cand.workers} worker(s) x '
              f'{cand.threads} thread(s), queue {cand.queue_size}, measured at {rate:g} Hz: '
              f'p50 {best["p50_ms"]:.1f} ms, p99 {best["p99_ms"]:.1f} ms; {why} '
              f'[{table}]; model: {choice.reason.split("; ", 1)[0].split(": ", 1)[-1]}')
    return Choice(cand.workers, cand.threads, cand.queue_size, bool(ok), reason, cand,
                  choice.candidates, choice.camera_rate, choice.latency_budget_ms, st, rows)


def autotune(make_backend: Callable[[int], Any], make_adapter: Callable[[Any], Any],
             frames: Sequence[np.ndarray], camera_rate: float, latency_budget_ms: float,
             threads: Optional[Sequence[int]] = None, max_workers: Optional[int] = None,
             cores: Optional[int] = None, iters: int = 15, refine: int = 3,
             overhead_ms: float = 0.0, time_limit_s: Optional[float] = None,
             validate_s: float = 0.0, validate_top: int = 3,
             log: Callable[[str], None] = LOG.info) -> Choice:
    """Measure, choose, time the `refine` best multi-worker candidates running at once
    (contention the model can only guess) and choose again; with `validate_s` > 0, finally
    run the short list through the real pipeline at the camera rate (see `validate`)."""
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
        ranked = sorted(choice.candidates, key=lambda c: (not (c.sustains and c.within_budget),
                                                          c.latency_ms, -c.fps))
        short = [(c.workers, c.threads) for c in ranked if c.workers > 1][:refine]
        if short:
            x, _ = adapter.preprocess(frames[0])
            st.concurrent_ms.update(measure_concurrent(
                make_backend, x, short, iters=max(4, iters // 2), log=log))
            choice = choose(st, camera_rate, latency_budget_ms, max_workers)
    if validate_s > 0:
        choice = validate(choice, make_backend, adapter, frames, validate_s, validate_top, log)
    log(f'autotune: {choice.reason}')
    return choice


def params_yaml(params: Dict[str, Any], comment: str = '', node: str = '/**') -> str:
    """A ROS 2 parameter file for `params` (scalars and flat lists), `comment` on top."""
    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return 'true' if v else 'false'
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return '[' + ', '.join(fmt(x) for x in v) + ']'
        return '"' + str(v).replace('\\', '\\\\').replace('"', '\\"') + '"'

    lines = [f'# {line}' for line in comment.splitlines()] if comment else []
    lines += [f'{node}:', '  ros__parameters:']
    nested: Dict[str, Dict[str, Any]] = {}
    for k, v in params.items():
        if '.' in k:
            ns, sub = k.split('.', 1)
            nested.setdefault(ns, {})[sub] = v
        else:
            lines.append(f'    {k}: {fmt(v)}')
    for ns, items in nested.items():
        lines.append(f'    {ns}:')
        lines += [f'      {k}: {fmt(v)}' for k, v in items.items()]
    return '\n'.join(lines) + '\n'


__all__ = ['StageTimes', 'Candidate', 'Choice', 'predict', 'choose', 'candidate_configs',
           'measure_stages', 'measure_concurrent', 'measure_at_rate', 'validate', 'autotune',
           'available_cores',
           'thread_candidates', 'params_yaml', 'reuse_large_buffers']
