"""How far the ModelOpt-converted models (TensorRT 11.x's fp16 and int8) are from fp32.

Converts the model with the backend's own route (backends/tensorrt/modelopt_convert.py: AutoCast
fp16, Q/DQ int8 calibrated on frames through the model adapter's preprocess), then runs fp32
and each converted ONNX on ONNX Runtime CPU over the shared photo and frames of both shared
videos, and compares the detections (matched by class and IoU >= 0.5): box corner differences
in pixels, score differences, detections missed / extra. Prints JSON.

    FDR_MODELOPT_PYTHON=.venv-modelopt/bin/python .venv/bin/python benchmarks/modelopt_accuracy.py
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import sys
import tempfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
from faster_deployment_ros.backends import create_backend  # noqa: E402
from faster_deployment_ros.backends.tensorrt import calibration  # noqa: E402
from faster_deployment_ros.backends.tensorrt import modelopt_convert as modelopt  # noqa: E402
from faster_deployment_ros.backends.tensorrt import options  # noqa: E402
from faster_deployment_ros.models import adapter_factory, create_adapter  # noqa: E402
import numpy as np  # noqa: E402


def video_frames(path: Path, every: int, limit: int):
    cap = cv2.VideoCapture(str(path))
    i, out = 0, []
    while len(out) < limit:
        ok, f = cap.read()
        if not ok:
            break
        if i % every == 0:
            out.append((f'{path.stem}#{i}', f))
        i += 1
    cap.release()
    return out


def iou(a, b):
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def compare(ref, got):
    """Greedy match by IoU within the same class, best-scoring reference first."""
    box_d, score_d, used = [], [], set()
    order = np.argsort(-ref.scores)
    m = iou(ref.boxes, got.boxes) if len(ref) and len(got) else np.zeros((len(ref), len(got)))
    for i in order:
        cands = [j for j in np.argsort(-m[i]) if j not in used and m[i, j] >= 0.5
                 and got.class_ids[j] == ref.class_ids[i]]
        if not cands:
            continue
        j = cands[0]
        used.add(j)
        box_d.append(np.abs(ref.boxes[i] - got.boxes[j]).max())
        score_d.append(abs(float(ref.scores[i]) - float(got.scores[j])))
    return box_d, score_d, len(ref) - len(used), len(got) - len(used)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(os.environ.get('FDR_SHARED', ROOT.parent / 'shared'))
    p.add_argument('--model', type=Path, default=shared / 'models' / 'yolox_nano_coco_416.onnx')
    p.add_argument('--family', default='yolox')
    p.add_argument('--calib-frames', type=int, default=16)
    p.add_argument('--frames', type=int, default=40, help='frames per video')
    p.add_argument('--json', type=Path, default=None)
    args = p.parse_args()

    data = shared / 'data'
    frames = [('dog_bicycle_truck.jpg', cv2.imread(str(data / 'dog_bicycle_truck.jpg')))]
    frames += video_frames(data / 'pedestrians_plaza_1280x720_50fps.avi', 7, args.frames)
    frames += video_frames(data / 'campus_walkway_480x360_10fps.avi', 5, args.frames)
    tmp = Path(tempfile.mkdtemp(prefix='modelopt-acc-'))
    calib = tmp / 'calib'
    calib.mkdir()
    # calibration frames: other frames of the plaza video than the ones compared (offset 3)
    cap = cv2.VideoCapture(str(data / 'pedestrians_plaza_1280x720_50fps.avi'))
    i = n = 0
    while n < args.calib_frames:
        ok, f = cap.read()
        if not ok:
            break
        if i % 17 == 3:
            cv2.imwrite(str(calib / f'c{i:05d}.png'), f)
            n += 1
        i += 1

    opts = options.parse_options({'precision': 'int8', 'int8_calibration': str(calib),
                                  'calibration_preprocess': args.family,
                                  'adapter_factory': adapter_factory()})
    ins, _, _ = options.onnx_tensors(args.model)
    shapes = options.resolve_input_shapes([(t.name, t.shape) for t in ins], {})
    paths = calibration.list_calibration_images(calib)
    batches = calibration.calibration_batches(args.model, opts, paths, shapes, print)
    feeds = modelopt.calibration_feeds(batches.all_batches(), list(shapes))
    python = modelopt.modelopt_python()
    models = {'fp32': args.model}
    for precision in ('fp16', 'int8'):
        out = tmp / f'{args.model.stem}-{precision}.onnx'
        models[precision] = modelopt.convert(args.model, out, precision, python,
                                             feeds if precision == 'int8' else None, print)

    results = {}
    for precision, path in models.items():
        be = create_backend('onnxruntime', str(path))
        ad = create_adapter(args.family, be.inputs, be.outputs, be.metadata)
        dets, raws = [], []
        for _, f in frames:
            x, meta = ad.preprocess(f)
            out = be.infer(x)
            raws.append(out[0])
            dets.append(ad.postprocess(out, meta))
        be.close()
        results[precision] = (dets, raws)

    report = {'model': str(args.model), 'frames': len(frames),
              'calibration_images': len(paths), 'fp32_detections':
              int(sum(len(d) for d in results['fp32'][0]))}
    for precision in ('fp16', 'int8'):
        box_d, score_d, missed, extra = [], [], 0, 0
        raw_d = []
        for ref, got, rr, rg in zip(results['fp32'][0], results[precision][0],
                                    results['fp32'][1], results[precision][1]):
            b, s, mi, ex = compare(ref, got)
            box_d += b
            score_d += s
            missed += mi
            extra += ex
            raw_d.append(float(np.abs(rr - rg).max()))
        box = np.asarray(box_d or [0.0])
        score = np.asarray(score_d or [0.0])
        report[precision] = {
            'matched': len(box_d), 'missed': missed, 'extra': extra,
            'box_px_mean': round(float(box.mean()), 3),
            'box_px_p95': round(float(np.percentile(box, 95)), 3),
            'box_px_max': round(float(box.max()), 3),
            'score_mean': round(float(score.mean()), 4),
            'score_p95': round(float(np.percentile(score, 95)), 4),
            'score_max': round(float(score.max()), 4),
            'raw_output_max_abs': round(max(raw_d), 3),
            'onnx_bytes': Path(models[precision]).stat().st_size}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
