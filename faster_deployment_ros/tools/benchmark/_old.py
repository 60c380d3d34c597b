"""fdr-benchmark: one model, real frames, every way of running it, in one run.

Sections (each can be skipped): the bare backend per stage (pre, infer, post) for each thread
count; a plain serial loop (what most nodes do); the ordered pipeline with 1..N workers (threads
split between them) at full speed and at the camera rate; the auto-tuner's choice; end to end
through ROS 2 (a publisher at a given rate -> the detector_node process -> a subscriber, latency
from the frame's header stamp to receipt); optionally a soak run and ultralytics' own predict
loop on the same ONNX file. Writes benchmark.json and benchmark.png (throughput vs latency per
configuration) and prints the targets.

ROS is imported only in the ROS sections: without rclpy (e.g. on a GPU box) they are skipped.

  fdr-benchmark --model ../shared/models/yolox_nano_coco_416.onnx --out out/bench
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..backends import create_backend
from ..core.autotune import autotune, available_cores, Choice, thread_candidates
from ..core.memory import reuse_large_buffers
from ..core.param_file import params_yaml
from ..core.pipeline import FrameResult, Pipeline
from ..core.stats import summarize
from ..models import available_families, create_adapter
from .frames import read_frames

REPO = Path(__file__).resolve().parents[2]
SHARED_REL = Path('shared/data/pedestrians_plaza_1280x720_50fps.avi')
NODE_ENV = {'FASTDDS_BUILTIN_TRANSPORTS': 'LARGE_DATA', 'MALLOC_MMAP_THRESHOLD_': '33554432',
            'MALLOC_TRIM_THRESHOLD_': '268435456'}
_now = time.perf_counter


# ------------------------------------------------------------------------------ helpers
def default_video() -> Optional[Path]:
    for base in (Path.cwd().parent, REPO.parent, Path.cwd()):
        p = base / SHARED_REL
        if p.exists():
            return p
    return None


def load_frames(path: Path, n: int, step: int = 1) -> List[np.ndarray]:
    try:
        frames = read_frames(path, n, step)
    except (OSError, ValueError) as exc:
        raise SystemExit(f'cannot read frames: {exc}') from None
    if not frames:
        raise SystemExit(f'no frames in {path}')
    return frames


def guess_family(model: str, family: str, backend: Any = None) -> str:
    """`family`, or for 'auto' what the model's signature says (else its file name)."""
    if family != 'auto':
        return family
    try:
        from ..models import resolve_family
        return resolve_family('auto', backend.inputs, backend.outputs, backend.metadata)[0]
    except (ImportError, AttributeError, ValueError):
        pass
    name = Path(model).name.lower()
    for key, fam in (('yolox', 'yolox'), ('rtdetr', 'rtdetr'), ('rt-detr', 'rtdetr'),
                     ('yolo11', 'yolo11'), ('yolov8', 'yolov8'), ('yolo', 'yolov8')):
        if key in name and fam in available_families():
            return fam
    raise SystemExit(f'cannot tell the model family of {model}; pass --family '
                     f'({", ".join(available_families())})')


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (and its finished children are not counted)."""
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def machine_busy_s() -> float:
    """CPU-seconds the whole machine has been busy (all processes), from /proc/stat."""
    try:
        with open('/proc/stat') as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / os.sysconf('SC_CLK_TCK')


class CpuWatch:
    """This process's CPU and everyone else's over a run: `foreign` cores are other users of a
    shared machine, which make a run's numbers unreliable (recorded, not hidden)."""

    def __init__(self, other_pids: Sequence[int] = ()) -> None:
        self.pids = list(other_pids)
        self.t0, self.own0, self.all0 = _now(), time.process_time(), machine_busy_s()
        self.oth0 = sum(proc_cpu_s(p) for p in self.pids)

    def read(self) -> Dict[str, float]:
        wall = max(1e-9, _now() - self.t0)
        own = (time.process_time() - self.own0) / wall
        oth = (sum(proc_cpu_s(p) for p in self.pids) - self.oth0) / wall
        busy = (machine_busy_s() - self.all0) / wall
        return {'own': own, 'others_ours': oth, 'foreign': max(0.0, busy - own - oth)}


def lat_summary(values_s: Sequence[float]) -> Dict[str, float]:
    return {k: round(v, 3) for k, v in summarize(values_s).items()}


def foreign(r: Dict[str, Any]) -> str:
    f = r.get('foreign_cpu_cores', 0.0)
    return f' [other users: {f:.2f} cores]' if f >= 0.1 else ''


def order_violations(seq: Sequence[int]) -> int:
    a = np.asarray(seq, np.int64)
    return int(np.count_nonzero(np.diff(a) <= 0)) if a.size > 1 else 0


class Progress:
    """One updating line on a terminal, a line every few seconds otherwise."""

    def __init__(self, enabled: bool = True, stream=sys.stderr) -> None:
        self.enabled, self.stream = enabled, stream
        self.tty = enabled and stream.isatty()
        self._last = 0.0

    def update(self, label: str, done: float, total: float, extra: str = '') -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < (0.2 if self.tty else 5.0):
            return
        self._last = now
        pct = 100.0 * min(1.0, done / total) if total else 0.0
        bar = '#' * int(pct / 5)
        line = f'[{label}] [{bar:<20}] {pct:3.0f}% {extra}'
        if self.tty:
            self.stream.write('\r' + line[:118].ljust(118))
        else:
            self.stream.write(line + '\n')
        self.stream.flush()

    def done(self, line: str) -> None:
        if self.tty:
            self.stream.write('\r' + ' ' * 118 + '\r')
        print(line, flush=True)
        self._last = 0.0


def _scalar(text: str) -> Any:
    low = text.lower()
    if low in ('true', 'false'):
        return low == 'true'
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


class Model:
    """Backend factory + one adapter, shared by the in-process sections."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.path, self.backend_name = args.model, args.backend
        self.options: Dict[str, Any] = {}
        if args.providers:
            self.options['providers'] = args.providers
        for kv in args.backend_option or []:
            key, _, val = kv.partition('=')
            self.options[key.strip()] = _scalar(val.strip())
        probe = self.make(1)
        self.family = guess_family(args.model, args.family, probe)
        self.adapter_params = {'conf_threshold': args.conf}
        self.adapter = self.make_adapter(probe)
        self.inputs = [(s.name, s.shape) for s in probe.inputs]
        probe.close()

    def make(self, threads: int):
        return create_backend(self.backend_name, self.path, threads=threads, **self.options)

    def make_adapter(self, backend):
        return create_adapter(self.family, backend.inputs, backend.outputs, backend.metadata,
                              **self.adapter_params)


# ------------------------------------------------------------------------------ sections
def bench_bare(model: Model, frames: List[np.ndarray], threads: Sequence[int], iters: int,
               progress: Progress) -> List[Dict[str, Any]]:
    """Each stage timed alone, frame after frame, for every thread count."""
    out = []
    for t in threads:
        backend = model.make(t)
        adapter = model.adapter
        for i in range(3):
            backend.infer(adapter.preprocess(frames[i % len(frames)])[0])
        pre, inf, post, total = [], [], [], []
        watch = CpuWatch()
        for i in range(iters):
            t0 = _now()
            x, meta = adapter.preprocess(frames[i % len(frames)])
            t1 = _now()
            y = backend.infer(x)
            t2 = _now()
            adapter.postprocess(y, meta)
            t3 = _now()
            pre.append(t1 - t0)
            inf.append(t2 - t1)
            post.append(t3 - t2)
            total.append(t3 - t0)
            progress.update(f'bare {t} thr', i + 1, iters, f'infer {1e3 * inf[-1]:.1f} ms')
        cw = watch.read()
        cpu = cw['own']
        backend.close()
        r = {'threads': t, 'iters': iters, 'pre_ms': lat_summary(pre),
             'infer_ms': lat_summary(inf), 'post_ms': lat_summary(post),
             'frame_ms': lat_summary(total), 'cpu_cores': round(cpu, 3),
             'foreign_cpu_cores': round(cw['foreign'], 2),
             'infer_fps': round(1.0 / float(np.mean(inf)), 2),
             'frame_fps': round(1.0 / float(np.mean(total)), 2),
             'load_avg_1m': round(os.getloadavg()[0], 2)}
        out.append(r)
        progress.done(f'bare     {t:2d} thread(s): pre {r["pre_ms"]["p50"]:6.2f}  infer '
                      f'{r["infer_ms"]["p50"]:7.2f}  post {r["post_ms"]["p50"]:6.2f} ms (p50); '
                      f'infer-only {r["infer_fps"]:7.1f} fps, frame {r["frame_ms"]["p50"]:.2f} ms, '
                      f'CPU {r["cpu_cores"]:.2f} cores{foreign(r)}')
    return out


def bench_serial(model: Model, frames: List[np.ndarray], threads: int, duration_s: float,
                 progress: Progress) -> Dict[str, Any]:
    """pre -> infer -> post per frame, one after the other: what a plain node does."""
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
    """Feed the pipeline for `duration_s`: free-running (rate 0, the producer blocks) or at
    `rate` Hz. Latency runs from the producer taking the frame to its delivery."""
    backends = [model.make(threads) for _ in range(workers)]
    adapter = model.adapter
    x, _ = adapter.preprocess(frames[0])
    for b in backends:
        for _ in range(2):
            b.infer(x)
    lock = threading.Lock()
    got: List[Tuple[int, float, float, int, bool]] = []  # index, t_capture, t_delivered, worker, ok

    def on_result(fr: FrameResult) -> None:
        t = _now()
        with lock:
            got.append((fr.context[0], fr.context[1], t, fr.worker, fr.ok))

    name = label or f'{workers}x{threads}'
    p = Pipeline(adapter.preprocess, [b.infer for b in backends], adapter.postprocess, on_result,
                 queue_size=queue_size, full_policy=full_policy, name=f'bench-{name}',
                 schedule=schedule)
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
            p.submit(frames[i % len(frames)], context=(i, _now()))
            i += 1
            if i % 8 == 0:
                with lock:
                    n = len(got)
                progress.update(f'pipeline {name}', _now() - t0, duration_s, f'{n} out')
        t_stop = _now()
        p.close(drain=True, timeout=60)
    finally:
        for b in backends:
            b.close()
    cw = watch.read()
    cpu = cw['own']
    stats = p.stats()
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
         'submitted_s': round(t_stop - t0, 3), 'load_avg_1m': round(os.getloadavg()[0], 2)}
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
    """Latency p50/p99 and delivered rate per `window_s` slice of a long run. `excess` is p50
    minus the time the workers need per frame (workers / rate): what waiting adds, so it grows
    with a queue but not when the machine merely slows down."""
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


def bare_reference(backend, adapter, frames: List[np.ndarray], seconds: float) -> Dict[str, float]:
    """The bare backend, frame after frame, for `seconds`: the reference a ROS run right after
    it is compared with (on a shared machine the load drifts between sections)."""
    inf, tot = [], []
    t_end = _now() + seconds
    i = 0
    while _now() < t_end or i < 5:
        t0 = _now()
        x, meta = adapter.preprocess(frames[i % len(frames)])
        t1 = _now()
        y = backend.infer(x)
        t2 = _now()
        adapter.postprocess(y, meta)
        inf.append(t2 - t1)
        tot.append(_now() - t0)
        i += 1
    return {'iters': i, 'infer_fps': round(1.0 / float(np.mean(inf)), 2),
            'infer_p50_ms': round(1e3 * float(np.median(inf)), 3),
            'frame_p50_ms': round(1e3 * float(np.median(tot)), 3)}


def bench_ultralytics(python: str, model: str, video: Path, frames: int,
                      imgsz: int, timeout: float = 600) -> Dict[str, Any]:
    script = REPO / 'benchmarks' / 'ultralytics_predict.py'
    cmd = [python, str(script), '--model', model, '--video', str(video), '--frames', str(frames),
           '--imgsz', str(imgsz)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {'error': str(exc)}
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith('{')]
    if res.returncode != 0 or not lines:
        return {'error': (res.stderr or res.stdout)[-800:]}
    return json.loads(lines[-1])


# ------------------------------------------------------------------------------ ROS
class RosHarness:
    """Publisher + raw subscriber in this process, detector_node in another."""

    def __init__(self, model: Model, frames: List[np.ndarray], node_params: Dict[str, Any],
                 out_dir: Path, progress: Progress, node_cmd: Optional[List[str]] = None) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray
        from diagnostic_msgs.msg import DiagnosticArray
        from ..core.image_codec import fill_image_msg

        self.rclpy, self.progress = rclpy, progress
        self.workers = int(node_params.get('workers', 1))
        exe = Path(sys.executable).with_name('detector_node')
        base = node_cmd or ([str(exe)] if exe.exists() else
                            [sys.executable, '-m', 'faster_deployment_ros.ros.detector_node'])
        args = base + ['--ros-args']
        for k, v in node_params.items():
            val = str(v).lower() if isinstance(v, bool) else str(v)
            args += ['-p', f'{k}:={val}']
        env = dict(os.environ)
        for k, v in NODE_ENV.items():
            env.setdefault(k, v)
        self.log_path = out_dir / 'detector_node.log'
        self._log = open(self.log_path, 'w')
        self.proc = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.cmd = args

        self.own_context = not rclpy.ok()
        if self.own_context:
            rclpy.init()
        self.node = rclpy.create_node('fdr_benchmark')
        be = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.pub = self.node.create_publisher(Image, 'image', be)
        self.lock = threading.Lock()
        self.received: List[Tuple[int, int]] = []  # (stamp ns, receipt ns)
        self.diag: Dict[str, str] = {}
        from .replay import cdr_header
        self._cdr_header = cdr_header
        self.sub = self.node.create_subscription(
            Detection2DArray, 'detections', self._on_det,
            QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE), raw=True)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.spin = threading.Thread(target=self.executor.spin, daemon=True, name='bench-spin')
        self.spin.start()
        # One message per distinct frame, built once: publishing then only sets the stamp.
        self.msgs = []
        for f in frames:
            m = fill_image_msg(Image(), f, 'bgr8')
            m.header.frame_id = 'bench'
            self.msgs.append(m)

    def _on_det(self, data: bytes) -> None:
        t = time.time_ns()
        stamp, _ = self._cdr_header(data)
        with self.lock:
            self.received.append((stamp, t))

    def _on_diag(self, msg) -> None:
        for st in msg.status:
            if st.name.endswith(': pipeline'):
                with self.lock:
                    self.diag = {kv.key: kv.value for kv in st.values}

    def wait_ready(self, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while self.pub.get_subscription_count() == 0 or self.sub.get_publisher_count() == 0:
            if self.proc.poll() is not None:
                raise RuntimeError(f'detector_node exited ({self.proc.returncode}); see '
                                   f'{self.log_path}:\n{self.log_path.read_text()[-2000:]}')
            if time.monotonic() > end:
                raise RuntimeError(f'detector_node did not come up in {timeout:.0f} s; see '
                                   f'{self.log_path}')
            time.sleep(0.05)
        # warm-up: a few frames until the answers come back
        end = time.monotonic() + timeout
        k = 0
        while True:
            with self.lock:
                if len(self.received) >= 3:
                    break
            if time.monotonic() > end:
                raise RuntimeError('detector_node never answered; see ' + str(self.log_path))
            self._publish(k)
            k += 1
            time.sleep(0.2)
        time.sleep(0.5)
        with self.lock:
            self.received.clear()

    def _publish(self, k: int) -> int:
        msg = self.msgs[k % len(self.msgs)]
        t = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(t, 1_000_000_000)
        self.pub.publish(msg)
        return t

    def phase(self, rate: float, duration_s: float, label: str, window_s: float = 0.0,
              settle_s: float = 1.5) -> Dict[str, Any]:
        with self.lock:
            self.received.clear()
        sent: List[int] = []
        watch = CpuWatch([self.proc.pid])
        win_watch, cpu_windows = CpuWatch([self.proc.pid]), []
        t0 = _now()
        k = 0
        while True:
            now = _now()
            if now - t0 >= duration_s:
                break
            due = t0 + k / rate
            if due > now:
                time.sleep(due - now)
            sent.append(self._publish(k))
            k += 1
            if window_s > 0 and _now() - win_watch.t0 >= window_s:
                cpu_windows.append(round(win_watch.read()['foreign'], 2))
                win_watch = CpuWatch([self.proc.pid])
            if k % 10 == 0:
                with self.lock:
                    n = len(self.received)
                self.progress.update(f'ros {label}', _now() - t0, duration_s,
                                     f'{k} sent {n} back')
        t_pub_end = _now()
        end = time.monotonic() + settle_s
        last = -1
        while time.monotonic() < end:
            with self.lock:
                n = len(self.received)
            if n >= len(sent):
                break
            if n != last:
                last, end = n, max(end, time.monotonic() + 0.5)
            time.sleep(0.05)
        cw = watch.read()
        n_cpu, h_cpu = cw['others_ours'], cw['own']
        with self.lock:
            rec = list(self.received)
            diag = dict(self.diag)
        sent_set = set(sent)
        unknown = sum(r[0] not in sent_set for r in rec)
        rec = [r for r in rec if r[0] in sent_set]
        duplicates = len(rec) - len({r[0] for r in rec})
        warm_ns = sent[0] + int(min(1.0, 0.2 * duration_s) * 1e9) if sent else 0
        steady = [r for r in rec if r[0] >= warm_ns]
        lat = [(t - s) / 1e9 for s, t in steady]
        fps = ((len(steady) - 1) / ((steady[-1][1] - steady[0][1]) / 1e9)
               if len(steady) > 1 else 0.0)
        r = {'config': f'ros {label} @{rate:.4g}Hz', 'input_rate': round(rate, 3),
             'input_fps': round((len(sent) - 1) / (t_pub_end - t0), 2) if len(sent) > 1 else 0,
             'duration_s': duration_s, 'frames_in': len(sent), 'frames_out': len(rec),
             'dropped': len(sent) - len(rec), 'duplicates': duplicates, 'unknown': unknown,
             'order_violations': order_violations(
                 [s for s, _ in rec]),
             'fps': round(fps, 2), 'latency_ms': lat_summary(lat),
             'node_cpu_cores': round(n_cpu, 3), 'harness_cpu_cores': round(h_cpu, 3),
             'foreign_cpu_cores': round(cw['foreign'], 2),
             'node_diagnostics': diag, 'load_avg_1m': round(os.getloadavg()[0], 2)}
        if window_s > 0 and steady:
            t = (np.array([s for s, _ in steady]) - sent[0]) / 1e9
            r['windows'] = windows(t, np.array(lat), window_s, self.workers)
            for w, f in zip(r['windows'], cpu_windows):
                w['other_users_cores'] = f
            r['flatness'] = flatness(r['windows'])
        self.progress.done(
            f'ros      {r["config"]:<22}: {r["fps"]:7.1f} fps, latency p50 '
            f'{r["latency_ms"]["p50"]:7.1f} p99 {r["latency_ms"]["p99"]:7.1f} ms, in '
            f'{r["frames_in"]} out {r["frames_out"]} dropped {r["dropped"]}, order violations '
            f'{r["order_violations"]}, node CPU {n_cpu:.2f}{foreign(r)}')
        return r

    def node_log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        self.executor.shutdown()
        self.node.destroy_node()
        if self.own_context:
            self.rclpy.try_shutdown()


# ------------------------------------------------------------------------------ plot
_COLORS = {'bare': (180, 119, 31), 'serial': (44, 160, 44), 'pipeline': (14, 127, 255),
           'ros': (40, 39, 214), 'autotune': (189, 103, 148), 'ultralytics': (75, 86, 140),
           'soak': (127, 127, 127)}


def plot(points: List[Dict[str, Any]], path: Path, title: str) -> None:
    """Throughput (fps) against latency (ms): a dot at p50, a bar to p99, per configuration."""
    W, H, L, R, T, B = 1100, 700, 80, 300, 50, 60
    img = np.full((H, W, 3), 255, np.uint8)
    pts = [p for p in points if p.get('fps') and p.get('p50')]
    cv2.putText(img, title[:90], (L, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    if not pts:
        cv2.imwrite(str(path), img)
        return
    xmax = max(p.get('p99', p['p50']) for p in pts) * 1.1
    ymax = max(p['fps'] for p in pts) * 1.15
    pw, ph = W - L - R, H - T - B

    def xy(lat: float, fps: float) -> Tuple[int, int]:
        return int(L + pw * lat / xmax), int(H - B - ph * fps / ymax)

    cv2.rectangle(img, (L, T), (L + pw, H - B), (0, 0, 0), 1)
    for k in range(6):
        x = L + pw * k // 5
        y = H - B - ph * k // 5
        cv2.line(img, (x, H - B), (x, H - B + 5), (0, 0, 0), 1)
        cv2.putText(img, f'{xmax * k / 5:.0f}', (x - 12, H - B + 20), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.line(img, (L - 5, y), (L, y), (0, 0, 0), 1)
        cv2.putText(img, f'{ymax * k / 5:.0f}', (L - 45, y + 5), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, 'latency ms (dot p50, bar to p99)', (L + pw // 2 - 120, H - 15),
                cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, 'fps', (10, T + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for k, p in enumerate(pts):
        color = _COLORS.get(p['kind'], (0, 0, 0))
        x, y = xy(p['p50'], p['fps'])
        if p.get('p99'):
            x2, _ = xy(p['p99'], p['fps'])
            cv2.line(img, (x, y), (x2, y), color, 1, cv2.LINE_AA)
        cv2.circle(img, (x, y), 5, color, -1, cv2.LINE_AA)
        cv2.putText(img, str(k + 1), (x + 6, y - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1,
                    cv2.LINE_AA)
        ly = T + 14 + 16 * k
        if ly < H - 10:
            cv2.putText(img, f'{k + 1}. {p["label"]}'[:42], (L + pw + 10, ly),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    cv2.imwrite(str(path), img)


def plot_points(res: Dict[str, Any]) -> List[Dict[str, Any]]:
    pts = []
    for b in res.get('bare', []):
        pts.append({'kind': 'bare', 'label': f'bare 1x{b["threads"]} (infer only fps)',
                    'fps': b['infer_fps'], 'p50': b['frame_ms']['p50'],
                    'p99': b['frame_ms']['p99']})
    for key in ('serial', 'pipeline', 'autotune_run', 'ros', 'soak'):
        items = res.get(key) or []
        for r in items if isinstance(items, list) else [items]:
            if r and 'latency_ms' in r:
                kind = {'autotune_run': 'autotune'}.get(key, key)
                pts.append({'kind': kind, 'label': r['config'], 'fps': r['fps'],
                            'p50': r['latency_ms']['p50'], 'p99': r['latency_ms']['p99']})
    u = res.get('ultralytics') or {}
    if 'fps' in u:
        pts.append({'kind': 'ultralytics', 'label': 'ultralytics predict',
                    'fps': u['fps'], 'p50': u['latency_ms']['p50'],
                    'p99': u['latency_ms']['p99']})
    return pts


# ------------------------------------------------------------------------------ targets
def targets(res: Dict[str, Any]) -> Dict[str, Any]:
    """The issue's targets from what was measured (None where a section was skipped)."""
    out: Dict[str, Any] = {}
    bare = res.get('bare') or []
    if bare:
        best = max(bare, key=lambda b: b['infer_fps'])
        out['bare_best'] = {'threads': best['threads'], 'infer_fps': best['infer_fps'],
                            'frame_p50_ms': best['frame_ms']['p50']}
        rows = []
        for r in res.get('ros') or []:
            if not r.get('saturating'):
                continue
            # against the bare backend measured right before the run (same load), and
            # against the bare section's best
            ref = r.get('bare_ref') or {'infer_fps': best['infer_fps'],
                                        'frame_p50_ms': best['frame_ms']['p50']}
            ratio = r['fps'] / ref['infer_fps']
            extra = r['latency_ms']['p50'] - ref['frame_p50_ms']
            rows.append({'run': r['config'], 'bare_ref_fps': ref['infer_fps'],
                         'bare_ref_frame_p50_ms': ref['frame_p50_ms'],
                         'throughput_ratio': round(ratio, 3),
                         'throughput_ok': bool(ratio >= 0.95),
                         'p50_minus_bare_frame_ms': round(extra, 2),
                         'latency_ok': bool(extra <= 3.0),
                         'throughput_ratio_vs_bare_section': round(
                             r['fps'] / best['infer_fps'], 3),
                         'p50_minus_bare_section_ms': round(
                             r['latency_ms']['p50'] - best['frame_ms']['p50'], 2)})
        if rows:
            out['node_vs_bare'] = rows
    pipe = [p for p in res.get('pipeline') or [] if not p.get('input_rate')]
    if pipe and bare:
        single = max([p['fps'] for p in pipe if p['workers'] == 1] + [b['infer_fps']
                                                                       for b in bare])
        multi = max(pipe, key=lambda p: p['fps'])
        out['multi_worker'] = {
            'best': multi['config'], 'fps': multi['fps'], 'best_single_session_fps': single,
            'ratio': round(multi['fps'] / single, 3) if single else None,
            'ratio_ok': bool(single and multi['fps'] >= 2 * single),
            'order_violations': sum(p['order_violations'] for p in res['pipeline'])}
    run = res.get('autotune_run')
    if run:
        budget = res['autotune']['latency_budget_ms']
        out['autotune'] = {'config': run['config'], 'p99_ms': run['latency_ms']['p99'],
                           'budget_ms': budget, 'p99_ok': bool(run['latency_ms']['p99'] <= budget),
                           'dropped': run['dropped'], 'frames_in': run['frames_in']}
    soak = res.get('soak')
    if soak and soak.get('flatness'):
        out['soak'] = soak['flatness']
    return out


def print_targets(t: Dict[str, Any]) -> None:
    def ok(flag: Any) -> str:
        return 'n/a' if flag is None else ('MET' if flag else 'NOT MET')
    print('\n== targets ==')
    if 'node_vs_bare' in t:
        b = t['bare_best']
        print(f'node end to end vs the bare backend measured just before each run (bare '
              f'section best: {b["infer_fps"]:.1f} fps infer-only 1x{b["threads"]}, single '
              f'frame {b["frame_p50_ms"]:.2f} ms):')
        for n in t['node_vs_bare']:
            print(f'  {n["run"]:<28} {n["throughput_ratio"]:.3f} of {n["bare_ref_fps"]:.1f} fps '
                  f'(>= 0.95: {ok(n["throughput_ok"])}), p50 {n["p50_minus_bare_frame_ms"]:+.2f}'
                  f' ms over {n["bare_ref_frame_p50_ms"]:.1f} (<= +3: {ok(n["latency_ok"])}); '
                  f'vs bare section {n["throughput_ratio_vs_bare_section"]:.3f}, '
                  f'{n["p50_minus_bare_section_ms"]:+.1f} ms')
    if 'multi_worker' in t:
        m = t['multi_worker']
        print(f'multi-worker {m["best"]}: {m["fps"]:.1f} fps = {m["ratio"]:.2f} x best single '
              f'session ({m["best_single_session_fps"]:.1f}) (>= 2x: {ok(m["ratio_ok"])}), '
              f'order violations {m["order_violations"]}')
    if 'autotune' in t:
        a = t['autotune']
        print(f'autotune {a["config"]}: p99 {a["p99_ms"]:.1f} ms vs budget {a["budget_ms"]:g} ms '
              f'({ok(a["p99_ok"])}), dropped {a["dropped"]}/{a["frames_in"]}')
    if 'soak' in t:
        s = t['soak']
        print(f'soak: p50 first {s.get("first_p50")} -> last {s.get("last_p50")} ms at '
              f'{s.get("first_fps")} -> {s.get("last_fps")} fps; waiting (p50 - workers/rate) '
              f'{s.get("first_excess")} -> {s.get("last_excess")} ms, trend '
              f'{s.get("excess_slope_ms_per_min")} ms/min: no queue growth {ok(s.get("flat"))}')


# ------------------------------------------------------------------------------ main
def parse_configs(text: str) -> List[Tuple[int, int]]:
    out = []
    for tok in filter(None, (t.strip() for t in text.split(','))):
        w, t = tok.lower().split('x')
        out.append((int(w), int(t)))
    return out


def parse_rates(text: str) -> List[Tuple[Optional[float], float, bool, str]]:
    """'0.97x,2x,30' -> [(N or None, Hz, saturating?, label)]: Nx is N times the bare
    throughput measured just before the run (see bare_reference); plain numbers are Hz.

    Saturating means enough input to need >= 95% of the bare throughput (k >= 0.95): at 0.97x
    a node that keeps up queues nothing, beyond 1x frames queue (then drop) and the one taken
    waits up to a camera period, which is the input's cost, not the node's."""
    out = []
    for tok in filter(None, (t.strip() for t in text.split(','))):
        if tok.endswith('x'):
            k = float(tok[:-1])
            out.append((k, 0.0, k >= 0.95, f'{tok} bare'))
        else:
            out.append((None, float(tok), False, f'{tok}Hz'))
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog='fdr-benchmark', description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument('--model', required=True, help='model file (.onnx)')
    ap.add_argument('--family', default='auto', help='model family (auto: from the file name)')
    ap.add_argument('--backend', default='onnxruntime')
    ap.add_argument('--providers', default='', help='onnxruntime providers, comma-separated')
    ap.add_argument('--backend-option', action='append', metavar='KEY=VALUE',
                    help='extra backend option, e.g. allow_spinning=false (repeatable)')
    ap.add_argument('--conf', type=float, default=0.3, help='detection score threshold')
    ap.add_argument('--video', default=None, help='input video (default: the shared 720p clip)')
    ap.add_argument('--frames', type=int, default=60, help='frames decoded into memory (cycled)')
    ap.add_argument('--out', default='out/benchmark', help='output folder')
    ap.add_argument('--cores', type=int, default=0, help='cores to plan for (0: affinity)')
    ap.add_argument('--threads', default='', help='thread counts for the bare backend '
                    '(default: 1, 2, 4, ... cores)')
    ap.add_argument('--iters', type=int, default=40, help='bare-backend iterations per count')
    ap.add_argument('--duration', type=float, default=8.0, help='seconds per timed run')
    ap.add_argument('--max-workers', type=int, default=0, help='pipeline 1..N workers (0: cores)')
    ap.add_argument('--workers', default='', help='pipeline worker counts, e.g. 1,2,4,8 '
                    '(default 1..max-workers), threads split: cores // workers')
    ap.add_argument('--configs', default='', help='extra pipeline configs, e.g. 4x4,8x2')
    ap.add_argument('--queue-size', type=int, default=1)
    ap.add_argument('--camera-rate', type=float, default=30.0,
                    help='camera Hz (autotune, rate runs)')
    ap.add_argument('--latency-budget-ms', type=float, default=100.0)
    ap.add_argument('--autotune', action='store_true', help='run the auto-tuner and its choice')
    ap.add_argument('--write-params', default='', help='write the autotune choice as ROS YAML')
    ap.add_argument('--validate-s', type=float, default=3.0,
                    help='autotune: seconds to run each short-listed config at the camera rate')
    ap.add_argument('--ros-rates', default='0.5x,0.97x,1.5x',
                    help='publisher rates: Nx = N times the best bare fps, or Hz')
    ap.add_argument('--ros-duration', type=float, default=0.0, help='seconds per ROS run '
                    '(0: --duration)')
    ap.add_argument('--node', default='', help='node config WxT[,queue], or "autotune" for the '
                    "auto-tuner's choice (default: 1x<best bare threads>)")
    ap.add_argument('--soak', type=float, default=0.0,
                    help='seconds of a soak run (ROS if available, else pipeline) at 2x bare')
    ap.add_argument('--ultralytics-python', default='',
                    help='python with ultralytics to compare its predict loop ("auto": try)')
    ap.add_argument('--imgsz', type=int, default=0, help='ultralytics imgsz (0: model input)')
    ap.add_argument('--skip', default='', help='sections to skip: bare,serial,pipeline,ros')
    ap.add_argument('--no-progress', action='store_true')
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    skip = {s.strip() for s in args.skip.split(',') if s.strip()}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = Progress(not args.no_progress)
    reuse_large_buffers()
    if not Path(args.model).is_file():
        raise SystemExit(f'model not found: {args.model}')
    video = Path(args.video) if args.video else default_video()
    if video is None or not video.exists():
        raise SystemExit(f'video not found ({args.video or SHARED_REL}); pass --video')
    cores = args.cores or available_cores()
    threads = ([int(t) for t in args.threads.split(',') if t.strip()] if args.threads
               else thread_candidates(cores))
    max_workers = args.max_workers or cores
    frames = load_frames(video, args.frames)
    model = Model(args)
    t_start = time.time()
    res: Dict[str, Any] = {'meta': {
        'command': ' '.join([Path(sys.argv[0]).name] + list(argv if argv is not None
                                                            else sys.argv[1:])),
        'model': str(args.model), 'family': model.family, 'backend': args.backend,
        'inputs': [[n, list(s)] for n, s in model.inputs],
        'video': str(video), 'frames': len(frames), 'frame_shape': list(frames[0].shape),
        'cores': cores, 'cpu': platform.processor() or platform.machine(),
        'python': platform.python_version(), 'load_avg': list(os.getloadavg()),
        'started': time.strftime('%Y-%m-%d %H:%M:%S')}}
    try:
        import onnxruntime
        res['meta']['onnxruntime'] = onnxruntime.__version__
    except ImportError:
        pass
    print(f'fdr-benchmark: {model.family} {args.model} on {args.backend}, {len(frames)} frames '
          f'{frames[0].shape[1]}x{frames[0].shape[0]} from {video.name}, {cores} cores, '
          f'load {os.getloadavg()[0]:.2f}', flush=True)

    def save() -> None:
        res['targets'] = targets(res)
        res['meta']['elapsed_s'] = round(time.time() - t_start, 1)
        (out_dir / 'benchmark.json').write_text(json.dumps(res, indent=2) + '\n')
        plot(plot_points(res), out_dir / 'benchmark.png',
             f'{Path(args.model).name} {args.backend}, {cores} cores, '
             f'{frames[0].shape[1]}x{frames[0].shape[0]}')

    if 'bare' not in skip:
        res['bare'] = bench_bare(model, frames, threads, args.iters, progress)
    best = max(res.get('bare') or [], key=lambda b: b['infer_fps'], default=None)
    best_t = best['threads'] if best else max(threads)
    bare_fps = best['infer_fps'] if best else 0.0
    if 'serial' not in skip:
        res['serial'] = bench_serial(model, frames, best_t, args.duration, progress)
    if 'pipeline' not in skip:
        counts = ([int(w) for w in args.workers.split(',') if w.strip()] if args.workers
                  else range(1, max_workers + 1))
        configs = [(w, max(1, cores // w)) for w in counts]
        configs += [c for c in parse_configs(args.configs) if c not in configs]
        res['pipeline'] = [run_pipeline(model, frames, w, t, args.queue_size, 'block', 0.0,
                                        args.duration, progress) for w, t in configs]
        # Overload (input at twice capacity, drop_oldest): eager vs just-in-time pre-processing
        # for one session and for the fastest configuration.
        fastest = max(res['pipeline'], key=lambda p: p['fps'])
        single = next(p for p in res['pipeline'] if p['workers'] == 1)
        for p in ([single] + ([fastest] if fastest is not single else [])):
            for sched in ('eager', 'just_in_time'):
                res['pipeline'].append(run_pipeline(
                    model, frames, p['workers'], p['threads'], 1, 'drop_oldest',
                    2.0 * max(p['fps'], 1.0), args.duration, progress, schedule=sched))
        save()
    choice = None
    if args.autotune:
        logs: List[str] = []
        choice = bench_autotune(model, frames, args.camera_rate, args.latency_budget_ms,
                                max(6, args.iters // 2), max_workers, args.validate_s, cores,
                                logs.append)
        print(f'autotune: {choice.reason}', flush=True)
        res['autotune'] = {**choice.to_dict(), 'log': logs}
        if args.write_params:
            params = {'model_path': str(Path(args.model).resolve()), 'model_family': model.family,
                      'backend': args.backend, **choice.params(), 'full_policy': 'drop_oldest',
                      'autotune': False,
                      **{f'{args.backend}.{k}': v for k, v in model.options.items()}}
            Path(args.write_params).write_text(params_yaml(
                params, f'fdr-benchmark autotune\n{choice.reason}'))
            print(f'wrote {args.write_params}')
        res['autotune_run'] = run_pipeline(
            model, frames, choice.workers, choice.threads, choice.queue_size, 'drop_oldest',
            args.camera_rate, args.duration, progress, label=f'autotune {choice.workers}x'
            f'{choice.threads}q{choice.queue_size}', schedule='just_in_time')
        save()
    if 'pipeline' not in skip and args.camera_rate > 0:
        seen = set()
        for w, t in [(1, best_t)] + ([(choice.workers, choice.threads)] if choice else []):
            if (w, t) in seen:
                continue
            seen.add((w, t))
            res['pipeline'].append(run_pipeline(model, frames, w, t, args.queue_size,
                                                'drop_oldest', args.camera_rate, args.duration,
                                                progress, schedule='just_in_time'))
        save()

    ros_ok = False
    if 'ros' not in skip:
        try:
            import rclpy  # noqa: F401 - only whether it imports
            ros_ok = True
        except ImportError as exc:
            res['ros_skipped'] = f'rclpy not importable: {exc}'
            print(f'ROS sections skipped: {res["ros_skipped"]}')
    if ros_ok:
        run_ros(args, res, model, frames, choice, best_t, bare_fps, out_dir, progress)
        save()
    elif args.soak > 0:
        rate = 2.0 * (max((p['fps'] for p in res.get('pipeline', [])), default=bare_fps) or 30)
        r = run_pipeline(model, frames, 1, best_t, 1, 'drop_oldest', rate, args.soak, progress,
                         label=f'soak 1x{best_t}', window_s=10.0, schedule='just_in_time')
        r['flatness'] = flatness(r.get('windows', []))
        res['soak'] = r
    ul_py = args.ultralytics_python
    if ul_py:
        if ul_py == 'auto':
            cand = [sys.executable, str(REPO / '.venv-export/bin/python')]
            ul_py = next((p for p in cand if Path(p).exists() and subprocess.run(
                [p, '-c', 'import ultralytics'], capture_output=True).returncode == 0), '')
        if ul_py:
            imgsz = args.imgsz or int(model.inputs[0][1][-1] if isinstance(
                model.inputs[0][1][-1], int) else 640)
            res['ultralytics'] = bench_ultralytics(ul_py, args.model, video,
                                                   min(args.frames, 60), imgsz)
            u = res['ultralytics']
            if 'fps' in u:
                print(f'ultralytics predict ({u.get("version")}): {u["fps"]:.1f} fps, latency '
                      f'p50 {u["latency_ms"]["p50"]:.1f} ms')
            else:
                print(f'ultralytics comparison failed: {u.get("error", "")[-300:]}')
        else:
            res['ultralytics'] = {'error': 'ultralytics not importable'}
    save()
    print_targets(res['targets'])
    print(f'\nwrote {out_dir / "benchmark.json"} and {out_dir / "benchmark.png"}')
    return 0


def run_ros(args, res, model, frames, choice, best_t, bare_fps, out_dir, progress) -> None:
    os.environ.setdefault('ROS_DOMAIN_ID', str(100 + os.getpid() % 100))
    for k, v in NODE_ENV.items():
        os.environ.setdefault(k, v)
    if args.node == 'autotune' and choice is not None:
        w, t, q = choice.workers, choice.threads, choice.queue_size
    elif args.node and args.node != 'autotune':
        parts = args.node.split(',')
        w, t = parse_configs(parts[0])[0]
        q = int(parts[1]) if len(parts) > 1 else args.queue_size
    else:  # the best bare configuration, the one the targets compare with
        w, t, q = 1, best_t, args.queue_size
    params = {'model_path': str(Path(args.model).resolve()), 'model_family': model.family,
              'backend': args.backend, 'autostart': True, 'workers': w, 'threads': t,
              'queue_size': q, 'full_policy': 'drop_oldest', 'qos_reliability': 'best_effort',
              'conf_threshold': args.conf, 'diagnostics_period': 1.0,
              **{f'{args.backend}.{k}': v for k, v in model.options.items()
                 if not isinstance(v, (list, tuple))}}
    rates = parse_rates(args.ros_rates)
    duration = args.ros_duration or args.duration
    h = RosHarness(model, frames, params, out_dir, progress)
    ref_backend = model.make(best_t)  # the targets' reference: the best bare configuration
    res['ros_node'] = {'params': params, 'command': ' '.join(h.cmd),
                       'env': {k: os.environ.get(k) for k in
                               ('ROS_DOMAIN_ID', *NODE_ENV)}}
    res['ros'] = []
    try:
        h.wait_ready()
        for k, hz, saturating, label in rates:
            ref = bare_reference(ref_backend, model.adapter, frames, 2.5)
            rate = k * ref['infer_fps'] if k is not None else hz
            r = h.phase(rate, duration, f'{w}x{t} {label}')
            r.update(saturating=saturating, node_config=f'{w}x{t}q{q}', bare_ref=ref)
            res['ros'].append(r)
        if args.soak > 0:
            # faster than the node can go: twice what it delivered at saturation
            rate = 2.0 * max([r['fps'] for r in res['ros']] + [1.0])
            r = h.phase(rate, args.soak, f'soak {w}x{t} 2x node fps', window_s=10.0)
            r['node_config'] = f'{w}x{t}q{q}'
            res['soak'] = r
    finally:
        ref_backend.close()
        h.close()
        log = h.node_log()
        res['ros_node']['log_tail'] = log.splitlines()[-15:]


if __name__ == '__main__':
    sys.exit(main())
