"""`model_family: auto`: the family inferred from real models' signatures, and refusals."""
from __future__ import annotations

import logging

from faster_deployment_ros.backends import create_backend
from faster_deployment_ros.core.types import TensorSpec
from faster_deployment_ros.models import create_adapter, resolve_family
from faster_deployment_ros.models.depth import DepthAdapter
from faster_deployment_ros.models.detect_family import detect_family
from faster_deployment_ros.models.rtdetr import RtdetrAdapter
from faster_deployment_ros.models.yolov8 import Yolov8Adapter
from faster_deployment_ros.models.yolox import YoloxAdapter
import numpy as np
import pytest
from support.golden import model_path

EXPECTED = {
    'yolov8n': ('yolov8', Yolov8Adapter),
    'yolo11n': ('yolov8', Yolov8Adapter),
    'yolo26n': ('yolov8', Yolov8Adapter),  # NMS-free export: metadata end2end
    'rtdetr-l': ('rtdetr', RtdetrAdapter),
    'rtdetr-l-legacy': ('rtdetr', RtdetrAdapter),
    'rtdetr-l-orig': ('rtdetr', RtdetrAdapter),
    'depth_anything_v2_vits': ('depth', DepthAdapter),
    'midas_small_style': ('depth', DepthAdapter),
}


def signature(path):
    with create_backend('onnxruntime', str(path)) as b:
        return b.inputs, b.outputs, b.metadata


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_built_models(name, caplog):
    inputs, outputs, metadata = signature(model_path(name))
    family, cls = EXPECTED[name]
    got, reason = detect_family(inputs, outputs, metadata)
    assert got == family, reason
    with caplog.at_level(logging.INFO, logger='faster_deployment_ros.models'):
        adapter = create_adapter('auto', inputs, outputs, metadata)
    assert isinstance(adapter, cls)
    assert f'auto -> {family}' in caplog.text
    if name == 'depth_anything_v2_vits':
        assert adapter.family == 'depth_anything_v2'
    if name == 'midas_small_style':
        assert adapter.family == 'midas'


def test_yolox_model(yolox_model):
    inputs, outputs, metadata = signature(yolox_model)
    family, reason = detect_family(inputs, outputs, metadata)
    assert family == 'yolox', reason
    assert isinstance(create_adapter('auto', inputs, outputs, metadata), YoloxAdapter)


def test_explicit_family_wins():
    inputs = [TensorSpec('images', (1, 3, 640, 640))]
    outputs = [TensorSpec('output0', (1, 84, 8400))]
    assert resolve_family('yolo11', inputs, outputs, {}) == ('yolo11', 'model_family parameter')
    assert resolve_family('auto', inputs, outputs, {})[0] == 'yolov8'


def spec(name, shape, dtype=np.float32):
    return TensorSpec(name, shape, np.dtype(dtype))


@pytest.mark.parametrize('inputs, outputs, metadata, family', [
    # YOLOX 416: 3549 anchors x (4 + obj + 80)
    ([spec('images', (1, 3, 416, 416))], [spec('output', (1, 3549, 85))], {}, 'yolox'),
    # YOLOv8 at 320, 3 classes
    ([spec('images', (1, 3, 320, 320))], [spec('output0', (1, 7, 2100))], {}, 'yolov8'),
    # transposed YOLOv8 output, names tell 4 + 80
    ([spec('images', (1, 3, 640, 640))], [spec('output0', (1, 8400, 84))],
     {'names': repr({i: str(i) for i in range(80)})}, 'yolov8'),
    # dynamic input, ultralytics imgsz metadata
    ([spec('images', (1, 3, 'h', 'w'))], [spec('output0', (1, 84, 'n'))], {'imgsz': '[640, 640]'},
     None),
    # end-to-end YOLO26 / YOLOv10
    ([spec('images', (1, 3, 640, 640))], [spec('output0', (1, 300, 6))], {'end2end': 'True'},
     'yolov8'),
    # RT-DETR, named by the ultralytics metadata head
    ([spec('images', (1, 3, 640, 640))], [spec('output0', (1, 300, 6))], {'head': 'RTDETRDecoder'},
     'rtdetr'),
    ([spec('images', (1, 3, 640, 640))], [spec('output0', (1, 300, 84))], {}, 'rtdetr'),
    ([spec('image', (1, 3, 'h', 'w'))], [spec('depth', (1, 'h', 'w'))], {}, 'depth'),
    ([spec('image', (1, 3, 384, 384))], [spec('depth', (1, 1, 384, 384))], {}, 'depth'),
])
def test_signature_rules(inputs, outputs, metadata, family):
    if family is None:  # (1, 84, n) with n unknown is still the channels-first head
        assert detect_family(inputs, outputs, metadata)[0] == 'yolov8'
    else:
        assert detect_family(inputs, outputs, metadata)[0] == family


@pytest.mark.parametrize('inputs, outputs, metadata, match', [
    # (1, 300, 6) without metadata: RT-DETR or an end-to-end YOLO
    ([spec('images', (1, 3, 640, 640))], [spec('output0', (1, 300, 6))], {}, 'ambiguous'),
    # a classifier
    ([spec('images', (1, 3, 224, 224))], [spec('logits', (1, 1000))], {}, 'cannot infer'),
    # anchors that fit no stride set of the input
    ([spec('images', (1, 3, 640, 640))], [spec('output0', (1, 5000, 85))], {}, 'cannot infer'),
])
def test_ambiguous_signatures_raise(inputs, outputs, metadata, match):
    with pytest.raises(ValueError, match=match):
        detect_family(inputs, outputs, metadata)
    with pytest.raises(ValueError, match=match):
        create_adapter('auto', inputs, outputs, metadata)
