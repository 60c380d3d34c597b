"""Count YOLOX-nano detections on one real frame as bgr8, mono8 and 10/12-bit mono16.

The 16-bit frames are decoded with cv_bridge's scaling (bit_depth 16) and with the sensor's
bit_depth.

  .venv/bin/python benchmarks/bit_depth_detections.py [--model M] [--video V] [--frame N]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
from faster_deployment_ros.backends import create_backend
from faster_deployment_ros.core.image_codec import to_bgr8
from faster_deployment_ros.models import create_adapter
import numpy as np

SHARED = Path(__file__).resolve().parents[2] / 'shared'


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', default=str(SHARED / 'models/yolox_nano_coco_416.onnx'))
    ap.add_argument('--video', default=str(SHARED / 'data/pedestrians_plaza_1280x720_50fps.avi'))
    ap.add_argument('--frame', type=int, default=0)
    a = ap.parse_args()
    cap = cv2.VideoCapture(a.video)
    for _ in range(a.frame + 1):
        ok, frame = cap.read()
    assert ok, f'cannot read frame {a.frame} of {a.video}'
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    with create_backend('onnxruntime', a.model, threads=1) as backend:
        adapter = create_adapter('yolox', backend.inputs, backend.outputs, backend.metadata)

        def count(image) -> int:
            tensors, meta = adapter.preprocess(image)
            return len(adapter.postprocess(backend.infer(tensors), meta))

        print(f'bgr8: {count(frame)}')
        print(f'mono8: {count(to_bgr8(grey, "mono8"))}')
        for bits in (10, 12):
            m16 = (grey.astype(np.uint32) * ((1 << bits) - 1) // 255).astype(np.uint16)
            old = cv2.cvtColor((m16 >> 8).astype(np.uint8), cv2.COLOR_GRAY2BGR)
            print(f'{bits}-bit mono16: >> 8 (before): {count(old)}, '
                  f'bit_depth 16 (cv_bridge): {count(to_bgr8(m16, "mono16"))}, '
                  f'bit_depth {bits}: {count(to_bgr8(m16, "mono16", bit_depth=bits))}')


if __name__ == '__main__':
    main()
