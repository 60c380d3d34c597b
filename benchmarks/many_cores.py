"""Many cores: N pipeline workers x 1 thread against N independent single-thread processes.

For each model and each N (ROS-free, CPU only):

  (a) independent: N processes (multiprocessing, spawn), each one ONNX Runtime session of the
      project's backend with 1 intra-op and 1 inter-op thread (spinning as the backend sets it)
      and OpenCV on 1 thread, running the project's adapter pre-process -> infer -> post-process
      over the same decoded frames, free-running for `--seconds`: total frames/s.
  (b) pipeline: `PerceptionRuntime(RuntimeConfig(model, workers=N, threads=1, full_policy=
      'block'))` fed as fast as it accepts: ordered frames/s delivered, order violations in the
      delivered sequence, and what each pipeline thread spent (stage times from
      `runtime.stats()['stages']` and per frame, thread CPU time, and each thread's share on a
      CPU / runnable / blocked from /proc/self/task/*/schedstat). `--variant` adds block runs
      with process settings: `cv2=1` (OpenCV on 1 thread, the default extra run), `si=S`
      (sys.setswitchinterval), `nice=K` (the nice value of the inference worker threads; with
      `procs`, of every thread of the worker processes), `prefeed=K` (K feeder threads
      pre-process and the pipeline's pre stage passes their tensors on),
      `procs` (`worker_mode='processes'`: N worker processes, each pre + infer + post of whole
      frames, frames through shared memory; CPU counted over the parent and its workers),
      `fpp=K` (with `procs`: frames a worker process may hold, one running and K - 1 queued;
      the default is core.process_pipeline.FRAMES_PER_PROCESS).
  (c) paced: the same runtime with 'drop_oldest', fed at `--load` (0.8) x the rate of (a):
      p50 / p99 latency (frame due to result delivered) against the single-frame p50 (one
      frame at a time on one thread, OpenCV on 1 thread, measured first, alone). For
      reference, (a) paced the same way: each process a camera of rate / N, staggered, latency
      from when its frame was due: what N independent copies give at that load.
      `--paced-variant` runs it with a variant's settings ('best': the fastest block run's).

Targets (issue 23, item 3): (b) >= 90 % of (a); (c) p99 <= 2 x single-frame p50; 0 order
violations. Prints a table at the end; writes every number to `--out` (JSON).

  python benchmarks/many_cores.py --model yolox=YOLOX.onnx --model yolov8n=YOLOV8N.onnx
      --workers 4 8 16 --seconds 8 --video FRAMES.avi --out many_cores.json   (one line)
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
from pathlib import Path
import platform
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_now = time.perf_counter  # CLOCK_MONOTONIC: comparable across processes on Linux

#: backend options of every session, in the processes and in the pipeline
BACKEND_OPTIONS = {'threads': 1, 'inter_op_threads': 1}


# ---- inputs -------------------------------------------------------------------------------
def load_frames(video: Optional[str], count: int, step: int) -> List[np.ndarray]:
    """`count` decoded BGR frames (every `step`-th) of `video`; synthetic 720p without one."""
    if video:
        from faster_deployment_ros.tools.frames import read_frames
        frames = read_frames(Path(video), count, step)
        if not frames:
            raise SystemExit(f'no frames in {video}: give a readable video or image folder')
        return frames
    from faster_deployment_ros.runtime.perception_runtime import synthetic_frame
    return [synthetic_frame()]


def make_backend(model: str) -> Any:
    from faster_deployment_ros.backends import create_backend
    return create_backend('onnxruntime', model, **BACKEND_OPTIONS)


def make_adapter(backend: Any) -> Any:
    from faster_deployment_ros.models import create_adapter
    return create_adapter('auto', backend.inputs, backend.outputs, backend.metadata)


def summarize_ms(values_s: Sequence[float]) -> Dict[str, float]:
    from faster_deployment_ros.core.stats import summarize
    return {k: round(v, 3) for k, v in summarize(values_s).items()}


# ---- (a) independent processes -----------------------------------------------------------
def independent_worker(model: str, frames_path: str, start: Any, t_box: Any,
                       seconds: float, results: Any, index: int, rate: float = 0.0,
                       phase: float = 0.0) -> None:
    """One process: load, warm up, wait for the common start time, run pre/infer/post.

    `rate` > 0: frame j is due at start + (j + phase) / rate, a camera of its own behind an
    input queue of 1 with drop_oldest: when the process comes back for a frame it takes the
    newest one due (older ones count as dropped); latency counts from when it was due.
    """
    try:
        import cv2
        cv2.setNumThreads(1)
        frames = list(np.load(frames_path))  # a private copy, as an independent process has
        backend = make_backend(model)
        adapter = make_adapter(backend)
        for k in range(5):
            x, meta = adapter.preprocess(frames[k % len(frames)])
            adapter.postprocess(backend.infer(x), meta)
        results.put(('ready', index, None))
        start.wait()
        t_start = t_box.value
        t_end = t_start + seconds
        while _now() < t_start:
            time.sleep(0.0005)
        pre: List[float] = []
        infer: List[float] = []
        post: List[float] = []
        latency: List[float] = []
        cpu0 = time.process_time()
        k = j = skipped = 0  # frames done, camera frame index, frames the camera overwrote
        while True:
            due = 0.0
            if rate > 0:
                # the newest frame already due (queue 1, drop_oldest), else wait for the next
                newest = int((_now() - t_start) * rate - phase)
                if newest > j:
                    skipped += newest - j
                    j = newest
                due = t_start + (j + phase) / rate
                wait = due - _now()
                if wait > 0:
                    time.sleep(wait)
                j += 1
            t0 = _now()
            if t0 >= t_end:
                break
            x, meta = adapter.preprocess(frames[k % len(frames)])
            t1 = _now()
            y = backend.infer(x)
            t2 = _now()
            adapter.postprocess(y, meta)
            t3 = _now()
            if t3 > t_end:  # finished after the window: not counted
                break
            pre.append(t1 - t0)
            infer.append(t2 - t1)
            post.append(t3 - t2)
            latency.append(t3 - (due if rate > 0 else t0))
            k += 1
        cpu = time.process_time() - cpu0
        results.put(('done', index, {'frames': k, 'cpu_s': cpu, 'pre': pre, 'infer': infer,
                                     'post': post, 'latency': latency, 'skipped': skipped}))
    except BaseException as exc:  # noqa: B902 - the parent must hear of it, not hang
        results.put(('error', index, f'{type(exc).__name__}: {exc}'))


def run_independent(model: str, frames_path: str, n: int, seconds: float,
                    rate: float = 0.0) -> Dict[str, Any]:
    """N processes free-running (or sharing `rate` frames/s, staggered): frames/s, stages."""
    ctx = mp.get_context('spawn')
    start = ctx.Event()
    t_box = ctx.Value('d', 0.0)
    results = ctx.Queue()
    procs = [ctx.Process(target=independent_worker, name=f'independent{i}',
                         args=(model, frames_path, start, t_box, seconds, results, i,
                               rate / n, i / n))
             for i in range(n)]
    for p in procs:
        p.start()
    try:
        ready = 0
        while ready < n:
            kind, index, value = results.get(timeout=120)
            if kind == 'error':
                raise RuntimeError(f'independent process {index} failed: {value}')
            ready += 1
        t_box.value = _now() + 0.2
        start.set()
        done: Dict[int, Dict[str, Any]] = {}
        while len(done) < n:
            kind, index, value = results.get(timeout=seconds + 120)
            if kind == 'error':
                raise RuntimeError(f'independent process {index} failed: {value}')
            done[index] = value
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    frames = sum(d['frames'] for d in done.values())
    stage = {k: summarize_ms([v for d in done.values() for v in d[k]])
             for k in ('pre', 'infer', 'post', 'latency')}
    return {'fps': frames / seconds, 'frames': frames, 'seconds': seconds, 'rate_in': rate,
            'dropped': sum(d['skipped'] for d in done.values()),
            'per_process_fps': [done[i]['frames'] / seconds for i in range(n)],
            'cpu_cores': sum(d['cpu_s'] for d in done.values()) / seconds,
            'stages_ms': stage}


# ---- the pipeline -------------------------------------------------------------------------
def parse_variant(text: str) -> Dict[str, float]:
    """'cv2=1,si=0.0005,nice=10' -> settings of a pipeline run ('' or 'base': none)."""
    out: Dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(','))):
        if part == 'base':
            continue
        if part == 'procs':
            out['procs'] = 1.0
            continue
        key, _, value = part.partition('=')
        if key not in ('cv2', 'si', 'nice', 'prefeed', 'fpp') or not value:
            raise SystemExit(f'variant {text!r}: give cv2=THREADS (OpenCV threads), si=SECONDS '
                             '(sys.setswitchinterval), nice=K (the nice value of the inference '
                             'worker threads), prefeed=K (K feeder threads pre-process, '
                             'the pre stage of the pipeline passes their tensors on), procs '
                             '(worker processes), fpp=K (frames per worker process), '
                             'comma-separated, or base')
        out[key] = float(value)
    return out


def schedstat(threads: Sequence[threading.Thread]) -> Dict[str, Tuple[float, float]]:
    """(seconds on a CPU, seconds runnable but waiting for one) of each thread, by name."""
    out = {}
    for t in threads:
        tid = getattr(t, 'native_id', None)
        if tid is None or not t.is_alive():
            continue
        try:
            run_ns, wait_ns, _ = Path(f'/proc/self/task/{tid}/schedstat').read_text().split()
        except (OSError, ValueError):  # no schedstat (kernel without CONFIG_SCHEDSTATS)
            continue
        out[t.name] = (int(run_ns) / 1e9, int(wait_ns) / 1e9)
    return out


def thread_cpu(threads: Sequence[threading.Thread]) -> Dict[str, float]:
    """CPU seconds each (alive) thread has used so far, by thread name."""
    out = {}
    for t in threads:
        if t.ident is None or not t.is_alive():
            continue
        try:
            out[t.name] = time.clock_gettime(time.pthread_getcpuclockid(t.ident))
        except (OSError, AttributeError):  # pragma: no cover - non-Linux
            pass
    return out


def children_cpu(pids: Sequence[Optional[int]]) -> float:
    """CPU seconds (user + system) the processes `pids` have used so far (0 for gone ones)."""
    tick = os.sysconf('SC_CLK_TCK')
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
        except (OSError, IndexError):
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


class Prepared:
    """Adapter whose pre-processing was done by the feeders: (tensors, meta) pass through.

    The 'prefeed' variant: what the pipeline gives when pre-processing is spread over several
    threads instead of its one pre thread (the order of the result is still the pipeline's).
    """

    def __init__(self, backend: Any) -> None:
        self.adapter = make_adapter(backend)
        self.task = self.adapter.task

    def preprocess(self, item: Any) -> Any:
        return item

    def postprocess(self, outputs: Any, meta: Any) -> Any:
        return self.adapter.postprocess(outputs, meta)


class Recorder:
    """on_result: (seq, delivery time, submit time, timings, ok) of every delivered frame."""

    def __init__(self) -> None:
        self.rows: List[Tuple[int, float, float, Dict[str, float], bool]] = []

    def __call__(self, res: Any) -> None:
        self.rows.append((res.seq, _now(), res.context, res.timings, res.ok))


def run_pipeline(model: str, frames: List[np.ndarray], n: int, seconds: float, warmup: float,
                 full_policy: str, queue_size: int, rate: float = 0.0,
                 variant: str = '') -> Dict[str, Any]:
    """Feed a PerceptionRuntime (block: as fast as it accepts; else at `rate`) and measure."""
    import cv2
    from faster_deployment_ros.core import process_pipeline
    from faster_deployment_ros.runtime.config import RuntimeConfig
    from faster_deployment_ros.runtime.perception_runtime import PerceptionRuntime
    from faster_deployment_ros.tools.report import order_violations

    settings = parse_variant(variant)
    saved_cv2, saved_si = cv2.getNumThreads(), sys.getswitchinterval()
    if 'cv2' in settings:
        cv2.setNumThreads(int(settings['cv2']))
    if 'si' in settings:
        sys.setswitchinterval(settings['si'])
    rec = Recorder()
    drops: List[int] = []
    config = RuntimeConfig(model_path=model, backend='onnxruntime', workers=n, threads=1,
                           queue_size=queue_size, full_policy=full_policy,
                           backend_options={'inter_op_threads': 1}, gpu_pipeline=False,
                           name='many',
                           worker_mode='processes' if 'procs' in settings else 'threads')
    prefeed = int(settings.get('prefeed', 0))
    saved_fpp = process_pipeline.FRAMES_PER_PROCESS
    if 'fpp' in settings:
        process_pipeline.FRAMES_PER_PROCESS = int(settings['fpp'])
    try:
        runtime = PerceptionRuntime(config, Prepared if prefeed else make_adapter, rec,
                                    on_drop=lambda seq, ctx: drops.append(seq))
    finally:
        process_pipeline.FRAMES_PER_PROCESS = saved_fpp
    pids = runtime.pipeline.pids() if 'procs' in settings else []
    if 'nice' in settings:  # lower the inference workers' CPU weight against pre / post
        tids = [t.native_id for t in runtime.pipeline.threads if '-infer' in t.name]
        for pid in pids:  # worker processes: every thread of each (nice is per thread on Linux)
            tids += [int(tid) for tid in os.listdir(f'/proc/{pid}/task')] if pid else []
        for tid in tids:
            os.setpriority(os.PRIO_PROCESS, tid, int(settings['nice']))
    stop = threading.Event()

    def feed(k: int = 0, step: int = 1) -> None:
        t0 = _now()
        while not stop.is_set():
            due = 0.0
            if rate > 0:  # latency counts from when the frame was due, as a camera sees it
                due = t0 + k / rate
                wait = due - _now()
                if wait > 0:
                    time.sleep(wait)
            item = frames[k % len(frames)]
            if prefeed:  # this feeder pre-processes; the pipeline's pre stage passes it on
                item = runtime.adapter.adapter.preprocess(item)
            while not runtime.submit(item, context=due or _now(), timeout=0.5):
                if stop.is_set() or runtime.pipeline is None or runtime.pipeline.closed:
                    return  # block timed out: try again (and look at stop)
            k += step

    try:
        # warm every session before the clock runs
        for x in [frames[k % len(frames)] for k in range(2 * n)]:
            runtime.submit(runtime.adapter.adapter.preprocess(x) if prefeed else x,
                           context=_now())
        runtime.flush(60)
        feeders = [threading.Thread(target=feed, args=(i, max(1, prefeed)),
                                    name=f'many-feeder{i}', daemon=True)
                   for i in range(max(1, prefeed))]
        t_feed = _now()
        for feeder in feeders:
            feeder.start()
        time.sleep(warmup)
        threads = runtime.pipeline.threads + feeders
        cpu0, sch0, proc0, t_w0 = (thread_cpu(threads), schedstat(threads),
                                   time.process_time() + children_cpu(pids), _now())
        time.sleep(seconds)
        cpu1, sch1, proc1, t_w1 = (thread_cpu(threads), schedstat(threads),
                                   time.process_time() + children_cpu(pids), _now())
        stats = runtime.stats()
        stop.set()
        for feeder in feeders:
            feeder.join(5)
    finally:
        runtime.close()
        cv2.setNumThreads(saved_cv2)
        sys.setswitchinterval(saved_si)
    rows = [r for r in rec.rows if r[2] >= t_feed]
    window = [r for r in rows if t_w0 <= r[1] < t_w1]
    span = t_w1 - t_w0
    seqs = [r[0] for r in rec.rows]
    per_stage = {k: summarize_ms([r[3][k] for r in window])
                 for k in ('queue', 'pre', 'infer', 'post', 'total')}
    fps = len(window) / span
    busy = {k: fps * per_stage[k]['mean'] / 1000.0 for k in ('pre', 'post')}
    busy['workers'] = fps * per_stage['infer']['mean'] / 1000.0 / n
    cpu = {name: (cpu1[name] - cpu0.get(name, 0.0)) / span for name in cpu1}
    infer_cpu = [v for name, v in cpu.items() if '-infer' in name]
    # per thread: share of the window on a CPU, runnable but waiting for a CPU, and neither
    # (blocked: on the GIL inside a stage, on the pipeline's conditions between frames)
    sched: Dict[str, Dict[str, float]] = {}
    for name in sch1:
        run = (sch1[name][0] - sch0.get(name, (0.0, 0.0))[0]) / span
        wait = (sch1[name][1] - sch0.get(name, (0.0, 0.0))[1]) / span
        sched[name] = {'run': run, 'runqueue': wait, 'blocked': max(0.0, 1.0 - run - wait)}
    sched_out = {short: {k: round(v, 3) for k, v in sched[f'many-{short}'].items()}
                 for short in ('pre', 'post', 'deliver', 'feeder0')
                 if f'many-{short}' in sched}
    workers_sched = [v for name, v in sched.items() if '-infer' in name]
    if workers_sched:
        sched_out['infer_mean'] = {k: round(float(np.mean([w[k] for w in workers_sched])), 3)
                                   for k in ('run', 'runqueue', 'blocked')}
    return {
        'full_policy': full_policy, 'queue_size': queue_size, 'rate_in': rate,
        'variant': variant or 'base',
        'worker_mode': config.worker_mode,
        'worker_stats': {k: stats.get(k) for k in ('worker_deaths', 'worker_restarts', 'fault')
                         if k in stats},
        'cv2_threads': int(settings.get('cv2', saved_cv2)),
        'switch_interval_s': settings.get('si', saved_si),
        'fps': fps, 'frames': len(window), 'seconds': span,
        'order_violations': order_violations(seqs),
        'failed': sum(1 for r in rec.rows if not r[4]),
        'dropped_in_window': sum(1 for s in drops if s >= (window[0][0] if window else 0)
                                 and s <= (window[-1][0] if window else -1)),
        'latency_ms': summarize_ms([r[1] - r[2] for r in window]),
        'stages_ms': per_stage,
        'busy': {k: round(v, 3) for k, v in busy.items()},
        'thread_cpu': {'pre': round(cpu.get('many-pre', 0.0), 3),
                       'post': round(cpu.get('many-post', 0.0), 3),
                       'deliver': round(cpu.get('many-deliver', 0.0), 3),
                       'infer_mean': round(float(np.mean(infer_cpu)) if infer_cpu else 0.0, 3)},
        'process_cpu_cores': round((proc1 - proc0) / span, 2),
        'schedstat': sched_out,
        'runtime_stats_stages': stats.get('stages', {}),
        'runtime_stats_per_worker': stats.get('per_worker', []),
    }


def single_frame(model: str, frames: List[np.ndarray], iters: int) -> Dict[str, Any]:
    """One frame at a time, one thread (ORT and OpenCV): per-stage and whole-frame latency."""
    import cv2
    from faster_deployment_ros.core.stage_timing import time_stages
    saved = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        backend = make_backend(model)
        adapter = make_adapter(backend)
        samples = time_stages(backend.infer, adapter, frames, iters=iters, warmup=10)
        backend.close()
    finally:
        cv2.setNumThreads(saved)
    return {'family': adapter.family,
            'stages_ms': {k: summarize_ms(v) for k, v in samples.as_dict().items()}}


# ---- report -------------------------------------------------------------------------------
def machine() -> Dict[str, Any]:
    model = ''
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                model = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    import cv2
    import onnxruntime
    return {'cpu': model, 'cores': len(os.sched_getaffinity(0)),
            'python': platform.python_version(),
            'onnxruntime': onnxruntime.__version__, 'opencv': cv2.__version__,
            'numpy': np.__version__, 'cv2_threads_default': cv2.getNumThreads()}


def table(results: Dict[str, Any], load: float) -> str:
    head = (f'{"model":<8} {"N":>3} {"indep fps":>9} {"pipe fps":>8} {"ratio":>6} '
            f'{"cv2=1":>6} {"procs":>6} {"viol":>4} | {"pre busy":>8} {"post busy":>9} '
            f'{"wrk busy":>8} '
            f'{"inf a/b ms":>11} | {"paced":>6} {"p50":>6} {"p99":>6} {"1f p50":>6} '
            f'{"p99/1f":>6} {"drop":>4} {"ind p99":>7}')
    lines = [head, '-' * len(head)]
    for name, m in results['models'].items():
        one = m['single_frame']['stages_ms']['frame']['p50']
        for n, r in m['workers'].items():
            a, b, c = r['independent'], r['pipeline'], r['paced']
            b1 = r.get('variants', {}).get('cv2=1') or r.get('pipeline_cv2_1')
            bp = r.get('variants', {}).get('procs')
            ind_p99 = r.get('independent_paced', {}).get('stages_ms', {}).get(
                'latency', {}).get('p99', float('nan'))
            lines.append(
                f'{name:<8} {n:>3} {a["fps"]:9.1f} {b["fps"]:8.1f} {b["fps"] / a["fps"]:6.2f} '
                f'{(b1["fps"] / a["fps"]) if b1 else float("nan"):6.2f} '
                f'{(bp["fps"] / a["fps"]) if bp else float("nan"):6.2f} '
                f'{b["order_violations"] + c["order_violations"]:4d} | '
                f'{b["busy"]["pre"]:8.2f} {b["busy"]["post"]:9.2f} {b["busy"]["workers"]:8.2f} '
                f'{a["stages_ms"]["infer"]["mean"]:5.1f}/'
                f'{b["stages_ms"]["infer"]["mean"]:<5.1f} | '
                f'{c["fps"]:6.1f} {c["latency_ms"]["p50"]:6.1f} {c["latency_ms"]["p99"]:6.1f} '
                f'{one:6.1f} {c["latency_ms"]["p99"] / one:6.2f} {c["dropped_in_window"]:4d} '
                f'{ind_p99:7.1f}')
    lines.append(f'ratio: pipeline (block) / independent fps (target >= 0.90); cv2=1: the same '
                 f'with OpenCV on 1 thread in the pipeline process; procs: the same with '
                 f'worker_mode processes; paced at {load:g} x indep '
                 'fps with drop_oldest: p99/1f target <= 2.0; busy: fraction of the window '
                 'the pre / post thread (or the mean worker) spent in its stage; ind p99: '
                 'the independent processes paced at the same total rate')
    head = (f'{"model":<8} {"N":>3} {"variant":<18} {"fps":>7} {"ratio":>6} {"cores":>5} | '
            f'{"pre: busy":>9} {"run":>5} {"runq":>5} {"blocked":>7} | {"post: busy":>10} '
            f'{"run":>5} | {"worker: busy":>12} {"run":>5} {"runq":>5} | {"p50":>6} {"p99":>6}')
    lines += ['', head, '-' * len(head)]
    for name, m in results['models'].items():
        for n, r in m['workers'].items():
            runs = [('base', r['pipeline'])] + list(r.get('variants', {}).items())
            paced = r.get('paced_variants') or {r['paced'].get('variant', 'base'): r['paced']}
            runs += [(f'paced {v}', c) for v, c in paced.items()]
            for label, b in runs:
                sch = b.get('schedstat', {})
                pre, post, wrk = (sch.get(k, {}) for k in ('pre', 'post', 'infer_mean'))
                lines.append(
                    f'{name:<8} {n:>3} {label:<18} {b["fps"]:7.1f} '
                    f'{b["fps"] / r["independent"]["fps"]:6.2f} {b["process_cpu_cores"]:5.1f} | '
                    f'{b["busy"]["pre"]:9.2f} {pre.get("run", float("nan")):5.2f} '
                    f'{pre.get("runqueue", float("nan")):5.2f} '
                    f'{pre.get("blocked", float("nan")):7.2f} | {b["busy"]["post"]:10.2f} '
                    f'{post.get("run", float("nan")):5.2f} | {b["busy"]["workers"]:12.2f} '
                    f'{wrk.get("run", float("nan")):5.2f} '
                    f'{wrk.get("runqueue", float("nan")):5.2f} | '
                    + (f'{b["latency_ms"]["p50"]:6.1f} {b["latency_ms"]["p99"]:6.1f}'
                       if b['rate_in'] else f'{"":>6} {"":>6}'))
    lines.append('per thread, share of the window: busy = inside its stage, run = on a CPU, '
                 'runq = runnable, waiting for a CPU, blocked = neither (the GIL inside a stage, '
                 'the pipeline between frames); cores = process CPU time / window')
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--model', action='append', required=True, metavar='NAME=PATH',
                    help='a model to measure (repeat for several)')
    ap.add_argument('--workers', type=int, nargs='+', default=[4, 8, 16])
    ap.add_argument('--seconds', type=float, default=8.0, help='measured window of each run')
    ap.add_argument('--warmup', type=float, default=2.0, help='pipeline runs: seconds before '
                    'the window')
    ap.add_argument('--load', type=float, default=0.8, help='paced run: fraction of (a)')
    ap.add_argument('--queue-size', type=int, default=4, help="input queue of the 'block' runs")
    ap.add_argument('--paced-queue-size', type=int, default=1,
                    help="input queue of the paced 'drop_oldest' runs (the node's default)")
    ap.add_argument('--video', default='', help='video or image folder to take frames from '
                    '(default: one synthetic 1280x720 frame)')
    ap.add_argument('--frames', type=int, default=16)
    ap.add_argument('--step', type=int, default=5)
    ap.add_argument('--single-iters', type=int, default=100)
    ap.add_argument('--variant', action='append', default=None, metavar='SETTINGS',
                    help="more block runs of the pipeline with process settings: 'cv2=1' "
                    "(OpenCV threads), 'si=0.0005' (sys.setswitchinterval), 'nice=10' (the "
                    "inference worker threads' nice value), 'prefeed=4' (4 feeder threads "
                    "pre-process, the pre stage passes through), 'procs' (worker_mode "
                    'processes), comma-separated; repeatable '
                    "(default: cv2=1; 'none' for no extra run)")
    ap.add_argument('--paced-variant', action='append', default=None, metavar='SETTINGS',
                    help="settings of a paced pipeline run, as --variant, or 'best' (the "
                    "block run's fastest); repeatable (default: base)")
    ap.add_argument('--no-independent-paced', action='store_true',
                    help='skip the paced run of the independent processes')
    ap.add_argument('--out', default='', help='write all numbers here (JSON)')
    args = ap.parse_args(argv)
    variants = [v for v in (args.variant or ['cv2=1']) if v != 'none']
    paced_variants = args.paced_variant or ['base']
    for v in variants + [p for p in paced_variants if p != 'best']:
        parse_variant(v)  # a typo fails now, not after minutes of measuring

    frames = load_frames(args.video or None, args.frames, args.step)
    tmp = Path(os.environ.get('TMPDIR', '/tmp')) / f'many_cores_frames_{os.getpid()}.npy'
    np.save(tmp, np.stack(frames))
    results: Dict[str, Any] = {
        'machine': machine(), 'frames': {'count': len(frames), 'shape': list(frames[0].shape),
                                         'source': args.video or 'synthetic'},
        'settings': {k: v for k, v in vars(args).items() if k != 'model'},
        'backend_options': BACKEND_OPTIONS, 'models': {}}
    print(json.dumps(results['machine']), flush=True)
    try:
        for spec in args.model:
            name, _, path = spec.partition('=')
            if not path:
                name, path = Path(spec).stem, spec
            one = single_frame(path, frames, args.single_iters)
            print(f'{name}: single frame p50 {one["stages_ms"]["frame"]["p50"]:.2f} ms '
                  f'(pre {one["stages_ms"]["pre"]["p50"]:.2f}, infer '
                  f'{one["stages_ms"]["infer"]["p50"]:.2f}, post '
                  f'{one["stages_ms"]["post"]["p50"]:.2f})', flush=True)
            entry = results['models'][name] = {'path': path, 'single_frame': one, 'workers': {}}
            for n in args.workers:
                r: Dict[str, Any] = {}
                r['independent'] = run_independent(path, str(tmp), n, args.seconds)
                print(f'  N={n} independent {r["independent"]["fps"]:.1f} fps', flush=True)
                r['pipeline'] = run_pipeline(path, frames, n, args.seconds, args.warmup, 'block',
                                             args.queue_size)
                print(f'  N={n} pipeline    {r["pipeline"]["fps"]:.1f} fps '
                      f'busy {r["pipeline"]["busy"]} cpu {r["pipeline"]["thread_cpu"]} '
                      f'sched {r["pipeline"]["schedstat"]}', flush=True)
                r['variants'] = {}
                for v in variants:
                    b = r['variants'][v] = run_pipeline(path, frames, n, args.seconds,
                                                        args.warmup, 'block', args.queue_size,
                                                        variant=v)
                    print(f'  N={n} pipeline {v} {b["fps"]:.1f} fps busy {b["busy"]} '
                          f'sched {b["schedstat"]}', flush=True)
                rate = args.load * r['independent']['fps']
                if not args.no_independent_paced:
                    r['independent_paced'] = run_independent(path, str(tmp), n, args.seconds,
                                                             rate)
                    print(f'  N={n} independent paced {rate:.1f} Hz -> '
                          f'{r["independent_paced"]["fps"]:.1f} fps, latency '
                          f'{r["independent_paced"]["stages_ms"]["latency"]}', flush=True)
                fastest = max([('base', r['pipeline'])] + list(r['variants'].items()),
                              key=lambda item: item[1]['fps'])[0]
                r['paced_variants'] = {}
                for v in paced_variants:
                    v = fastest if v == 'best' else v
                    if v in r['paced_variants']:
                        continue
                    c = r['paced_variants'][v] = run_pipeline(
                        path, frames, n, args.seconds, args.warmup, 'drop_oldest',
                        args.paced_queue_size, rate=rate, variant='' if v == 'base' else v)
                    print(f'  N={n} paced {v} {rate:.1f} Hz -> {c["fps"]:.1f} fps, latency '
                          f'{c["latency_ms"]}', flush=True)
                r['paced'] = next(iter(r['paced_variants'].values()))
                entry['workers'][n] = r
                if args.out:  # keep what was measured if a later run breaks
                    Path(args.out).write_text(json.dumps(results, indent=1))
    finally:
        tmp.unlink(missing_ok=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    print(table(results, args.load))
    return 0


if __name__ == '__main__':
    sys.exit(main())
