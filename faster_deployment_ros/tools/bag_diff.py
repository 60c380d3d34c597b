"""`fdr-bag diff RUN_BAG GOLDEN_BAG`: how far a run's outputs moved from a golden recording.

Outputs are paired by header (stamp, frame_id). Detections (vision_msgs/Detection2DArray) are
then paired per frame by class and IoU, greedily: the same-class pair with the highest IoU
first, each box used once, pairs below ``iou`` left unmatched. Greedy is what NMS-style
evaluators (COCO, VOC) do and gives the same pairs as an optimal assignment whenever boxes of
one class do not overlap each other much, which is the case after NMS. Oriented boxes
(bbox.center.theta set, e.g. YOLO11-obb) are compared as the rotated rectangles they are: exact
polygon IoU, and box drift as the largest corner distance (the corners paired in the order that
makes it least, so (w, h, theta) and (h, w, theta + pi/2) are the same box). When both bags carry
track ids (Detection2D.id, the detector's `tracking`), the golden ids are the truth and ID
switches are counted as CLEAR-MOT does: a golden track matched to another run id than at its
previous match (per frame_id, so per camera). With `--masks-topic` (the detector's
`instance_mask`, mono8/mono16: pixel = 1 + detection index) each matched pair's instance masks
are compared too: their IoU, pixels of value i + 1 in the run's image against j + 1 in the
golden's (`--min-mask-iou` limits the smallest). Depth images
(sensor_msgs/Image, one channel) are compared on pixels valid (finite, > 0) in both.

ROS-free: bags are read with rosbags, so the gate runs in CI without a ROS install.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core.obb import obb_corners, obb_iou

DETECTIONS = 'vision_msgs/msg/Detection2DArray'
IMAGE = 'sensor_msgs/msg/Image'
FrameKey = Tuple[int, str]  # (header stamp ns, frame_id)


class BagDiffError(RuntimeError):
    pass


@dataclass
class Dets:
    """Detections of one frame: class ids, scores, boxes (x1, y1, x2, y2) in pixels, track ids.

    `ids` holds each detection's Detection2D.id ('' when untracked); `theta` each box's
    bbox.center.theta (None: all 0). With a theta, `boxes` is the box in its own frame (centre
    -+ size / 2) before the turn.
    """

    classes: List[str]
    scores: np.ndarray
    boxes: np.ndarray
    ids: List[str] = field(default_factory=list)
    theta: Optional[np.ndarray] = None

    @property
    def oriented(self) -> bool:
        return self.theta is not None and bool(np.any(self.theta != 0))

    def obb(self, index: Any = slice(None)) -> np.ndarray:
        """Return the (N, 5) boxes (those at `index`) as cx, cy, w, h, theta."""
        b = np.asarray(self.boxes, np.float64).reshape(-1, 4)[index].reshape(-1, 4)
        theta = (np.zeros(len(b)) if self.theta is None
                 else np.asarray(self.theta, np.float64)[index].reshape(-1))
        return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0],
                         b[:, 3] - b[:, 1], theta], 1)

    @classmethod
    def empty(cls) -> 'Dets':
        return cls([], np.zeros(0), np.zeros((0, 4)))

    def __len__(self) -> int:
        return len(self.classes)


@dataclass
class Outputs:
    """One side of a diff: the topic read, its type, and the frames by header."""

    topic: str
    msgtype: str
    frames: Dict[FrameKey, Any]
    duplicates: int = 0
    order: List[FrameKey] = field(default_factory=list)


def dets_from_msg(msg: Any) -> Dets:
    """Return a (rosbags or rclpy) Detection2DArray -> Dets.

    Each detection's class is its best hypothesis.
    """
    classes, scores, boxes, ids, theta = [], [], [], [], []
    for det in msg.detections:
        results = list(det.results)
        if not results:
            continue
        best = max(results, key=lambda r: r.hypothesis.score)
        c, w, h = det.bbox.center.position, det.bbox.size_x, det.bbox.size_y
        classes.append(str(best.hypothesis.class_id))
        scores.append(float(best.hypothesis.score))
        boxes.append((c.x - w / 2, c.y - h / 2, c.x + w / 2, c.y + h / 2))
        ids.append(str(det.id))
        theta.append(float(det.bbox.center.theta))
    return Dets(classes, np.asarray(scores, np.float64),
                np.asarray(boxes, np.float64).reshape(-1, 4), ids,
                np.asarray(theta, np.float64) if any(theta) else None)


def depth_from_msg(msg: Any) -> np.ndarray:
    """Convert a one-channel Image to float64 depth; 16UC1/mono16 (mm by convention) -> m."""
    from ..core.image_codec import msg_to_numpy
    a = msg_to_numpy(msg)
    if a.ndim == 3:
        if a.shape[2] != 1:
            raise BagDiffError(f'depth images must have one channel, got {msg.encoding}')
        a = a[..., 0]
    a = a.astype(np.float64)
    if msg.encoding in ('16UC1', 'mono16'):
        a *= 1e-3
    return a


def resolve_bag(path: Path) -> Path:
    """Return a bag directory, or a replay OUT_DIR holding one in outputs/."""
    path = Path(path)
    if (path / 'metadata.yaml').is_file() or path.suffix in ('.mcap', '.db3'):
        return path
    if (path / 'outputs' / 'metadata.yaml').is_file():
        return path / 'outputs'
    if not path.exists():
        raise BagDiffError(f'{path} does not exist')
    raise BagDiffError(f'{path} is not a rosbag2 bag (no metadata.yaml) nor a replay output '
                       'directory with outputs/')


def read_outputs(bag: Path, topic: Optional[str] = None) -> Outputs:
    """Read the Detection2DArray or depth Image topic of ``bag`` (``topic`` or the only one)."""
    from rosbags.rosbag2 import Reader

    from .bag_types import make_typestore
    bag = resolve_bag(bag)
    store = make_typestore()
    with Reader(bag) as reader:
        conns = reader.connections
        if topic is not None:
            chosen = [c for c in conns if c.topic == topic]
            if not chosen:
                raise BagDiffError(f'topic {topic} not in {bag} (has: '
                                   f'{", ".join(sorted({c.topic for c in conns})) or "nothing"})')
            if chosen[0].msgtype not in (DETECTIONS, IMAGE):
                raise BagDiffError(f'{topic} in {bag} is {chosen[0].msgtype}; diff compares '
                                   f'{DETECTIONS} or {IMAGE} (depth)')
        else:
            chosen = [c for c in conns if c.msgtype == DETECTIONS]
            if not chosen:
                chosen = [c for c in conns if c.msgtype == IMAGE]
            topics = sorted({c.topic for c in chosen})
            if len(topics) > 1:
                raise BagDiffError(f'{bag} has several output topics ({", ".join(topics)}); '
                                   'pass --topic')
            if not chosen:
                raise BagDiffError(f'{bag} has no {DETECTIONS} or {IMAGE} topic (has: '
                                   f'{", ".join(f"{c.topic} [{c.msgtype}]" for c in conns)})')
        msgtype = chosen[0].msgtype
        out = Outputs(chosen[0].topic, msgtype, {})
        for conn, _, data in reader.messages(connections=chosen):
            msg = store.deserialize_cdr(data, conn.msgtype)
            key = (msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec,
                   str(msg.header.frame_id))
            if key in out.frames:
                out.duplicates += 1
                continue
            out.frames[key] = dets_from_msg(msg) if msgtype == DETECTIONS else depth_from_msg(msg)
            out.order.append(key)
    return out


# --- detections ---------------------------------------------------------------------------------

def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the IoU of every box of ``a`` (N, 4) with every box of ``b`` (M, 4), xyxy."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def box_drift(run: Dets, i: int, gold: Dets, j: int) -> float:
    """Return the largest corner distance (per axis, pixels) of run box i and golden box j.

    Oriented boxes: the corners paired in the cyclic order that makes it least, so every
    description of one rectangle has drift 0.
    """
    if not (run.oriented or gold.oriented):
        return float(np.abs(run.boxes[i] - gold.boxes[j]).max())
    a, b = obb_corners(run.obb(i)), obb_corners(gold.obb(j))
    return float(min(np.abs(a[0] - np.roll(b[0], k, 0)).max() for k in range(4)))


def match_greedy(run: Dets, gold: Dets, iou: float = 0.5) -> List[Tuple[int, int, float]]:
    """
    Pair run and golden boxes of the same class with IoU >= ``iou``, the highest IoU first.

    Oriented boxes (either side) use the rotated rectangles' IoU. Returns (run index, golden
    index, IoU) tuples; each box is in at most one pair.
    """
    if not len(run) or not len(gold):
        return []
    if run.oriented or gold.oriented:
        m = obb_iou(run.obb(), gold.obb())
    else:
        m = iou_matrix(run.boxes, gold.boxes)
    same = np.asarray(run.classes)[:, None] == np.asarray(gold.classes)[None, :]
    m = np.where(same, m, -1.0)
    cand = np.argwhere(m >= iou)
    order = np.argsort(-m[cand[:, 0], cand[:, 1]], kind='stable')
    used_r, used_g, pairs = set(), set(), []
    for i, j in cand[order]:
        if i in used_r or j in used_g:
            continue
        used_r.add(int(i))
        used_g.add(int(j))
        pairs.append((int(i), int(j), float(m[i, j])))
    return pairs


class _ClassStats:

    def __init__(self) -> None:
        self.tp = self.fp = self.fn = 0
        self.ious: List[float] = []
        self.score_d: List[float] = []   # run - golden
        self.box_d: List[float] = []     # largest |corner difference| per pair, px

    def summary(self) -> Dict[str, Any]:
        def stat(v, fn):
            return round(float(fn(v)), 6) if v else None
        absd = [abs(x) for x in self.score_d]
        return {
            'golden': self.tp + self.fn, 'run': self.tp + self.fp,
            'matched': self.tp, 'false_positives': self.fp, 'missed': self.fn,
            'precision': round(self.tp / (self.tp + self.fp), 6) if self.tp + self.fp else None,
            'recall': round(self.tp / (self.tp + self.fn), 6) if self.tp + self.fn else None,
            'mean_iou': stat(self.ious, np.mean),
            'score_drift_mean': stat(self.score_d, np.mean),
            'score_drift_max_abs': stat(absd, np.max),
            'box_drift_px_mean': stat(self.box_d, np.mean),
            'box_drift_px_p95': stat(self.box_d, lambda v: np.percentile(v, 95)),
            'box_drift_px_p99': stat(self.box_d, lambda v: np.percentile(v, 99)),
            'box_drift_px_max': stat(self.box_d, np.max),
        }


def diff_detections(run: Dict[FrameKey, Dets], gold: Dict[FrameKey, Dets],
                    iou: float = 0.5) -> Dict[str, Any]:
    """
    Compare detections per class and overall on the frames both sides have.

    Precision / recall / mean IoU / score and box drift, the frames only one side has, and one
    row per frame for the plot. Precision and recall are None where they have no denominator.
    """
    per_class: Dict[str, _ClassStats] = {}
    total = _ClassStats()
    frames = []
    tracked = {side: any(i for d in dets.values() for i in d.ids)
               for side, dets in (('run', run), ('golden', gold))}
    last_run_id: Dict[Tuple[str, str], str] = {}  # (frame_id, golden id) -> run id at last match
    switches = 0
    for key in sorted(set(gold) | set(run)):
        g, r = gold.get(key), run.get(key)
        if g is None or r is None:
            frames.append({'stamp_ns': key[0], 'frame_id': key[1],
                           'missing_in': 'run' if r is None else 'golden',
                           'golden': len(g) if g is not None else None,
                           'run': len(r) if r is not None else None})
            continue
        pairs = match_greedy(r, g, iou)
        mr, mg = {p[0] for p in pairs}, {p[1] for p in pairs}
        worst_box = worst_score = 0.0
        for i, j, v in pairs:
            s = per_class.setdefault(g.classes[j], _ClassStats())
            box = box_drift(r, i, g, j)
            sd = float(r.scores[i] - g.scores[j])
            for st in (s, total):
                st.tp += 1
                st.ious.append(v)
                st.score_d.append(sd)
                st.box_d.append(box)
            worst_box, worst_score = max(worst_box, box), max(worst_score, abs(sd))
        for i in set(range(len(r))) - mr:
            per_class.setdefault(r.classes[i], _ClassStats()).fp += 1
            total.fp += 1
        for j in set(range(len(g))) - mg:
            per_class.setdefault(g.classes[j], _ClassStats()).fn += 1
            total.fn += 1
        row = {'stamp_ns': key[0], 'frame_id': key[1], 'golden': len(g), 'run': len(r),
               'matched': len(pairs), 'box_drift_px_max': round(worst_box, 6),
               'score_drift_max_abs': round(worst_score, 6)}
        if tracked['run'] and tracked['golden']:
            row['id_switches'] = id_switches(pairs, r, g, key[1], last_run_id)
            switches += row['id_switches']
        frames.append(row)
    missing_run = [f for f in frames if f.get('missing_in') == 'run']
    missing_gold = [f for f in frames if f.get('missing_in') == 'golden']
    tracks = None
    if tracked['run'] and tracked['golden']:
        tracks = {'id_switches': switches,
                  'golden_tracks': len({(k[1], i) for k, d in gold.items() for i in d.ids if i}),
                  'run_tracks': len({(k[1], i) for k, d in run.items() for i in d.ids if i}),
                  'golden_tracks_matched': len(last_run_id)}
    oriented = any(d.oriented for side in (run, gold) for d in side.values())
    return {
        'kind': 'detections', 'iou_threshold': iou,
        'matching': 'greedy by IoU, same class' + (' (rotated boxes: polygon IoU)'
                                                   if oriented else ''),
        'oriented': oriented,
        'tracked': tracked, 'tracks': tracks,
        'frames_golden': len(gold), 'frames_run': len(run),
        'frames_compared': len(set(gold) & set(run)),
        'frames_missing_in_run': len(missing_run), 'frames_missing_in_golden': len(missing_gold),
        'overall': total.summary(),
        'per_class': {k: per_class[k].summary() for k in
                      sorted(per_class, key=lambda k: -(per_class[k].tp + per_class[k].fn))},
        'per_frame': frames,
    }


def id_switches(pairs: Sequence[Tuple[int, int, float]], run: Dets, gold: Dets, frame_id: str,
                last_run_id: Dict[Tuple[str, str], str]) -> int:
    """Count the golden tracks of this frame matched to another run id than before.

    `last_run_id` ((frame_id, golden id) -> run id at its last match) is carried from frame to
    frame and updated; detections without an id on either side are not counted.
    """
    n = 0
    for i, j, _ in pairs:
        rid, gid = run.ids[i] if run.ids else '', gold.ids[j] if gold.ids else ''
        if not rid or not gid:
            continue
        prev = last_run_id.get((frame_id, gid))
        if prev is not None and prev != rid:
            n += 1
        last_run_id[(frame_id, gid)] = rid
    return n


# --- instance masks -----------------------------------------------------------------------------

def read_masks(bag: Path, topic: str) -> Dict[FrameKey, np.ndarray]:
    """Read an instance mask topic (mono8 / mono16 Image: 1 + detection index, 0 none)."""
    from rosbags.rosbag2 import Reader

    from .bag_types import make_typestore
    from ..core.image_codec import msg_to_numpy
    bag = resolve_bag(bag)
    store = make_typestore()
    out: Dict[FrameKey, np.ndarray] = {}
    with Reader(bag) as reader:
        chosen = [c for c in reader.connections if c.topic == topic]
        if not chosen or chosen[0].msgtype != IMAGE:
            raise BagDiffError(f'no instance mask topic {topic} ({IMAGE}) in {bag}: pass the '
                               "detector's instance_mask topic as --masks-topic")
        for conn, _, data in reader.messages(connections=chosen):
            msg = store.deserialize_cdr(data, conn.msgtype)
            if msg.encoding not in ('mono8', 'mono16', '8UC1', '16UC1'):
                raise BagDiffError(f'{topic} in {bag} is {msg.encoding}; instance masks are '
                                   'mono8 or mono16')
            key = (msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec,
                   str(msg.header.frame_id))
            out.setdefault(key, np.array(msg_to_numpy(msg)).reshape(msg.height, msg.width))
    return out


def mask_iou(run: np.ndarray, gold: np.ndarray, i: int, j: int) -> float:
    """Return the IoU of run instance i (pixels i + 1) and golden instance j (pixels j + 1)."""
    a, b = run == i + 1, gold == j + 1
    union = int(np.count_nonzero(a | b))
    return int(np.count_nonzero(a & b)) / union if union else 1.0


def diff_masks(run: Dict[FrameKey, Dets], gold: Dict[FrameKey, Dets],
               run_masks: Dict[FrameKey, np.ndarray], gold_masks: Dict[FrameKey, np.ndarray],
               iou: float = 0.5) -> Dict[str, Any]:
    """Mask IoU of every detection pair (match_greedy) on the frames with masks on both sides."""
    ious: List[float] = []
    worst: List[Dict[str, Any]] = []
    without = 0
    for key in sorted(set(gold) & set(run)):
        rm, gm = run_masks.get(key), gold_masks.get(key)
        if rm is None or gm is None or rm.shape != gm.shape:
            without += 1
            continue
        frame = [mask_iou(rm, gm, i, j) for i, j, _ in match_greedy(run[key], gold[key], iou)]
        ious += frame
        if frame:
            worst.append({'stamp_ns': key[0], 'frame_id': key[1],
                          'mask_iou_min': round(min(frame), 6)})
    v = np.asarray(ious, np.float64)
    return {'pairs': int(v.size), 'frames_without_masks': without,
            'mean_iou': round(float(v.mean()), 6) if v.size else None,
            'min_iou': round(float(v.min()), 6) if v.size else None,
            'p5_iou': round(float(np.percentile(v, 5)), 6) if v.size else None,
            'per_frame': worst}


# --- depth --------------------------------------------------------------------------------------

def depth_errors(run: np.ndarray, gold: np.ndarray) -> Dict[str, Any]:
    """
    Return abs_rel (mean |r - g| / g) and delta1 (share with max(r/g, g/r) < 1.25).

    Only pixels valid (finite, > 0) in both images count.
    """
    if run.shape != gold.shape:
        return {'shape_mismatch': [list(run.shape), list(gold.shape)]}
    valid = np.isfinite(run) & np.isfinite(gold) & (run > 0) & (gold > 0)
    n = int(valid.sum())
    if n == 0:
        return {'valid_pixels': 0, 'abs_rel': None, 'delta1': None}
    r, g = run[valid], gold[valid]
    ratio = np.maximum(r / g, g / r)
    return {'valid_pixels': n, 'valid_frac': round(n / valid.size, 6),
            'abs_rel': float(np.mean(np.abs(r - g) / g)), 'delta1': float(np.mean(ratio < 1.25)),
            'max_abs_diff': float(np.abs(r - g).max())}


def diff_depth(run: Dict[FrameKey, np.ndarray], gold: Dict[FrameKey, np.ndarray]
               ) -> Dict[str, Any]:
    """Per-frame depth errors and their pixel-weighted means over the frames both sides have."""
    frames, rel_sum, d1_sum, n_sum, mismatched = [], 0.0, 0.0, 0, 0
    for key in sorted(set(gold) | set(run)):
        g, r = gold.get(key), run.get(key)
        row: Dict[str, Any] = {'stamp_ns': key[0], 'frame_id': key[1]}
        if g is None or r is None:
            row['missing_in'] = 'run' if r is None else 'golden'
        else:
            row.update(depth_errors(r, g))
            if 'shape_mismatch' in row:
                mismatched += 1
            elif row['valid_pixels']:
                rel_sum += row['abs_rel'] * row['valid_pixels']
                d1_sum += row['delta1'] * row['valid_pixels']
                n_sum += row['valid_pixels']
        frames.append(row)
    return {
        'kind': 'depth', 'frames_golden': len(gold), 'frames_run': len(run),
        'frames_compared': len(set(gold) & set(run)),
        'frames_missing_in_run': sum(f.get('missing_in') == 'run' for f in frames),
        'frames_missing_in_golden': sum(f.get('missing_in') == 'golden' for f in frames),
        'frames_shape_mismatch': mismatched,
        'overall': {'valid_pixels': n_sum,
                    'abs_rel': round(rel_sum / n_sum, 6) if n_sum else None,
                    'delta1': round(d1_sum / n_sum, 6) if n_sum else None,
                    'abs_rel_max_frame': max((f['abs_rel'] for f in frames
                                              if f.get('abs_rel') is not None), default=None)},
        'per_frame': frames,
    }


# --- gate ---------------------------------------------------------------------------------------

@dataclass
class Thresholds:
    """Gate limits; None = not checked."""

    min_recall: Optional[float] = None
    min_precision: Optional[float] = None
    min_mean_iou: Optional[float] = None
    max_box_drift_px: Optional[float] = None
    box_drift_stat: str = 'max'          # what max_box_drift_px limits: max|p99|p95|mean
    max_score_drift: Optional[float] = None
    max_missing_frames: Optional[int] = None
    max_abs_rel: Optional[float] = None
    min_delta1: Optional[float] = None
    per_class: bool = False
    max_id_switches: Optional[int] = None
    min_mask_iou: Optional[float] = None


def check(report: Dict[str, Any], t: Thresholds) -> List[str]:
    """Return the failed limits, as sentences (empty: the gate passes).

    A precision without denominator (no run detections) counts as 1, a recall without one (no
    golden detections) as 1: nothing was wrongly found or missed.
    """
    fails = []
    missing = report['frames_missing_in_run'] + report['frames_missing_in_golden']
    if t.max_missing_frames is not None and missing > t.max_missing_frames:
        fails.append(f'{missing} frames missing on one side > {t.max_missing_frames} '
                     f'(run lacks {report["frames_missing_in_run"]}, golden lacks '
                     f'{report["frames_missing_in_golden"]})')
    if report['frames_compared'] == 0:
        fails.append('no frame of the run has the header of a golden frame')
    if report['kind'] == 'depth':
        o = report['overall']
        if report['frames_shape_mismatch']:
            fails.append(f'{report["frames_shape_mismatch"]} frames differ in image size')
        if t.max_abs_rel is not None and (o['abs_rel'] is None or o['abs_rel'] > t.max_abs_rel):
            fails.append(f'abs_rel {o["abs_rel"]} > {t.max_abs_rel}')
        if t.min_delta1 is not None and (o['delta1'] is None or o['delta1'] < t.min_delta1):
            fails.append(f'delta1 {o["delta1"]} < {t.min_delta1}')
        return fails
    if t.max_id_switches is not None:
        tracks = report.get('tracks')
        if tracks is None:
            tr = report.get('tracked', {})
            fails.append('--max-id-switches needs track ids (Detection2D.id) in both bags '
                         f'(run: {"yes" if tr.get("run") else "no"}, golden: '
                         f'{"yes" if tr.get("golden") else "no"}); record both with '
                         'tracking: true')
        elif tracks['id_switches'] > t.max_id_switches:
            fails.append(f'{tracks["id_switches"]} ID switches > {t.max_id_switches} '
                         f'(golden ids as truth, {tracks["golden_tracks"]} golden tracks)')
    if t.min_mask_iou is not None:
        masks = report.get('masks')
        if masks is None:
            fails.append('--min-mask-iou needs --masks-topic (the instance_mask topic in both '
                         'bags)')
        elif masks['frames_without_masks']:
            fails.append(f'{masks["frames_without_masks"]} compared frames lack an instance '
                         'mask of the same size on one side')
        elif masks['min_iou'] is not None and masks['min_iou'] < t.min_mask_iou:
            fails.append(f'mask IoU {masks["min_iou"]:.4f} < {t.min_mask_iou} (mean '
                         f'{masks["mean_iou"]:.4f} over {masks["pairs"]} matched detections)')
    scopes = [('overall', report['overall'])]
    if t.per_class:
        scopes += [(f'class {k}', v) for k, v in report['per_class'].items()]
    for name, s in scopes:
        one = lambda v: 1.0 if v is None else v  # noqa: E731
        if t.min_recall is not None and one(s['recall']) < t.min_recall:
            fails.append(f'{name}: recall {s["recall"]:.4f} < {t.min_recall}'
                         f' ({s["missed"]} of {s["golden"]} golden detections missed)')
        if t.min_precision is not None and one(s['precision']) < t.min_precision:
            fails.append(f'{name}: precision {s["precision"]:.4f} < {t.min_precision}'
                         f' ({s["false_positives"]} of {s["run"]} run detections not in golden)')
        if t.min_mean_iou is not None and s['mean_iou'] is not None and \
                s['mean_iou'] < t.min_mean_iou:
            fails.append(f'{name}: mean IoU {s["mean_iou"]:.4f} < {t.min_mean_iou}')
        drift = s[f'box_drift_px_{t.box_drift_stat}']
        if t.max_box_drift_px is not None and drift is not None and drift > t.max_box_drift_px:
            fails.append(f'{name}: box drift ({t.box_drift_stat}) {drift:.3f} px > '
                         f'{t.max_box_drift_px} px')
        if t.max_score_drift is not None and s['score_drift_max_abs'] is not None and \
                s['score_drift_max_abs'] > t.max_score_drift:
            fails.append(f'{name}: score drift {s["score_drift_max_abs"]:.4f} > '
                         f'{t.max_score_drift}')
    return fails


def diff_bags(run_bag: Path, golden_bag: Path, topic: Optional[str] = None,
              golden_topic: Optional[str] = None, iou: float = 0.5,
              masks_topic: Optional[str] = None) -> Dict[str, Any]:
    """Read both bags and diff them; the report dict (see diff_detections / diff_depth).

    `masks_topic` (detections only): the instance mask topic, compared per matched detection
    (diff_masks) into report['masks'].
    """
    run = read_outputs(run_bag, topic)
    gold = read_outputs(golden_bag, golden_topic or topic)
    if run.msgtype != gold.msgtype:
        raise BagDiffError(f'run {run.topic} is {run.msgtype} but golden {gold.topic} is '
                           f'{gold.msgtype}')
    if run.msgtype == DETECTIONS:
        report = diff_detections(run.frames, gold.frames, iou)
        if masks_topic:
            report['masks'] = diff_masks(run.frames, gold.frames,
                                         read_masks(run_bag, masks_topic),
                                         read_masks(golden_bag, masks_topic), iou)
    elif masks_topic:
        raise BagDiffError('--masks-topic compares the instance masks of detections: the '
                           f'diffed topic {run.topic} is {run.msgtype}')
    else:
        report = diff_depth(run.frames, gold.frames)
    report.update({'run_bag': str(resolve_bag(run_bag)),
                   'golden_bag': str(resolve_bag(golden_bag)),
                   'topic': {'run': run.topic, 'golden': gold.topic},
                   'duplicates': {'run': run.duplicates, 'golden': gold.duplicates}})
    return report


# --- output -------------------------------------------------------------------------------------

def _f(v: Optional[float], spec: str = '.4f') -> str:
    return '-' if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def format_diff(report: Dict[str, Any]) -> str:
    """Return a short table for a person."""
    lines = [f'frames: golden {report["frames_golden"]}, run {report["frames_run"]}, compared '
             f'{report["frames_compared"]}, missing in run {report["frames_missing_in_run"]}, '
             f'missing in golden {report["frames_missing_in_golden"]}']
    if report['kind'] == 'depth':
        o = report['overall']
        lines.append(f'depth: abs_rel {_f(o["abs_rel"], ".5f")}, delta<1.25 '
                     f'{_f(o["delta1"], ".5f")} over {o["valid_pixels"]} valid pixels, worst '
                     f'frame abs_rel {_f(o["abs_rel_max_frame"], ".5f")}, '
                     f'{report["frames_shape_mismatch"]} frames of another size')
        return '\n'.join(lines)
    head = (f'{"class":<16}{"golden":>7}{"run":>6}{"match":>6}{"prec":>8}{"recall":>8}'
            f'{"mIoU":>8}{"score d":>9}{"box px":>9}')
    lines += [head, '-' * len(head)]
    rows = list(report['per_class'].items()) + [('ALL', report['overall'])]
    for name, s in rows:
        lines.append(f'{name[:15]:<16}{s["golden"]:>7}{s["run"]:>6}{s["matched"]:>6}'
                     f'{_f(s["precision"]):>8}{_f(s["recall"]):>8}{_f(s["mean_iou"]):>8}'
                     f'{_f(s["score_drift_max_abs"]):>9}{_f(s["box_drift_px_max"], ".3f"):>9}')
    lines.append(f'(matching: {report["matching"]}, IoU >= {report["iou_threshold"]}; score d '
                 '= largest |run - golden| score, box px = largest corner difference)')
    masks = report.get('masks')
    if masks is not None:
        lines.append(f'masks: {masks["pairs"]} matched detections, mask IoU mean '
                     f'{_f(masks["mean_iou"])}, p5 {_f(masks["p5_iou"])}, min '
                     f'{_f(masks["min_iou"])}; {masks["frames_without_masks"]} frames without '
                     'masks on a side')
    tracks = report.get('tracks')
    if tracks is not None:
        lines.append(f'tracks: golden {tracks["golden_tracks"]}, run {tracks["run_tracks"]}, '
                     f'ID switches {tracks["id_switches"]} (golden ids as truth)')
    return '\n'.join(lines)


def _series(report: Dict[str, Any]) -> Tuple[List[str], List[np.ndarray], np.ndarray]:
    rows = report['per_frame']
    missing = np.array([r.get('missing_in') is not None for r in rows], bool)

    def col(k):
        return np.array([np.nan if r.get(k) is None else r[k] for r in rows], np.float64)
    if report['kind'] == 'depth':
        return ['abs rel', 'delta<1.25'], [col('abs_rel'), col('delta1')], missing
    return (['detections (golden, run, matched)', 'box drift px (max)', 'score drift (max)'],
            [np.stack([col('golden'), col('run'), col('matched')]), col('box_drift_px_max'),
             col('score_drift_max_abs')], missing)


def plot_diff(report: Dict[str, Any], path: Path) -> Path:
    """Per-frame differences as a PNG: matplotlib (Agg) when installed, else OpenCV lines."""
    titles, series, missing = _series(report)
    path = Path(path)
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return _plot_cv(titles, series, missing, path)
    fig, axes = plt.subplots(len(series), 1, figsize=(8, 2.2 * len(series)), sharex=True)
    x = np.arange(len(missing))
    for ax, title, s in zip(axes, titles, series):
        for k, row in enumerate(np.atleast_2d(s)):
            ax.plot(x, row, lw=1, ls=('-', '--', ':')[k % 3],
                    label=('golden', 'run', 'matched')[k] if s.ndim == 2 else None)
        for i in np.flatnonzero(missing):
            ax.axvline(i, color='red', alpha=0.3, lw=1)
        ax.set_title(title, fontsize=9)
        if s.ndim == 2:
            ax.legend(fontsize=7, loc='upper right')
    axes[-1].set_xlabel('frame (by header stamp; red: missing on one side)')
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _plot_cv(titles: Sequence[str], series: Sequence[np.ndarray], missing: np.ndarray,
             path: Path) -> Path:
    import cv2
    w, h, pad = 800, 170, 20
    img = np.full((h * len(series), w, 3), 255, np.uint8)
    colours = ((200, 80, 0), (0, 120, 255), (0, 160, 0))
    n = max(len(missing), 2)
    for p, (title, s) in enumerate(zip(titles, series)):
        y0 = p * h
        rows = np.atleast_2d(s)
        finite = rows[np.isfinite(rows)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        hi = hi if hi > lo else lo + 1.0
        for i in np.flatnonzero(missing):
            x = int(pad + i * (w - 2 * pad) / (n - 1))
            cv2.line(img, (x, y0 + pad), (x, y0 + h - pad), (180, 180, 255), 1)
        for k, row in enumerate(rows):
            pts = [(int(pad + i * (w - 2 * pad) / (n - 1)),
                    int(y0 + h - pad - (v - lo) / (hi - lo) * (h - 2 * pad)))
                   for i, v in enumerate(row) if np.isfinite(v)]
            if len(pts) > 1:
                cv2.polylines(img, [np.array(pts, np.int32)], False, colours[k % 3], 1)
        cv2.putText(img, f'{title}  [{lo:.3g} .. {hi:.3g}]', (pad, y0 + 14),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), img)
    return path


def run_cli(run_bag: str, golden_bag: str, topic: Optional[str], golden_topic: Optional[str],
            iou: float, json_path: Optional[str], plot_path: Optional[str], t: Thresholds,
            out=print, masks_topic: Optional[str] = None) -> int:
    """Run `fdr-bag diff`: 0 = gate passed, 1 = a limit failed, 2 = unreadable input."""
    import sys
    try:
        report = diff_bags(Path(run_bag), Path(golden_bag), topic, golden_topic, iou,
                           masks_topic)
    except (BagDiffError, KeyError, OSError) as exc:
        print(f'fdr-bag diff: {exc}', file=sys.stderr)
        return 2
    fails = check(report, t)
    limits = {k: v for k, v in vars(t).items() if v not in (None, False)}
    if t.max_box_drift_px is None:
        limits.pop('box_drift_stat')
    report['gate'] = {'thresholds': limits,
                      'passed': not fails, 'failures': fails}
    base = resolve_bag(Path(run_bag)).parent
    json_out = Path(json_path) if json_path else base / 'diff.json'
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(report, indent=2) + '\n')
    out(format_diff(report))
    if plot_path != '':
        png = plot_diff(report, Path(plot_path) if plot_path else json_out.with_suffix('.png'))
        out(f'plot: {png}')
    out(f'report: {json_out}')
    if fails:
        out('GATE FAILED:\n  ' + '\n  '.join(fails))
        return 1
    if limits:
        out('gate passed')
    return 0


# --- command line -------------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the arguments of `fdr-bag diff` (also those of the demo's --gate) to ``p``."""
    p.add_argument('run_bag', help='bag (or replay OUT_DIR with outputs/) of the run under test')
    p.add_argument('golden_bag', help='bag (or replay OUT_DIR) recorded as the reference')
    p.add_argument('--topic', help='output topic (default: the only Detection2DArray topic, '
                   'else the only Image topic)')
    p.add_argument('--golden-topic', help='topic in the golden bag, when it differs')
    p.add_argument('--iou', type=float, default=0.5, help='least IoU of a matched pair')
    p.add_argument('--json', help='report path (default: diff.json beside RUN_BAG)')
    p.add_argument('--plot', help='per-frame PNG (default: the report path with .png)')
    p.add_argument('--no-plot', action='store_true')
    g = p.add_argument_group('limits (each checked only when given)')
    g.add_argument('--min-recall', type=float, help='matched / golden detections')
    g.add_argument('--min-precision', type=float, help='matched / run detections')
    g.add_argument('--min-mean-iou', type=float)
    g.add_argument('--max-box-drift-px', type=float,
                   help='largest corner difference of matched boxes, pixels (see '
                   '--box-drift-stat)')
    g.add_argument('--box-drift-stat', choices=['max', 'p99', 'p95', 'mean'], default='max',
                   help='which statistic of the per-box drifts --max-box-drift-px limits: max '
                   '(every box) or a percentile, which lets a rare NMS flip between two '
                   'overlapping boxes pass')
    g.add_argument('--max-score-drift', type=float,
                   help='largest |run - golden| score of any matched box')
    g.add_argument('--max-missing-frames', type=int,
                   help='frames present on one side only (both directions together)')
    g.add_argument('--per-class', action='store_true',
                   help='apply the detection limits to every class as well as overall')
    g.add_argument('--max-id-switches', type=int,
                   help='track ids (both bags recorded with tracking: true): golden tracks '
                   'matched to another run id than at their previous match')
    p.add_argument('--masks-topic', help="instance mask topic (the detector's instance_mask, "
                   "mono8/mono16) in both bags: each matched detection's masks are compared")
    g.add_argument('--min-mask-iou', type=float,
                   help='with --masks-topic: the smallest mask IoU of any matched detection')
    g.add_argument('--max-abs-rel', type=float, help='depth: mean |run - golden| / golden')
    g.add_argument('--min-delta1', type=float,
                   help='depth: share of pixels with max(run/golden, golden/run) < 1.25')


def thresholds(a: argparse.Namespace) -> Thresholds:
    """Return the gate limits that parsed arguments (add_arguments) ask for."""
    return Thresholds(min_recall=a.min_recall, min_precision=a.min_precision,
                      min_mean_iou=a.min_mean_iou, max_box_drift_px=a.max_box_drift_px,
                      box_drift_stat=a.box_drift_stat, max_score_drift=a.max_score_drift,
                      max_missing_frames=a.max_missing_frames, max_abs_rel=a.max_abs_rel,
                      min_delta1=a.min_delta1, per_class=a.per_class,
                      max_id_switches=a.max_id_switches,
                      min_mask_iou=getattr(a, 'min_mask_iou', None))


def main_args(a: argparse.Namespace) -> int:
    """Run `fdr-bag diff` on parsed arguments: 0 passed, 1 a limit failed, 2 unreadable input."""
    return run_cli(a.run_bag, a.golden_bag, a.topic, a.golden_topic, a.iou, a.json,
                   '' if a.no_plot else a.plot, thresholds(a),
                   masks_topic=getattr(a, 'masks_topic', None))
