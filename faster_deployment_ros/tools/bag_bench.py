"""
`fdr-bag bench`: a node's peak rate and its latency at a camera rate, fed from a bag.

In the form ros2_benchmark (Isaac ROS Benchmark) publishes its tables: "N fps, X ms @ 30Hz".

  fdr-bag bench IN_BAG --model MODEL [--params YAML] [--node detector_node|depth_node]
                [--drop-limit 0.05] [--latency-hz 30] [--duration 5] [--out out/bench]

* peak fps: the node (its own process, started here with MODEL and the YAML) is fed the bag's
  frames at a fixed input rate for ``duration`` seconds per trial; a rate is sustained when fewer
  than ``drop_limit`` of the frames sent got no output. The rate doubles from ``start_hz``
  until a trial fails, then is bisected to within ``resolution``; the figure is the output rate
  at the highest sustained input rate (ros2_benchmark: MEAN_FRAME_RATE at the highest playback
  rate whose missed frames stay under its limit).
* latency @ 30 Hz: one trial at ``latency_hz``; latency = player publish -> recorder receipt
  (both here, one monotonic clock), p50 / p90 / p99 / max.
* CPU: cores the node process used (CPU seconds / wall) and the whole machine's busy share
  during each trial, beside a baseline taken before the node starts; on a shared machine the
  baseline and `uptime` say how much of the load was someone else's.

Frames are published from the bag's CDR bytes with their recorded headers (tools/replay.py), so
the input costs the node what a camera driver's messages would. A ROS tool: rclpy is imported
only when the benchmark runs; ``add_arguments`` stays importable without ROS.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
import platform
import shutil
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional

from .graph_node import ros_context
from .paths import DEFAULT_PARAMS, find_model, find_params
from .processes import CpuWatch, log_tail, node_command, start_process, stop_process

NODES = {'detector_node': ('/detections', 'vision_msgs/msg/Detection2DArray'),
         'depth_node': ('/depth', 'sensor_msgs/msg/Image')}


def log(msg: str) -> None:
    print(f'[bench] {msg}', file=sys.stderr, flush=True)


# --- CPU accounting ------------------------------------------------------------------------------

def cpu_usage(watch: CpuWatch) -> Dict[str, Any]:
    """
    CPU used since ``watch`` began: the node process (cores) and the whole machine.

    The machine's share is % of all cores, as ros2_benchmark's OVERALL_CPU_UTILIZATION;
    ``node_cores`` is there when a node pid is watched (None once the node is gone).
    """
    use = watch.read()
    out = {'machine_pct': use['machine_pct'], 'player_cores': round(use['own'], 3),
           'wall_s': round(use['wall_s'], 3)}
    if watch.pids:
        node = use['others_ours']
        out['node_cores'] = None if node is None else round(node, 3)
    return out


def baseline_cpu(seconds: float = 2.0) -> float:
    """Return the machine's busy share (%) with no benchmark running: other users' load."""
    w = CpuWatch()
    time.sleep(seconds)
    return w.read()['machine_pct']


# --- trials ------------------------------------------------------------------------------------

def bag_rate(bag: Path, topic: Optional[str] = None) -> tuple:
    """(frames, recorded rate in Hz) of the image topic of ``bag``."""
    from rosbags.rosbag2 import Reader

    from .replay import IMAGE_TYPES
    with Reader(bag) as r:
        conns = [c for c in r.connections
                 if (c.topic == topic if topic else c.msgtype in IMAGE_TYPES)]
        if not conns:
            raise ValueError(f'{bag}: no image topic {topic or ""}')
        times = [t for _, t, _ in r.messages(connections=conns[:1])]
    if len(times) < 2 or times[-1] <= times[0]:
        raise ValueError(f'{bag}: needs at least two frames with increasing times')
    return len(times), (len(times) - 1) / ((times[-1] - times[0]) / 1e9)


def trial(a: argparse.Namespace, hz: float, bag_hz: float, frames: int, out: Path,
          pid: Optional[int], name: str) -> Dict[str, Any]:
    """
    Replay at ``hz`` for ``a.duration`` s and report what came back.

    At least ``a.min_frames`` frames (so that one drop is a small share), at most the bag's.
    """
    from .replay import play_record, ReplayConfig
    n = max(2, min(frames, max(a.min_frames, int(math.ceil(a.duration * hz)))))
    d = out / name
    shutil.rmtree(d, ignore_errors=True)
    cfg = ReplayConfig(in_bag=Path(a.in_bag), out_dir=d, in_topic=a.in_topic,
                       out_topic=a.out_topic, out_type=a.out_type, bag_topic=a.bag_topic,
                       rate=hz / bag_hz, reliable=a.reliable, depth=a.depth, max_frames=n,
                       wait_timeout=a.node_timeout, settle_timeout=a.settle, idle_timeout=1.0,
                       node_name=f'fdr_bench_{os.getpid()}')
    cpu = CpuWatch([pid] if pid else [])
    rep = play_record(cfg, log=lambda s: None)
    usage = cpu_usage(cpu)
    lat = rep.get('latency_ms') or {}
    row = {'target_hz': round(hz, 2), 'input_fps': rep.get('input_fps'),
           'output_fps': _output_fps(rep), 'frames_in': rep['frames_in'],
           'frames_out': rep['frames_out'], 'dropped': rep['dropped'],
           'drop_frac': round(rep['dropped'] / max(rep['frames_in'], 1), 4),
           'order_violations': rep['order_violations'], 'latency_ms': lat or None,
           'cpu': usage}
    log(f'{name}: {hz:7.2f} Hz -> in {row["input_fps"] or 0:6.2f} fps, out '
        f'{row["output_fps"] or 0:6.2f} fps, dropped {rep["dropped"]}/{rep["frames_in"]} '
        f'({100 * row["drop_frac"]:.1f} %), latency p50 {lat.get("p50", float("nan")):.1f} ms '
        f'p99 {lat.get("p99", float("nan")):.1f} ms, node {usage.get("node_cores")} cores, '
        f'machine {usage["machine_pct"]} %')
    return row


def _output_fps(rep: Dict[str, Any]) -> Optional[float]:
    """
    Return outputs per second over the input span: the node's delivered rate while fed.

    As ros2_benchmark's MEAN_FRAME_RATE; the report's throughput_fps adds the last latency.
    """
    span = rep['frames_in'] / rep['input_fps'] if rep.get('input_fps') else None
    if not span:
        return None
    return round((rep['frames_out'] - rep['duplicates']) / span, 2)


def median_trial(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """
    Pick the trial with the median drop share of repeated trials at one rate.

    The others' figures are kept under 'repeats' (a shared machine makes single trials noisy).
    """
    if len(rows) == 1:
        return rows[0]
    ordered = sorted(rows, key=lambda r: r['drop_frac'])
    med = dict(ordered[(len(ordered) - 1) // 2])
    keys = ('output_fps', 'dropped', 'frames_in', 'drop_frac', 'latency_ms', 'cpu')
    med['repeats'] = [{k: r.get(k) for k in keys} for r in rows]
    return med


def sustained(row: Dict[str, Any], limit: float) -> bool:
    return row['drop_frac'] < limit and row['order_violations'] == 0


def peak_search(run: Callable[[float], Dict[str, Any]], start_hz: float, max_hz: float,
                limit: float, resolution: float, max_trials: int) -> tuple:
    """(best sustained row or None, all rows).

    Double from ``start_hz`` while sustained, then bisect between the last sustained and the first
    failed rate until they are within ``resolution`` (relative).
    """
    rows: List[Dict[str, Any]] = []
    lo, hi, best = None, None, None
    hz = start_hz
    while len(rows) < max_trials:
        row = run(hz)
        rows.append(row)
        if sustained(row, limit):
            lo, best = hz, row
            if hi is None:
                if hz >= max_hz:
                    break
                hz = min(hz * 2, max_hz)
                continue
        else:
            hi = hz
            if lo is None:
                if hz <= start_hz / 16:
                    break
                hz /= 2
                continue
        if hi is not None and lo is not None:
            if (hi - lo) / lo <= resolution:
                break
            hz = (lo + hi) / 2
    return best, rows


# --- node ---------------------------------------------------------------------------------------

def start_node(a: argparse.Namespace, out: Path) -> subprocess.Popen:
    """Start the node under test with the model and parameters ``a`` names; log in ``out``."""
    model, params = find_model(a.model), find_params(a.params)
    if model is None or params is None:
        raise SystemExit(f'fdr-bag bench: model {a.model!r} or params {a.params!r} not found')
    cmd = node_command(a.node, params_file=params, model=model, parameters=a.param)
    log('starting: ' + ' '.join(cmd))
    # the node inherits the camera environment main_args applied
    return start_process(cmd, out / f'{a.node}.log')


# --- output -------------------------------------------------------------------------------------

def format_table(result: Dict[str, Any]) -> str:
    """
    Format the Isaac ROS layout, then the details.

    One row per graph, one cell 'peak fps / latency @ Hz' per machine.
    """
    peak, at = result.get('peak'), result.get('latency')
    lat = (at or {}).get('latency_ms') or {}
    cell = (f'{peak["output_fps"]:.1f} fps' if peak else 'n/a') + (
        f' {lat["p50"]:.1f} ms @ {result["latency_hz"]:g}Hz' if lat else '')
    head = f'| Node | Input Size | {result["machine"]} |'
    lines = [head, '|---|---|---|',
             f'| {result["graph"]} | {result["input_size"]} | {cell} |', '']
    if peak:
        lines.append(f'peak: {peak["output_fps"]:.2f} fps out at {peak["input_fps"]:.2f} fps in '
                     f'(target {peak["target_hz"]:g} Hz), dropped {peak["dropped"]}/'
                     f'{peak["frames_in"]} ({100 * peak["drop_frac"]:.1f} % < '
                     f'{100 * result["drop_limit"]:g} %), node {peak["cpu"].get("node_cores")} '
                     f'cores, machine {peak["cpu"]["machine_pct"]} %')
    else:
        lines.append('peak: no rate tried was sustained')
    if at:
        lines.append(f'@ {result["latency_hz"]:g} Hz: latency p50 {lat.get("p50", 0):.1f} / p90 '
                     f'{lat.get("p90", 0):.1f} / p99 {lat.get("p99", 0):.1f} / max '
                     f'{lat.get("max", 0):.1f} ms (mean {lat.get("mean", 0):.1f}), out '
                     f'{at["output_fps"]} fps, dropped {at["dropped"]}/{at["frames_in"]}, node '
                     f'{at["cpu"].get("node_cores")} cores, machine {at["cpu"]["machine_pct"]} %')
    lines.append(f'baseline machine CPU before the node started: {result["baseline_cpu_pct"]} %; '
                 f'uptime: {result["uptime"]}')
    return '\n'.join(lines)


def _uptime() -> str:
    try:
        return subprocess.run(['uptime'], capture_output=True, text=True, timeout=5
                              ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return 'load average: ' + ', '.join(f'{x:.2f}' for x in os.getloadavg())


def _input_size(bag: Path, topic: Optional[str]) -> str:
    from rosbags.rosbag2 import Reader

    from .bag_types import make_typestore
    from .replay import IMAGE_TYPES
    store = make_typestore(())
    with Reader(bag) as r:
        conns = [c for c in r.connections
                 if (c.topic == topic if topic else c.msgtype in IMAGE_TYPES)]
        for c, _, data in r.messages(connections=conns[:1]):
            if c.msgtype == 'sensor_msgs/msg/Image':
                m = store.deserialize_cdr(data, c.msgtype)
                return f'{m.width}x{m.height}'
            return 'compressed'
    return '?'


def main_args(a: argparse.Namespace) -> int:
    from ..ros.middleware_env import apply_camera_env
    from .replay import ReplayError
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.out_topic is None or a.out_type is None:
        topic, typ = NODES[a.node]
        a.out_topic, a.out_type = a.out_topic or topic, a.out_type or typ
    frames, bag_hz = bag_rate(Path(a.in_bag), a.bag_topic)
    log(f'{a.in_bag}: {frames} frames recorded at {bag_hz:.2f} Hz')
    result: Dict[str, Any] = {
        'graph': a.graph or f'{a.node} {Path(a.model).stem}', 'machine': a.machine,
        'input_size': _input_size(Path(a.in_bag), a.bag_topic), 'bag': str(a.in_bag),
        'bag_frames': frames, 'bag_hz': round(bag_hz, 3), 'drop_limit': a.drop_limit,
        'latency_hz': a.latency_hz, 'duration_s': a.duration, 'params': a.params,
        'param_overrides': a.param, 'model': a.model, 'uptime_before': _uptime(),
        'baseline_cpu_pct': baseline_cpu()}
    apply_camera_env(os.environ)  # before the first ROS context; the node inherits it
    proc = None
    code = 0
    with ros_context():
        try:
            proc = None if a.no_launch else start_node(a, out)
            pid = proc.pid if proc else a.node_pid
            count = iter(range(1000))

            def run(hz: float) -> Dict[str, Any]:
                return median_trial([trial(a, hz, bag_hz, frames, out, pid,
                                           f'trial_{next(count):02d}_{hz:.1f}Hz')
                                     for _ in range(max(1, a.repeats))])
            # The first trial also waits for the node to load its model; run it at the latency rate
            # and keep it out of the figures.
            log('warm-up trial')
            trial(a, a.latency_hz, bag_hz, frames, out, pid, f'trial_{next(count):02d}_warmup')
            result['latency'] = run(a.latency_hz)
            if not a.no_peak:
                best, rows = peak_search(run, a.start_hz or a.latency_hz, a.max_hz, a.drop_limit,
                                         a.resolution, a.max_trials)
                result['peak'], result['trials'] = best, rows
            if proc is not None and proc.poll() is not None:
                raise ReplayError(f'{a.node} exited with code {proc.returncode}')
        except (ReplayError, ValueError) as exc:
            print(f'fdr-bag bench: {exc}', file=sys.stderr)
            code = 1
        finally:
            if proc is not None:
                stop_process(proc)
    result['uptime'] = _uptime()
    (out / 'bench.json').write_text(json.dumps(result, indent=2) + '\n')
    if code == 0:
        print(format_table(result))
        print(f'results: {out / "bench.json"}')
    elif proc is not None:
        print('node log (last lines):\n  ' + '\n  '.join(log_tail(out / f'{a.node}.log', 20)),
              file=sys.stderr)
    return code


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument('in_bag', help='image bag (fdr-bag from-video makes one)')
    p.add_argument('--model', required=True, help='model file for the node')
    p.add_argument('--params', default=DEFAULT_PARAMS,
                   help='node parameter YAML')
    p.add_argument('-p', '--param', action='append', default=[],
                   help='extra node parameter, name:=value (repeatable)')
    p.add_argument('--node', choices=sorted(NODES), default='detector_node')
    p.add_argument('--no-launch', action='store_true',
                   help='benchmark a node that is already running (CPU only with --node-pid)')
    p.add_argument('--node-pid', type=int, help="with --no-launch: the node's pid, for CPU")
    p.add_argument('--out', default='out/bench', help='trial outputs and bench.json')
    p.add_argument('--in-topic', default='/image')
    p.add_argument('--out-topic', help='default: /detections or /depth by --node')
    p.add_argument('--out-type', help='default: by --node')
    p.add_argument('--bag-topic', help='image topic inside the bag')
    p.add_argument('--reliable', action='store_true', help='publish reliable, not best effort')
    p.add_argument('--depth', type=int, default=5, help='publisher history depth')
    p.add_argument('--drop-limit', type=float, default=0.05,
                   help='a rate is sustained when fewer than this share of frames is dropped')
    p.add_argument('--latency-hz', type=float, default=30.0, help='input rate of the latency run')
    p.add_argument('--duration', type=float, default=5.0, help='seconds of input per trial')
    p.add_argument('--repeats', type=int, default=1,
                   help='trials per rate; the one with the median drop share counts')
    p.add_argument('--min-frames', type=int, default=100,
                   help='frames per trial at least (low rates run longer than --duration)')
    p.add_argument('--start-hz', type=float, help='first rate of the peak search '
                   '(default: --latency-hz)')
    p.add_argument('--max-hz', type=float, default=1000.0)
    p.add_argument('--resolution', type=float, default=0.1,
                   help='stop bisecting when the bracket is within this share of the rate')
    p.add_argument('--max-trials', type=int, default=8)
    p.add_argument('--no-peak', action='store_true', help='only the latency run')
    p.add_argument('--settle', type=float, default=10.0,
                   help="seconds to wait for outputs after each trial's last frame")
    p.add_argument('--node-timeout', type=float, default=90.0,
                   help='seconds for the node to load its model and subscribe')
    p.add_argument('--graph', help='row name in the table (default: node and model)')
    p.add_argument('--machine', default=f'{platform.machine()}, {os.cpu_count()} cores',
                   help='column name in the table')
