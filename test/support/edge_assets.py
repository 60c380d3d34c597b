"""Shared by the edge-backend tests: converted models, real inputs, and output comparisons.

Converted models come from scripts/test_assets.d/30_converters.sh (.cache/models/converted)
when their stamp matches the ONNX file and the converter code; otherwise they are converted
here, once per test session, with the project's convert command.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
import subprocess
import sys
from typing import Dict, List, Tuple

import cv2
import numpy as np
import pytest
from support.shared_data import CACHE, missing, ROOT, shared_file

CONVERTED = CACHE / 'models' / 'converted'
YOLOV8_ONNX = CACHE / 'models' / 'yolov8n.onnx'
VENVS = {'ncnn': ROOT / '.venv-convert', 'rknn': ROOT / '.venv-rknn'}
# The rknn backend's simulator runs in rknn-toolkit2's Python, which the backend is told about
# (it never looks beside the repository); nodes the tests start inherit this too.
os.environ.setdefault('FDR_RKNN_PYTHON', str(VENVS['rknn'] / 'bin' / 'python'))
_session_cache: Dict[tuple, Path] = {}


def yolov8_onnx() -> Path:
    if not YOLOV8_ONNX.exists():
        pytest.skip(f'{YOLOV8_ONNX} not found (scripts/test_assets.d/20_test_models.sh builds it)')
    return YOLOV8_ONNX


def need_venv(target: str) -> None:
    """Skip without the converter venv of `target`; in CI (which builds it) fail."""
    if not (VENVS[target] / 'bin' / 'python').exists():
        missing(f'{VENVS[target].name} missing: bash scripts/test_assets.d/30_converters.sh')


def _sha16(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _stamp_key(onnx: Path, precision: str) -> str:
    tools = ROOT / 'faster_deployment_ros' / 'tools'
    files = [tools / f'{n}.py' for n in
             ('convert', 'convert_ncnn', 'convert_rknn', 'onnx_info', 'rknn_toolkit')]
    code = _sha16(b''.join(f.read_bytes() for f in files))
    return f'{_sha16(onnx.read_bytes())}-{code}-{precision}'


def model_name(target: str, onnx: Path, precision: str) -> str:
    return f'{onnx.stem}.{precision}.' + ('ncnn.param' if target == 'ncnn' else 'rknn')


def converted(target: str, onnx: Path, precision: str, tmp_dir: Path) -> Path:
    """Path of `onnx` converted for `target` ('ncnn' | 'rknn') at `precision`."""
    need_venv(target)
    name = model_name(target, onnx, precision)
    cached = CONVERTED / name
    stamp = cached.with_name(cached.name + '.stamp')
    fresh = stamp.exists() and stamp.read_text().strip() == _stamp_key(onnx, precision)
    if cached.exists() and fresh:
        return cached
    key = (target, str(onnx), precision)
    if key not in _session_cache:
        out = tmp_dir / name
        proc = subprocess.run([sys.executable, '-m', 'faster_deployment_ros.tools.convert', target,
                               str(onnx), '--precision', precision, '-o', str(out)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        _session_cache[key] = out
    return _session_cache[key]


def sidecar(model: Path) -> dict:
    path = model.with_suffix('.json') if model.suffix == '.param' else Path(str(model) + '.json')
    return json.loads(path.read_text())


# --- real inputs
# ----------------------------------------------------------------------------------

def real_frames() -> List[Tuple[str, np.ndarray]]:
    """Return the photo and frames from both videos (BGR uint8)."""
    frames = []
    photo = shared_file('data/dog_bicycle_truck.jpg')
    frames.append(('dog_bicycle_truck', cv2.imread(str(photo))))
    for video, picks in (('pedestrians_plaza_1280x720_50fps.avi', (40, 190)),
                         ('campus_walkway_480x360_10fps.avi', (40, 400))):
        cap = cv2.VideoCapture(str(shared_file(f'data/{video}')))
        for i in range(max(picks) + 1):
            ok, frame = cap.read()
            if not ok:
                break
            if i in picks:
                frames.append((f'{video}#{i}', frame))
        cap.release()
    assert len(frames) == 5, 'could not read the test videos'
    return frames


def yolox_input(frame: np.ndarray, size=(416, 416)) -> np.ndarray:
    from faster_deployment_ros.core.letterbox import letterbox, to_chw_tensor
    return to_chw_tensor(letterbox(frame, size, pad_value=114, center=False)[0])


def yolov8_input(frame: np.ndarray, size=(640, 640)) -> np.ndarray:
    from faster_deployment_ros.core.letterbox import letterbox, to_chw_tensor
    return to_chw_tensor(letterbox(frame, size, pad_value=114, center=True)[0],
                         scale=1 / 255.0, swap_rb=True)


# --- comparisons
# ----------------------------------------------------------------------------------

def compare_yolox(ref: np.ndarray, got: np.ndarray, size=(416, 416), min_obj: float = 0.1) -> dict:
    """Largest differences on decoded YOLOX outputs.

    Box corners (px) of anchors the reference finds objects at (objectness > min_obj), objectness
    and obj*class scores over all anchors.
    """
    from faster_deployment_ros.models.yolox import make_grids
    assert got.shape == ref.shape, (got.shape, ref.shape)
    grid, stride = make_grids(size, (8, 16, 32))

    def decode(p):
        p = p[0].astype(np.float64)
        xy, wh = (p[:, :2] + grid) * stride, np.exp(p[:, 2:4]) * stride
        return np.concatenate([xy - wh / 2, xy + wh / 2], 1), p[:, 4], p[:, 5:] * p[:, 4:5]

    (rb, ro, rs), (gb, go, gs) = decode(ref), decode(got)
    sel = ro > min_obj
    assert sel.sum() > 10, 'too few objects to compare on'
    return {'box_px': float(np.abs(rb[sel] - gb[sel]).max()), 'obj': float(np.abs(ro - go).max()),
            'score': float(np.abs(rs - gs).max()), 'anchors': int(sel.sum())}


def compare_yolov8(ref: np.ndarray, got: np.ndarray) -> dict:
    """Largest differences on a (1, 4 + classes, anchors) ultralytics head.

    Box values (px, all anchors) and class scores.
    """
    assert got.shape == ref.shape, (got.shape, ref.shape)
    r, g = ref[0].astype(np.float64), got[0].astype(np.float64)
    return {'box_px': float(np.abs(r[:4] - g[:4]).max()),
            'score': float(np.abs(r[4:] - g[4:]).max()),
            'anchors': int(r.shape[1])}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter + 1e-9)


def match_detections(ref_boxes, ref_classes, got_boxes, got_classes, iou: float = 0.5):
    """Return (matched count, worst corner difference in px).

    Each reference detection is paired with the best-overlapping detection of the same class.
    """
    if len(ref_boxes) == 0 or len(got_boxes) == 0:
        return 0, 0.0
    m = box_iou(np.asarray(ref_boxes, np.float64), np.asarray(got_boxes, np.float64))
    m[np.asarray(ref_classes)[:, None] != np.asarray(got_classes)[None, :]] = 0
    best = m.argmax(1)
    ok = m[np.arange(len(best)), best] > iou
    if not ok.any():
        return 0, 0.0
    worst = float(np.abs(np.asarray(ref_boxes)[ok] - np.asarray(got_boxes)[best[ok]]).max())
    return int(ok.sum()), worst


_RUN_ONNX = r"""
import sys, numpy as np, onnxruntime as ort
sess = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])
name = sess.get_inputs()[0].name
with np.load(sys.argv[2]) as z:
    outs = [sess.run(None, {name: z[k]})[0] for k in sorted(z.files, key=int)]
np.savez(sys.argv[3], *outs)
"""


def fp16_weight_reference(onnx: Path, inputs: List[np.ndarray], tmp_dir: Path) -> List[np.ndarray]:
    """ONNX Runtime outputs of `onnx` with its weights rounded to fp16.

    How far fp16 weights alone move the outputs, the yardstick for fp16 conversions (run in
    .venv-convert).
    """
    rounded = fp16_weight_model(onnx, tmp_dir)
    src, dst = tmp_dir / 'fp16_in.npz', tmp_dir / 'fp16_out.npz'
    np.savez(src, **{str(i): x for i, x in enumerate(inputs)})
    proc = subprocess.run([str(VENVS['ncnn'] / 'bin' / 'python'), '-c', _RUN_ONNX,
                           str(rounded), str(src), str(dst)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    with np.load(dst) as z:
        return [z[f'arr_{i}'] for i in range(len(inputs))]


_FP16_WEIGHTS = r"""
import sys, numpy as np, onnx
from onnx import numpy_helper
model = onnx.load(sys.argv[1])
for init in model.graph.initializer:
    a = numpy_helper.to_array(init)
    if a.dtype == np.float32 and a.size > 1:
        init.CopyFrom(numpy_helper.from_array(a.astype(np.float16).astype(np.float32), init.name))
onnx.save(model, sys.argv[2])
"""


def fp16_weight_model(onnx: Path, tmp_dir: Path) -> Path:
    """`onnx` with its weights rounded to fp16 (still an fp32 graph), for ONNX Runtime.

    The yardstick for fp16 conversions through a model adapter: what fp16 weights alone do to
    the decoded outputs (made in .venv-convert, which has onnx).
    """
    need_venv('ncnn')
    out = tmp_dir / f'{onnx.stem}.fp16-weights.onnx'
    proc = subprocess.run([str(VENVS['ncnn'] / 'bin' / 'python'), '-c', _FP16_WEIGHTS,
                           str(onnx), str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


def match_boxes(ref, got, iou: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
    """Pair each reference detection with the best-overlapping one of the same class.

    Returns (reference indices, their partners in `got`): the pairs whose box IoU is above
    `iou` (axis-aligned boxes; for oriented ones the boxes around them).
    """
    if len(ref) == 0 or len(got) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    m = box_iou(np.asarray(ref.boxes, np.float64), np.asarray(got.boxes, np.float64))
    m[np.asarray(ref.class_ids)[:, None] != np.asarray(got.class_ids)[None, :]] = 0
    best = m.argmax(1)
    ok = np.flatnonzero(m[np.arange(len(best)), best] > iou)
    return ok, best[ok]


def mask_ious(ref, got, pairs) -> np.ndarray:
    """Return the IoU of the instance masks of each matched pair (1 where both are empty)."""
    out = []
    for i, j in zip(*pairs):
        a, b = ref.masks.full_mask(int(i)), got.masks.full_mask(int(j))
        union = int((a | b).sum())
        out.append(1.0 if union == 0 else int((a & b).sum()) / union)
    return np.asarray(out, np.float64)


def rbox_errors(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return (N, M, 3) centre, size and angle differences of boxes in their regularised forms.

    Both sides are regularised (theta in [0, pi/2), ultralytics' regularize_rboxes); where the
    two angles sit on either side of the period's end (0 vs pi/2 - e), b turns by pi/2 with w and
    h swapped, so a box near the boundary still compares as itself.
    """
    from faster_deployment_ros.core.obb import regularize_obb
    ra, rb = regularize_obb(a)[:, None], regularize_obb(b)[None]
    d = ra[..., 4] - rb[..., 4]
    turn = np.where(d > math.pi / 4, 1, np.where(d < -math.pi / 4, -1, 0))
    swap = turn != 0
    bw = np.where(swap, rb[..., 3], rb[..., 2])
    bh = np.where(swap, rb[..., 2], rb[..., 3])
    centre = np.abs(ra[..., :2] - rb[..., :2]).max(-1)
    size = np.maximum(np.abs(ra[..., 2] - bw), np.abs(ra[..., 3] - bh))
    angle = np.abs(d - turn * math.pi / 2)
    return np.stack(np.broadcast_arrays(centre, size, angle), -1)
