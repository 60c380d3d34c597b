"""Shared helpers of the reference tests: the built test models, their golden results and frames.

The models come from scripts/test_assets.d/20_test_models.sh (.cache/models); the golden
results from scripts/make_golden.py (test/fixtures, or .cache/golden when the committed ones
were made with other model bytes). A golden file is used only for the exact model it was made with.
"""
from __future__ import annotations

from functools import lru_cache
import hashlib
import json
from pathlib import Path
from typing import Dict, Optional, Tuple

import cv2
from faster_deployment_ros.core.hashing import file_sha256
import numpy as np
import pytest
from support.shared_data import CACHE, missing, ROOT, shared_file

MODELS = CACHE / 'models'
GOLDEN_DIRS = (ROOT / 'test' / 'fixtures', CACHE / 'golden')
BUILD_HINT = 'run `bash scripts/test_assets.d/20_test_models.sh` (or `make test-assets`)'


def model_path(name: str) -> Path:
    path = MODELS / f'{name}.onnx'
    if not path.exists():
        missing(f'{path} not built: {BUILD_HINT}')
    return path


def load_golden(name: str) -> Tuple[Dict[str, np.ndarray], dict]:
    """(arrays, info) of the golden results made with exactly the model `name` built here."""
    digest = file_sha256(model_path(name))
    fname = f'golden_{name.replace("-", "_")}.npz'
    seen = []
    for d in GOLDEN_DIRS:
        path = d / fname
        if not path.exists():
            continue
        with np.load(path) as z:
            info = json.loads(str(z['info']))
            if info['model_sha256'] == digest:
                return {k: z[k] for k in z.files if k != 'info'}, info
        seen.append(f'{path} (model {info["model_sha256"][:12]})')
    pytest.fail(f'no golden results for {name} (model sha256 {digest[:12]}); found '
                f'{seen or "none"}: {BUILD_HINT}, which recomputes them with '
                'scripts/make_golden.py')


def read_frame(video: Path, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(video))
    try:
        for _ in range(index + 1):
            ok, frame = cap.read()
            assert ok, f'{video} has no frame {index}'
        return frame
    finally:
        cap.release()


@lru_cache(maxsize=1)
def _frames() -> Dict[str, np.ndarray]:
    return {
        'dog': cv2.imread(str(shared_file('data/dog_bicycle_truck.jpg'))),
        'plaza30': read_frame(shared_file('data/pedestrians_plaza_1280x720_50fps.avi'), 30),
        'campus10': read_frame(shared_file('data/campus_walkway_480x360_10fps.avi'), 10),
    }


def golden_frames(info: dict) -> Dict[str, np.ndarray]:
    """Return the frames the golden results were made from, checked byte for byte."""
    frames = _frames()
    for key, digest in info['frames'].items():
        got = hashlib.sha256(np.ascontiguousarray(frames[key]).tobytes()).hexdigest()
        assert got == digest, (f'frame {key} decodes differently here than when the golden '
                               'results '
                               'were made (another OpenCV/FFmpeg?); rerun scripts/make_golden.py')
    return {k: frames[k] for k in info['frames']}


def assert_detections_equal(det, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                            what: str, box_tol: float = 1.0, score_tol: float = 1e-3,
                            threshold: Optional[float] = None) -> None:
    """Assert a one-to-one pairing: same class, boxes within 1 px, scores within 1e-3.

    Paired, not compared in order: scores equal to ~1e-7 may swap places between runtimes.
    With `threshold` (the score threshold both sides applied), a detection whose score lies
    within `score_tol` of it may be missing on either side: the two runtimes' scores differ by
    up to `score_tol`, so such a detection may fall on either side of the threshold.
    """
    n = len(scores)
    scores = np.asarray(scores)
    if threshold is None:
        assert len(det) == n, f'{what}: {len(det)} detections, reference has {n}'
    assert n > 0, f'{what}: the reference has no detections: the case proves nothing'
    ok = ((det.class_ids[:, None] == np.asarray(classes)[None, :])
          & (np.abs(det.boxes[:, None, :] - np.asarray(boxes)[None, :, :]).max(2) <= box_tol)
          & (np.abs(det.scores[:, None] - scores[None, :]) <= score_tol))
    used = np.zeros(len(det), bool)
    unmatched = []
    for j in np.argsort(-scores, kind='stable'):  # reference j -> the first unused that fits
        cand = np.flatnonzero(ok[:, j] & ~used)
        if cand.size:
            used[cand[0]] = True
        else:
            unmatched.append(j)
    borderline = -np.inf if threshold is None else threshold + score_tol
    unmatched = [j for j in unmatched if scores[j] >= borderline]
    assert not unmatched, (f'{what}: {len(unmatched)} reference detections have no match, e.g. '
                           f'class {classes[unmatched[0]]} score {scores[unmatched[0]]:.4f} box '
                           f'{np.round(boxes[unmatched[0]], 1).tolist()}')
    extra = np.flatnonzero(~used & (det.scores >= borderline))
    assert not extra.size, (f'{what}: {extra.size} detections not in the reference, e.g. score '
                            f'{det.scores[extra[0]]:.4f} box '
                            f'{np.round(det.boxes[extra[0]], 1).tolist()}')


def depth_grid_index(h: int, w: int, grid) -> Tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the source pixels make_golden.py samples a depth map at."""
    rows = np.linspace(0, h - 1, grid[0]).round().astype(np.int64)
    cols = np.linspace(0, w - 1, grid[1]).round().astype(np.int64)
    return rows, cols


def assert_depth_close(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    """Within 1e-3 of the map's range (relative), everywhere on the grid."""
    scale = float(np.abs(ref).max())
    assert scale > 0 and float(ref.std()) > 0.05 * scale, f'{what}: degenerate reference map'
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3 * scale, err_msg=what)
