"""fdr-benchmark's command line: which sections run, in which order, and where results go."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .common import default_video, load_frames, Model, Progress, REPO, SHARED_REL
from .measure import (bench_autotune, bench_bare, bench_serial, bench_ultralytics, flatness,
                      run_pipeline)
from .report import plot, print_targets, targets
from ..processes import load_avg
from ...core.autotune import available_cores, thread_candidates
from ...core.memory import reuse_large_buffers
from ...core.param_file import params_yaml

DOC = """fdr-benchmark: one model, real frames, every way of running it, in one run."""


def parse_configs(text: str) -> List[Tuple[int, int]]:
    out = []
    for tok in filter(None, (t.strip() for t in text.split(','))):
        w, t = tok.lower().split('x')
        out.append((int(w), int(t)))
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog='fdr-benchmark', description=DOC,
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
    ap.add_argument('--ros-rates', default='',
                    help='extra node runs at these rates: Nx = N times capacity, or Hz')
    ap.add_argument('--node-params', default='',
                    help="the node's parameter file (default: the family's shipped YAML; "
                    '"none": parameter defaults)')
    ap.add_argument('--budget-rate', default='0.5x', help='latency budget side by side (bare '
                    'paced, transport floor, node) at this rate ("" skips)')
    ap.add_argument('--budget-rounds', type=int, default=2,
                    help='interleaved rounds of the budget runs')
    ap.add_argument('--variant', action='append', metavar='NAME:KEY=VALUE[,KEY=VALUE]',
                    help='A/B: also run the node with these parameters in the budget rounds, '
                    'interleaved (e.g. spin:onnxruntime.allow_spinning=true); repeatable; '
                    'env.NAME=VALUE sets an environment variable of that node process')
    ap.add_argument('--outside-view', action='store_true',
                    help='also measure as an outside observer: publisher, receiver, node, '
                    'transport floor and plain ONNX Runtime (default options, best of --threads) '
                    'each in its own process, at --budget-rate, --budget-rounds interleaved '
                    'rounds (with the --variant nodes), beside the per-hop budget of the node')
    ap.add_argument('--py-spy', action='store_true',
                    help='flame graph (py-spy, SVG in --out) of the node during each of its runs')
    ap.add_argument('--overload-rate', default='',
                    help='camera faster than the model: node and floor at this rate (Hz or Nx)')
    ap.add_argument('--saturate-rate', default='1.5x',
                    help='node vs the pipeline alone at this rate ("" skips)')
    ap.add_argument('--ros-duration', type=float, default=0.0, help='seconds per ROS run '
                    '(0: --duration)')
    ap.add_argument('--node', default='', help='override the node config: WxT[,queue] '
                    '(default: what its parameter file says)')
    ap.add_argument('--soak', type=float, default=0.0,
                    help='seconds of a soak run (ROS if available, else pipeline) at 2x bare')
    ap.add_argument('--ultralytics-python', default='',
                    help='python with ultralytics to compare its predict loop ("auto": try)')
    ap.add_argument('--imgsz', type=int, default=0, help='ultralytics imgsz (0: model input)')
    ap.add_argument('--skip', default='', help='sections to skip: bare,serial,pipeline,ros')
    ap.add_argument('--plot', default='benchmark.png', help='chart file name in --out')
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
          f'load {load_avg()}', flush=True)

    def save() -> None:
        from .ros_harness import strip_raw
        res['meta']['load_end'] = load_avg()
        res['targets'] = targets(res)
        res['meta']['elapsed_s'] = round(time.time() - t_start, 1)
        (out_dir / 'benchmark.json').write_text(json.dumps(strip_raw(res), indent=2) + '\n')
        plot(res, out_dir / args.plot, f'{Path(args.model).name} {args.backend}, {cores} cores, '
             f'{frames[0].shape[1]}x{frames[0].shape[0]}')

    if 'bare' not in skip:
        res['bare'] = bench_bare(model, frames, threads, args.iters, progress)
    best = max(res.get('bare') or [], key=lambda b: b['infer_fps'], default=None)
    best_t = best['threads'] if best else max(threads)
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

    ul_py = args.ultralytics_python
    if ul_py:  # before the ROS section, which then runs the node at ultralytics' rate
        if ul_py == 'auto':
            cand = [sys.executable, str(REPO / '.venv-export/bin/python')]
            ul_py = next((p for p in cand if Path(p).exists() and subprocess.run(
                [p, '-c', 'import ultralytics'], capture_output=True).returncode == 0), '')
        if ul_py:
            imgsz = args.imgsz or int(model.inputs[0][1][-1] if isinstance(
                model.inputs[0][1][-1], int) else 640)
            res['ultralytics'] = bench_ultralytics(ul_py, args.model, video,
                                                   min(args.frames, 60), imgsz, args.conf)
            u = res['ultralytics']
            if 'fps' in u:
                print(f'ultralytics predict ({u.get("version")}): {u["fps"]:.1f} fps, latency '
                      f'p50 {u["latency_ms"]["p50"]:.1f} p99 {u["latency_ms"]["p99"]:.1f} ms, '
                      f'load {u["load_avg_1m"]}', flush=True)
            else:
                print(f'ultralytics comparison failed: {u.get("error", "")[-300:]}')
        else:
            res['ultralytics'] = {'error': 'ultralytics not importable'}

    ros_ok = False
    if 'ros' not in skip or args.outside_view:
        try:
            import rclpy  # noqa: F401 - only whether it imports
            ros_ok = True
        except ImportError as exc:
            res['ros_skipped'] = f'rclpy not importable: {exc}'
            print(f'ROS sections skipped: {res["ros_skipped"]}')
    if ros_ok and 'ros' not in skip:
        from .ros_harness import run_ros
        run_ros(args, res, model, frames, out_dir, progress)
        save()
    if ros_ok and args.outside_view:
        from .outside_view import run_outside_view
        res['outside_view'] = run_outside_view(args, model, video, out_dir, progress, threads,
                                               (res.get('budget') or {}).get('rate_hz', 0.0))
        save()
    if 'soak' not in res and args.soak > 0:
        rate = 2.0 * (max((p['fps'] for p in res.get('pipeline', [])), default=0.0) or 30)
        r = run_pipeline(model, frames, 1, best_t, 1, 'drop_oldest', rate, args.soak, progress,
                         label=f'soak 1x{best_t}', window_s=10.0, schedule='just_in_time')
        r['flatness'] = flatness(r.get('windows', []))
        res['soak'] = r
    save()
    print_targets(res['targets'], res)
    print(f'\nwrote {out_dir / "benchmark.json"} and {out_dir / args.plot}')
    return 0
