"""Instance masks (core/masks.py) against ultralytics' own mask processing, on real frames.

The models are ultralytics' yolov8n-seg / yolo11n-seg yaml builds (random, conditioned weights,
scripts/build_test_models.py); the golden results are SegmentationPredictor's preprocess /
postprocess with `retina_masks=True` around the same ONNX file (scripts/make_golden.py). Here the
adapter runs through the real ONNX Runtime backend and every stored instance mask must match
ultralytics' with IoU >= 0.99.
"""
from __future__ import annotations

import tracemalloc

from faster_deployment_ros.backends import create_backend
from faster_deployment_ros.core.masks import InstanceMasks, NO_CLASS
from faster_deployment_ros.core.types import Detections, TensorSpec
from faster_deployment_ros.models import create_adapter
from faster_deployment_ros.models.detect_family import detect_family
import numpy as np
import pytest
from support.golden import assert_detections_equal, golden_frames, load_golden, MODELS
from support.shared_data import missing

SEG_MODELS = ('yolov8n-seg', 'yolo11n-seg')
MIN_IOU = 0.99
seen_ious = []  # every instance compared, for the summary test


def seg_model(name: str):
    path = MODELS / f'{name}.onnx'
    if not path.exists():
        missing(f'{path} not built: run `bash scripts/test_assets.d/20_test_models.sh`')
    return path


@pytest.fixture(scope='module', params=SEG_MODELS)
def case(request):
    name = request.param
    path = seg_model(name)
    golden, info = load_golden(name)
    backend = create_backend('onnxruntime', str(path), threads=2)
    adapter = create_adapter('auto', backend.inputs, backend.outputs, backend.metadata)
    results = {}
    for key, img in golden_frames(info).items():
        inputs, meta = adapter.preprocess(img)
        results[key] = (img, inputs, adapter.postprocess(backend.infer(inputs), meta))
    yield name, golden, info, adapter, results
    backend.close()


def unpack(golden: dict, tag: str, hw):
    """Return the stored golden masks: {detection index: H x W bool}."""
    rects, bits = golden[f'{tag}/mask_rects'], golden[f'{tag}/mask_bits']
    out, pos = {}, 0
    for i, (y0, y1, x0, x1) in zip(golden[f'{tag}/mask_index'].tolist(), rects.tolist()):
        m = np.zeros(hw, bool)
        n = (y1 - y0) * (x1 - x0)
        if n:
            nbytes = (n + 7) // 8
            flat = np.unpackbits(bits[pos:pos + nbytes])[:n]
            m[y0:y1, x0:x1] = flat.reshape(y1 - y0, x1 - x0)
            pos += nbytes
        out[i] = m
    assert pos == bits.size
    return out


def pair(det: Detections, box, score, cls) -> int:
    """Return our detection for a reference one: same class, box within 1 px, score 1e-3."""
    ok = ((det.class_ids == cls) & (np.abs(det.boxes - box).max(1) <= 1.0)
          & (np.abs(det.scores - score) <= 1e-3))
    cand = np.flatnonzero(ok)
    assert cand.size, f'no detection pairs with the reference box {np.round(box, 1).tolist()}'
    return int(cand[np.argmin(np.abs(det.boxes[cand] - box).sum(1))])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def test_auto_recognises_the_seg_head(case):
    name, golden, info, adapter, results = case
    assert adapter.family == 'yolov8' and adapter.num_masks == 32 and adapter.num_classes == 80
    assert adapter.decode_spec() is None  # the GPU decode would drop the mask coefficients


def test_detections_and_masks_match_ultralytics(case):
    name, golden, info, adapter, results = case
    compared = 0
    for key, (img, inputs, det) in results.items():
        np.testing.assert_allclose(inputs[0].astype(np.float64).sum(),
                                   golden[f'{key}/input_sum'], rtol=1e-6)
        tag = f'{key}@0.25'
        assert isinstance(det.masks, InstanceMasks) and len(det.masks) == len(det)
        # ultralytics drops detections whose mask is empty; we keep them (module doc)
        nonempty = np.array([det.masks.crop(i)[2].any() for i in range(len(det))], bool)
        assert_detections_equal(det.select(nonempty), golden[f'{tag}/boxes'],
                                golden[f'{tag}/scores'], golden[f'{tag}/classes'],
                                f'{name} {tag}')
        for j, ref in unpack(golden, tag, img.shape[:2]).items():
            i = pair(det, golden[f'{tag}/boxes'][j], golden[f'{tag}/scores'][j],
                     golden[f'{tag}/classes'][j])
            mine = det.masks.full_mask(i)
            assert ref.any() and not ref.all()
            score = iou(mine, ref)
            seen_ious.append(score)
            assert score >= MIN_IOU, f'{name} {tag} instance {j}: IoU {score:.4f}'
            compared += 1
    assert compared >= 12


def test_masks_are_partial_and_inside_the_boxes(case):
    """The conditioned models give masks with pixels in and out of each box (not trivial)."""
    name, golden, info, adapter, results = case
    fills = []
    for img, _, det in results.values():
        for i in range(min(len(det), 30)):
            y0, x0, m = det.masks.crop(i)
            x1, y1 = det.boxes[i, 2], det.boxes[i, 3]
            assert x0 >= det.boxes[i, 0] and x0 + m.shape[1] <= np.ceil(x1) + 1e-3
            assert y0 >= det.boxes[i, 1] and y0 + m.shape[0] <= np.ceil(y1) + 1e-3
            fills.append(m.mean() if m.size else 0.0)
    fills = np.array(fills)
    assert ((fills > 0.05) & (fills < 0.95)).mean() > 0.7, np.round(fills, 2)


def test_min_iou_summary():
    """Min IoU over every instance compared above (printed with -s; asserted per instance)."""
    if not seen_ious:
        pytest.skip('no instance compared (the model tests did not run)')
    print(f'\ninstance masks vs ultralytics retina_masks: {len(seen_ious)} instances, '
          f'min IoU {min(seen_ious):.5f}, mean {np.mean(seen_ious):.5f}')
    assert min(seen_ious) >= MIN_IOU


# ---- the images -------------------------------------------------------------------------
def square(y0, x0, n, fill=True):
    return y0, x0, np.full((n, n), fill, bool)


def test_render_rules():
    # 0: low score class 3, 1: high score class 5 overlapping it, 2: equal score to 1, class 7
    masks = InstanceMasks([square(0, 0, 4), square(2, 2, 4), square(2, 5, 3)], (8, 10))
    scores = np.array([0.3, 0.9, 0.9], np.float32)
    out = masks.render(scores, np.array([3, 5, 7]), instance=True, semantic=True,
                       confidence=True)
    inst, sem, conf = out['instance'], out['semantic'], out['confidence']
    assert inst.dtype == np.uint8 and inst.shape == (8, 10)
    assert inst[0, 0] == 1 and inst[3, 3] == 2  # overlap: the higher score wins
    assert inst[3, 5] == 2  # equal scores: the lower index wins
    assert inst[7, 9] == 0 and sem[7, 9] == NO_CLASS and conf[7, 9] == 0
    assert sem[0, 0] == 3 and sem[3, 3] == 5 and sem[3, 7] == 7
    assert conf[0, 0] == round(0.3 * 255) and conf[3, 3] == round(0.9 * 255)
    # each pixel's semantic / confidence values belong to the instance the instance image shows
    shown = inst > 0
    np.testing.assert_array_equal(sem[shown], np.array([3, 5, 7])[inst[shown] - 1])
    np.testing.assert_array_equal(conf[shown], np.rint(scores * 255)[inst[shown] - 1])
    assert set(masks.render(scores)) == {'instance'}


def test_render_mono16_and_limits():
    n = 300
    masks = InstanceMasks([square(i // 20, i % 20, 1) for i in range(n)], (20, 20))
    inst = masks.render(np.linspace(1, 0.3, n))['instance']
    assert inst.dtype == np.uint16 and inst.max() == n  # more than 254 detections
    assert masks.select(np.arange(254)).render(np.ones(254))['instance'].dtype == np.uint8
    with pytest.raises(ValueError, match='semantic'):
        masks.select([0]).render(np.ones(1), np.array([255]), semantic=True)
    with pytest.raises(ValueError, match='scores'):
        masks.render(np.ones(3))
    empty = InstanceMasks((), (4, 6)).render(np.zeros(0), np.zeros(0), semantic=True,
                                             confidence=True)
    assert not empty['instance'].any() and (empty['semantic'] == NO_CLASS).all()


def random_prototype_masks(n: int, hw=(720, 1280), seed: int = 0):
    rng = np.random.default_rng(seed)
    protos = rng.standard_normal((32, 160, 160)).astype(np.float32)
    h, w = hw
    x1 = rng.uniform(0, w * 0.5, n)
    y1 = rng.uniform(0, h * 0.5, n)
    boxes = np.stack([x1, y1, np.minimum(x1 + rng.uniform(5, w, n), w),
                      np.minimum(y1 + rng.uniform(5, h, n), h)], 1).astype(np.float32)
    return InstanceMasks.from_prototypes(rng.standard_normal((n, 32)), protos, boxes, hw), boxes


def test_select_keeps_masks_aligned():
    masks, boxes = random_prototype_masks(12, (120, 200))
    det = Detections(boxes, np.linspace(0.9, 0.3, 12).astype(np.float32),
                     np.arange(12, dtype=np.int64) % 4, [], masks=masks)
    for index in (det.class_ids == 1, np.array([7, 2, 11])):
        sub = det.select(index)
        picked = np.flatnonzero(index) if index.dtype == bool else index
        assert len(sub.masks) == len(sub) == len(picked)
        for k, i in enumerate(picked.tolist()):
            np.testing.assert_array_equal(sub.masks.full_mask(k), masks.full_mask(i))
            np.testing.assert_array_equal(sub.boxes[k], boxes[i])
    explicit = InstanceMasks([masks.crop(i) for i in range(12)], (120, 200))
    np.testing.assert_array_equal(explicit.select([5, 1]).full_mask(1), masks.full_mask(1))


def test_memory_is_bounded_by_the_boxes_not_n_frames():
    """100 large instances at 720p: far below the 92 MB an N x H x W stack would take."""
    n, (h, w) = 100, (720, 1280)
    masks, boxes = random_prototype_masks(n, (h, w))
    det_scores = np.linspace(0.9, 0.3, n)
    tracemalloc.start()
    try:
        out = masks.render(det_scores, np.arange(n) % 80, instance=True, semantic=True,
                           confidence=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert areas.sum() > 10 * h * w  # the instances together cover the frame many times
    # the three images (3 B/px) + one box's working set (two float32 planes, masks: ~10 B/px)
    assert peak < 14 * h * w, f'peak {peak / 1e6:.1f} MB'
    assert out['instance'].max() > 0


def test_detect_family_seg_signatures():
    img = [TensorSpec('images', (1, 3, 640, 640))]
    proto = TensorSpec('output1', (1, 32, 160, 160))
    fam, why = detect_family(img, [TensorSpec('output0', (1, 116, 8400)), proto],
                             {'names': str({i: str(i) for i in range(80)})})
    assert fam == 'yolov8' and 'instance segmentation' in why and '80 class + 32 mask' in why
    fam, why = detect_family(img, [TensorSpec('output0', (1, 8400, 116)), proto])
    assert fam == 'yolov8' and 'instance segmentation' in why
    # a detect export stays a detector; prototypes at another resolution are not a seg head
    fam, why = detect_family(img, [TensorSpec('output0', (1, 84, 8400))])
    assert fam == 'yolov8' and 'segmentation' not in why
    fam, why = detect_family(img, [TensorSpec('output0', (1, 116, 8400)),
                                   TensorSpec('output1', (1, 32, 80, 80))])
    assert 'segmentation' not in why
