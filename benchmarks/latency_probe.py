"""Where the p99 comes from on a many-core box.

The pipeline at a camera rate (drop_oldest, just-in-time) for several workers x threads, with
ONNX Runtime's thread spinning on and off, all cores busy vs one left free. ROS-free; prints a
table and writes JSON.

  python -m benchmarks.latency_probe --model m.onnx --video v.avi --configs 1x16,1x15 --out p.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faster_deployment_ros.tools import benchmark  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', required=True)
    ap.add_argument('--family', default='auto')
    ap.add_argument('--video', required=True)
    ap.add_argument('--frames', type=int, default=30)
    ap.add_argument('--rate', type=float, default=30.0)
    ap.add_argument('--duration', type=float, default=6.0)
    ap.add_argument('--configs', default='1x16,1x15,1x14,2x8,2x7,4x4,4x3')
    ap.add_argument('--spin', default='on,off')
    ap.add_argument('--out', required=True)
    args = ap.parse_args()
    frames = benchmark.load_frames(Path(args.video), args.frames)
    progress = benchmark.Progress(False)
    rows = []
    for spin in args.spin.split(','):
        ns = argparse.Namespace(model=args.model, backend='onnxruntime', providers='',
                                family=args.family, conf=0.3,
                                backend_option=[f'allow_spinning={spin == "on"}'])
        model = benchmark.Model(ns)
        for w, t in benchmark.parse_configs(args.configs):
            r = benchmark.run_pipeline(model, frames, w, t, 1, 'drop_oldest', args.rate,
                                       args.duration, progress, label=f'{w}x{t} spin {spin}',
                                       schedule='just_in_time')
            r['spin'] = spin
            rows.append(r)
    Path(args.out).write_text(json.dumps(rows, indent=2) + '\n')
    print(f'\n{"config":<16}{"spin":<6}{"fps":>8}{"p50":>8}{"p90":>8}{"p99":>8}{"drop":>6}'
          f'{"cpu":>7}{"infer p50/p99":>16}')
    for r in rows:
        lat, inf = r['latency_ms'], r['stages_ms']['infer']
        print(f'{r["workers"]}x{r["threads"]:<13}{r["spin"]:<6}{r["fps"]:8.1f}{lat["p50"]:8.1f}'
              f'{lat["p90"]:8.1f}{lat["p99"]:8.1f}{r["dropped"]:6d}{r["cpu_cores"]:7.2f}'
              f'{inf["p50"]:8.1f}/{inf["p99"]:.1f}')


if __name__ == '__main__':
    main()
