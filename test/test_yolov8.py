"""YOLOv8 / YOLO11 adapter against ultralytics' own predictor, on real frames and real graphs.

The models are ultralytics' yolov8n / yolo11n yaml builds (random, conditioned weights); the
golden results are DetectionPredictor.preprocess/postprocess around the same ONNX file
(scripts/make_golden.py). Here the adapter runs through the real ONNX Runtime backend.
"""
from __future__ import annotations

import dataclasses

from faster_deployment_ros.backends import create_backend
from faster_deployment_ros.core.letterbox import letterbox_geometry
from faster_deployment_ros.models import create_adapter
from faster_deployment_ros.models.yolov8 import anchor_count, Yolov8Adapter
import numpy as np
import pytest
from support.golden import assert_detections_equal, golden_frames, load_golden, model_path

MODELS = ('yolov8n', 'yolo11n', 'yolo26n')  # yolo26n: the NMS-free (end2end) 1x300x6 export
FAMILY = {'yolov8n': 'yolov8', 'yolo11n': 'yolo11', 'yolo26n': 'yolo26'}


@pytest.fixture(scope='module', params=MODELS)
def case(request):
    name = request.param
    golden, info = load_golden(name)
    backend = create_backend('onnxruntime', str(model_path(name)), threads=2)
    outputs = {}
    adapter = create_adapter(FAMILY[name], backend.inputs, backend.outputs, backend.metadata)
    frames = golden_frames(info)
    for key, img in frames.items():
        inputs, meta = adapter.preprocess(img)
        outputs[key] = (inputs, meta, backend.infer(inputs))
    yield name, golden, info, backend, frames, outputs
    backend.close()


def test_matches_ultralytics_predictor(case):
    name, golden, info, backend, frames, outputs = case
    checked = 0
    for key in frames:
        inputs, meta, out = outputs[key]
        # Pre-processing: the same tensor as LetterBox + BGR->RGB + /255 (sum over 1.2M values).
        np.testing.assert_allclose(inputs[0].astype(np.float64).sum(), golden[f'{key}/input_sum'],
                                   rtol=1e-6, err_msg=f'{name} {key}: input tensor')
        for conf in info['det_confs']:
            adapter = create_adapter('yolov8', backend.inputs, backend.outputs, backend.metadata,
                                     conf_threshold=conf, nms_threshold=0.7)
            tag = f'{key}@{conf}'
            det = adapter.postprocess(out, meta)
            assert (np.diff(det.scores) <= 0).all()  # NMS / top-k keep by descending score
            assert_detections_equal(det, golden[f'{tag}/boxes'], golden[f'{tag}/scores'],
                                    golden[f'{tag}/classes'], f'{name} {tag}')
            checked += len(det)
    assert checked >= 100


def test_candidates_before_nms_match(case):
    """The raw decode (threshold on the best class score, no objectness) before NMS."""
    name, golden, info, backend, frames, outputs = case
    if name == 'yolo26n':
        pytest.skip('the NMS-free export has no pre-NMS candidates')
    for key in frames:
        for conf in (0.25, 0.05):
            adapter = create_adapter('yolov8', backend.inputs, backend.outputs, backend.metadata,
                                     conf_threshold=conf)
            boxes, scores, class_ids = adapter.decode(outputs[key][2])
            assert len(scores) == int(golden[f'{key}@{conf}/candidates']), f'{name} {key}@{conf}'
            assert (scores > conf).all() and boxes.shape == (len(scores), 4)
            assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()


def test_defaults_are_ultralytics(case):
    name, golden, info, backend, frames, outputs = case
    adapter = create_adapter('yolov8', backend.inputs, backend.outputs, backend.metadata)
    assert (adapter.conf_threshold, adapter.nms_threshold, adapter.max_detections,
            adapter.max_nms) == (0.25, 0.7, 300, 30000)
    assert adapter.input_size == (640, 640) and adapter.num_classes == 80
    assert adapter.num_anchors == anchor_count((640, 640)) == 8400
    # Names come from ultralytics' metadata (a Python dict literal).
    assert backend.metadata['names'].startswith('{0: ')
    assert adapter.class_names[:3] == ['person', 'bicycle', 'car']
    assert len(adapter.class_names) == 80
    named = create_adapter('yolov8', backend.inputs, backend.outputs, backend.metadata,
                           class_names=[f'c{i}' for i in range(80)])
    assert named.class_names[5] == 'c5'
    with pytest.raises(ValueError, match='80 classes'):
        create_adapter('yolov8', backend.inputs, backend.outputs, backend.metadata,
                       class_names=['a', 'b'])


def test_max_detections_and_agnostic(case):
    name, golden, info, backend, frames, outputs = case
    out, meta = outputs['dog'][2], outputs['dog'][1]
    full = create_adapter('yolov8', backend.inputs, backend.outputs, backend.metadata,
                          conf_threshold=0.05).postprocess(out, meta)
    capped = create_adapter('yolov8', backend.inputs, backend.outputs, backend.metadata,
                            conf_threshold=0.05, max_detections=10).postprocess(out, meta)
    assert len(full) > 10 and len(capped) == 10
    np.testing.assert_array_equal(capped.boxes, full.boxes[:10])  # the 10 best, same order
    if name == 'yolo26n':
        assert adapter_end2end(backend)
        return
    aware, agnostic = (
        create_adapter('yolov8', backend.inputs, backend.outputs, backend.metadata,
                       max_detections=10000, class_agnostic=a).postprocess(out, meta)
        for a in (False, True))
    assert 0 < len(agnostic) < len(aware)  # boxes of other classes now suppress each other


def adapter_end2end(backend) -> bool:
    a = create_adapter('auto', backend.inputs, backend.outputs, backend.metadata)
    return isinstance(a, Yolov8Adapter) and a.end2end


def test_transposed_output_layout(case):
    """Some exporters write (1, N, 4 + nc); the adapter reads it the same way."""
    name, golden, info, backend, frames, outputs = case
    if name == 'yolo26n':
        pytest.skip('only for the (1, 4 + nc, N) head')
    spec = backend.outputs[0]
    t_spec = dataclasses.replace(spec, shape=(1, spec.shape[2], spec.shape[1]))
    adapter = Yolov8Adapter(backend.inputs, [t_spec], backend.metadata)
    plain = create_adapter('yolov8', backend.inputs, backend.outputs, backend.metadata)
    assert adapter.transposed and not plain.transposed
    out, meta = outputs['plaza30'][2], outputs['plaza30'][1]
    a = adapter.postprocess([out[0].transpose(0, 2, 1)], meta)
    b = plain.postprocess(out, meta)
    assert len(a) == len(b) > 0
    np.testing.assert_array_equal(a.boxes, b.boxes)


def test_boxes_use_ultralytics_per_axis_gain(case):
    """scale_boxes divides by new_w / src_w and new_h / src_h of the rounded resize."""
    name, golden, info, backend, frames, outputs = case
    _, meta, _ = outputs['dog']
    _, new_w, new_h, left, top = letterbox_geometry((meta.src_h, meta.src_w), (640, 640),
                                                    center=True, rounding='round')
    assert (left, top) == (meta.pad_x, meta.pad_y)
    assert (new_w, new_h) == (640, 480) and (meta.pad_x, meta.pad_y) == (0, 80)


def test_rejects_mismatched_model():
    from faster_deployment_ros.core.types import TensorSpec
    inp = [TensorSpec('images', (1, 3, 640, 640))]
    with pytest.raises(ValueError, match='anchors'):
        Yolov8Adapter(inp, [TensorSpec('output0', (1, 84, 1000))], {})
    with pytest.raises(ValueError, match='dynamic'):
        Yolov8Adapter([TensorSpec('images', (1, 3, 'h', 'w'))],
                      [TensorSpec('o', (1, 84, 'n'))], {})
    dyn = Yolov8Adapter([TensorSpec('images', (1, 3, 'h', 'w'))], [TensorSpec('o', (1, 84, 'n'))],
                        {}, input_size=320)
    assert dyn.input_size == (320, 320) and dyn.num_anchors == anchor_count((320, 320))
