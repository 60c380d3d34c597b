"""Cost of the instance mask outputs at 1280x720 with about 20 detections (p50 / p99 ms).

The yolov8n-seg test model (.cache/models, scripts/build_test_models.py) on frame 30 of
../shared/data/pedestrians_plaza_1280x720_50fps.avi through ONNX Runtime once; then, on that
frame's output, the 20 highest-scoring detections (their boxes cover about N x the frame):

- postprocess: the adapter's decode + NMS + InstanceMasks.from_prototypes (what every frame
  pays, subscribed or not; no mask is made there);
- render instance only / all three images (instance, semantic, confidence): what the detector
  node adds per frame while someone subscribes to the mask topics;
- the same renders as mono8 Image messages (fill_image_msg).

One thread for numpy's BLAS (as the node's delivery thread).

  OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/mask_cost.py [--repeats N] [--detections K]
"""
import argparse
import os
from pathlib import Path
import sys
import time

os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
os.environ.setdefault('OMP_NUM_THREADS', '1')
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from faster_deployment_ros.backends import create_backend  # noqa: E402
from faster_deployment_ros.core.image_codec import fill_image_msg  # noqa: E402
from faster_deployment_ros.models import create_adapter  # noqa: E402
from faster_deployment_ros.tools.frames import read_frames  # noqa: E402
import numpy as np  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402


def timed(fn, repeats: int):
    fn()
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    t = np.array(t) * 1e3
    return np.percentile(t, 50), np.percentile(t, 99)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeats', type=int, default=50)
    ap.add_argument('--detections', type=int, default=20)
    ap.add_argument('--model', default=str(ROOT / '.cache' / 'models' / 'yolov8n-seg.onnx'))
    ap.add_argument('--video', default=str(ROOT.parent / 'shared' / 'data'
                                           / 'pedestrians_plaza_1280x720_50fps.avi'))
    a = ap.parse_args()
    frame = read_frames(Path(a.video), 31)[30]
    backend = create_backend('onnxruntime', a.model, threads=2)
    adapter = create_adapter('auto', backend.inputs, backend.outputs, backend.metadata)
    inputs, meta = adapter.preprocess(frame)
    out = backend.infer(inputs)
    backend.close()
    full = adapter.postprocess(out, meta)
    det = full.select(np.arange(min(a.detections, len(full))))
    h, w = frame.shape[:2]
    area = ((det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])).sum()
    print(f'{w}x{h}, {len(det)} detections (of {len(full)} after NMS), boxes cover '
          f'{area / (h * w):.1f} x the frame; {a.repeats} repeats, p50 / p99 ms')
    rows = [
        ('postprocess (decode, NMS, mask refs)', lambda: adapter.postprocess(out, meta)),
        ('render instance', lambda: det.masks.render(det.scores)),
        ('render instance + semantic + confidence',
         lambda: det.masks.render(det.scores, det.class_ids, semantic=True, confidence=True)),
    ]
    msgs = [Image(), Image(), Image()]

    def as_messages():
        imgs = det.masks.render(det.scores, det.class_ids, semantic=True, confidence=True)
        for msg, img in zip(msgs, imgs.values()):
            fill_image_msg(msg, img, 'mono8')
    rows.append(('render all three + 3 mono8 Image messages', as_messages))
    for name, fn in rows:
        p50, p99 = timed(fn, a.repeats)
        print(f'  {name:<44} {p50:7.2f} {p99:7.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
