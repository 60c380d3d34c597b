"""Multi-camera benchmark: one detector_node serving N cameras against N single-camera nodes.

  python -m faster_deployment_ros.tools.multicam_bench --model yolox_nano_coco_416.onnx \
      [--cameras 2 4] [--rate 10] [--duration 15] [--warmup 3] \
      [--fair-model .cache/models/yolov8n.onnx --fair-rates 30 5] [--json out.json]

Every scenario starts real node processes (the console-script entry, the YAML given with
--params), plays real frames (the shared videos, camera i alternating plaza / campus) on one
topic per camera from this process, and records each camera's outputs. Per camera: frames in /
out / dropped, latency (publish -> receipt) p50 / p99; per scenario: delivered fps, CPU cores of
the node processes, their total RSS (peak), and the CPU other processes used meanwhile (the
machine may be shared: compare rows of one run). Scenarios:

  single   one node, the plain `image` topic: the single-camera reference
  N x 1    N single-camera nodes (one model copy each), topics remapped
  1 x N    one node, `inputs: [...]`: N cameras, one model, shared workers
  fair     one node, two cameras at --fair-rates over capacity (--fair-model): each camera's
           share and latency
  fair-pipeline  the same two cameras straight into the pipeline (no ROS), once through one
           shared input queue (what a node without per-camera sources does) and once with a
           source per camera: what the per-camera queues change
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

from .graph_node import ros_context
from .paths import ROOT, SHARED
from .processes import CpuWatch, node_command, PeakRss, start_process, stop_processes
from ..ros.middleware_env import apply_camera_env, private_domain


def log(msg: str) -> None:
    print(f'[multicam-bench] {msg}', file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- scenarios
def camera_frames(shared: Path, n: int = 20) -> List[tuple]:
    """[(name, frames)] of the two shared videos: plaza (1280x720) and campus (480x360)."""
    from .frames import read_frames
    plaza = read_frames(shared / 'data' / 'pedestrians_plaza_1280x720_50fps.avi', n, 3)
    campus = read_frames(shared / 'data' / 'campus_walkway_480x360_10fps.avi', n, 2)
    return [('plaza', plaza), ('campus', campus)]


def run_scenario(label: str, nodes: List[List[str]], cams: List[Dict[str, Any]],
                 args: argparse.Namespace, params: Path, model: Path,
                 helper_pids: Sequence[int] = ()) -> Dict[str, Any]:
    """Run one scenario; a second attempt when the graph did not come up (discovery)."""
    try:
        return _run_scenario(label, nodes, cams, args, params, model, helper_pids)
    except RuntimeError as exc:
        log(f'{label}: {exc}; once more')
        return _run_scenario(label, nodes, cams, args, params, model, helper_pids)


def _run_scenario(label: str, nodes: List[List[str]], cams: List[Dict[str, Any]],
                  args: argparse.Namespace, params: Path, model: Path,
                  helper_pids: Sequence[int] = ()) -> Dict[str, Any]:
    """nodes: extra ROS args per node process; cams: dicts with topic/out/frames/rate.

    helper_pids: processes the nodes rely on (a Triton server): their CPU over the measured
    window is `helper_cores`, apart from the nodes' (None without them).
    """
    from sensor_msgs.msg import Image

    from .multicam import (play_streams, pooled_latency_ms, serialise_images, Stream,
                           stream_report)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = [start_process(node_command(params_file=params, model=model,
                                        parameters={'diagnostics_period': 0.0},
                                        ros_args=['-r', f'__node:=bench_det{i}', *extra]),
                           out_dir / f'{label.replace(" ", "_")}_node{i}.log')
             for i, extra in enumerate(nodes)]  # they inherit the camera environment main set
    streams = [Stream(name=c['name'], in_topic=c['topic'], out_topic=c['out'],
                      payloads=serialise_images(c['frames'], c['name']), msg_type=Image,
                      rate=c['rate'], phase_s=c['phase']) for c in cams]
    rss = PeakRss([p.pid for p in procs])
    rss.start()
    done = threading.Event()
    marks: Dict[str, Any] = {}

    def mark_after_warmup() -> None:
        # waits for the first publish (play_streams sets inputs), then the warm-up
        while not any(s.inputs for s in streams):
            if done.wait(0.01):
                return
        time.sleep(args.warmup)
        marks['t_ns'] = time.monotonic_ns()
        marks['cpu'] = CpuWatch([p.pid for p in procs])
        marks['helpers'] = CpuWatch(helper_pids) if helper_pids else None
    marker = threading.Thread(target=mark_after_warmup, daemon=True)
    marker.start()
    end: Dict[str, Any] = {}

    def published() -> None:
        end['cpu'] = marks['cpu'].read()
        end['helpers'] = marks['helpers'].read() if marks['helpers'] is not None else None
    try:
        play_streams(streams, args.warmup + args.duration, node_name='fdr_multicam_bench',
                     wait_timeout=90.0, settle_timeout=5.0, log=log, on_published=published)
    finally:
        done.set()
        rss.stop()
        stop_processes(procs)
    marker.join(1)
    cpu = end['cpu']
    reports = [stream_report(s, marks['t_ns']) for s in streams]
    res = {
        'scenario': label, 'nodes': len(nodes), 'cameras': len(cams),
        'rates_hz': [c['rate'] for c in cams],
        'frames_in': sum(r['frames_in'] for r in reports),
        'frames_out': sum(r['frames_out'] for r in reports),
        'fps_out': round(sum(r.get('throughput_fps') or 0.0 for r in reports), 2),
        'node_cores': rounded(cpu['others_ours']), 'harness_cores': rounded(cpu['own']),
        'other_cores': rounded(cpu['foreign']),
        'helper_cores': rounded(end['helpers']['others_ours']) if end['helpers'] else None,
        'peak_rss_mb': round(rss.peak_bytes / 2**20, 1),
        'latency_ms': pooled_latency_ms(streams, marks['t_ns']),
        'per_camera': [{k: r.get(k) for k in ('camera', 'in_topic', 'frames_in', 'frames_out',
                                              'dropped', 'order_violations',
                                              'header_mismatches', 'latency_ms')}
                       for r in reports],
    }
    log(format_row(res))
    return res


def pipeline_fairness(model: Path, frames: List[tuple], rates: Sequence[float],
                      duration: float, per_source: bool) -> Dict[str, Any]:
    """Feed two producer threads at `rates` into one Pipeline; frames and latency per camera.

    ONNX Runtime with the model's adapter, drop_oldest, queue 2, just-in-time.
    """
    import numpy as np

    from ..models import create_adapter
    from ..runtime import PerceptionRuntime, RuntimeConfig
    got: Dict[int, list] = {0: [], 1: []}
    sent = [0, 0]

    def on_result(r) -> None:
        cam = r.context
        got[cam].append(r.timings['total'])

    pipe = PerceptionRuntime(
        RuntimeConfig(model_path=str(model), queue_size=2, full_policy='drop_oldest',
                      schedule='just_in_time', name='fairness'),
        lambda b: create_adapter('auto', b.inputs, b.outputs, b.metadata), on_result)
    stop = threading.Event()

    def produce(cam: int) -> None:
        imgs = frames[cam % 2][1]
        period, t0, k = 1.0 / rates[cam], time.monotonic(), 0
        while not stop.is_set():
            due = t0 + k * period
            if stop.wait(max(0.0, due - time.monotonic())):
                break
            pipe.submit(imgs[k % len(imgs)], context=cam, source=cam if per_source else None)
            sent[cam] += 1
            k += 1
    threads = [threading.Thread(target=produce, args=(c,), daemon=True) for c in (0, 1)]
    for t in threads:
        t.start()
    time.sleep(duration)
    stop.set()
    for t in threads:
        t.join()
    pipe.flush(timeout=10)
    pipe.close()
    queues = 'a queue per camera' if per_source else 'one shared queue'
    out = {'scenario': f'fair-pipeline, {queues}', 'rates_hz': list(rates), 'per_camera': []}
    for cam in (0, 1):
        lat = np.asarray(got[cam]) * 1000.0
        out['per_camera'].append({
            'camera': f'fair{cam}', 'frames_in': sent[cam], 'frames_out': len(lat),
            'fps_out': round(len(lat) / duration, 2),
            'latency_ms': {'p50': round(float(np.percentile(lat, 50)), 1),
                           'p99': round(float(np.percentile(lat, 99)), 1)} if len(lat) else None})
    line = '; '.join(f"{c['camera']} @ {r:g} Hz: {c['frames_out']}/{c['frames_in']} out, "
                     f"{c['fps_out']:.1f} fps, p50 {(c['latency_ms'] or {}).get('p50')} ms"
                     for c, r in zip(out['per_camera'], rates))
    log(f"{out['scenario']}: {line}")
    return out


def rounded(x: Optional[float], digits: int = 2) -> Optional[float]:
    """``x`` rounded; None stays None (a node process that was gone before the end)."""
    return None if x is None else round(x, digits)


def format_row(r: Dict[str, Any]) -> str:
    lat = [c['latency_ms'] or {} for c in r['per_camera']]
    p50 = '/'.join(f"{x.get('p50', float('nan')):.0f}" for x in lat)
    p99 = '/'.join(f"{x.get('p99', float('nan')):.0f}" for x in lat)
    io = '/'.join(f"{c['frames_out']}:{c['frames_in']}" for c in r['per_camera'])
    return (f"| {r['scenario']} | {r['nodes']} | {r['cameras']} x "
            f"{'/'.join(f'{x:g}' for x in r['rates_hz'])} Hz | {io} | {r['fps_out']:.1f} | "
            f"{p50} | {p99} | {_cores(r['node_cores'])} | {r['peak_rss_mb']:.0f} | "
            f"{_cores(r['other_cores'])} |")


def _cores(x: Optional[float]) -> str:
    return '-' if x is None else f'{x:.2f}'


HEADER = ('| scenario | node processes | cameras x rate | out:in per camera (after warm-up) | '
          'fps out | latency p50 per camera (ms) | p99 (ms) | node CPU cores | node RSS peak '
          '(MB) | other users (cores) |\n|---|---|---|---|---|---|---|---|---|---|')


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='python -m faster_deployment_ros.tools.multicam_bench',
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', default=str(SHARED / 'models' / 'yolox_nano_coco_416.onnx'))
    p.add_argument('--params', default=str(ROOT / 'config' / 'yolox_nano_onnxruntime.yaml'))
    p.add_argument('--shared', default=str(SHARED))
    p.add_argument('--cameras', type=int, nargs='+', default=[2, 4])
    p.add_argument('--rate', type=float, default=10.0, help='Hz per camera')
    p.add_argument('--duration', type=float, default=15.0, help='measured seconds')
    p.add_argument('--warmup', type=float, default=3.0, help='seconds not measured')
    p.add_argument('--fair-model', default=str(ROOT / '.cache' / 'models' / 'yolov8n.onnx'),
                   help='model of the fairness run (slow enough to be over capacity)')
    p.add_argument('--fair-params', default=str(ROOT / 'config' / 'yolov8n_onnxruntime.yaml'))
    p.add_argument('--fair-rates', type=float, nargs=2, default=[30.0, 5.0])
    p.add_argument('--only', nargs='*', default=[],
                   help='run only these scenarios: single, separate, shared, fair, '
                   'fair-pipeline')
    p.add_argument('--shared-workers', type=int, nargs='+', default=[1, 2],
                   help='workers of the one node serving all cameras (one row each)')
    p.add_argument('--repeat', type=int, default=1, help='run the ROS scenarios this often')
    p.add_argument('--out', default=str(ROOT / 'out' / 'multicam_bench'))
    p.add_argument('--json', help='write all results here')
    return p


def run(args: argparse.Namespace) -> int:
    """Run the scenarios ``args`` asks for (build_parser) and print their table."""
    private_domain(os.environ)
    apply_camera_env(os.environ)
    model, params = Path(args.model), Path(args.params)
    frames = camera_frames(Path(args.shared))
    want = set(args.only) or {'single', 'separate', 'shared', 'fair', 'fair-pipeline'}

    def cams(n: int, rates: Sequence[float], prefix: str) -> List[Dict[str, Any]]:
        # phases spread over a frame period: free-running cameras are not in lockstep
        return [{'name': f'{prefix}{i}', 'topic': f'/{prefix}{i}/image_raw',
                 'out': f'/{prefix}{i}/detections', 'frames': frames[i % 2][1],
                 'rate': rates[i], 'phase': i / (n * max(rates))} for i in range(n)]

    cores = os.cpu_count() or 1
    results = []
    with ros_context():
        for _ in range(args.repeat):  # rows of one kind spread over the run: load drifts
            if 'single' in want:
                c = cams(1, [args.rate], 'cam')
                results.append(run_scenario('single (image topic)', [[
                    '-r', f'image:={c[0]["topic"]}', '-r', f'detections:={c[0]["out"]}']],
                    c, args, params, model))
            for n in args.cameras:
                c = cams(n, [args.rate] * n, 'cam')
                if 'separate' in want:
                    results.append(run_scenario(f'{n} x 1 camera', [[
                        '-r', f'image:={x["topic"]}', '-r', f'detections:={x["out"]}']
                        for x in c], c, args, params, model))
                if 'shared' in want:
                    inputs = '[' + ','.join(x['topic'] for x in c) + ']'
                    for w in args.shared_workers:
                        # more workers split the cores (threads per worker), as autotune does
                        threads = [] if w == 1 else ['-p', f'threads:={max(1, cores // w)}']
                        results.append(run_scenario(
                            f'1 x {n} cameras, workers {w}',
                            [['-p', f'inputs:={inputs}', '-p', f'workers:={w}', *threads]],
                            c, args, params, model))
            if 'fair' in want:
                c = cams(2, args.fair_rates, 'fair')
                inputs = '[' + ','.join(x['topic'] for x in c) + ']'
                results.append(run_scenario('fair: 1 x 2 cameras', [['-p', f'inputs:={inputs}']],
                                            c, args, Path(args.fair_params),
                                            Path(args.fair_model)))
    if 'fair-pipeline' in want:
        for per_source in (False, True):
            results.append(pipeline_fairness(Path(args.fair_model), frames, args.fair_rates,
                                             args.duration, per_source))
    print(HEADER)
    for r in results:
        if 'nodes' in r:
            print(format_row(r))
    for r in results:
        if 'nodes' not in r:
            print(f"{r['scenario']}: " + '; '.join(
                f"{c['camera']} @ {rate:g} Hz: {c['frames_out']}/{c['frames_in']} out "
                f"({c['fps_out']:.1f} fps), latency p50 / p99 "
                f"{(c['latency_ms'] or {}).get('p50')} / {(c['latency_ms'] or {}).get('p99')} ms"
                for c, rate in zip(r['per_camera'], r['rates_hz'])))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + '\n')
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
