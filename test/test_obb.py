"""Oriented boxes (YOLO11-obb) against ultralytics' own OBB predictor, and in a real ROS graph.

The model is ultralytics' yolo11n-obb yaml build (15 DOTAv1 classes, random conditioned
weights, angles spread over [-pi/4, 3pi/4)); the golden results are OBBPredictor's preprocess /
postprocess (non_max_suppression(rotated=True): fast NMS on batch_probiou; scale_boxes xywh)
around the same ONNX file (scripts/make_golden.py). Here the adapter runs in the real ONNX
Runtime backend; the node test publishes a real frame to a real detector node.
"""
from __future__ import annotations

import math

from faster_deployment_ros.backends import create_backend
from faster_deployment_ros.core.nms import probiou, rotated_nms
from faster_deployment_ros.core.obb import obb_corners, obb_iou, obb_to_xyxy, regularize_obb
from faster_deployment_ros.core.types import Detections, TensorSpec
from faster_deployment_ros.models import create_adapter
from faster_deployment_ros.models.detect_family import detect_family
from faster_deployment_ros.models.obb import ObbAdapter, ultralytics_rotated_nms
from faster_deployment_ros.ros.detection_msgs import bbox_fields, draw_detections
import numpy as np
import pytest
from support.edge_assets import rbox_errors
from support.golden import golden_frames, load_golden, model_path

NAME = 'yolo11n-obb'


@pytest.fixture(scope='module')
def case():
    golden, info = load_golden(NAME)
    backend = create_backend('onnxruntime', str(model_path(NAME)), threads=2)
    adapter = create_adapter('auto', backend.inputs, backend.outputs, backend.metadata)
    frames = golden_frames(info)
    outputs = {}
    for key, img in frames.items():
        inputs, meta = adapter.preprocess(img)
        outputs[key] = (inputs, meta, backend.infer(inputs))
    yield golden, info, backend, adapter, outputs
    backend.close()


def assert_obb_equal(det: Detections, obb: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                     what: str) -> None:
    """One-to-one: same class, centre and size within 1 px, angle within 1e-3 rad, score 1e-3."""
    assert len(det) == len(scores), f'{what}: {len(det)} detections, reference {len(scores)}'
    assert len(scores) > 0, f'{what}: the reference has no detections: the case proves nothing'
    err = rbox_errors(det.obb, obb)
    ok = ((det.class_ids[:, None] == classes[None]) & (err[..., 0] <= 1.0)
          & (err[..., 1] <= 1.0) & (err[..., 2] <= 1e-3)
          & (np.abs(det.scores[:, None] - scores[None]) <= 1e-3))
    used = np.zeros(len(det), bool)
    for j in np.argsort(-scores, kind='stable'):
        cand = np.flatnonzero(ok[:, j] & ~used)
        assert cand.size, (f'{what}: reference box {j} (class {classes[j]}, score '
                           f'{scores[j]:.4f}, xywhr {np.round(obb[j], 3).tolist()}) has no match')
        used[cand[0]] = True


def test_matches_ultralytics_obb_predictor(case):
    golden, info, backend, adapter, outputs = case
    assert isinstance(adapter, ObbAdapter) and adapter.family == 'obb'
    checked, angles = 0, []
    for key, (inputs, meta, out) in outputs.items():
        np.testing.assert_allclose(inputs[0].astype(np.float64).sum(), golden[f'{key}/input_sum'],
                                   rtol=1e-6, err_msg=f'{key}: input tensor')
        for conf in info['det_confs']:
            tag = f'{key}@{conf}'
            a = create_adapter('obb', backend.inputs, backend.outputs, backend.metadata,
                               conf_threshold=conf)
            det = a.postprocess(out, meta)
            assert (np.diff(det.scores) <= 0).all()
            assert_obb_equal(det, golden[f'{tag}/xywhr'], golden[f'{tag}/scores'],
                             golden[f'{tag}/classes'], tag)
            # theta as the head gives it (ultralytics' Results.obb.xywhr, not regularised), and
            # boxes: the axis-aligned box around each (Results.obb.xyxy)
            assert ((det.obb[:, 4] >= -math.pi / 4 - 1e-6)
                    & (det.obb[:, 4] <= 3 * math.pi / 4 + 1e-6)).all()
            np.testing.assert_allclose(det.boxes, obb_to_xyxy(det.obb), atol=1e-3)
            checked += len(det)
            angles.append(det.obb[:, 4])
    assert checked >= 500
    # the conditioned angle branch spreads angles over the head's whole range
    angles = np.concatenate(angles)
    assert np.histogram(angles, bins=4, range=(-math.pi / 4, 3 * math.pi / 4))[0].min() > 20


def test_candidates_before_nms_match(case):
    golden, info, backend, adapter, outputs = case
    for key, (_, _, out) in outputs.items():
        for conf in (0.25, 0.05):
            a = create_adapter('obb', backend.inputs, backend.outputs, backend.metadata,
                               conf_threshold=conf)
            obb, scores, classes = a.decode(out)
            assert len(scores) == int(golden[f'{key}@{conf}/candidates']), f'{key}@{conf}'
            assert obb.shape == (len(scores), 5) and (scores > conf).all()
    # rotated NMS did suppress: fewer kept than candidates at the default threshold
    assert len(golden['dog@0.25/scores']) < int(golden['dog@0.25/candidates'])


def test_adapter_defaults_names_and_family(case):
    golden, info, backend, adapter, outputs = case
    assert (adapter.conf_threshold, adapter.nms_threshold, adapter.max_detections,
            adapter.max_nms) == (0.25, 0.7, 300, 30000)
    assert adapter.num_classes == 15 and adapter.class_names[:2] == ['plane', 'ship']
    assert adapter.decode_spec() is None  # no GPU rotated NMS: the CPU decodes
    family, reason = detect_family(backend.inputs, backend.outputs, backend.metadata)
    assert family == 'obb' and 'task obb' in reason
    # without the metadata the (1, 20, 8400) output reads as a 16-class detector: the task
    # metadata is what tells them apart
    meta = {k: v for k, v in backend.metadata.items() if k != 'task'}
    assert detect_family(backend.inputs, backend.outputs, meta)[0] == 'yolov8'
    # the detector family on this model fails at configure and names the right one
    with pytest.raises(ValueError, match='oriented-box .* set model_family: obb'):
        create_adapter('yolov8', backend.inputs, backend.outputs, backend.metadata)
    with pytest.raises(ValueError, match='end-to-end'):
        ObbAdapter(backend.inputs, backend.outputs, {**backend.metadata, 'end2end': 'True'})
    with pytest.raises(ValueError, match='no class scores'):
        ObbAdapter([TensorSpec('images', (1, 3, 640, 640))],
                   [TensorSpec('output0', (1, 5, 8400))], {})


def test_empty_frame_has_obb_field():
    spec_in = [TensorSpec('images', (1, 3, 640, 640))]
    a = ObbAdapter(spec_in, [TensorSpec('output0', (1, 20, 8400))], {})
    x, meta = a.preprocess(np.zeros((360, 480, 3), np.uint8))
    det = a.postprocess([np.zeros((1, 20, 8400), np.float32)], meta)
    assert len(det) == 0 and det.obb.shape == (0, 5)
    # the transposed (1, N, 4 + nc + 1) layout decodes too
    t = ObbAdapter(spec_in, [TensorSpec('output0', (1, 8400, 20))], {})
    raw = np.zeros((1, 20, 8400), np.float32)
    raw[0, :4, 7] = (320, 320, 100, 40)
    raw[0, 4 + 3, 7] = 0.9
    raw[0, 19, 7] = 0.5
    d1 = a.postprocess([raw], meta)
    d2 = t.postprocess([raw.transpose(0, 2, 1).copy()], meta)
    assert len(d1) == len(d2) == 1 and d1.class_ids[0] == 3
    np.testing.assert_array_equal(d1.obb, d2.obb)
    assert d1.obb[0, 4] == pytest.approx(0.5)


# --- rotated NMS and box geometry ---------------------------------------------------------------

def random_obb(rng, n, spread=640.0):
    return np.concatenate([rng.uniform(0, spread, (n, 2)), rng.uniform(2, 300, (n, 2)),
                           rng.uniform(-math.pi / 4, 3 * math.pi / 4, (n, 1))], 1)


def test_probiou_symmetric_and_one_for_the_same_rectangle():
    rng = np.random.default_rng(0)
    b = random_obb(rng, 60).astype(np.float32)
    m = probiou(b, b)
    np.testing.assert_allclose(m, m.T, atol=1e-6)
    assert np.diag(m).min() > 0.999 and ((m >= 0) & (m <= 1)).all()
    # every description of one rectangle: (w, h, t), (w, h, t + pi), (h, w, t + pi/2)
    same = b.copy()
    same[:, 4] += math.pi
    swapped = b[:, [0, 1, 3, 2, 4]].copy()
    swapped[:, 4] += math.pi / 2
    for other in (same, swapped, regularize_obb(b)):
        # the same up to rounding: float64 shows it; float32 (ultralytics' precision) rounds
        # the covariance of thin boxes enough to move probiou in the second decimal
        assert np.diag(probiou(b, other, dtype=np.float64)).min() > 0.999
        assert np.diag(probiou(b, other)).min() > 0.98
        np.testing.assert_allclose(obb_iou(b[:5], other[:5]).diagonal(), 1.0, atol=1e-4)
    # a square turned by 90 degrees is itself; turned by 45 it is not
    sq = np.array([[100, 100, 50, 50, 0.0]])
    assert probiou(sq, sq + [0, 0, 0, 0, math.pi / 2])[0, 0] > 0.999
    # a square and its 45-degree turn share a regular octagon: IoU 1 / sqrt(2)
    assert obb_iou(sq, sq + [0, 0, 0, 0, math.pi / 4])[0, 0] == pytest.approx(
        1 / math.sqrt(2), rel=1e-4)
    # a 100x20 bar and the same bar turned by 90 degrees overlap little
    bar = np.array([[100, 100, 100, 20, 0.3]])
    turned = bar + [0, 0, 0, 0, math.pi / 2]
    assert probiou(bar, turned)[0, 0] < 0.5
    assert obb_iou(bar, turned)[0, 0] == pytest.approx(400 / (4000 - 400), rel=1e-3)


def test_rotated_nms_cases():
    box = np.array([200, 200, 120, 40, 0.4], np.float32)
    far = np.array([500, 500, 120, 40, 0.4], np.float32)
    swapped = np.array([200, 200, 40, 120, 0.4 + math.pi / 2], np.float32)  # the same rectangle
    boxes = np.stack([box, far, box, swapped])
    scores = np.array([0.5, 0.6, 0.9, 0.7], np.float32)
    # the best copy stays; its duplicate and its swapped description go; the far box stays
    assert rotated_nms(boxes, scores, 0.7).tolist() == [2, 1]
    # other classes never suppress each other (the class offset on the centre)
    kept = ultralytics_rotated_nms(boxes, scores, np.array([0, 0, 1, 0]), 0.7)
    assert kept.tolist() == [2, 3, 1]
    assert ultralytics_rotated_nms(boxes, scores, np.array([0, 0, 1, 0]), 0.7,
                                   agnostic=True).tolist() == [2, 1]
    # Fast NMS: a box suppressed by an already suppressed box is dropped too (greedy NMS would
    # keep c, which only b overlaps)
    a_ = [100, 100, 100, 40, 0.0]
    b_ = [114, 100, 100, 40, 0.0]
    c_ = [128, 100, 100, 40, 0.0]
    chain = np.array([a_, b_, c_], np.float32)
    iou = probiou(chain, chain)
    assert iou[0, 1] > 0.7 and iou[1, 2] > 0.7 and iou[0, 2] <= 0.7
    assert rotated_nms(chain, np.array([0.9, 0.8, 0.7]), 0.7).tolist() == [0]
    assert rotated_nms(np.zeros((0, 5)), np.zeros(0), 0.7).tolist() == []


@pytest.mark.parametrize('seed,classes,thr', [
    (0, 1, 0.7), (1, 15, 0.7), (2, 3, 0.3), (3, 1, 0.95), (4, 15, 0.0)])
def test_rotated_nms_pruning_changes_nothing(seed, classes, thr):
    """The pairs skipped by the distance bound could not have suppressed: same as brute force."""
    rng = np.random.default_rng(seed)
    n = 700
    b = random_obb(rng, n).astype(np.float32)
    b[rng.integers(0, n, 20), 2:4] = rng.uniform(0, 0.01, (20, 2))  # degenerate boxes too
    cls = rng.integers(0, classes, n)
    b[:, :2] += (cls * 7680.0).astype(np.float32)[:, None]
    scores = rng.uniform(0, 1, n).astype(np.float32)
    order = np.argsort(-scores, kind='stable')
    iou = np.triu(probiou(b[order], b[order]), 1)
    brute = order[~(iou > np.float32(thr)).any(0)]
    np.testing.assert_array_equal(rotated_nms(b, scores, thr, block=128), brute)


def test_corners_and_enclosing_box():
    obb = np.array([[50, 40, 20, 10, 0.0], [50, 40, 20, 10, math.pi / 2]])
    c = obb_corners(obb)
    np.testing.assert_allclose(c[0], [[60, 45], [60, 35], [40, 35], [40, 45]], atol=1e-9)
    np.testing.assert_allclose(obb_to_xyxy(obb), [[40, 35, 60, 45], [45, 30, 55, 50]],
                               atol=1e-9)
    r = regularize_obb(np.array([[0, 0, 20, 10, 2.0], [0, 0, 20, 10, -0.5]]))
    np.testing.assert_allclose(r, [[0, 0, 10, 20, 2.0 - math.pi / 2],
                                   [0, 0, 10, 20, -0.5 + math.pi / 2]], atol=1e-9)


def test_debug_drawing_is_rotated():
    img = np.zeros((200, 200, 3), np.uint8)
    obb = np.array([[100, 100, 120, 30, math.pi / 4]], np.float32)
    det = Detections(obb_to_xyxy(obb).astype(np.float32), np.array([0.9], np.float32),
                     np.array([1]), ['plane', 'ship'], obb=obb)  # class 0 draws black
    drawn = draw_detections(img, det).any(2)
    plain = draw_detections(img, Detections(det.boxes, det.scores, det.class_ids,
                                            det.class_names)).any(2)
    # the middle of an edge of the turned rectangle is inked ...
    edge = obb_corners(obb)[0][:2].mean(0).round().astype(int)
    assert drawn[edge[1], edge[0]] and not plain[edge[1], edge[0]]
    # ... and the middle of the enclosing box's left side, 22 px off the rectangle, is not
    x1 = int(det.boxes[0, 0])
    assert plain[100, x1] and not drawn[100, x1]


# --- the node -----------------------------------------------------------------------------------

@pytest.mark.ros
def test_node_publishes_oriented_boxes_as_decoded(ros, dog_image_path):
    """Run a real detector node on the obb model.

    Its Detection2DArray carries theta and own-frame sizes exactly as the adapter decodes them,
    and its debug image draws the rotated rectangles.
    """
    import cv2
    from faster_deployment_ros.core.image_codec import msg_to_numpy
    from faster_deployment_ros.ros.detector_node import DetectorNode
    from sensor_msgs.msg import Image
    from support.node_harness import harnesses, image_msg
    from vision_msgs.msg import Detection2DArray

    path = model_path(NAME)
    frame = cv2.imread(str(dog_image_path))
    backend = create_backend('onnxruntime', str(path), threads=2)
    try:
        adapter = create_adapter('auto', backend.inputs, backend.outputs, backend.metadata)
        inputs, meta = adapter.preprocess(frame)
        want = adapter.postprocess(backend.infer(inputs), meta)
    finally:
        backend.close()
    params = {'model_path': str(path), 'threads': 2, 'publish_debug_image': True}
    with harnesses(DetectorNode, params, 'obb_test_peer', inputs={'image': (Image, 'image')},
                   outputs={'detections': (Detection2DArray, 'detections'),
                            'debug': (Image, 'debug_image')}) as make:
        h = make()
        h.start()
        assert h.node.adapter.family == 'obb'
        h.pubs['image'].publish(image_msg(frame, 42_000_000_000, 'aerial'))
        got = h.wait_count(h.got['detections'], 1)
        debug = h.wait_count(h.got['debug'], 1)
    assert got and debug, 'the node published no detections / debug image'
    msg = got[0]
    assert msg.header.frame_id == 'aerial' and msg.header.stamp.sec == 42
    assert len(msg.detections) == len(want) > 100
    fields = np.array([[d.bbox.center.position.x, d.bbox.center.position.y,
                        d.bbox.center.theta, d.bbox.size_x, d.bbox.size_y]
                       for d in msg.detections])
    np.testing.assert_allclose(fields, bbox_fields(want), atol=1e-3)
    assert [d.results[0].hypothesis.class_id for d in msg.detections] == want.names()
    assert (np.abs(fields[:, 2]) > 0.05).mean() > 0.8  # oriented, not axis-aligned boxes
    assert (fields[:, 3] != fields[:, 4]).all()
    image = msg_to_numpy(debug[0])
    expected = draw_detections(frame, want)
    plain = draw_detections(frame, Detections(want.boxes, want.scores, want.class_ids,
                                              want.class_names))
    differ = (image != expected).any(2).mean()
    assert differ < 0.002, f'{differ:.4f} of the debug image differs from the rotated drawing'
    assert (image != plain).any(2).mean() > 10 * max(differ, 1e-3)
