"""Semantic segmentation adapter against torchvision's own forward, and its encodings.

Golden results (scripts/make_golden.py): torchvision's LR-ASPP MobileNetV3-Large forward in
torch on the letterboxed (or stretched) frame, the padding cropped off the logits, then
F.interpolate(bilinear, align_corners=False) to the source size, argmax and softmax. The adapter
runs the same network in ONNX Runtime; its mask must equal torch's on >= 99.9 % of pixels.
"""
from __future__ import annotations

import time

import cv2
from faster_deployment_ros.backends import create_backend
from faster_deployment_ros.core.types import NO_CLASS, SegmentationMap, TensorSpec
from faster_deployment_ros.models import create_adapter
from faster_deployment_ros.models import semantic_seg
from faster_deployment_ros.models.detect_family import detect_family
from faster_deployment_ros.models.semantic_seg import SemanticSegAdapter
from faster_deployment_ros.runtime import ParameterError, table
from faster_deployment_ros.runtime.tasks import SegmentationTask
import numpy as np
import pytest
from support.golden import golden_frames, load_golden, model_path

MODEL = 'lraspp_mobilenet_v3_large'


@pytest.fixture(scope='module')
def backend():
    b = create_backend('onnxruntime', str(model_path(MODEL)), threads=2)
    yield b
    b.close()


@pytest.fixture(scope='module')
def results(backend):
    golden, info = load_golden(MODEL)
    frames = golden_frames(info)
    out = {}
    for mode in ('letterbox', 'stretch'):
        adapter = create_adapter('auto', backend.inputs, backend.outputs, backend.metadata,
                                 resize_mode=mode)
        for key, img in frames.items():
            tag = key if mode == 'letterbox' else f'{key}/{mode}'
            if f'{tag}/mask' not in golden:
                continue
            inputs, meta = adapter.preprocess(img)
            out[tag] = adapter.postprocess(backend.infer(inputs), meta), img
    return golden, info, out


def test_mask_equals_torchvision_on_999_per_mille_of_pixels(results):
    golden, _, out = results
    assert set(out) == {k.rsplit('/', 1)[0] for k in golden if k.endswith('/mask')}
    for tag, (seg, img) in out.items():
        want = golden[f'{tag}/mask']
        assert seg.mask.shape == img.shape[:2] == want.shape and seg.mask.dtype == np.uint8
        agree = float((seg.mask == want).mean())
        present = int((np.bincount(want.ravel(), minlength=21) > 0).sum())
        print(f'{tag} {img.shape[1]}x{img.shape[0]}: mask equal on {agree * 100:.4f} % of '
              f'pixels ({present} classes in the reference)')
        assert present >= 10, 'the test model must give a varied map, not one class'
        assert agree >= 0.999, f'{tag}: only {agree * 100:.3f} % of pixels agree'


def test_confidence_is_the_argmax_probability_within_one_step(results):
    golden, info, out = results
    step = info['seg_conf_step']
    for tag, (seg, _) in out.items():
        want = golden[f'{tag}/confidence'].astype(np.int16)
        got = seg.confidence[::step, ::step].astype(np.int16)
        diff = np.abs(got - want)
        print(f'{tag}: confidence |ours - torch| max {diff.max()} steps of 1/255, equal on '
              f'{(diff == 0).mean() * 100:.2f} % of sampled pixels')
        assert seg.confidence.dtype == np.uint8
        assert diff.max() <= 1


def brute_force(logits: np.ndarray, top: int, left: int, ch: int, cw: int, scale: float,
                out_hw) -> tuple:
    """Every class plane resized (float64, half-pixel, clamped to the content), then argmax."""
    def axis(n_out, start, length, n_in):
        pos = (start + (np.arange(n_out) + 0.5) * length / n_out) * scale - 0.5
        lo, last = start * scale, min(int(np.floor((start + length) * scale - 1)), n_in - 1)
        pos = np.clip(pos, max(lo, 0), last)
        i0 = np.floor(pos).astype(int)
        return i0, np.minimum(i0 + 1, last), pos - i0
    y0, y1, fy = axis(out_hw[0], top, ch, logits.shape[1])
    x0, x1, fx = axis(out_hw[1], left, cw, logits.shape[2])
    lg = logits.astype(np.float64)
    rows = lg[:, y0] * (1 - fy)[None, :, None] + lg[:, y1] * fy[None, :, None]
    up = rows[:, :, x0] * (1 - fx) + rows[:, :, x1] * fx
    p = np.exp(up - up.max(0))
    p /= p.sum(0)
    return up.argmax(0), p.max(0)


@pytest.mark.parametrize('dense_above', [0.0, 1.1], ids=['every-plane', 'hard-pixels-only'])
@pytest.mark.parametrize('stride', [1, 4])
def test_exact_class_against_every_plane_resized(stride, dense_above, monkeypatch):
    """Smooth random logits, letterboxed content, outputs at input resolution and at 1/4.

    Both ways segment() computes the exact values: every class plane resized (when most pixels
    need it) and only the pixels that need it.
    """
    monkeypatch.setattr(semantic_seg, 'DENSE_ABOVE', dense_above)
    rng = np.random.default_rng(stride)
    net_h, net_w, classes = 96, 160, 7
    oh, ow = net_h // stride, net_w // stride
    low = rng.normal(0, 3, (classes, oh // 4 + 2, ow // 4 + 2)).astype(np.float32)
    logits = np.stack([cv2.resize(p, (ow, oh), interpolation=cv2.INTER_CUBIC) for p in low])
    inputs = [TensorSpec('image', (1, 3, net_h, net_w))]
    outputs = [TensorSpec('logits', (1, classes, oh, ow))]
    adapter = SemanticSegAdapter(inputs, outputs, {})
    frame = np.zeros((150, 200, 3), np.uint8)  # 4:3 into 96x160: content 96x128, left pad 16
    _, meta = adapter.preprocess(frame)
    assert (meta.top, meta.left, meta.content_h, meta.content_w) == (0, 16, 96, 128)
    seg = adapter.postprocess([logits[None]], meta)
    want_mask, want_p = brute_force(logits, meta.top, meta.left, meta.content_h,
                                    meta.content_w, 1.0 / stride, frame.shape[:2])
    assert (seg.mask == want_mask).mean() >= 0.9999
    assert np.abs(seg.confidence.astype(int) - np.rint(want_p * 255)).max() <= 1


def test_confidence_encoding_and_min_confidence():
    """Probability x 255 rounded; below min_confidence the class is 255 (none)."""
    inputs = [TensorSpec('image', (1, 3, 32, 32))]
    outputs = [TensorSpec('logits', (1, 3, 32, 32))]
    adapter = SemanticSegAdapter(inputs, outputs, {}, class_names=['a', 'b', 'c'])
    logits = np.zeros((1, 3, 32, 32), np.float32)
    logits[0, 1, :, :16] = np.log(8.0)   # left: p(b) = 8 / 10 = 0.8 -> 204
    logits[0, 2, :, 16:] = np.log(0.5)   # right: a ties b at 1, c 0.5: p = 0.4 -> 102, class 0
    _, meta = adapter.preprocess(np.zeros((32, 32, 3), np.uint8))
    seg = adapter.postprocess([logits], meta)
    assert isinstance(seg, SegmentationMap) and seg.class_names == ['a', 'b', 'c']
    assert (seg.mask[:, :15] == 1).all() and (seg.mask[:, 17:] == 0).all()
    assert (seg.confidence[:, :15] == 204).all() and (seg.confidence[:, 17:] == 102).all()
    adapter.set_thresholds(min_confidence=0.5)
    seg = adapter.postprocess([logits], meta)
    assert (seg.mask[:, :15] == 1).all() and (seg.mask[:, 17:] == NO_CLASS).all()
    assert (seg.confidence[:, 17:] == 102).all()  # the confidence stays what it was
    with pytest.raises(ValueError, match='min_confidence'):
        adapter.set_thresholds(min_confidence=1.5)


def test_more_classes_than_a_mono8_mask_holds_is_refused():
    with pytest.raises(ValueError, match='mono8'):
        SemanticSegAdapter([TensorSpec('image', (1, 3, 64, 64))],
                           [TensorSpec('logits', (1, 300, 64, 64))], {})


@pytest.mark.parametrize('out_shape,family', [
    ((1, 21, 384, 640), 'semantic_seg'),      # logits at the input resolution
    ((1, 19, 96, 160), 'semantic_seg'),       # 1/4 (SegFormer-style heads)
    ((1, 1, 384, 640), 'depth'),              # one channel: depth
    ((1, 384, 640), 'depth'),
])
def test_family_detection_tells_segmentation_from_depth(out_shape, family):
    inputs = [TensorSpec('image', (1, 3, 384, 640))]
    got, reason = detect_family(inputs, [TensorSpec('out', out_shape)])
    assert got == family, reason


def test_family_detection_refuses_a_map_of_another_aspect_as_segmentation():
    inputs = [TensorSpec('image', (1, 3, 384, 640))]
    try:
        family, _ = detect_family(inputs, [TensorSpec('out', (1, 21, 100, 100))])
    except ValueError:
        return
    assert family != 'semantic_seg'


def test_the_built_model_is_detected_and_a_depth_model_is_refused(backend):
    assert detect_family(backend.inputs, backend.outputs, backend.metadata)[0] == 'semantic_seg'
    values = {n: p.default for n, p in table('segmentation').items()}
    task = SegmentationTask(values, log=lambda _m: None)
    adapter = task.make_adapter('auto', str(model_path(MODEL)), backend, None)
    assert adapter.task == 'segmentation' and adapter.num_classes == 21
    assert adapter.class_names[15] == 'person'  # the model's metadata names
    with create_backend('onnxruntime', str(model_path('midas_small_style'))) as depth:
        with pytest.raises(ParameterError, match='depth_node'):
            task.make_adapter('auto', 'midas.onnx', depth, None)


def test_cost_per_720p_frame(backend, results):
    """Pre, inference and post of one 1280x720 frame (printed; the figure the README quotes)."""
    _, _, out = results
    img = out['plaza30'][1]
    adapter = create_adapter('semantic_seg', backend.inputs, backend.outputs, backend.metadata)
    times = {'pre': [], 'infer': [], 'post': []}
    for _ in range(5):
        t0 = time.perf_counter()
        inputs, meta = adapter.preprocess(img)
        t1 = time.perf_counter()
        raw = backend.infer(inputs)
        t2 = time.perf_counter()
        adapter.postprocess(raw, meta)
        t3 = time.perf_counter()
        times['pre'].append(1e3 * (t1 - t0))
        times['infer'].append(1e3 * (t2 - t1))
        times['post'].append(1e3 * (t3 - t2))
    print('1280x720 frame, median of 5: ' + ', '.join(f'{k} {np.median(v):.1f} ms'
                                                      for k, v in times.items()))
    assert np.median(times['post']) < 1000.0
