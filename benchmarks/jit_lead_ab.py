"""A/B of the just-in-time lead: how early pre-processing starts before a worker frees.

The pipeline alone (no ROS), YOLOX-nano on ONNX Runtime, 720p frames from the shared video held
in memory and submitted at a fixed rate with drop_oldest and queue 1; each variant sets
core/pipeline.py's JIT_PRE_FACTOR and JIT_WAKEUP_S, interleaved over rounds of 8 s. Prints the
latency p50 / p99 (submit -> delivered) and throughput per variant, averaged over the rounds.

  .venv/bin/python benchmarks/jit_lead_ab.py --rate 148 --rounds 5
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
from faster_deployment_ros.core import pipeline
from faster_deployment_ros.tools.benchmark.common import Model, Progress
from faster_deployment_ros.tools.benchmark.measure import run_pipeline
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('FDR_SHARED', ROOT.parent / 'shared'))
#: name: (JIT_PRE_FACTOR, JIT_WAKEUP_S); the first is the code before the change
VARIANTS = {'1.25pre+1ms': (1.25, 0.001), '1.0pre+0.3ms': (1.0, 0.0003)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', default=str(SHARED / 'models/yolox_nano_coco_416.onnx'))
    ap.add_argument('--video', default=str(SHARED / 'data/pedestrians_plaza_1280x720_50fps.avi'))
    ap.add_argument('--rate', type=float, default=148.0, help='input rate, Hz')
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--duration', type=float, default=8.0, help='seconds per variant and round')
    a = ap.parse_args()
    model = Model(argparse.Namespace(model=a.model, backend='onnxruntime', providers=None,
                                     backend_option=[], family=None, conf=0.3))
    cap = cv2.VideoCapture(a.video)
    frames = [f for ok, f in (cap.read() for _ in range(60)) if ok]
    results = {name: [] for name in VARIANTS}
    for _ in range(a.rounds):
        for name, (factor, wakeup) in VARIANTS.items():
            pipeline.JIT_PRE_FACTOR, pipeline.JIT_WAKEUP_S = factor, wakeup
            r = run_pipeline(model, frames, 1, 0, 1, 'drop_oldest', a.rate, a.duration,
                             Progress(False), label=name, schedule='just_in_time')
            results[name].append((r['latency_ms']['p50'], r['latency_ms']['p99'], r['fps']))
    for name, rows in results.items():
        m = np.asarray(rows).mean(axis=0)
        print(f'{name:14s} @ {a.rate:g} Hz: latency p50 {m[0]:.1f} p99 {m[1]:.1f} ms, '
              f'{m[2]:.1f} fps (mean of {len(rows)} rounds)')


if __name__ == '__main__':
    main()
