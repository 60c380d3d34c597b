"""Our ByteTracker (core.tracking) against ultralytics' BYTETracker on the same detections.

1. Detections: YOLOX-nano (ONNX Runtime, our adapter) over `--frames` consecutive frames of the
   plaza video, at conf 0.1 (what ultralytics' track mode asks of its detector, so ByteTrack's
   low-score stage has input).
2. Both trackers on those detections with ByteTrack's defaults (ultralytics' bytetrack.yaml), the
   buffer scaled to the video's 50 Hz as ours does (ultralytics gets track_buffer = 50 frames).
   Ultralytics runs in a Python that has it (`--ultralytics-python`, e.g. .venv-export), as
   this script's worker (`--worker`), through an .npz.
3. Metrics by motmetrics (py-motmetrics; it needs pandas and scipy, so it runs in the worker too;
   `--metrics-path` adds a folder holding them to the worker's PYTHONPATH): each tracker's output
   as the other's ground truth (IDF1, ID switches, MOTA; boxes matched at IoU >= 0.5), the
   id-by-id agreement on each detection, and both trackers against the true ids of a synthetic
   scene (walkers crossing, vanishing, detected with jitter, low scores and false positives).
4. Cost: our `update` with 50 detections per frame (p50 / p99 over 1000 frames), ultralytics'
   on the same frames for scale.

Setup (nothing goes into the shared venvs; .venv-* is git-ignored):
  .venv-export/bin/python -m pip install --target .venv-bench --no-deps lap scipy motmetrics \
      pandas xmltodict python-dateutil pytz tzdata six
  .venv/bin/python benchmarks/tracking_vs_ultralytics.py --frames 500 \
      --ultralytics-python .venv-export/bin/python --metrics-path .venv-bench
Without ultralytics in the worker's Python, parts 2 and 3 compare ours with the synthetic truth
only (and say so). `--timing-only` runs part 4 for ours alone (numpy is all it needs).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time
from typing import Dict

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / 'shared'
RATE = 50.0  # the plaza video's frame rate
SETTINGS = {'track_high_thresh': 0.25, 'track_low_thresh': 0.1, 'new_track_thresh': 0.25,
            'match_thresh': 0.8, 'fuse_score': True}  # ultralytics' bytetrack.yaml


# ---------------------------------------------------------------------------- scenes
def walkers(n: int, frames: int, seed: int, size=(1280, 720)) -> Dict[str, np.ndarray]:
    """Ground truth of `n` people walking at constant velocity, bouncing off the borders."""
    g = np.random.default_rng(seed)
    w, h = size
    pos = g.uniform([60, 100], [w - 60, h - 100], (n, 2))
    vel = g.normal(0, 3, (n, 2))
    hh = g.uniform(60, 180, n)
    wh = np.stack([hh * g.uniform(0.35, 0.5, n), hh], 1)
    out = {'frame': [], 'ids': [], 'boxes': []}
    for f in range(frames):
        pos += vel
        for k in (0, 1):
            lim = (w, h)[k]
            bounce = (pos[:, k] < 30) | (pos[:, k] > lim - 30)
            vel[bounce, k] *= -1
        out['frame'].append(np.full(n, f))
        out['ids'].append(np.arange(1, n + 1))
        out['boxes'].append(np.concatenate([pos - wh / 2, pos + wh / 2], 1))
    return {k: np.concatenate(v) for k, v in out.items()}


def detect(gt: Dict[str, np.ndarray], frames: int, seed: int, hard: bool) -> Dict[str, np.ndarray]:
    """Return detections of a ground truth: jitter; with `hard` gaps, low scores, false hits."""
    g = np.random.default_rng(seed)
    n_obj = int(gt['ids'].max())
    gone = np.zeros((frames, n_obj), bool)
    if hard:
        for i in range(n_obj):  # each person hidden 0-2 times, 3-20 frames each
            for _ in range(g.integers(0, 3)):
                s = g.integers(0, frames)
                gone[s:s + g.integers(3, 21), i] = True
    rows = {'frame': [], 'boxes': [], 'scores': [], 'cls': []}
    for f in range(frames):
        sel = gt['frame'] == f
        boxes = gt['boxes'][sel] + g.normal(0, 2.0, (sel.sum(), 4))
        ids = gt['ids'][sel]
        keep = ~gone[f, ids - 1]
        scores = np.clip(g.normal(0.75, 0.12, len(ids)), 0.3, 0.99)
        if hard:  # a partly hidden person scores low for a while
            scores[g.random(len(ids)) < 0.1] = g.uniform(0.12, 0.24)
        boxes, scores = boxes[keep], scores[keep]
        if hard:  # a false positive in some frames
            fp = g.random(3) < 0.2
            xy = g.uniform([0, 0], [1200, 600], (3, 2))
            boxes = np.concatenate([boxes, np.concatenate([xy, xy + 40], 1)[fp]])
            scores = np.concatenate([scores, g.uniform(0.2, 0.5, 3)[fp]])
        perm = g.permutation(len(scores))
        rows['frame'].append(np.full(len(scores), f))
        rows['boxes'].append(boxes[perm])
        rows['scores'].append(scores[perm])
        rows['cls'].append(np.zeros(len(scores), np.int64))
    return {k: np.concatenate(v) for k, v in rows.items()}


def yolox_detections(model: str, video: str, frames: int) -> Dict[str, np.ndarray]:
    from faster_deployment_ros.backends import create_backend
    from faster_deployment_ros.models import create_adapter
    from faster_deployment_ros.tools.frames import iter_frames
    rows = {'frame': [], 'boxes': [], 'scores': [], 'cls': []}
    _, it, _ = iter_frames(Path(video))
    with create_backend('onnxruntime', model) as backend:
        adapter = create_adapter('yolox', backend.inputs, backend.outputs, backend.metadata,
                                 conf_threshold=0.1)
        for f, image in enumerate(it):
            if f == frames:
                break
            tensors, meta = adapter.preprocess(image)
            det = adapter.postprocess(backend.infer(tensors), meta)
            rows['frame'].append(np.full(len(det), f))
            rows['boxes'].append(det.boxes.astype(np.float64))
            rows['scores'].append(det.scores.astype(np.float64))
            rows['cls'].append(det.class_ids)
    it.close()
    return {k: np.concatenate(v) for k, v in rows.items()}


def run_ours(det: Dict[str, np.ndarray], rate: float, frames: int) -> Dict[str, np.ndarray]:
    """Our tracker over a detection sequence: id per detection (-1 unpublished), times."""
    from faster_deployment_ros.core.tracking import ByteTracker
    from faster_deployment_ros.core.types import Detections
    tracker = ByteTracker(rate, track_buffer=30, **SETTINGS)
    ids = np.full(len(det['frame']), -1, np.int64)
    times = []
    for f in range(frames):
        rows = np.flatnonzero(det['frame'] == f)
        d = Detections(det['boxes'][rows].astype(np.float32),
                       det['scores'][rows].astype(np.float32), det['cls'][rows])
        t0 = time.perf_counter()
        out = tracker.update(d)
        times.append(time.perf_counter() - t0)
        # published detections are inputs, in input order: find their rows
        at = {tuple(b): i for i, b in zip(rows.tolist(), d.boxes.tolist())}
        for b, tid in zip(out.boxes.tolist(), out.track_ids.tolist()):
            ids[at[tuple(b)]] = tid
    return {'ids': ids, 'times': np.asarray(times)}


# ---------------------------------------------------------------------------- worker side
class _Results:
    """What ultralytics' BYTETracker reads of a Results.boxes: conf, cls, xywh, indexing."""

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray) -> None:
        self.xyxy, self.conf, self.cls = xyxy, conf, cls
        self.xywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]],
                                   1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, k) -> '_Results':
        return _Results(self.xyxy[k], self.conf[k], self.cls[k])


def run_ultralytics(data, name: str, rate: float, frames: int):
    """Ultralytics' BYTETracker: id per detection (-1 unpublished), its boxes, times."""
    from types import SimpleNamespace

    from ultralytics.trackers.byte_tracker import BYTETracker
    args = SimpleNamespace(tracker_type='bytetrack', track_buffer=int(rate / 30.0 * 30),
                           **SETTINGS)
    tracker = BYTETracker(args)
    frame_of = data[f'{name}_frame']
    ids = np.full(len(frame_of), -1, np.int64)
    boxes = np.zeros((len(frame_of), 4))
    times = []
    for f in range(frames):
        rows = np.flatnonzero(frame_of == f)
        r = _Results(data[f'{name}_boxes'][rows].astype(np.float32),
                     data[f'{name}_scores'][rows].astype(np.float32),
                     data[f'{name}_cls'][rows].astype(np.float32))
        t0 = time.perf_counter()
        out = tracker.update(r)
        times.append(time.perf_counter() - t0)
        for row in out:
            ids[rows[int(row[7])]] = int(row[4])
            boxes[rows[int(row[7])]] = row[:4]
    return ids, boxes, np.asarray(times)


def mot_metrics(frame_of, gt_ids, gt_boxes, hyp_ids, hyp_boxes, frames: int, mm) -> dict:
    """IDF1, MOTA, ID switches of a hypothesis against a ground truth (IoU >= 0.5)."""
    acc = mm.MOTAccumulator(auto_id=True)
    for f in range(frames):
        g = (frame_of[0] == f) & (gt_ids >= 0)
        h = (frame_of[1] == f) & (hyp_ids >= 0)
        a, b = gt_boxes[g], hyp_boxes[h]
        iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
        ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
        inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
        area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
        dist = 1.0 - inter / (area(a)[:, None] + area(b)[None, :] - inter)
        dist[dist > 0.5] = np.nan  # as motmetrics.distances.iou_matrix(max_iou=0.5)
        acc.update(gt_ids[g].tolist(), hyp_ids[h].tolist(), dist)
    s = mm.metrics.create().compute(
        acc, metrics=['idf1', 'mota', 'num_switches', 'precision', 'recall', 'num_objects',
                      'num_unique_objects'], name='x')
    r = s.iloc[0]
    return {'IDF1': round(float(r['idf1']), 4), 'MOTA': round(float(r['mota']), 4),
            'ID_switches': int(r['num_switches']), 'precision': round(float(r['precision']), 4),
            'recall': round(float(r['recall']), 4), 'gt_boxes': int(r['num_objects']),
            'gt_tracks': int(r['num_unique_objects'])}


def agreement(ours: np.ndarray, theirs: np.ndarray) -> dict:
    """Count detections published by both / one only, and whether the ids map one to one."""
    both = (ours >= 0) & (theirs >= 0)
    pairs = set(zip(ours[both].tolist(), theirs[both].tolist()))
    one_to_one = (len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs}))
    return {'published_by_both': int(both.sum()), 'only_ours': int(((ours >= 0) & ~both).sum()),
            'only_ultralytics': int(((theirs >= 0) & ~both).sum()), 'id_pairs': len(pairs),
            'ids_one_to_one': one_to_one, 'same_ids': bool(np.array_equal(ours, theirs))}


def worker(path: str) -> None:
    import motmetrics as mm
    data = dict(np.load(path))
    out: dict = {'motmetrics': mm.__version__}
    try:
        import ultralytics
        out['ultralytics'] = ultralytics.__version__
    except ImportError as exc:
        out['ultralytics'] = f'not available ({exc})'
        ultralytics = None
    for name in ('plaza', 'synthetic', 'speed'):
        frames = int(data[f'{name}_frames'])
        rate = float(data[f'{name}_rate'])
        fo = data[f'{name}_frame']
        ours, our_boxes = data[f'{name}_ours'], data[f'{name}_boxes']
        res: dict = {}
        if ultralytics is not None:
            ids, boxes, times = run_ultralytics(data, name, rate, frames)
            res['ultralytics_update_ms'] = {
                'p50': round(float(np.percentile(times, 50)) * 1e3, 3),
                'p99': round(float(np.percentile(times, 99)) * 1e3, 3)}
            if name != 'speed':
                res['agreement'] = agreement(ours, ids)
                res['ultralytics_as_truth'] = mot_metrics((fo, fo), ids, boxes, ours, our_boxes,
                                                          frames, mm)
                res['ours_as_truth'] = mot_metrics((fo, fo), ours, our_boxes, ids, boxes,
                                                   frames, mm)
        if name == 'synthetic':
            gfo, gids, gboxes = data['gt_frame'], data['gt_ids'], data['gt_boxes']
            res['ours_vs_truth'] = mot_metrics((gfo, fo), gids, gboxes, ours, our_boxes,
                                               frames, mm)
            if ultralytics is not None:
                res['ultralytics_vs_truth'] = mot_metrics((gfo, fo), gids, gboxes, ids, boxes,
                                                          frames, mm)
        out[name] = res
    print(json.dumps(out))


# ---------------------------------------------------------------------------- main
def pct(times: np.ndarray) -> dict:
    return {'p50': round(float(np.percentile(times, 50)) * 1e3, 3),
            'p99': round(float(np.percentile(times, 99)) * 1e3, 3),
            'mean': round(float(times.mean()) * 1e3, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', default=str(SHARED / 'models/yolox_nano_coco_416.onnx'))
    ap.add_argument('--video', default=str(SHARED / 'data/pedestrians_plaza_1280x720_50fps.avi'))
    ap.add_argument('--frames', type=int, default=500)
    ap.add_argument('--ultralytics-python', default='.venv-export/bin/python')
    ap.add_argument('--metrics-path', default='.venv-bench',
                    help='folder with motmetrics, pandas, scipy (and lap) for the worker')
    ap.add_argument('--timing-only', action='store_true',
                    help='only time our update with 50 detections per frame')
    ap.add_argument('--worker', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker)
        return
    if a.timing_only:
        det = detect(walkers(50, 1050, seed=3), 1050, seed=4, hard=False)
        runs = [pct(run_ours(det, 30.0, 1050)['times'][50:]) for _ in range(3)]
        print(json.dumps({'our_update_ms_50_detections': runs}))
        return

    seqs: Dict[str, Dict[str, np.ndarray]] = {}
    t0 = time.perf_counter()
    seqs['plaza'] = yolox_detections(a.model, a.video, a.frames)
    frames = {'plaza': int(seqs['plaza']['frame'].max()) + 1}
    print(f'YOLOX-nano on {frames["plaza"]} plaza frames: {len(seqs["plaza"]["frame"])} '
          f'detections at conf >= 0.1 ({time.perf_counter() - t0:.1f} s)', flush=True)
    gt = walkers(30, 600, seed=7)
    seqs['synthetic'] = detect(gt, 600, seed=8, hard=True)
    frames['synthetic'] = 600
    speed_gt = walkers(50, 1050, seed=3)
    seqs['speed'] = detect(speed_gt, 1050, seed=4, hard=False)  # 50 detections every frame
    frames['speed'] = 1050
    rates = {'plaza': RATE, 'synthetic': 30.0, 'speed': 30.0}

    result: dict = {'frames': frames}
    arrays: Dict[str, np.ndarray] = {'gt_frame': gt['frame'], 'gt_ids': gt['ids'],
                                     'gt_boxes': gt['boxes']}
    for name, det in seqs.items():
        ours = run_ours(det, rates[name], frames[name])
        times = ours['times'][50:] if name == 'speed' else ours['times']
        n_det = np.bincount(det['frame'], minlength=frames[name])
        result[name] = {'detections_per_frame': round(float(n_det.mean()), 1),
                        'our_update_ms': pct(times)}
        for k, v in det.items():
            arrays[f'{name}_{k}'] = v
        arrays[f'{name}_ours'] = ours['ids']
        arrays[f'{name}_frames'] = np.array(frames[name])
        arrays[f'{name}_rate'] = np.array(rates[name])

    py = Path(a.ultralytics_python)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'tracks.npz')
        np.savez(path, **arrays)
        env = dict(os.environ)
        extra = [str(Path(a.metrics_path).resolve())] if a.metrics_path else []
        env['PYTHONPATH'] = os.pathsep.join(extra + [str(Path(__file__).resolve().parents[1])])
        cmd = [str(py), '-W', 'ignore', __file__, '--worker', path]
        if not py.exists():
            raise SystemExit(f'{py} does not exist: give --ultralytics-python, a Python with '
                             'ultralytics (or at least motmetrics) installed')
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        if proc.returncode:
            raise SystemExit(f'worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}\n'
                             'it needs motmetrics (and pandas, scipy) on --metrics-path')
        theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in seqs:
        result[name].update(theirs.pop(name, {}))
    result['versions'] = theirs
    print(json.dumps(result, indent=1))


if __name__ == '__main__':
    sys.exit(main())
