"""RKNN backend against ONNX Runtime on real inputs, through rknn-toolkit2's PC simulator.

The simulator runs in .venv-rknn behind a pipe, with the same `inference(inputs, data_format)`
call RKNNLite has on a board; only the RKNNLite loading (load_rknn/init_runtime with a core
mask) cannot run here (no Rockchip NPU), and is covered by its error path and the core mapping.
"""
from __future__ import annotations

from faster_deployment_ros.backends import backend_class, BackendError, create_backend
from faster_deployment_ros.backends.rknn_backend import resolve_core_mask
import numpy as np
import pytest
from support.edge_assets import (compare_yolov8, compare_yolox, converted, fp16_weight_reference,
                                 match_detections, need_venv, real_frames, sidecar, yolov8_input,
                                 yolov8_onnx, yolox_input)

FP16 = {'box_px': 3.0, 'score': 0.05}


@pytest.fixture(scope='module')
def frames():
    return real_frames()


@pytest.fixture(scope='module')
def yolox_case(yolox_model, frames, tmp_path_factory):
    model = converted('rknn', yolox_model, 'fp16', tmp_path_factory.mktemp('rknn'))
    ort_b = create_backend('onnxruntime', str(yolox_model))
    xs = [yolox_input(f) for _, f in frames]
    refs = [ort_b.infer([x])[0] for x in xs]
    ort_b.close()
    return model, xs, refs


def test_core_mask_per_worker():
    assert resolve_core_mask('auto', None) == 'NPU_CORE_AUTO'
    assert [resolve_core_mask('auto', i) for i in range(5)] == \
        ['NPU_CORE_0', 'NPU_CORE_1', 'NPU_CORE_2', 'NPU_CORE_0', 'NPU_CORE_1']
    assert resolve_core_mask('auto', 1, workers=1) == 'NPU_CORE_AUTO'
    assert resolve_core_mask('auto', 3, num_npu_cores=2) == 'NPU_CORE_1'
    assert resolve_core_mask(2, 0) == 'NPU_CORE_2'
    assert resolve_core_mask('0_1_2', 1) == 'NPU_CORE_0_1_2'
    with pytest.raises(BackendError, match='npu_core must be one of'):
        resolve_core_mask('3', 0)
    assert backend_class('rknn').pins_workers is True


def test_rknnlite_missing_is_explained(yolox_case):
    model = yolox_case[0]
    try:
        import rknnlite  # noqa: F401
        pytest.skip('RKNNLite is installed here (a Rockchip board)')
    except ImportError:
        pass
    with pytest.raises(BackendError, match='rknn-toolkit-lite2'):
        create_backend('rknn', str(model), npu_core='1')


def test_runtime_factory_gets_core_and_pixels(yolox_case, tmp_path):
    """An injected runtime gets the core mask and de-normalised NCHW pixels.

    Here ONNX Runtime behind RKNNLite's call shape; its outputs come back in the ONNX shapes.
    """
    model, xs, refs = yolox_case
    seen = {}

    class OrtRuntime:

        def __init__(self, path, core_mask):
            seen['path'], seen['core'] = path, core_mask
            self.b = create_backend('onnxruntime', sidecar(model)['source_path'])

        def inference(self, inputs, data_format=None):
            seen['format'], seen['input'] = data_format, inputs[0]
            return [o.reshape(-1) for o in self.b.infer(inputs)]  # flat, as some runtimes give

        def release(self):
            seen['released'] = True

    with create_backend('rknn', str(model), runtime_factory=OrtRuntime, worker_index=2) as b:
        out = b.infer([xs[0]])[0]
    assert seen['core'] == 'NPU_CORE_2' and seen['format'] == 'nchw' and seen['released']
    np.testing.assert_array_equal(seen['input'], xs[0])  # YOLOX: mean 0, std 1
    np.testing.assert_array_equal(out, refs[0])

    # YOLOv8-style normalisation (std 255): the NPU gets 0-255 pixels back
    side = sidecar(model)
    side.update(mean_values=[[0, 0, 0]], std_values=[[255, 255, 255]])
    fake = tmp_path / 'v8style.rknn'
    fake.write_bytes(b'')
    fake.with_name(fake.name + '.json').write_text(__import__('json').dumps(side))
    with create_backend('rknn', str(fake), runtime_factory=OrtRuntime) as b:
        b.infer([xs[0] / 255.0])
    np.testing.assert_allclose(seen['input'], xs[0], rtol=1e-6)
    assert seen['core'] == 'NPU_CORE_AUTO'


def test_yolox_fp16_simulator_matches_onnxruntime(yolox_case):
    model, xs, refs = yolox_case
    with create_backend('rknn', str(model), simulator=True, worker_index=1) as b:
        assert b.core_mask == 'NPU_CORE_1'
        assert [(s.name, s.shape) for s in b.inputs] == [('images', (1, 3, 416, 416))]
        assert [(s.name, s.shape) for s in b.outputs] == [('output', (1, 3549, 85))]
        worst = {}
        for x, ref in zip(xs, refs):
            out = b.infer([x])
            assert out[0].shape == ref.shape and out[0].dtype == np.float32
            diff = compare_yolox(ref, out[0])
            worst = {k: max(worst.get(k, 0), v) for k, v in diff.items()}
        both = b.infer([np.concatenate(xs[:2])])[0]  # batch: item by item
        assert both.shape == (2, 3549, 85)
    print(f'rknn fp16 (simulator) YOLOX-nano vs ORT, worst over {len(xs)} frames: {worst}')
    assert worst['box_px'] <= FP16['box_px']
    assert worst['score'] <= FP16['score'] and worst['obj'] <= FP16['score']


def test_yolov8_fp16_simulator_matches_onnxruntime(frames, tmp_path_factory):
    """yolov8n has random weights.

    Fp16 is held to how far ONNX Runtime itself moves with the weights rounded to fp16 (tens of px
    on its wide random boxes), with room for fp16 activations on the NPU.
    """
    onnx = yolov8_onnx()
    model = converted('rknn', onnx, 'fp16', tmp_path_factory.mktemp('rknn'))
    side = sidecar(model)
    assert side['preset'] == 'yolov8' and side['std_values'] == [[255.0] * 3]
    ort_b = create_backend('onnxruntime', str(onnx))
    size = tuple(ort_b.inputs[0].shape[2:])
    xs = [yolov8_input(f, size) for _, f in frames]
    refs = [ort_b.infer([x])[0] for x in xs]
    with create_backend('rknn', str(model), simulator=True) as b:
        assert b.metadata == ort_b.metadata
        worst = {}
        for x, ref in zip(xs, refs):
            diff = compare_yolov8(ref, b.infer([x])[0])
            worst = {k: max(worst.get(k, 0), v) for k, v in diff.items()}
    ort_b.close()
    bound = {}
    for ref, r16 in zip(refs, fp16_weight_reference(onnx, xs, tmp_path_factory.mktemp('fp16'))):
        diff = compare_yolov8(ref, r16)
        bound = {k: max(bound.get(k, 0), v) for k, v in diff.items()}
    print(f'rknn fp16 (simulator) yolov8n vs ORT, worst over {len(xs)} frames: {worst}; '
          f'ORT with fp16-rounded weights: {bound}')
    assert worst['box_px'] <= 3 * bound['box_px'] + 0.5
    assert worst['score'] <= 3 * bound['score'] + 1e-3


def test_yolox_int8_simulator_keeps_most_detections(yolox_model, frames, tmp_path):
    """int8 with a 9-image calibration set.

    Lossy by nature, so detections (not raw outputs) are compared: most ONNX Runtime detections
    must be found again, same class, IoU > 0.5.
    """
    need_venv('rknn')
    import subprocess
    import sys

    import cv2
    from faster_deployment_ros.models import create_adapter

    calib = []
    for i, (_, f) in enumerate(frames):
        p = tmp_path / f'calib{i}.jpg'
        cv2.imwrite(str(p), f)
        calib.append(p.name)
    (tmp_path / 'calib.txt').write_text('\n'.join(calib) + '\n')
    out = tmp_path / 'yolox_int8.rknn'
    proc = subprocess.run([sys.executable, '-m', 'faster_deployment_ros.tools.convert', 'rknn',
                           str(yolox_model), '--precision', 'int8', '--calibration',
                           str(tmp_path / 'calib.txt'), '-o', str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert sidecar(out)['build']['dataset'] and sidecar(out)['precision'] == 'int8'

    ort_b = create_backend('onnxruntime', str(yolox_model))
    adapter = create_adapter('yolox', ort_b.inputs, ort_b.outputs, ort_b.metadata)
    total = matched = 0
    with create_backend('rknn', str(out), simulator=True) as b:
        for _, f in frames:
            inputs, meta = adapter.preprocess(f)
            ref = adapter.postprocess(ort_b.infer(inputs), meta)
            got = adapter.postprocess(b.infer(inputs), meta)
            n, _ = match_detections(ref.boxes, ref.class_ids, got.boxes, got.class_ids)
            total, matched = total + len(ref), matched + n
    ort_b.close()
    print(f'rknn int8 (simulator) YOLOX-nano: {matched}/{total} ORT detections matched')
    assert total > 50 and matched >= 0.6 * total


def test_errors(yolox_case, tmp_path):
    model = yolox_case[0]
    with pytest.raises(BackendError, match='unknown rknn option'):
        create_backend('rknn', str(model), npucore='0')
    with pytest.raises(BackendError, match='sidecar'):
        create_backend('rknn', str(tmp_path / 'nothing.rknn'), simulator=True)
    with pytest.raises(BackendError, match='rebuilds from ONNX'):
        create_backend('rknn', str(model), simulator=True,
                       simulator_onnx=str(tmp_path / 'missing.onnx'))
    with pytest.raises(BackendError, match='data_format'):
        create_backend('rknn', str(model), simulator=True, data_format='nc')


def test_simulator_python_is_an_explicit_setting(yolox_case, tmp_path, monkeypatch):
    """Run-time code never looks for the toolkit beside the repository.

    Without simulator_python or FDR_RKNN_PYTHON the simulator says what to set.
    """
    model = yolox_case[0]
    monkeypatch.delenv('FDR_RKNN_PYTHON', raising=False)
    with pytest.raises(BackendError, match='simulator_python or set FDR_RKNN_PYTHON'):
        create_backend('rknn', str(model), simulator=True)
    with pytest.raises(BackendError, match='does not exist'):
        create_backend('rknn', str(model), simulator=True,
                       simulator_python=str(tmp_path / 'no-python'))
    with pytest.raises(BackendError, match='simulator must be true or false'):
        create_backend('rknn', str(model), simulator='maybe')
