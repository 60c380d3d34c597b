"""ByteTrack multi-object tracking: stable identities for the detections of one camera.

The algorithm of ByteTrack (Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every
Detection Box", ECCV 2022), with the defaults of ultralytics' `bytetrack.yaml`:

- each track holds a constant-velocity Kalman filter over (centre x, centre y, aspect w/h,
  height) and their velocities; every frame predicts the confirmed and the lost tracks;
- detections split by score: high (>= `track_high_thresh`) and low (in
  (`track_low_thresh`, `track_high_thresh`));
- first association: confirmed and lost tracks against high detections, cost 1 - IoU (times the
  detection score with `fuse_score`), optimal assignment kept where the cost is below
  `match_thresh`; a lost track matched here is found again under its old id;
- second association: the tracks still unmatched that were tracked in the previous frame against
  the low detections, cost 1 - IoU below 0.5 (this is what recovers objects whose score drops
  under occlusion); tracks unmatched now become lost;
- tracks born in the previous frame (unconfirmed) against the high detections left, cost below
  0.7: matched ones are confirmed, the others dropped;
- a high detection still unmatched with a score >= `new_track_thresh` starts a track with the
  next id (ids count from 1 per tracker, in detection order); it is confirmed by a match in the
  next frame (tracks born in the first frame are confirmed at once);
- a lost track can be found again for `track_buffer` frames at 30 Hz (scaled to `frame_rate`)
  plus one after it was last seen (the reference implementation's bookkeeping keeps it that one
  frame longer; kept here so both give the same ids), then it is forgotten;
- a tracked and a lost track whose boxes overlap with IoU > 0.85 are one object: the one tracked
  for the shorter time is dropped.

`update` returns the frame's detections that belong to a confirmed track, in input order, with
their own (measured) boxes and scores and the track's id in `track_ids`. Tracking ignores the
class (a track takes the class of its latest detection), as the reference does.

Only numpy: the optimal assignment (`linear_assignment`) is solved here, exactly as a
Jonker-Volgenant solver with a cost limit would (the reference uses `lap.lapjv`).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from .types import Detections

TRACKED, LOST = 1, 2
#: cost limits of the second association (IoU only) and of the unconfirmed tracks
LOW_MATCH_THRESH = 0.5
UNCONFIRMED_MATCH_THRESH = 0.7
#: IoU distance below which a tracked and a lost track are one object
DUPLICATE_THRESH = 0.15

_STD_POSITION = 1.0 / 20
_STD_VELOCITY = 1.0 / 160


# ---------------------------------------------------------------------------- assignment
def linear_assignment(cost: np.ndarray, thresh: float) -> Tuple[np.ndarray, np.ndarray]:
    """Return (rows, cols) of the minimum-cost matching that only uses costs below `thresh`.

    Each row and each column is matched at most once; leaving a row or a column unmatched costs
    thresh / 2 (so a pair is worth matching only if its cost is below thresh): the problem
    `lap.lapjv(cost, extend_cost=True, cost_limit=thresh)` solves. Pairs are returned sorted by
    row.

    Rows and columns without a cost below `thresh` stay unmatched; on the others, with costs
    capped at `thresh`, a full assignment of the smaller side has the same optimum (a capped
    pair costs as much as leaving both unmatched) and is solved exactly.
    """
    cost = np.asarray(cost, np.float64)
    ok = cost < thresh
    rows = ok.any(1).nonzero()[0]
    cols = ok.any(0).nonzero()[0]
    if not len(rows):
        return rows, cols
    sub = np.minimum(cost[rows[:, None], cols], thresh)
    r, c = _min_cost_assignment(sub)
    good = sub[r, c] < thresh
    return rows[r[good]], cols[c[good]]


def _min_cost_assignment(cost: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Return (rows, cols), sorted by row, of a minimum-cost assignment of the smaller side.

    When every row's cheapest column differs, that is the optimum; otherwise shortest augmenting
    paths with row / column potentials (the Hungarian method in the Jonker-Volgenant form) from
    that greedy start, vectorised over the columns: O(n^2 m) at worst.
    """
    transposed = cost.shape[0] > cost.shape[1]
    a = cost.T if transposed else cost
    n, m = a.shape
    best = a.argmin(1)
    taken = np.zeros(m, bool)
    taken[best] = True
    if taken.sum() == n:  # no two rows want one column
        if not transposed:
            return np.arange(n), best
        order = best.argsort()
        return best[order], order
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    owner = np.zeros(m + 1, np.int64)   # owner[j]: row (1-based) holding column j; 0 free
    way = np.zeros(m + 1, np.int64)
    # start from row minima: each row takes its cheapest column if no earlier row did (tight
    # under these potentials), so only the rows that collide need an augmenting path
    u[1:] = a[np.arange(n), best]
    _, first = np.unique(best, return_index=True)
    owner[best[first] + 1] = first + 1
    todo = np.ones(n, bool)
    todo[first] = False
    for i in (np.flatnonzero(todo) + 1).tolist():
        owner[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, bool)
        while True:
            used[j0] = True
            i0 = owner[j0]
            free = ~used[1:]
            cur = a[i0 - 1] - u[i0] - v[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            masked = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(masked)) + 1
            delta = masked[j1 - 1]
            u[owner[used]] += delta
            v[used] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    cols = owner[1:].nonzero()[0]
    rows = owner[1:][cols] - 1
    if transposed:
        return cols, rows
    order = rows.argsort()
    return rows[order], cols[order]


# ---------------------------------------------------------------------------- boxes
def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the IoU of every box of `a` (N, 4) with every box of `b` (M, 4), x1, y1, x2, y2."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    iw = np.minimum.outer(a[:, 2], b[:, 2])
    iw -= np.maximum.outer(a[:, 0], b[:, 0])
    np.maximum(iw, 0.0, out=iw)
    ih = np.minimum.outer(a[:, 3], b[:, 3])
    ih -= np.maximum.outer(a[:, 1], b[:, 1])
    np.maximum(ih, 0.0, out=ih)
    iw *= ih                                               # intersection
    union = np.add.outer((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + 1e-7,
                         (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
    union -= iw
    iw /= union
    return iw


def _xyah(boxes: np.ndarray) -> np.ndarray:
    """x1, y1, x2, y2 -> centre x, centre y, aspect (w / h), height."""
    out = np.empty((len(boxes), 4))
    out[:, 2:] = boxes[:, 2:] - boxes[:, :2]
    out[:, :2] = boxes[:, :2] + 0.5 * out[:, 2:]
    out[:, 2] /= out[:, 3]
    return out


def _xyxy(mean: np.ndarray) -> np.ndarray:
    """Kalman states (N, 8) -> their boxes x1, y1, x2, y2."""
    out = np.empty((len(mean), 4))
    out[:, 3] = mean[:, 3]
    out[:, 2] = mean[:, 2] * mean[:, 3]
    out[:, :2] = mean[:, :2] - 0.5 * out[:, 2:]
    out[:, 2:] += out[:, :2]
    return out


# ---------------------------------------------------------------------------- Kalman filter
# The state is (x, y, a, h) and their velocities; the motion model moves each coordinate by its
# own velocity, the noises are diagonal and the measurement is the four coordinates, so the 8x8
# covariance never couples two coordinates: it is kept as its four 2x2 blocks, `cov` (N, 3, 4)
# = (position variance, position-velocity covariance, velocity variance) per coordinate. The
# filter is then four independent constant-velocity filters per track, in closed form.
_ONE = np.array([1.0, 1.0, 0.0, 1.0])                 # noise scales with the height, but a's
_NOISE_POS = np.array([0.0, 0.0, 1e-2, 0.0])          # noise is constant
_NOISE_VEL = np.array([0.0, 0.0, 1e-5, 0.0])
_NOISE_MEAS = np.array([0.0, 0.0, 1e-1, 0.0])
_W_POS = _STD_POSITION * _ONE
_W_VEL = _STD_VELOCITY * _ONE


def _spread(h: np.ndarray, weight: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Per-coordinate standard deviations (N, 4): weight * height, the aspect's fixed."""
    out = np.multiply.outer(h, weight)
    out += fixed
    return out


def kalman_initiate(z: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """States (N, 8) and covariances (N, 3, 4) of new tracks from measurements (N, 4) xyah.

    Zero velocity; spreads scale with the box height.
    """
    mean = np.zeros((len(z), 8))
    mean[:, :4] = z
    cov = np.zeros((len(z), 3, 4))
    cov[:, 0] = np.square(_spread(z[:, 3], 2 * _W_POS, _NOISE_POS))
    cov[:, 2] = np.square(_spread(z[:, 3], 10 * _W_VEL, _NOISE_VEL))
    return mean, cov


def kalman_predict(mean: np.ndarray, cov: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """One constant-velocity step of states (N, 8), covariances (N, 3, 4).

    The process noise scales with each box's height.
    """
    h = mean[:, 3]
    mean = mean.copy()
    mean[:, :4] += mean[:, 4:]
    pp, pv, vv = cov[:, 0], cov[:, 1], cov[:, 2]
    out = np.empty_like(cov)
    out[:, 0] = pp + 2.0 * pv + vv + np.square(_spread(h, _W_POS, _NOISE_POS))
    out[:, 1] = pv + vv
    out[:, 2] = vv + np.square(_spread(h, _W_VEL, _NOISE_VEL))
    return mean, out


def kalman_correct(mean: np.ndarray, cov: np.ndarray,
                   z: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Kalman update of states (N, 8), covariances (N, 3, 4) with measurements (N, 4) xyah."""
    pp, pv, vv = cov[:, 0], cov[:, 1], cov[:, 2]
    s = pp + np.square(_spread(mean[:, 3], _W_POS, _NOISE_MEAS))  # innovation variance
    gain_p = pp / s
    gain_v = pv / s
    innovation = z - mean[:, :4]
    mean = mean.copy()
    mean[:, :4] += gain_p * innovation
    mean[:, 4:] += gain_v * innovation
    out = np.empty_like(cov)
    out[:, 0] = pp - gain_p * pp
    out[:, 1] = pv - gain_p * pv
    out[:, 2] = vv - gain_v * pv
    return mean, out


# ---------------------------------------------------------------------------- tracker
def _associate(iou: np.ndarray, tracks: np.ndarray, col: np.ndarray, scores: np.ndarray,
               dets: np.ndarray, thresh: float, fuse: bool) -> Tuple[np.ndarray, np.ndarray]:
    """Return matched (positions in `tracks`, positions in `dets`) at cost 1 - IoU (x score).

    `iou` holds every track's IoU with the frame's candidate detections, `col` the column of
    each detection there.
    """
    if not len(tracks) or not len(dets):
        empty = np.zeros((0,), np.int64)
        return empty, empty
    sim = iou[tracks[:, None], col[dets]]
    if fuse:
        sim *= scores[dets]
    return linear_assignment(1.0 - sim, thresh)


def _without(idx: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """`idx` less the entries at `positions`."""
    if not len(positions):
        return idx
    keep = np.ones(len(idx), bool)
    keep[positions] = False
    return idx[keep]


class ByteTracker:
    """ByteTrack over the detections of one camera, frame after frame (see the module doc).

    `frame_rate` (Hz) scales `track_buffer` (frames at 30 Hz) to frames of this stream. Not
    thread-safe: one tracker per stream, updated in frame order.
    """

    def __init__(self, frame_rate: float = 30.0, track_high_thresh: float = 0.25,
                 track_low_thresh: float = 0.1, new_track_thresh: float = 0.25,
                 track_buffer: int = 30, match_thresh: float = 0.8,
                 fuse_score: bool = True) -> None:
        if not 0.0 <= track_low_thresh <= track_high_thresh <= 1.0:
            raise ValueError(f'track_low_thresh {track_low_thresh} and track_high_thresh '
                             f'{track_high_thresh}: need 0 <= low <= high <= 1')
        if track_buffer < 0:
            raise ValueError(f'track_buffer {track_buffer}: give a number of frames >= 0')
        rate = frame_rate if frame_rate > 0 else 30.0
        self.track_high_thresh = float(track_high_thresh)
        self.track_low_thresh = float(track_low_thresh)
        self.new_track_thresh = float(new_track_thresh)
        self.match_thresh = float(match_thresh)
        self.fuse_score = bool(fuse_score)
        #: frames a lost track is kept (ByteTrack's scaling of the 30 Hz buffer)
        self.max_time_lost = int(rate / 30.0 * track_buffer)
        self.reset()

    def reset(self) -> None:
        """Forget every track; ids start again at 1."""
        self.frame_id = 0
        self._next_id = 1
        self._mean = np.zeros((0, 8))
        self._cov = np.zeros((0, 3, 4))
        self._ids = np.zeros((0,), np.int64)
        self._state = np.zeros((0,), np.int8)
        self._confirmed = np.zeros((0,), bool)
        self._last = np.zeros((0,), np.int64)    # frame of the latest match
        self._start = np.zeros((0,), np.int64)   # frame the track started

    def __len__(self) -> int:
        """Tracks alive (tracked, unconfirmed or lost)."""
        return len(self._ids)

    def update(self, det: Detections) -> Detections:
        """Associate one frame's detections; return those of confirmed tracks with `track_ids`."""
        self.frame_id += 1
        frame = self.frame_id
        boxes = np.asarray(det.boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(det.scores, np.float64)
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        high = (valid & (scores >= self.track_high_thresh)).nonzero()[0]
        low = (valid & (scores > self.track_low_thresh)
               & (scores < self.track_high_thresh)).nonzero()[0]

        state = self._state
        tracked = state == TRACKED
        pool = ((tracked & self._confirmed) | (state == LOST)).nonzero()[0]
        unconfirmed = (tracked & ~self._confirmed).nonzero()[0]
        if len(pool):  # lost tracks keep moving but stop growing or shrinking
            mean = self._mean[pool]
            mean[state[pool] == LOST, 7] = 0.0
            self._mean[pool], self._cov[pool] = kalman_predict(mean, self._cov[pool])
        # IoU of every track with every detection it may meet, once; columns: high, low
        cand = np.concatenate([high, low])
        col = np.zeros(len(boxes), np.int64)
        col[cand] = np.arange(len(cand))
        iou = iou_matrix(_xyxy(self._mean), boxes[cand])
        det_of = np.full(len(self._ids), -1, np.int64)  # detection matched this frame

        # 1: confirmed and lost tracks with the high detections
        t, d = _associate(iou, pool, col, scores, high, self.match_thresh, self.fuse_score)
        det_of[pool[t]] = high[d]
        high = _without(high, d)
        # 2: tracks tracked until now, still unmatched, with the low detections (IoU only)
        second = pool[(det_of[pool] < 0) & (state[pool] == TRACKED)]
        if len(low):
            t, d = _associate(iou, second, col, scores, low, LOW_MATCH_THRESH, False)
            det_of[second[t]] = low[d]
            second = _without(second, t)
        # 3: tracks born last frame with the high detections left
        t, d = _associate(iou, unconfirmed, col, scores, high, UNCONFIRMED_MATCH_THRESH,
                          self.fuse_score)
        det_of[unconfirmed[t]] = high[d]
        born = _without(high, d)
        born = born[scores[born] >= self.new_track_thresh]

        matched = (det_of >= 0).nonzero()[0]
        if len(matched):
            self._mean[matched], self._cov[matched] = kalman_correct(
                self._mean[matched], self._cov[matched], _xyah(boxes[det_of[matched]]))
            state[matched] = TRACKED
            self._confirmed[matched] = True
            self._last[matched] = frame
        state[second] = LOST  # tracked until now, unmatched in both stages
        # unconfirmed tracks left unmatched are dropped, lost ones once the buffer ran out
        keep = (det_of >= 0) | ((state == LOST) & (frame - self._last <= self.max_time_lost + 1))
        if not keep.all():
            self._keep(keep)
            det_of = det_of[keep]
        if len(born):
            det_of = np.concatenate([det_of, born])
            self._add(_xyah(boxes[born]), frame)
        det_of = self._drop_duplicates(det_of)

        out = ((self._state == TRACKED) & self._confirmed).nonzero()[0]
        out = out[np.argsort(det_of[out], kind='stable')]
        idx = det_of[out]
        return det.select(idx, track_ids=self._ids[out])

    # ---- steps ------------------------------------------------------------------------------
    def _add(self, z: np.ndarray, frame: int) -> None:
        """Start one track per measurement (xyah), with the next ids."""
        n = len(z)
        mean, cov = kalman_initiate(z)
        self._mean = np.concatenate([self._mean, mean])
        self._cov = np.concatenate([self._cov, cov])
        self._ids = np.concatenate([self._ids, np.arange(self._next_id, self._next_id + n)])
        self._next_id += n
        self._state = np.concatenate([self._state, np.full(n, TRACKED, np.int8)])
        self._confirmed = np.concatenate([self._confirmed, np.full(n, frame == 1)])
        self._last = np.concatenate([self._last, np.full(n, frame, np.int64)])
        self._start = np.concatenate([self._start, np.full(n, frame, np.int64)])

    def _keep(self, keep: np.ndarray) -> None:
        if keep.all():
            return
        self._mean, self._cov, self._ids = self._mean[keep], self._cov[keep], self._ids[keep]
        self._state, self._confirmed = self._state[keep], self._confirmed[keep]
        self._last, self._start = self._last[keep], self._start[keep]

    def _drop_duplicates(self, det_of: np.ndarray) -> np.ndarray:
        """Drop the younger of a tracked and a lost track on one object; return det_of kept."""
        tracked = (self._state == TRACKED).nonzero()[0]
        lost = (self._state == LOST).nonzero()[0]
        if not len(tracked) or not len(lost):
            return det_of
        boxes = _xyxy(self._mean)
        p, q = np.nonzero(1.0 - iou_matrix(boxes[tracked], boxes[lost]) < DUPLICATE_THRESH)
        if not len(p):
            return det_of
        age = self._last - self._start
        a, b = tracked[p], lost[q]
        keep = np.ones(len(self._ids), bool)
        keep[np.where(age[a] > age[b], b, a)] = False
        self._keep(keep)
        return det_of[keep]
