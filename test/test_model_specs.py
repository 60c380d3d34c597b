"""Model adapters declare their pre-processing and decode as data (core.specs).

What they declare must be what their CPU code does, since the GPU path and TensorRT calibration
trust it.
"""
from __future__ import annotations

import cv2
from faster_deployment_ros.backends import create_backend
from faster_deployment_ros.core.specs import DecodeSpec, PreprocessSpec
from faster_deployment_ros.gpu.pipeline import preprocess_cpu, specs_for_adapter
from faster_deployment_ros.gpu.postprocess import MAX_CANDIDATES
from faster_deployment_ros.models import create_adapter
import numpy as np
import pytest
from support.golden import model_path


@pytest.fixture(scope='module')
def frames(plaza_video, dog_image_path):
    cap = cv2.VideoCapture(str(plaza_video))
    ok, frame = cap.read()
    cap.release()
    assert ok
    dog = cv2.imread(str(dog_image_path), cv2.IMREAD_COLOR)
    return [frame, dog, np.ascontiguousarray(frame[:301, :517])]  # odd size: rounding matters


def adapter_for(family, path):
    with create_backend('onnxruntime', str(path), threads=1) as b:
        return create_adapter(family, b.inputs, b.outputs, b.metadata)


@pytest.fixture(scope='module', params=['yolox', 'yolov8'])
def adapter(request, yolox_model):
    path = yolox_model if request.param == 'yolox' else model_path('yolov8n')
    return adapter_for(request.param, path)


def test_declared_preprocessing_is_what_preprocess_does(adapter, frames):
    spec = adapter.preprocess_spec()
    assert isinstance(spec, PreprocessSpec) and spec.size == tuple(adapter.input_size)
    for frame in frames:
        [x], meta = adapter.preprocess(frame)
        ref, ref_meta = preprocess_cpu(frame, spec)
        assert ref_meta == meta
        assert ref.shape == x.shape == spec.tensor_shape
        np.testing.assert_allclose(ref, x, rtol=0, atol=1e-6)


def test_declared_decode_follows_the_live_thresholds(adapter):
    adapter.set_thresholds(conf_threshold=0.6, nms_threshold=0.3, max_detections=7)
    pre, dec = specs_for_adapter(adapter)
    assert isinstance(dec, DecodeSpec)
    assert (dec.conf_threshold, dec.nms_threshold, dec.max_detections) == (0.6, 0.3, 7)
    assert dec.class_agnostic == adapter.class_agnostic
    assert pre == adapter.preprocess_spec()
    assert dec.top_k <= MAX_CANDIDATES  # capped at what the GPU decoder holds


def test_layouts_and_strides(yolox_model):
    yolox = adapter_for('yolox', yolox_model)
    dec = yolox.decode_spec()
    assert dec.layout == 'yolox' and dec.strides == (8, 16, 32) and not dec.per_axis_scale
    v8 = adapter_for('yolov8', model_path('yolov8n'))
    dec = v8.decode_spec()
    assert dec.layout == 'yolov8' and dec.per_axis_scale and dec.center
    assert dec.top_k == v8.max_nms  # the adapter's own cap; the GPU path lowers it
    assert specs_for_adapter(v8)[1].top_k == min(v8.max_nms, MAX_CANDIDATES)


@pytest.mark.parametrize('family,name', [('rtdetr', 'rtdetr-l'), ('yolov8', 'yolo26n')])
def test_adapters_without_a_gpu_decode_say_so(family, name):
    adapter = adapter_for(family, model_path(name))
    assert adapter.decode_spec() is None
    with pytest.raises(ValueError, match=type(adapter).__name__):
        specs_for_adapter(adapter)
