"""End to end through ROS 2, latency from the frame's header stamp to the answer's receipt.

A publisher and a raw subscriber in this process, node processes (detector_node, the transport
floor) in others.

Sections (run_ros): the generic `--ros-rates` runs; the latency budget side by side at half
capacity (bare model paced at the same rate, transport floor, node; interleaved rounds); the
overload case (camera faster than the model, drop_oldest); saturation (node vs the pipeline
alone at 1.5x capacity, and the node's CPU per frame outside inference); the node at
ultralytics' own rate.
"""
from __future__ import annotations

import os
from pathlib import Path
import shutil
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .common import foreign, lat_summary, Model, Progress, REPO, scalar, SHIPPED_PARAMS
from .measure import bare_reference, flatness, infer_cpu_ms, run_pipeline, windows
from ..processes import CpuWatch, load_avg, node_command, stop_processes
from ..report import order_violations
from ...ros.middleware_env import apply_camera_env, private_domain

_now = time.perf_counter


class _Target:
    """One node process under test and this side's publisher/subscriber for it."""

    def __init__(self, name: str, proc: subprocess.Popen, log_path: Path, log, cmd: List[str],
                 pub, sub, node_name: str, workers: int) -> None:
        self.name, self.proc, self.log_path, self._log, self.cmd = name, proc, log_path, log, cmd
        self.pub, self.sub, self.node_name, self.workers = pub, sub, node_name, workers
        self.received: List[Tuple[int, int]] = []  # (stamp ns, receipt ns)
        self.env: Dict[str, str] = {}
        self.diag: Dict[str, str] = {}

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()


class RosBench:
    """The benchmark's own rclpy node: publishers at a rate, raw subscribers, /diagnostics."""

    def __init__(self, frames: List[np.ndarray], out_dir: Path, progress: Progress) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image

        from ..replay import cdr_header
        from ...core.image_codec import fill_image_msg

        self.rclpy, self.progress, self.out_dir = rclpy, progress, out_dir
        self.py_spy: Optional[str] = None  # set to py-spy's path: flame graph per node phase
        self._cdr_header = cdr_header
        self.own_context = not rclpy.ok()
        if self.own_context:
            rclpy.init()
        self.node = rclpy.create_node('fdr_benchmark')
        self.lock = threading.Lock()
        self.targets: Dict[str, _Target] = {}
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

    def add(self, name: str, cmd: List[str], namespace: str = '', node_name: str = 'detector',
            workers: int = 1, extra_env: Optional[Dict[str, str]] = None) -> _Target:
        """Start `cmd` (it ends in --ros-args ...) in `namespace`; talk to its image/detections.

        `extra_env`: environment variables of that process beyond this one's.
        """
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray

        args = list(cmd) + (['-r', f'__ns:=/{namespace}'] if namespace else [])
        env = {**os.environ, **(extra_env or {})}  # run_ros applied the camera environment
        log_path = self.out_dir / f'{name}.log'
        log = open(log_path, 'w')
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        prefix = f'/{namespace}/' if namespace else ''
        be = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
        pub = self.node.create_publisher(Image, prefix + 'image', be)
        t = _Target(name, proc, log_path, log, args, pub, None, node_name, workers)
        t.env = env
        t.sub = self.node.create_subscription(
            Detection2DArray, prefix + 'detections', lambda data: self._on_det(t, data),
            QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE), raw=True)
        self.targets[name] = t
        return t

    def _on_det(self, t: _Target, data: bytes) -> None:
        now = time.time_ns()
        stamp, _ = self._cdr_header(data)
        with self.lock:
            t.received.append((stamp, now))

    def _on_diag(self, msg) -> None:
        for st in msg.status:
            node = st.name.split(':')[0].strip()
            with self.lock:
                for t in self.targets.values():
                    if t.node_name == node:
                        t.diag.update({kv.key: kv.value for kv in st.values})

    def wait_ready(self, t: _Target, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        restart_at = time.monotonic() + timeout / 2
        while t.pub.get_subscription_count() == 0 or t.sub.get_publisher_count() == 0:
            if t.proc.poll() is not None:
                raise RuntimeError(f'{t.name} exited ({t.proc.returncode}); see '
                                   f'{t.log_path}:\n{t.log_text()[-2000:]}')
            if restart_at is not None and time.monotonic() > restart_at:
                # Seen once in many runs: a node process that never matched; start it again.
                print(f'{t.name} not matched after {timeout / 2:.0f} s: restarting it',
                      flush=True)
                t.proc.kill()
                t.proc.wait(5)
                t._log.write('\n--- restarted by fdr-benchmark (not matched) ---\n')
                t._log.flush()
                t.proc = subprocess.Popen(t.cmd, env=t.env, stdout=t._log,
                                          stderr=subprocess.STDOUT)
                restart_at = None
            if time.monotonic() > end:
                raise RuntimeError(f'{t.name} did not come up in {timeout:.0f} s; see '
                                   f'{t.log_path}:\n{t.log_text()[-2000:]}')
            time.sleep(0.05)
        end = time.monotonic() + timeout
        k = 0
        while True:  # warm-up: a few frames until the answers come back
            with self.lock:
                if len(t.received) >= 3:
                    break
            if time.monotonic() > end:
                raise RuntimeError(f'{t.name} never answered; see {t.log_path}')
            self._publish(t, k)
            k += 1
            time.sleep(0.2)
        time.sleep(0.5)
        with self.lock:
            t.received.clear()

    def _publish(self, t: _Target, k: int) -> int:
        msg = self.msgs[k % len(self.msgs)]
        now = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        t.pub.publish(msg)
        return now

    def phase(self, t: _Target, rate: float, duration_s: float, label: str,
              window_s: float = 0.0, settle_s: float = 1.5) -> Dict[str, Any]:
        """Publish at `rate` for `duration_s` to `t`; latency and throughput of its answers.

        The raw steady-state latencies (s) are under '_lat' (dropped before the JSON).
        """
        with self.lock:
            t.received.clear()
            t.diag.clear()
        sent: List[int] = []
        spy, svg = None, None
        if self.py_spy and t.node_name.startswith('detector'):
            # sampled without pausing the node (--nonblocking), so latency is not disturbed
            svg = self.out_dir / ('flame_' + ''.join(c if c.isalnum() or c in '.-' else '_'
                                                     for c in label) + '.svg')
            spy = subprocess.Popen(
                [self.py_spy, 'record', '--pid', str(t.proc.pid), '--duration',
                 str(max(1, int(duration_s))), '--rate', '200', '--nonblocking', '--threads',
                 '--output', str(svg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        watch = CpuWatch([t.proc.pid])
        win_watch, cpu_windows = CpuWatch([t.proc.pid]), []
        t0 = _now()
        k = 0
        while True:
            now = _now()
            if now - t0 >= duration_s:
                break
            due = t0 + k / rate
            if due > now:
                time.sleep(due - now)
            sent.append(self._publish(t, k))
            k += 1
            if window_s > 0 and _now() - win_watch.t0 >= window_s:
                f = win_watch.read()['foreign']  # None: the node is gone (raised below)
                cpu_windows.append(None if f is None else round(f, 2))
                win_watch = CpuWatch([t.proc.pid])
            if k % 10 == 0:
                with self.lock:
                    n = len(t.received)
                self.progress.update(f'ros {label}', _now() - t0, duration_s,
                                     f'{k} sent {n} back')
        t_pub_end = _now()
        end = time.monotonic() + settle_s
        last = -1
        while time.monotonic() < end:
            with self.lock:
                n = len(t.received)
            if n >= len(sent):
                break
            if n != last:
                last, end = n, max(end, time.monotonic() + 0.5)
            time.sleep(0.05)
        cw = watch.read()
        if cw['others_ours'] is None:
            raise RuntimeError(f'{t.name} exited during {label}; see {t.log_path}:\n'
                               f'{t.log_text()[-2000:]}')
        with self.lock:
            rec = list(t.received)
            diag = dict(t.diag)
        sent_set = set(sent)
        unknown = sum(r[0] not in sent_set for r in rec)
        rec = [r for r in rec if r[0] in sent_set]
        duplicates = len(rec) - len({r[0] for r in rec})
        warm_ns = sent[0] + int(min(1.0, 0.2 * duration_s) * 1e9) if sent else 0
        steady = [r for r in rec if r[0] >= warm_ns]
        lat = [(b - a) / 1e9 for a, b in steady]
        fps = ((len(steady) - 1) / ((steady[-1][1] - steady[0][1]) / 1e9)
               if len(steady) > 1 else 0.0)
        node_cpu_s = cw['others_ours_s']
        r = {'config': f'ros {label} @{rate:.4g}Hz', 'target': t.name,
             'input_rate': round(rate, 3),
             'input_fps': round((len(sent) - 1) / (t_pub_end - t0), 2) if len(sent) > 1 else 0,
             'duration_s': duration_s, 'frames_in': len(sent), 'frames_out': len(rec),
             'dropped': len(sent) - len(rec), 'duplicates': duplicates, 'unknown': unknown,
             'order_violations': order_violations([s for s, _ in rec]),
             'fps': round(fps, 2), 'latency_ms': lat_summary(lat),
             'node_cpu_cores': round(cw['others_ours'], 3),
             'node_cpu_ms_per_frame_in': round(1e3 * node_cpu_s / max(1, len(sent)), 3),
             'node_cpu_ms_per_frame_out': round(1e3 * node_cpu_s / max(1, len(rec)), 3),
             'harness_cpu_cores': round(cw['own'], 3),
             'foreign_cpu_cores': round(cw['foreign'], 2),
             'node_diagnostics': diag, 'hops_ms': hops_from_diag(diag),
             'load_avg_1m': load_avg(), '_lat': lat}
        if spy is not None:
            try:
                _, err = spy.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()
                _, err = spy.communicate()
            r['flame_graph'] = str(svg) if svg.exists() else f'py-spy failed: {err[-300:]!r}'
        if window_s > 0 and steady:
            ts = (np.array([s for s, _ in steady]) - sent[0]) / 1e9
            r['windows'] = windows(ts, np.array(lat), window_s, t.workers)
            for w, f in zip(r['windows'], cpu_windows):
                w['other_users_cores'] = f
            r['flatness'] = flatness(r['windows'])
        self.progress.done(
            f'ros      {r["config"]:<30}: {r["fps"]:7.1f} fps, latency p50 '
            f'{r["latency_ms"]["p50"]:7.1f} p99 {r["latency_ms"]["p99"]:7.1f} ms, in '
            f'{r["frames_in"]} out {r["frames_out"]} dropped {r["dropped"]}, order violations '
            f'{r["order_violations"]}, node CPU {r["node_cpu_cores"]:.2f}{foreign(r)}')
        return r

    def close(self) -> None:
        stop_processes([t.proc for t in self.targets.values()], timeout=15.0)
        for t in self.targets.values():
            t._log.close()
        self.executor.shutdown()
        self.node.destroy_node()
        if self.own_context:
            self.rclpy.try_shutdown()


def hops_from_diag(diag: Dict[str, str]) -> Dict[str, Dict[str, float]]:
    """Hop -> {'p50', 'p99', 'mean'} (ms) from the node's /diagnostics values."""
    out: Dict[str, Dict[str, float]] = {}
    for key, val in diag.items():
        if key.startswith('hop_') and key.endswith('_ms'):
            hop, q = key[4:-3].rsplit('_', 1)
            try:
                out.setdefault(hop, {})[q] = float(val)
            except ValueError:
                pass
    return out


def pooled(runs: Sequence[Dict[str, Any]], key: str = '_lat') -> Dict[str, float]:
    """p50/p99 over the raw latencies of several interleaved rounds."""
    lat = [v for r in runs for v in r.get(key, [])]
    return lat_summary(lat)


def strip_raw(obj: Any) -> Any:
    """Return the result without raw sample lists (keys starting with '_')."""
    if isinstance(obj, dict):
        return {k: strip_raw(v) for k, v in obj.items() if not str(k).startswith('_')}
    if isinstance(obj, list):
        return [strip_raw(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------ node settings
def node_settings(args, model: Model) -> Tuple[Optional[Path], Dict[str, Any], Dict[str, Any]]:
    """(params file, -p overrides, effective settings) of the node under test.

    By default the node runs with the shipped YAML of its family (the defaults a user gets);
    the benchmark only sets the model, autostart, diagnostics and the score threshold (the same
    as the bare runs'). --node WxT[,queue] overrides the pipeline shape.
    """
    import yaml
    from ...runtime import COMMON

    pf: Optional[Path] = None
    if args.node_params != 'none':
        pf = Path(args.node_params) if args.node_params else (
            REPO / SHIPPED_PARAMS[model.family] if model.family in SHIPPED_PARAMS else None)
    if pf is not None and not pf.is_file():
        raise SystemExit(f'node parameter file not found: {pf}')
    eff: Dict[str, Any] = {k: p.default for k, p in COMMON.items()}
    if pf is not None:
        doc = yaml.safe_load(pf.read_text()) or {}
        for section in doc.values():
            for k, v in (section or {}).get('ros__parameters', {}).items():
                if isinstance(v, dict):
                    eff.update({f'{k}.{sk}': sv for sk, sv in v.items()})
                else:
                    eff[k] = v
    over = {'model_path': str(Path(args.model).resolve()), 'model_family': model.family,
            'backend': args.backend, 'autostart': True, 'conf_threshold': args.conf,
            'diagnostics_period': 1.0,
            **{f'{args.backend}.{k}': v for k, v in model.options.items()
               if not isinstance(v, (list, tuple))}}
    if args.node:
        parts = args.node.split(',')
        w, t = (int(x) for x in parts[0].lower().split('x'))
        over.update(workers=w, threads=t)
        if len(parts) > 1:
            over['queue_size'] = int(parts[1])
    eff.update(over)
    return pf, over, eff


def backend_extra(eff: Dict[str, Any], backend: str) -> Dict[str, Any]:
    """Return the node's backend options from its settings (providers left to the run's own)."""
    prefix = backend + '.'
    return {k[len(prefix):]: v for k, v in eff.items()
            if k.startswith(prefix) and k[len(prefix):] not in ('providers',)}


def parse_variant(text: str, over: Dict[str, Any], convert: Callable[[str], Any] = str
                  ) -> Tuple[str, Dict[str, Any], Dict[str, str]]:
    """`--variant NAME:KEY=VALUE,...` -> (name, node parameters, environment).

    The parameters are `over` with the variant's own (values through `convert`); `env.NAME=VALUE`
    entries are environment variables of that node process.
    """
    name, _, kvs = text.partition(':')
    params, env = dict(over), {}
    for kv in filter(None, kvs.split(',')):
        k, _, v = kv.partition('=')
        if k.strip().startswith('env.'):
            env[k.strip()[4:]] = v.strip()
        else:
            params[k.strip()] = convert(v.strip())
    return name, params, env


def floor_command(qos_depth: int, **parameters: Any) -> List[str]:
    """Return the echo node's command: the transport floor, or with `model=` the minimal node."""
    cmd = [sys.executable, '-m', 'faster_deployment_ros.tools.benchmark.echo_node',
           '--ros-args', '-p', f'qos_depth:={int(qos_depth)}']
    for key, value in parameters.items():
        cmd += ['-p', f'{key}:={value}']
    return cmd


def parse_rate(text: str, capacity: float) -> Tuple[float, str]:
    """'1.5x' -> 1.5 x capacity, '15' -> 15 Hz."""
    text = text.strip()
    if text.endswith('x'):
        return float(text[:-1]) * capacity, f'{text} capacity'
    return float(text), f'{text} Hz'


# ------------------------------------------------------------------------------ the sections
def run_ros(args, res: Dict[str, Any], model: Model, frames: List[np.ndarray],
            out_dir: Path, progress: Progress) -> None:
    private_domain(os.environ)
    env = apply_camera_env(os.environ)  # the node and this process: the same transports
    pf, over, eff = node_settings(args, model)
    workers, threads, queue = int(eff['workers']), int(eff['threads']), int(eff['queue_size'])
    extra = backend_extra(eff, args.backend)
    duration = args.ros_duration or args.duration
    bench = RosBench(frames, out_dir, progress)
    if args.py_spy:
        exe = Path(sys.executable).with_name('py-spy')
        bench.py_spy = str(exe) if exe.exists() else (shutil.which('py-spy') or None)
        if bench.py_spy is None:
            raise SystemExit('--py-spy: py-spy not found (pip install py-spy)')
    node = bench.add('detector_node', node_command(params_file=pf, parameters=over),
                     workers=workers)
    floor = bench.add('transport_floor', floor_command(int(eff['qos_depth'])), 'floor',
                      node_name='transport_floor')
    variants = []  # A/B: the same node with other settings, in its own namespace, interleaved
    for text in args.variant or []:
        name, vo, venv = parse_variant(text, over, scalar)
        cmd = node_command(params_file=pf, parameters=vo,
                           ros_args=['-r', f'__node:=detector_{name}'])
        variants.append(bench.add(f'variant_{name}', cmd, f'v_{name}',
                                  node_name=f'detector_{name}',
                                  workers=int(vo.get('workers', workers)), extra_env=venv))
    ref_backend = model.make(threads, **extra)
    res['ros_node'] = {'params_file': str(pf) if pf else None, 'overrides': over,
                       'effective': dict(eff),
                       'command': ' '.join(node.cmd),
                       'env': {'ROS_DOMAIN_ID': os.environ['ROS_DOMAIN_ID'], **env}}
    cfg = f'{workers}x{threads}q{queue}'
    res['ros'] = []
    try:
        for t in [node, floor] + variants:
            bench.wait_ready(t)
        cap = bare_reference(ref_backend, model.adapter, frames, 2.5)
        capacity = cap['frame_fps'] * workers
        res['capacity'] = {**cap, 'fps': round(capacity, 2), 'node_config': cfg,
                           'backend_options': extra}
        print(f'capacity (bare {cfg}, pre + infer + post back to back): {capacity:.1f} fps, '
              f'load {load_avg()}', flush=True)
        for rate_text in filter(None, (s.strip() for s in args.ros_rates.split(','))):
            rate, label = parse_rate(rate_text, capacity)
            r = bench.phase(node, rate, duration, f'{cfg} {label}')
            r.update(node_config=cfg, saturating=rate >= 0.95 * capacity)
            res['ros'].append(r)
        if args.budget_rate:
            res['budget'] = budget_section(args, bench, node, floor, ref_backend, model, frames,
                                           capacity, duration, cfg, variants)
        if args.overload_rate:
            res['overload'] = overload_section(args, bench, node, floor, capacity, duration, cfg,
                                               variants)
        if args.saturate_rate:
            res['saturation'] = saturation_section(args, bench, node, floor, ref_backend, model,
                                                   frames,
                                                   capacity, duration, workers, threads, queue,
                                                   extra, eff, progress)
        ul = res.get('ultralytics') or {}
        if 'fps' in ul:
            r = bench.phase(node, ul['fps'], duration, f'{cfg} at ultralytics rate')
            res['at_ultralytics_rate'] = r
        if args.soak > 0:
            rate = 2.0 * max([r['fps'] for r in res['ros']] + [capacity])
            r = bench.phase(node, rate, args.soak, f'soak {cfg} 2x', window_s=10.0)
            r['node_config'] = cfg
            res['soak'] = r
    finally:
        ref_backend.close()
        bench.close()
        res['ros_node']['log_tail'] = node.log_text().splitlines()[-15:]


def budget_section(args, bench: RosBench, node: _Target, floor: _Target, ref_backend,
                   model: Model, frames, capacity: float, duration: float,
                   cfg: str, variants: Sequence[_Target] = ()) -> Dict[str, Any]:
    """Bare model paced at the rate, transport floor, node (and its --variant twins).

    Interleaved rounds, pooled.
    """
    rate, label = parse_rate(args.budget_rate, capacity)
    rounds: List[Dict[str, Any]] = []
    for k in range(max(1, args.budget_rounds)):
        bare = bare_reference(ref_backend, model.adapter, frames, duration, rate_hz=rate)
        print(f'bare     {cfg} paced @{rate:.4g}Hz: frame p50 {bare["frame_ms"]["p50"]:.1f} '
              f'p99 {bare["frame_ms"]["p99"]:.1f} ms (pre {bare["pre_ms"]["p50"]:.2f}, infer '
              f'{bare["infer_ms"]["p50"]:.2f}, post {bare["post_ms"]["p50"]:.2f})', flush=True)
        fl = bench.phase(floor, rate, duration, f'transport floor {label}')
        nd = bench.phase(node, rate, duration, f'{cfg} {label}')
        var = {v.name[len('variant_'):]: bench.phase(v, rate, duration, f'{v.name} {label}')
               for v in variants}
        rounds.append({'bare': bare, 'floor': fl, 'node': nd, 'variants': var})
    bare_lat = [r['bare']['frame_ms']['p50'] for r in rounds]
    out = {'rate_hz': round(rate, 3), 'rate': label, 'rounds': rounds, 'node_config': cfg,
           'bare_frame_ms': {'p50': round(float(np.median(bare_lat)), 3),
                             'p99': round(float(np.median([r['bare']['frame_ms']['p99']
                                                           for r in rounds])), 3)},
           'floor_ms': pooled([r['floor'] for r in rounds]),
           'node_ms': pooled([r['node'] for r in rounds]),
           'node_hops_ms': rounds[-1]['node']['hops_ms'],
           'variants': {name: {'node_ms': pooled([r['variants'][name] for r in rounds]),
                               'hops_ms': rounds[-1]['variants'][name]['hops_ms'],
                               'command': ' '.join(v.cmd)}
                        for name, v in ((v.name[len('variant_'):], v) for v in variants)},
           'load_avg_1m': load_avg()}
    return out


def overload_section(args, bench: RosBench, node: _Target, floor: _Target, capacity: float,
                     duration: float, cfg: str,
                     variants: Sequence[_Target] = ()) -> Dict[str, Any]:
    """Camera faster than the model.

    The node should infer the newest frame, so its p50 is about transport + pre + infer + post (its
    own, at this load) + half an input period.
    """
    rate, label = parse_rate(args.overload_rate, capacity)
    fl = bench.phase(floor, rate, duration, f'transport floor {label}')
    nd = bench.phase(node, rate, duration, f'{cfg} overload {label}')

    def ideal(r: Dict[str, Any]) -> Tuple[float, float]:
        hops = r['hops_ms']
        stages = sum(hops.get(h, {}).get('p50', 0.0) for h in ('pre', 'infer', 'post'))
        return stages, fl['latency_ms']['p50'] + stages + 500.0 / rate

    stages, best = ideal(nd)
    var = {}
    for v in variants:
        r = bench.phase(v, rate, duration, f'{v.name} overload {label}')
        var[v.name[len('variant_'):]] = {'latency_ms': r['latency_ms'], 'fps': r['fps'],
                                         'dropped': r['dropped'], 'hops_ms': r['hops_ms'],
                                         'ideal_p50_ms': round(ideal(r)[1], 3)}
    return {'rate_hz': round(rate, 3), 'rate': label, 'node_config': cfg, 'floor': fl,
            'node': nd, 'stages_p50_ms': round(stages, 3),
            'half_period_ms': round(500.0 / rate, 3), 'ideal_p50_ms': round(best, 3),
            'variants': var}


def saturation_section(args, bench: RosBench, node: _Target, floor: _Target, ref_backend,
                       model: Model, frames,
                       capacity: float, duration: float, workers: int, threads: int, queue: int,
                       extra: Dict[str, Any], eff: Dict[str, Any],
                       progress: Progress) -> Dict[str, Any]:
    """Run the node and the pipeline alone beyond capacity, with the same frames and settings.

    Also the node's CPU per frame beyond what inference itself costs.
    """
    rate, label = parse_rate(args.saturate_rate, capacity)
    policy = str(eff.get('full_policy', 'drop_oldest'))
    sched = 'just_in_time' if policy == 'drop_oldest' else 'eager'

    # the node's backend options for the in-process pipeline
    pipe = run_pipeline(model.with_options(extra), frames, workers, threads, queue, policy, rate,
                        duration, progress, label=f'alone {workers}x{threads}q{queue}',
                        schedule=sched)
    nd = bench.phase(node, rate, duration, f'{workers}x{threads}q{queue} saturated {label}')
    fl = bench.phase(floor, rate, duration, f'transport floor saturated {label}')
    inf_cpu = infer_cpu_ms(ref_backend, model.adapter, frames)
    outside = nd['node_cpu_ms_per_frame_out'] - inf_cpu
    return {'rate_hz': round(rate, 3), 'rate': label, 'pipeline_alone': pipe, 'node': nd,
            'floor': fl, 'floor_cpu_ms_per_frame': fl['node_cpu_ms_per_frame_in'],
            'fps_ratio': round(nd['fps'] / pipe['fps'], 3) if pipe['fps'] else None,
            'infer_cpu_ms_per_frame': inf_cpu,
            'node_cpu_ms_per_frame_out': nd['node_cpu_ms_per_frame_out'],
            'node_cpu_ms_outside_inference_per_frame': round(outside, 3)}
