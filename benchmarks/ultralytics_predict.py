"""ultralytics' own predict loop on an ONNX model and real video frames, for fdr-benchmark.

Runs in an environment that has ultralytics (not the project's .venv, e.g. .venv-export);
prints one JSON line:
throughput and per-call latency of `YOLO(model).predict(frame)` (its pre, ONNX Runtime
inference and NMS included), plus ultralytics' own per-stage speed numbers.
"""
from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', required=True)
    ap.add_argument('--video', required=True)
    ap.add_argument('--frames', type=int, default=60)
    ap.add_argument('--imgsz', type=int, default=640)
    ap.add_argument('--conf', type=float, default=0.3)
    args = ap.parse_args()
    import ultralytics
    from ultralytics import YOLO
    from ultralytics.nn.autobackend import AutoBackend

    # AutoBackend.warmup imports torchvision, whose compiled ops do not load beside the CPU
    # torch wheel; without that import ultralytics uses its own torch NMS. The untimed predict
    # calls below warm the session up instead.
    AutoBackend.warmup = lambda self, *a, **k: None

    cap = cv2.VideoCapture(args.video)
    frames = []
    while len(frames) < args.frames:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    model = YOLO(args.model, task='detect')
    for f in frames[:3]:
        model.predict(f, imgsz=args.imgsz, conf=args.conf, verbose=False, device='cpu')
    lat, speed = [], {'preprocess': [], 'inference': [], 'postprocess': []}
    t0 = time.perf_counter()
    for f in frames:
        s = time.perf_counter()
        r = model.predict(f, imgsz=args.imgsz, conf=args.conf, verbose=False, device='cpu')[0]
        lat.append(time.perf_counter() - s)
        for k in speed:
            speed[k].append(r.speed.get(k, 0.0))
    wall = time.perf_counter() - t0
    a = np.asarray(lat) * 1000
    print(json.dumps({
        'version': ultralytics.__version__, 'frames': len(frames), 'imgsz': args.imgsz,
        'fps': round(len(frames) / wall, 2),
        'latency_ms': {'p50': round(float(np.percentile(a, 50)), 3),
                       'p90': round(float(np.percentile(a, 90)), 3),
                       'p99': round(float(np.percentile(a, 99)), 3)},
        'speed_ms_p50': {k: round(float(np.median(v)), 3) for k, v in speed.items()}}))


if __name__ == '__main__':
    main()
