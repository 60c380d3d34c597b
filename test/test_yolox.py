"""YOLOX adapter, letterbox and NMS against an independent plain reference, on real model and data.

The reference (test/support/yolox_reference.py) runs its own ONNX Runtime session on its own
pre-processed tensor, so preprocessing, decoding, scoring, NMS and the mapping back to source
pixels are all checked end to end.
"""
from __future__ import annotations

import threading

import cv2
from faster_deployment_ros.backends import create_backend, TensorSpec
from faster_deployment_ros.core.letterbox import (letterbox, LetterboxMeta, to_chw_tensor,
                                                  unletterbox_boxes)
from faster_deployment_ros.core.nms import batched_nms, greedy_nms, nms
from faster_deployment_ros.core.types import Detections
from faster_deployment_ros.models import create_adapter
from faster_deployment_ros.models.labels import COCO_CLASSES, parse_class_names
from faster_deployment_ros.models.yolox import YoloxAdapter
import numpy as np
import onnxruntime as ort
import pytest
from support import yolox_reference as ref

SIZE = (416, 416)
SHAPES = [(576, 768), (720, 1280), (360, 480), (481, 641), (1000, 333), (416, 416), (100, 101)]


# ---- shared letterbox / NMS ------------------------------------------------------------------
@pytest.mark.parametrize('shape', SHAPES)
def test_top_left_letterbox_matches_yolox_preproc(shape):
    img = np.random.default_rng(sum(shape)).integers(0, 256, shape + (3,), dtype=np.uint8)
    canvas, meta = letterbox(img, SIZE)
    tensor = to_chw_tensor(canvas)
    expected, ratio = ref.preproc(img, SIZE)
    np.testing.assert_array_equal(tensor, expected)
    assert tensor.flags.c_contiguous and tensor.dtype == np.float32
    assert meta == LetterboxMeta(ratio, 0.0, 0.0, shape[1], shape[0])


@pytest.mark.parametrize('shape', SHAPES)
def test_centred_letterbox_matches_ultralytics(shape):
    img = np.random.default_rng(sum(shape)).integers(0, 256, shape + (3,), dtype=np.uint8)
    out, meta = letterbox(img, (640, 640), center=True)
    expected, r, left, top = ref.letterbox_centered(img, (640, 640))
    np.testing.assert_array_equal(out, expected)
    assert (meta.scale, meta.pad_x, meta.pad_y) == (r, left, top)


def test_letterbox_reuses_buffer_and_checks_it():
    rng = np.random.default_rng(3)
    buf = np.zeros((416, 416, 3), np.uint8)
    for shape in [(720, 1280), (1000, 333), (360, 480)]:  # pads change side between frames
        img = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
        for center in (False, True):
            out, _ = letterbox(img, SIZE, center=center, out=buf)
            assert out is buf
            np.testing.assert_array_equal(buf, letterbox(img, SIZE, center=center)[0])
    with pytest.raises(ValueError, match='out buffer'):
        letterbox(img, SIZE, out=np.zeros((416, 416, 3), np.float32))
    grey, _ = letterbox(img[:, :, 0], (32, 32))
    assert grey.shape == (32, 32, 1)


def test_unletterbox_inverts_the_mapping():
    rng = np.random.default_rng(4)
    for center in (False, True):
        _, meta = letterbox(np.zeros((720, 1280, 3), np.uint8), (640, 640), center=center)
        src = np.sort(rng.uniform(0, 720, (50, 4)), axis=1).astype(np.float32)
        model = src * meta.scale + np.array([meta.pad_x, meta.pad_y] * 2)
        np.testing.assert_allclose(unletterbox_boxes(model, meta, clip=False), src, atol=1e-3)
    outside = np.array([[-30.0, -5.0, 700.0, 650.0]], np.float32)
    clipped = unletterbox_boxes(outside, meta)
    assert clipped.min() >= 0 and clipped[0, 2] <= 1280 and clipped[0, 3] <= 720


def test_to_chw_tensor_options():
    img = np.random.default_rng(5).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    t = to_chw_tensor(img, scale=1 / 255.0, swap_rb=True)
    np.testing.assert_allclose(t[0], img[:, :, ::-1].transpose(2, 0, 1) / np.float32(255),
                               rtol=1e-6)
    out = np.empty((1, 3, 8, 6), np.float16)
    assert to_chw_tensor(img, out=out) is out
    with pytest.raises(ValueError):
        to_chw_tensor(img, out=np.empty((1, 3, 6, 8), np.float32))


def _random_boxes(rng, n, span=400.0, max_wh=80.0):
    xy = rng.uniform(-20, span, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(0.5, max_wh, (n, 2))], 1).astype(np.float32)


@pytest.mark.parametrize('seed', range(12))
def test_nms_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 150))
    boxes = _random_boxes(rng, n, span=200.0)  # dense: plenty of suppression
    scores = rng.uniform(0, 1, n).astype(np.float32)
    if seed % 3 == 0:
        scores = np.round(scores, 1)  # ties, and zero scores (OpenCV cannot take those)
    thr = [0.3, 0.45, 0.65][seed % 3]
    expected = ref.greedy_nms(boxes.astype(np.float64), scores, thr)
    assert nms(boxes, scores, thr).tolist() == expected
    assert greedy_nms(boxes, scores, thr).tolist() == expected

    classes = rng.integers(0, 4, n)
    want = []
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        want += [int(idx[i]) for i in ref.greedy_nms(boxes[idx].astype(np.float64),
                                                     scores[idx], thr)]
    got = batched_nms(boxes, scores, classes, thr)
    assert sorted(got.tolist()) == sorted(want)
    assert np.all(np.diff(scores[got]) <= 0)  # by descending score


def test_nms_edge_cases():
    empty = np.zeros((0, 4), np.float32)
    assert nms(empty, np.zeros(0), 0.5).shape == (0,)
    assert batched_nms(empty, np.zeros(0), np.zeros(0, int), 0.5).shape == (0,)
    one = np.array([[0, 0, 10, 10]], np.float32)
    assert nms(one, np.array([0.0]), 0.5).tolist() == [0]
    same = np.repeat(one, 3, axis=0)
    assert nms(same, np.array([0.2, 0.9, 0.5]), 0.5).tolist() == [1]
    assert sorted(batched_nms(same, np.array([0.2, 0.9, 0.5]), np.array([0, 1, 0]), 0.5)) == [1, 2]


# ---- the adapter on the real model -----------------------------------------------------------
def _read_frames(path, indices):
    cap = cv2.VideoCapture(str(path))
    frames, i = {}, 0
    try:
        while i <= max(indices):
            ok, frame = cap.read()
            assert ok, f'{path} ended before frame {i}'
            if i in indices:
                frames[i] = frame
            i += 1
    finally:
        cap.release()
    return [frames[i] for i in indices]


@pytest.fixture(scope='module')
def images(dog_image_path, plaza_video, campus_video):
    out = {'dog': cv2.imread(str(dog_image_path))}
    for name, path in (('plaza', plaza_video), ('campus', campus_video)):
        for idx, frame in zip((0, 100, 300), _read_frames(path, (0, 100, 300))):
            out[f'{name}{idx}'] = frame
    return out


@pytest.fixture(scope='module')
def backend(yolox_model):
    with create_backend('onnxruntime', str(yolox_model), threads=1) as b:
        yield b


@pytest.fixture(scope='module')
def raw_outputs(yolox_model, images):
    """Return reference side: its own preprocessing and its own plain ONNX Runtime session."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    session = ort.InferenceSession(str(yolox_model), so, providers=['CPUExecutionProvider'])
    out = {}
    for name, img in images.items():
        tensor, ratio = ref.preproc(img, SIZE)
        out[name] = (session.run(None, {'images': tensor})[0][0], ratio)
    return out


def _run(adapter, backend, img):
    inputs, meta = adapter.preprocess(img)
    return adapter.postprocess(backend.infer(inputs), meta)


def _assert_matches(det, expected):
    boxes, scores, classes = expected
    assert isinstance(det, Detections)
    assert len(det) == len(scores)
    assert det.class_ids.tolist() == classes.tolist()
    np.testing.assert_allclose(det.scores, scores, atol=1e-3)
    np.testing.assert_allclose(det.boxes, boxes, atol=1.0)
    assert det.boxes.dtype == np.float32 and det.scores.dtype == np.float32
    assert det.class_ids.dtype == np.int64


def _assert_in_image(det, img):
    h, w = img.shape[:2]
    b = det.boxes
    assert np.all(b[:, 0] >= 0) and np.all(b[:, 1] >= 0)
    assert np.all(b[:, 2] <= w) and np.all(b[:, 3] <= h)
    assert np.all(b[:, 2] >= b[:, 0]) and np.all(b[:, 3] >= b[:, 1])


IMAGES = ['dog', 'plaza0', 'plaza100', 'plaza300', 'campus0', 'campus100', 'campus300']


@pytest.mark.parametrize('name', IMAGES)
def test_adapter_matches_reference_on_real_data(name, images, raw_outputs, backend):
    adapter = create_adapter('yolox', backend.inputs, backend.outputs, backend.metadata)
    img = images[name]
    det = _run(adapter, backend, img)
    raw, ratio = raw_outputs[name]
    _assert_matches(det, ref.postprocess(raw, SIZE, ratio, img.shape[:2], conf=0.3, nms_thr=0.45))
    _assert_in_image(det, img)
    assert len(det) > 0


@pytest.mark.parametrize('name,params', [
    ('plaza100', {'conf_threshold': 0.05, 'nms_threshold': 0.5}),
    ('dog', {'conf_threshold': 0.05, 'nms_threshold': 0.3, 'class_agnostic': True}),
    ('campus300', {'conf_threshold': 0.1, 'nms_threshold': 0.65, 'class_agnostic': True}),
])
def test_adapter_matches_reference_with_other_settings(name, params, images, raw_outputs, backend):
    adapter = YoloxAdapter(backend.inputs, backend.outputs, {}, **params)
    img = images[name]
    det = _run(adapter, backend, img)
    raw, ratio = raw_outputs[name]
    expected = ref.postprocess(raw, SIZE, ratio, img.shape[:2], conf=params['conf_threshold'],
                               nms_thr=params['nms_threshold'],
                               class_agnostic=params.get('class_agnostic', False))
    _assert_matches(det, expected)
    _assert_in_image(det, img)


def test_detections_make_sense(images, backend):
    adapter = create_adapter('yolox', backend.inputs, backend.outputs, backend.metadata)
    dog = _run(adapter, backend, images['dog'])
    names = dog.names()
    assert {'dog', 'bicycle'} <= set(names) and ({'truck', 'car'} & set(names))
    assert dog.class_names == list(COCO_CLASSES)
    # The dog is in the lower-left part of the 768x576 photo.
    x1, y1, x2, y2 = dog.boxes[names.index('dog')]
    assert x2 < 768 * 0.6 and y1 > 576 * 0.25
    for name in IMAGES[1:]:
        det = _run(adapter, backend, images[name])
        assert det.names().count('person') >= (5 if name.startswith('plaza') else 1), name
        assert np.all(np.diff(det.scores) <= 0)


def test_max_detections_keeps_the_best(images, backend):
    img = images['plaza100']
    full = _run(YoloxAdapter(backend.inputs, backend.outputs, {}, conf_threshold=0.05),
                backend, img)
    capped = _run(YoloxAdapter(backend.inputs, backend.outputs, {}, conf_threshold=0.05,
                               max_detections=5), backend, img)
    assert len(full) > 5 and len(capped) == 5
    np.testing.assert_array_equal(capped.scores, full.scores[:5])
    np.testing.assert_array_equal(capped.boxes, full.boxes[:5])


def test_decoded_exports(images, backend, raw_outputs):
    """A head that already decodes (decode_in_inference=True) gives the same detections."""
    img = images['dog']
    raw, ratio = raw_outputs['dog']
    decoded = ref.decode(raw, SIZE)[None]
    _, meta = letterbox(img, SIZE)
    expected = ref.postprocess(raw, SIZE, ratio, img.shape[:2])
    explicit = YoloxAdapter(backend.inputs, backend.outputs, {}, decoded=True)
    _assert_matches(explicit.postprocess([decoded], meta), expected)
    from_meta = YoloxAdapter(backend.inputs, backend.outputs, {'decode_in_inference': 'True'})
    assert from_meta.decoded
    _assert_matches(from_meta.postprocess([decoded], meta), expected)
    assert not YoloxAdapter(backend.inputs, backend.outputs, {}, decoded='auto').decoded


def test_dynamic_input_and_validation(images, backend):
    dyn_in = [TensorSpec('images', ('batch', 3, 'height', 'width'))]
    dyn_out = [TensorSpec('output', ('batch', 'anchors', 85))]
    with pytest.raises(ValueError, match='input_size'):
        YoloxAdapter(dyn_in, dyn_out, {})
    adapter = YoloxAdapter(dyn_in, dyn_out, {}, input_size='416,416')
    reference = YoloxAdapter(backend.inputs, backend.outputs, {})
    img = images['campus100']
    [x], meta = adapter.preprocess(img)
    assert x.shape == (1, 3, 416, 416)
    a, b = adapter.postprocess(backend.infer([x]), meta), _run(reference, backend, img)
    np.testing.assert_array_equal(a.boxes, b.boxes)

    p6 = YoloxAdapter(dyn_in, [TensorSpec('output', (1, 8400 + 100, 85))], {}, input_size=640)
    assert p6.strides == (8, 16, 32, 64)
    with pytest.raises(ValueError, match='does not match'):
        YoloxAdapter(backend.inputs, backend.outputs, {}, input_size=(640, 640))
    with pytest.raises(ValueError, match='anchors'):
        YoloxAdapter(backend.inputs, [TensorSpec('output', (1, 3000, 85))], {})
    with pytest.raises(ValueError, match='80 classes'):
        YoloxAdapter(backend.inputs, backend.outputs, {}, class_names=['a', 'b'])
    with pytest.raises(ValueError):
        YoloxAdapter(backend.inputs, backend.outputs, {}, conf_threshold=1.5)
    with pytest.raises(ValueError):
        reference.postprocess([np.zeros((1, 3549, 6), np.float32)], meta)

    two = [TensorSpec('output', (1, 3549, 7))]
    named = YoloxAdapter(backend.inputs, two, {'names': "{0: 'cone', 1: 'barrel'}"})
    assert named.class_names == ['cone', 'barrel']
    assert YoloxAdapter(backend.inputs, two, {}, class_names='a,b').class_names == ['a', 'b']
    assert YoloxAdapter(backend.inputs, two, {}).class_names == ['0', '1']
    assert parse_class_names('["x", "y"]') == ['x', 'y']
    assert parse_class_names({1: 'b'}) == ['0', 'b']


def test_empty_result_and_input_kinds(images, backend):
    adapter = YoloxAdapter(backend.inputs, backend.outputs, {})
    blank = np.full((240, 320, 3), 114, np.uint8)
    det = _run(adapter, backend, blank)
    assert len(det) == 0 and det.boxes.shape == (0, 4)
    img = images['plaza0']
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    [x_grey], _ = adapter.preprocess(grey)
    [x_bgr], _ = adapter.preprocess(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
    np.testing.assert_array_equal(x_grey, x_bgr)
    [x_bgra], _ = adapter.preprocess(cv2.cvtColor(img, cv2.COLOR_BGR2BGRA))
    np.testing.assert_array_equal(x_bgra, adapter.preprocess(img)[0][0])


def test_preprocess_is_thread_safe(images):
    adapter = YoloxAdapter([TensorSpec('images', (1, 3, 416, 416))],
                           [TensorSpec('output', (1, 3549, 85))], {})
    frames = [images[n] for n in IMAGES]
    expected = [adapter.preprocess(f)[0][0].copy() for f in frames]
    errors = []

    def work(order):
        held = []  # tensors are kept, like a pipeline queue would: none may change afterwards
        for _ in range(3):
            for i in order:
                held.append((i, adapter.preprocess(frames[i])[0][0]))
        for i, x in held:
            if not np.array_equal(x, expected[i]):
                errors.append(i)

    threads = [threading.Thread(target=work, args=(order,))
               for order in (range(len(frames)), range(len(frames) - 1, -1, -1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
