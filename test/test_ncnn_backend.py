"""ncnn backend against ONNX Runtime on real inputs, with models made by `fdr-convert ncnn`.

Tolerances follow the weight format: fp32 within 0.01 px on decoded boxes; fp16 weights within
a few px (measured here: <1 px on YOLOX-nano, see the report in the issue).
"""
from __future__ import annotations

import logging

from faster_deployment_ros.backends import BackendError, create_backend
import numpy as np
import pytest
from support.edge_assets import (compare_yolov8, compare_yolox, converted, fp16_weight_reference,
                                 real_frames, sidecar, yolov8_input, yolov8_onnx, yolox_input)

ncnn = pytest.importorskip('ncnn')

TOL = {'fp32': {'box_px': 0.01, 'score': 1e-4}, 'fp16': {'box_px': 3.0, 'score': 0.05}}


@pytest.fixture(scope='module')
def frames():
    return real_frames()


@pytest.fixture(scope='module')
def yolox_ref(yolox_model, frames):
    ort_b = create_backend('onnxruntime', str(yolox_model))
    xs = [yolox_input(f) for _, f in frames]
    refs = [ort_b.infer([x])[0] for x in xs]
    ort_b.close()
    return xs, refs


@pytest.fixture(scope='module')
def yolov8_ref(frames):
    onnx = yolov8_onnx()
    ort_b = create_backend('onnxruntime', str(onnx))
    size = tuple(ort_b.inputs[0].shape[2:])
    xs = [yolov8_input(f, size) for _, f in frames]
    refs = [ort_b.infer([x])[0] for x in xs]
    ort_b.close()
    return onnx, xs, refs


@pytest.mark.parametrize('precision', ['fp32', 'fp16'])
def test_yolox_matches_onnxruntime(precision, yolox_model, yolox_ref, frames, tmp_path_factory):
    model = converted('ncnn', yolox_model, precision, tmp_path_factory.mktemp('ncnn'))
    xs, refs = yolox_ref
    with create_backend('ncnn', str(model), threads=2) as b:
        assert [(s.name, s.shape) for s in b.inputs] == [('images', (1, 3, 416, 416))]
        assert [(s.name, s.shape) for s in b.outputs] == [('output', (1, 3549, 85))]
        assert b.precision == precision
        worst = {}
        for (name, _), x, ref in zip(frames, xs, refs):
            out = b.infer([x])
            assert len(out) == 1 and out[0].shape == ref.shape and out[0].dtype == np.float32
            diff = compare_yolox(ref, out[0])
            worst = {k: max(worst.get(k, 0), v) for k, v in diff.items()}
    print(f'ncnn {precision} YOLOX-nano vs ORT, worst over {len(xs)} frames: {worst}')
    assert worst['box_px'] <= TOL[precision]['box_px']
    assert worst['score'] <= TOL[precision]['score']
    assert worst['obj'] <= TOL[precision]['score']


@pytest.mark.parametrize('precision', ['fp32', 'fp16'])
def test_yolov8_matches_onnxruntime(precision, yolov8_ref, frames, tmp_path_factory):
    """Hold fp16 to ONNX Runtime's own fp16 drift, fp32 to fixed bounds.

    yolov8n has random weights, whose wide box distributions make fp16 move boxes by tens of
    px (ONNX Runtime itself does, with the weights rounded to fp16).
    """
    onnx, xs, refs = yolov8_ref
    model = converted('ncnn', onnx, precision, tmp_path_factory.mktemp('ncnn'))
    with create_backend('ncnn', str(model), threads=2) as b:
        assert [s.shape for s in b.outputs] == [refs[0].shape]
        assert b.metadata.get('names'), 'ultralytics metadata (class names) lost in conversion'
        worst = {}
        for x, ref in zip(xs, refs):
            diff = compare_yolov8(ref, b.infer([x])[0])
            worst = {k: max(worst.get(k, 0), v) for k, v in diff.items()}
    print(f'ncnn {precision} yolov8n vs ORT, worst over {len(xs)} frames: {worst}')
    if precision == 'fp32':
        assert worst['box_px'] <= 0.1 and worst['score'] <= 5e-4
        return
    refs16 = fp16_weight_reference(onnx, xs, tmp_path_factory.mktemp('fp16'))
    bound = {}
    for ref, r16 in zip(refs, refs16):
        diff = compare_yolov8(ref, r16)
        bound = {k: max(bound.get(k, 0), v) for k, v in diff.items()}
    print(f'  ORT with fp16-rounded weights vs ORT: {bound}')
    assert worst['box_px'] <= 3 * bound['box_px'] + 0.5
    assert worst['score'] <= 3 * bound['score'] + 1e-3


def test_without_sidecar_discovers_blobs(yolox_model, yolox_ref, tmp_path, tmp_path_factory):
    """A bare .param/.bin (no sidecar): pnnx blob names, output shape measured, batch axis back."""
    model = converted('ncnn', yolox_model, 'fp32', tmp_path_factory.mktemp('ncnn'))
    bare = tmp_path / 'bare.param'
    bare.write_text(model.read_text())
    bare.with_suffix('.bin').write_bytes(model.with_suffix('.bin').read_bytes())
    xs, refs = yolox_ref
    with create_backend('ncnn', str(bare), input_shape=[1, 3, 416, 416]) as b:
        assert [s.name for s in b.inputs] == ['in0'] and [s.name for s in b.outputs] == ['out0']
        assert b.outputs[0].shape == (1, 3549, 85)
        assert b.metadata == {}
        assert compare_yolox(refs[0], b.infer([xs[0]])[0])['box_px'] <= TOL['fp32']['box_px']


def test_custom_focus_layer_matches_graph_rewrite(yolox_model, yolox_ref, tmp_path,
                                                  tmp_path_factory):
    """Ncnn's own YOLOX files use a `YoloV5Focus` layer.

    Ours (Python, ncnn_layers) must give what the converter's native Reshape/Permute/Reshape
    rewrite gives.
    """
    model = converted('ncnn', yolox_model, 'fp32', tmp_path_factory.mktemp('ncnn'))
    lines = model.read_text().splitlines()
    types = [ln.split()[0] for ln in lines[2:6]]
    assert types == ['Input', 'Reshape', 'Permute', 'Reshape'], types
    top = lines[5].split()[5]  # the last Reshape's output blob feeds the first conv
    layers, blobs = map(int, lines[1].split())
    focus = f'YoloV5Focus              focus                    1 1 in0 {top}'
    custom = [lines[0], f'{layers - 2} {blobs - 2}', lines[2], focus] + lines[6:]
    param = tmp_path / 'focus.ncnn.param'
    param.write_text('\n'.join(custom) + '\n')
    param.with_suffix('.bin').write_bytes(model.with_suffix('.bin').read_bytes())
    param.with_suffix('.json').write_text(model.with_suffix('.json').read_text())
    xs, refs = yolox_ref
    with create_backend('ncnn', str(param)) as b, create_backend('ncnn', str(model)) as native:
        for x in xs[:2]:
            np.testing.assert_array_equal(b.infer([x])[0], native.infer([x])[0])


def test_batch_runs_items_and_stacks(yolox_model, yolox_ref, tmp_path_factory):
    model = converted('ncnn', yolox_model, 'fp32', tmp_path_factory.mktemp('ncnn'))
    xs, _ = yolox_ref
    with create_backend('ncnn', str(model)) as b:
        both = b.infer([np.concatenate([xs[0], xs[1]])])[0]
        assert both.shape == (2, 3549, 85)
        np.testing.assert_array_equal(both[0:1], b.infer([xs[0]])[0])
        np.testing.assert_array_equal(both[1:2], b.infer([xs[1]])[0])


def test_vulkan_request_falls_back_to_cpu(yolox_model, yolox_ref, tmp_path_factory, caplog):
    model = converted('ncnn', yolox_model, 'fp32', tmp_path_factory.mktemp('ncnn'))
    if ncnn.get_gpu_count() > 0:
        pytest.skip('a Vulkan device exists here: no fall-back to test')
    xs, refs = yolox_ref
    with caplog.at_level(logging.WARNING):
        with create_backend('ncnn', str(model), use_vulkan=True) as b:
            assert b.use_vulkan is False
            assert compare_yolox(refs[0], b.infer([xs[0]])[0])['box_px'] <= TOL['fp32']['box_px']
    assert 'running on the CPU' in caplog.text


def test_options_and_errors(yolox_model, tmp_path, tmp_path_factory):
    model = converted('ncnn', yolox_model, 'fp32', tmp_path_factory.mktemp('ncnn'))
    with create_backend('ncnn', str(model), threads=1, light_mode='false', fp16=False) as b:
        assert b.threads == 1
    with pytest.raises(BackendError, match='unknown ncnn option'):
        create_backend('ncnn', str(model), thread=2)
    with pytest.raises(BackendError, match='must be true, false or auto'):
        create_backend('ncnn', str(model), fp16='maybe')
    with pytest.raises(BackendError, match='not found'):
        create_backend('ncnn', str(tmp_path / 'missing.param'))
    # a truncated weight file is reported, not crashed on
    broken = tmp_path / 'broken.param'
    broken.write_text(model.read_text())
    broken.with_suffix('.bin').write_bytes(model.with_suffix('.bin').read_bytes()[:1000])
    with pytest.raises(BackendError, match='cannot load'):
        create_backend('ncnn', str(broken), input_shape=[1, 3, 416, 416])
    assert sidecar(model)['source_sha256']
