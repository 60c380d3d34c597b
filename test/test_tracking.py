"""core.tracking.ByteTracker on synthetic motion, with the ids each frame must carry.

Boxes move at constant velocity (with their order shuffled every frame, so an id follows its box,
not its position in the list), cross each other, vanish for a few frames, drop to a low score;
the assignment is checked against an exhaustive search and the Kalman filter against the
textbook 8x8 equations.
"""
from __future__ import annotations

import itertools
from typing import Dict, List, Tuple

from faster_deployment_ros.core.tracking import (ByteTracker, iou_matrix, kalman_correct,
                                                 kalman_initiate, kalman_predict,
                                                 linear_assignment)
from faster_deployment_ros.core.types import Detections
import numpy as np
import pytest

#: name -> (start centre x, y, velocity x, y, width, height)
Walker = Tuple[float, float, float, float, float, float]


def box(walker: Walker, t: int) -> List[float]:
    x, y, vx, vy, w, h = walker
    cx, cy = x + vx * t, y + vy * t
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def frame(objects: Dict[str, Tuple[List[float], float]], rng) -> Tuple[Detections, List[str]]:
    """Return detections of `objects` (name -> (box, score)) in a random order, and that order."""
    names = list(objects)
    rng.shuffle(names)
    boxes = np.array([objects[n][0] for n in names], np.float32).reshape(-1, 4)
    scores = np.array([objects[n][1] for n in names], np.float32)
    return Detections(boxes, scores, np.zeros(len(names), np.int64), ['person']), names


def run(tracker: ByteTracker, frames, seed: int = 0) -> List[Dict[str, int]]:
    """Track `frames` (each name -> (box, score)); return per frame {name: published id}."""
    rng = np.random.default_rng(seed)
    got = []
    for objects in frames:
        det, names = frame(objects, rng)
        out = tracker.update(det)
        assert out.track_ids is not None and out.track_ids.dtype == np.int64
        # each published detection is one of the inputs, unchanged, in input order
        rows = [int(np.flatnonzero((det.boxes == b).all(1))[0]) for b in out.boxes]
        assert rows == sorted(rows)
        assert np.array_equal(out.scores, det.scores[rows])
        assert len(set(out.track_ids.tolist())) == len(out)  # one id per object
        got.append({names[r]: int(i) for r, i in zip(rows, out.track_ids.tolist())})
    return got


WALKERS: Dict[str, Walker] = {
    'a': (100, 300, 6, 0, 40, 100),
    'b': (400, 200, -4, 3, 50, 120),
    'c': (900, 500, 0, -5, 30, 80),
}


def test_constant_velocity_boxes_keep_their_ids():
    frames = [{n: (box(w, t), 0.9) for n, w in WALKERS.items()} for t in range(60)]
    got = run(ByteTracker(30.0), frames)
    # born in the first frame: confirmed at once; ids count from 1 in detection order
    first = got[0]
    assert sorted(first.values()) == [1, 2, 3]
    assert all(g == first for g in got)


def test_new_object_is_published_from_its_second_frame_with_the_next_id():
    frames = []
    for t in range(12):
        objects = {'a': (box(WALKERS['a'], t), 0.9)}
        if t >= 5:
            objects['b'] = (box(WALKERS['b'], t), 0.8)
        if t == 3:  # a one-frame false positive: starts a track (id 2) never confirmed
            objects['ghost'] = ([1000, 50, 1040, 90], 0.7)
        frames.append(objects)
    got = run(ByteTracker(30.0), frames)
    assert got[:5] == [{'a': 1}] * 5
    assert got[5] == {'a': 1}  # b unconfirmed in its first frame
    assert got[6:] == [{'a': 1, 'b': 3}] * 6


def test_crossing_boxes_keep_their_ids():
    # two people walking towards each other on nearly one line, overlapping for several frames
    left: Walker = (200, 300, 8, 0, 40, 100)
    right: Walker = (600, 306, -8, 0, 40, 100)
    frames = [{'left': (box(left, t), 0.9), 'right': (box(right, t), 0.85)} for t in range(50)]
    got = run(ByteTracker(30.0), frames)
    ids = got[0]
    assert set(ids.values()) == {1, 2}
    assert all(g == ids for g in got)
    overlap = iou_matrix(np.array([box(left, 25)]), np.array([box(right, 25)]))[0, 0]
    assert overlap > 0.7  # they do overlap on the way


def test_occluded_object_is_found_again_under_its_id():
    # b vanishes for 8 frames (a lost track keeps moving with its velocity) and comes back
    frames = []
    for t in range(40):
        objects = {'a': (box(WALKERS['a'], t), 0.9)}
        if not 15 <= t < 23:
            objects['b'] = (box(WALKERS['b'], t), 0.9)
        frames.append(objects)
    got = run(ByteTracker(30.0), frames)
    assert all(g == {'a': 1, 'b': 2} for i, g in enumerate(got) if not 15 <= i < 23)
    assert all(g == {'a': 1} for g in got[15:23])


@pytest.mark.parametrize('gap, same_id', [(5, True), (6, True), (7, False), (20, False)])
def test_lost_track_is_kept_for_the_buffer_scaled_by_the_frame_rate(gap, same_id):
    # track_buffer 10 frames at 30 Hz at 15 Hz: 5 frames, plus the one the reference keeps
    b: Walker = (400, 200, 0, 0, 50, 120)  # standing still: only the buffer decides
    frames = [{'a': (box(WALKERS['a'], t), 0.9)} for t in range(40)]
    for t, objects in enumerate(frames):
        if not 10 <= t < 10 + gap:
            objects['b'] = (box(b, t), 0.9)
    tracker = ByteTracker(15.0, track_buffer=10)
    assert tracker.max_time_lost == 5
    got = run(tracker, frames)
    back = 10 + gap
    if same_id:
        assert got[back] == {'a': 1, 'b': 2}
    else:
        assert got[back] == {'a': 1}            # a new track: unconfirmed for a frame
        assert got[back + 1] == {'a': 1, 'b': 3}


def test_low_score_detection_continues_a_track_but_never_starts_one():
    frames = []
    for t in range(30):
        score_b = 0.15 if 10 <= t < 20 else 0.9  # partly hidden: the detector is unsure
        objects = {'a': (box(WALKERS['a'], t), 0.9), 'b': (box(WALKERS['b'], t), score_b)}
        if t >= 5:  # a low-score object from the start: never a track
            objects['faint'] = (box(WALKERS['c'], t), 0.2)
        frames.append(objects)
    got = run(ByteTracker(30.0), frames)
    assert all(g == {'a': 1, 'b': 2} for g in got)
    # without the second (low-score) stage b would be lost and then found again:
    without = run(ByteTracker(30.0, track_low_thresh=0.5, track_high_thresh=0.5), frames)
    assert all(g == {'a': 1} for g in without[10:20])
    # detections under track_low_thresh are ignored altogether
    faint_only = [{'x': (box(WALKERS['c'], t), 0.05)} for t in range(5)]
    assert run(ByteTracker(30.0), faint_only) == [{}] * 5


def test_class_is_ignored_and_degenerate_boxes_are_skipped():
    tracker = ByteTracker(30.0)
    boxes = np.array([[10, 10, 50, 90], [200, 200, 200, 260]], np.float32)  # second: zero width
    for t, cls in enumerate([0, 3, 3]):
        det = Detections(boxes + [t, 0, t, 0], np.array([0.9, 0.9], np.float32),
                         np.array([cls, cls], np.int64), ['a', 'b', 'c', 'd'])
        out = tracker.update(det)
        assert out.track_ids.tolist() == [1] and out.class_ids.tolist() == [cls]
        assert out.class_names == det.class_names


def test_reset_starts_the_ids_again():
    tracker = ByteTracker(30.0)
    frames = [{n: (box(w, t), 0.9) for n, w in WALKERS.items()} for t in range(5)]
    first = run(tracker, frames, seed=1)
    assert len(tracker) == 3 and sorted(first[-1].values()) == [1, 2, 3]
    tracker.reset()
    assert len(tracker) == 0 and tracker.frame_id == 0
    assert run(tracker, frames, seed=1) == first  # as new: ids from 1 again


def test_empty_frames():
    tracker = ByteTracker(30.0)
    out = tracker.update(Detections.empty(['person']))
    assert len(out) == 0 and out.track_ids.shape == (0,) and out.boxes.shape == (0, 4)
    frames = [{'a': (box(WALKERS['a'], t), 0.9)} if t != 2 else {} for t in range(5)]
    # born after the first frame: unconfirmed once; lost in the empty frame, then found again
    assert run(tracker, frames) == [{}, {'a': 1}, {}, {'a': 1}, {'a': 1}]


def test_bad_settings_are_refused_with_the_rule():
    with pytest.raises(ValueError, match='0 <= low <= high <= 1'):
        ByteTracker(30.0, track_low_thresh=0.6, track_high_thresh=0.5)
    with pytest.raises(ValueError, match='track_buffer'):
        ByteTracker(30.0, track_buffer=-1)


# ---------------------------------------------------------------------------- the parts
def brute_force(cost: np.ndarray, thresh: float) -> float:
    """Least total cost of a partial matching, thresh / 2 per unmatched row and column."""
    n, m = cost.shape
    best = thresh / 2 * (n + m)
    for k in range(1, min(n, m) + 1):
        for rows in itertools.combinations(range(n), k):
            for cols in itertools.permutations(range(m), k):
                c = cost[rows, cols].sum() + thresh / 2 * (n + m - 2 * k)
                best = min(best, c)
    return best


@pytest.mark.parametrize('seed', range(40))
def test_assignment_is_the_optimal_capped_matching(seed):
    rng = np.random.default_rng(seed)
    n, m = rng.integers(0, 6, 2)
    cost = rng.random((n, m))
    cost[rng.random((n, m)) < 0.4] = 1.0  # sparse, as IoU costs are
    thresh = 0.8
    rows, cols = linear_assignment(cost, thresh)
    assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
    assert list(rows) == sorted(rows) and (cost[rows, cols] < thresh).all()
    total = cost[rows, cols].sum() + thresh / 2 * (n + m - 2 * len(rows))
    assert total == pytest.approx(brute_force(cost, thresh), abs=1e-12)


def test_assignment_prefers_the_global_optimum_over_greedy():
    # greedy would give row 0 its best column 0 (0.1) and row 1 nothing (its only column is 0)
    cost = np.array([[0.1, 0.3], [0.2, 1.0]])
    rows, cols = linear_assignment(cost, 0.8)
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]


def test_kalman_blocks_are_the_8x8_filter():
    """The 2x2-block covariance equals the textbook filter with 8x8 matrices, step by step."""
    wp, wv = 1 / 20, 1 / 160
    f = np.eye(8)
    f[:4, 4:] = np.eye(4)
    hmat = np.eye(4, 8)
    rng = np.random.default_rng(0)
    z = np.array([[300.0, 200.0, 0.4, 120.0]])
    mean, cov = kalman_initiate(z)
    h = z[0, 3]
    ref_m = np.r_[z[0], np.zeros(4)]
    ref_p = np.diag(np.square([2 * wp * h, 2 * wp * h, 1e-2, 2 * wp * h,
                               10 * wv * h, 10 * wv * h, 1e-5, 10 * wv * h]))
    for step in range(25):
        h = ref_m[3]
        q = np.diag(np.square([wp * h, wp * h, 1e-2, wp * h, wv * h, wv * h, 1e-5, wv * h]))
        ref_m, ref_p = f @ ref_m, f @ ref_p @ f.T + q
        mean, cov = kalman_predict(mean, cov)
        if step % 4 != 3:  # some frames without a measurement
            meas = ref_m[:4] + rng.normal(0, [3, 3, 0.01, 2])
            h = ref_m[3]
            s = hmat @ ref_p @ hmat.T + np.diag(np.square([wp * h, wp * h, 1e-1, wp * h]))
            k = ref_p @ hmat.T @ np.linalg.inv(s)
            ref_m = ref_m + k @ (meas - hmat @ ref_m)
            ref_p = ref_p - k @ s @ k.T
            mean, cov = kalman_correct(mean, cov, meas[None])
        np.testing.assert_allclose(mean[0], ref_m, rtol=1e-9, atol=1e-9)
        blocks = np.array([[ref_p[i, i], ref_p[i, i + 4], ref_p[i + 4, i + 4]] for i in range(4)])
        np.testing.assert_allclose(cov[0], blocks.T, rtol=1e-9, atol=1e-12)
        off = ref_p.copy()
        for i in range(4):
            off[i, i] = off[i, i + 4] = off[i + 4, i] = off[i + 4, i + 4] = 0.0
        assert not off.any()  # no other entry ever becomes non-zero
