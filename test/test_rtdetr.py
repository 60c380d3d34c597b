"""RT-DETR adapter against the references, for the three export layouts, on real frames.

One RT-DETR-L network (ultralytics' rtdetr-l.yaml, random conditioned weights) behind three I/O
signatures: ultralytics 8.4's export (1x300x6), ultralytics<8.4's (1x300x84), and the original
RT-DETR deploy export (images + orig_target_sizes -> labels, boxes, scores). Golden results:
RTDETRPredictor's own pre/post-processing, 8.3's postprocess, the original deploy flow
(scripts/make_golden.py).
"""
from __future__ import annotations

from faster_deployment_ros.backends import create_backend
from faster_deployment_ros.core.types import TensorSpec
from faster_deployment_ros.models import create_adapter
from faster_deployment_ros.models.rtdetr import rtdetr_layout, RtdetrAdapter
import numpy as np
import pytest
from support.golden import assert_detections_equal, golden_frames, load_golden, model_path

LAYOUT = {'rtdetr-l': 'ultralytics', 'rtdetr-l-legacy': 'ultralytics_legacy',
          'rtdetr-l-orig': 'original'}


@pytest.fixture(scope='module', params=sorted(LAYOUT))
def case(request):
    name = request.param
    golden, info = load_golden(name)
    backend = create_backend('onnxruntime', str(model_path(name)), threads=2)
    adapter = create_adapter('rtdetr', backend.inputs, backend.outputs, backend.metadata)
    frames = golden_frames(info)
    outputs = {}
    for key, img in frames.items():
        inputs, meta = adapter.preprocess(img)
        outputs[key] = (inputs, meta, backend.infer(inputs))
    yield name, golden, info, backend, adapter, frames, outputs
    backend.close()


def test_matches_reference(case):
    name, golden, info, backend, adapter, frames, outputs = case
    assert adapter.layout == LAYOUT[name], adapter.layout_reason
    checked = 0
    for key in frames:
        _, meta, out = outputs[key]
        for conf in info['det_confs']:
            tag = f'{key}@{conf}'
            ad = create_adapter('rtdetr', backend.inputs, backend.outputs, backend.metadata,
                                conf_threshold=conf, clip_boxes=False)
            det = ad.postprocess(out, meta)
            ref = golden[f'{tag}/boxes']
            assert_detections_equal(det, ref, golden[f'{tag}/scores'], golden[f'{tag}/classes'],
                                    f'{name} {tag}', threshold=conf)
            # Clipped (the default) is the reference's boxes clipped to the frame.
            clipped = create_adapter('rtdetr', backend.inputs, backend.outputs, backend.metadata,
                                     conf_threshold=conf).postprocess(out, meta)
            h, w = frames[key].shape[:2]
            expect = np.stack([ref[:, 0].clip(0, w), ref[:, 1].clip(0, h), ref[:, 2].clip(0, w),
                               ref[:, 3].clip(0, h)], 1)
            assert_detections_equal(clipped, expect, golden[f'{tag}/scores'],
                                    golden[f'{tag}/classes'], f'{name} {tag} clipped',
                                    threshold=conf)
            checked += len(det)
    assert checked >= 50


def test_input_feeds(case):
    name, golden, info, backend, adapter, frames, outputs = case
    inputs, meta, _ = outputs['plaza30']
    assert (meta.src_w, meta.src_h) == (1280, 720)
    image = inputs[[i.name for i in backend.inputs].index('images')]
    assert image.shape == (1, 3, 640, 640) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    if LAYOUT[name] == 'original':
        sizes = inputs[[i.name for i in backend.inputs].index('orig_target_sizes')]
        assert sizes.dtype == np.int64 and sizes.tolist() == [[1280, 720]]
    else:
        assert len(inputs) == 1


def test_no_nms_and_class_names(case):
    """Overlapping boxes of one class stay: the decoder's queries are the detections."""
    name, golden, info, backend, adapter, frames, outputs = case
    _, meta, out = outputs['dog']
    det = create_adapter('rtdetr', backend.inputs, backend.outputs, backend.metadata,
                         conf_threshold=0.0, nms_threshold=0.1).postprocess(out, meta)
    assert len(det) == 300  # every query / top-k entry, whatever nms_threshold says
    assert adapter.class_names[:2] == ['person', 'bicycle'] and len(adapter.class_names) == 80
    capped = create_adapter('rtdetr', backend.inputs, backend.outputs, backend.metadata,
                            conf_threshold=0.0, max_detections=7).postprocess(out, meta)
    np.testing.assert_array_equal(capped.boxes, det.boxes[:7])


def test_layout_rules():
    img = [TensorSpec('images', (1, 3, 640, 640))]
    assert rtdetr_layout(img, [TensorSpec('output0', (1, 300, 6))], {})[0] == 'ultralytics'
    assert rtdetr_layout(img, [TensorSpec('output0', (1, 300, 84))], {})[0] == 'ultralytics_legacy'
    # A two-class legacy model also has 6 channels: metadata names decide.
    two = {'names': "{0: 'a', 1: 'b'}"}
    assert rtdetr_layout(img, [TensorSpec('output0', (1, 300, 6))], two)[0] == 'ultralytics_legacy'
    orig = img + [TensorSpec('orig_target_sizes', (1, 2), np.dtype(np.int64))]
    outs = [TensorSpec('labels', (1, 300)), TensorSpec('boxes', (1, 300, 4)),
            TensorSpec('scores', (1, 300))]
    assert rtdetr_layout(orig, outs, {})[0] == 'original'
    with pytest.raises(ValueError):
        RtdetrAdapter(img, [TensorSpec('output0', (1, 300, 6))], {}, layout='nonsense')
    with pytest.raises(TypeError, match='unexpected'):
        RtdetrAdapter(img, [TensorSpec('output0', (1, 300, 6))], {}, iou=0.5)
