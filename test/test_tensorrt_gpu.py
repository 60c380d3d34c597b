"""The TensorRT backend end to end on a GPU, under the stand-ins of TensorRT 8.6, 10.x and 11.x.

The stand-in engine really runs the network: device buffers in, ONNX Runtime on the host, device
buffers out (test/support/trt_standins/_core.py), so everything around TensorRT runs for real:
engine build and cache, backend load, `infer`, the GPU letterbox + decode/NMS path, several workers
(execution contexts) on one engine behind the ordered pipeline, autotune, INT8 calibration
through device pointers, rebuild and engine release, the errors. Compared with the ONNX Runtime
CPU path on frames of the shared video. Skips without a GPU and cuda-python (CI has none); run
on the GPU machine: `python -m pytest test/test_tensorrt_gpu.py`.

FDR_TRT_REAL=1 runs the same tests against the installed TensorRT instead (not done here: none
can be installed). FDR_TRT_TEST_CACHE / FDR_TRT_TEST_CALIB name a prepared cache folder
(holding the ModelOpt-converted ONNX for 11.x fp16/int8, made on a machine with ModelOpt) and
its calibration images, for GPU machines without ModelOpt.
"""
from __future__ import annotations

import os
from pathlib import Path
import shutil
import sys
import threading

import cv2
from faster_deployment_ros.backends import BackendError, create_backend
from faster_deployment_ros.backends.tensorrt.engine_cache import loaded_engines
from faster_deployment_ros.models import adapter_factory
import numpy as np
import pytest
from support.shared_data import CACHE
from support.tensorrt_assets import calibration_frames, MODELOPT_PYTHON
from support.trt_standins import load

pytestmark = pytest.mark.gpu  # skipped with the reason where no usable GPU is (conftest)

# FDR_TRT_REAL=1: the installed TensorRT instead of the stand-ins (on a device that has it).
REAL = os.environ.get('FDR_TRT_REAL', '').lower() in ('1', 'true', 'yes')
VERSIONS = ['installed'] if REAL else ['8.6', '10', '11']


@pytest.fixture(params=VERSIONS)
def trt(request, monkeypatch):
    if REAL:
        import tensorrt
        return tensorrt
    module = load(request.param)
    monkeypatch.setitem(sys.modules, 'tensorrt', module)
    return module


@pytest.fixture(scope='module')
def frames(plaza_video, dog_image_path):
    cap = cv2.VideoCapture(str(plaza_video))
    out = []
    while len(out) < 24:
        ok_, f = cap.read()
        if not ok_:
            break
        out.append(f)
    cap.release()
    assert len(out) == 24
    return out[::2] + [cv2.imread(str(dog_image_path))]


@pytest.fixture(scope='module')
def reference(yolox_model, frames):
    """Return the ONNX Runtime CPU path: adapter preprocess -> session -> adapter postprocess."""
    from faster_deployment_ros.models import create_adapter
    be = create_backend('onnxruntime', str(yolox_model))
    adapter = create_adapter('yolox', be.inputs, be.outputs, be.metadata)
    raw, dets = [], []
    for f in frames:
        x, meta = adapter.preprocess(f)
        out = be.infer(x)
        raw.append(out[0])
        dets.append(adapter.postprocess(out, meta))
    be.close()
    return adapter, raw, dets


def _cache(tmp_path):
    prepared = os.environ.get('FDR_TRT_TEST_CACHE')
    if prepared:
        dst = tmp_path / 'prepared'
        shutil.copytree(prepared, dst)
        return dst
    return tmp_path / 'cache'


def _calib(tmp_path, plaza_video):
    prepared = os.environ.get('FDR_TRT_TEST_CALIB')
    return Path(prepared) if prepared else calibration_frames(plaza_video, tmp_path / 'calib', 4)


def _same_detections(a, b, box_px=1.0, score=1e-3):
    assert len(a) == len(b), (len(a), len(b))
    if len(a):
        np.testing.assert_array_equal(a.class_ids, b.class_ids)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=box_px)
        np.testing.assert_allclose(a.scores, b.scores, atol=score)


def _modelopt_or_skip(cache_dir, monkeypatch, stem='yolox_nano_coco_416'):
    if MODELOPT_PYTHON.is_file():
        monkeypatch.setenv('FDR_MODELOPT_PYTHON', str(MODELOPT_PYTHON))
    elif not list(Path(cache_dir).glob(f'{stem}-*-modelopt-*.onnx')):
        pytest.skip('11.x fp16/int8 need the ModelOpt conversion: no .venv-modelopt and no '
                    'prepared FDR_TRT_TEST_CACHE')


# ---------------------------------------------------------------- infer + GPU path ----------

@pytest.mark.parametrize('precision', ['fp32', 'fp16'])
def test_infer_and_gpu_path_match_onnxruntime(trt, precision, yolox_model, frames, reference,
                                              tmp_path, monkeypatch):
    adapter, raw, dets = reference
    cache = _cache(tmp_path)
    if trt.__version__.startswith('11') and precision != 'fp32':
        _modelopt_or_skip(cache, monkeypatch)
    b = create_backend('tensorrt', str(yolox_model), precision=precision, cache_dir=str(cache),
                       threads=4)
    try:
        assert [t.name for t in b.inputs] == ['images'] and b.inputs[0].shape == (1, 3, 416, 416)
        converted = (trt.__version__.startswith('11') or REAL) and precision == 'fp16'
        for f, r in zip(frames, raw):
            (out,) = b.infer(adapter.preprocess(f)[0])
            if converted or (REAL and precision == 'fp16'):  # fp16 arithmetic: close, not equal
                assert np.isclose(out, r, atol=0.05, rtol=0.05).mean() > 0.999
            else:
                np.testing.assert_allclose(out, r, atol=1e-4 if not REAL else 1e-2, rtol=1e-3)
        from faster_deployment_ros.gpu.pipeline import specs_for_adapter
        b.enable_gpu_pipeline(*specs_for_adapter(adapter))
        for f, d in zip(frames, dets):
            got = b.detect_image(f, adapter.class_names)
            if converted:
                assert abs(len(got) - len(d)) <= max(1, len(d) // 10)
            else:
                _same_detections(got, d)
            (out,), meta = b.infer_image(f)
            if not converted:
                _same_detections(adapter.postprocess([out], meta), d)
    finally:
        b.close()
    assert loaded_engines() == {}


# ---------------------------------------------------------------- workers, autotune ---------

def test_workers_share_one_engine_behind_the_ordered_pipeline(trt, yolox_model, frames,
                                                              reference, tmp_path):
    """Run three contexts on one engine behind the ordered pipeline, GPU path.

    Frames come out in order and equal to the ONNX Runtime CPU path; the engine is released
    when the last worker closes.
    """
    from faster_deployment_ros.core.pipeline import Pipeline
    from faster_deployment_ros.gpu.pipeline import specs_for_adapter
    adapter, _, dets = reference
    backends = [create_backend('tensorrt', str(yolox_model), precision='fp32',
                               cache_dir=str(tmp_path), worker_index=i, workers=3)
                for i in range(3)]
    try:
        (path, refs), = loaded_engines().items()
        assert refs == 3
        for b in backends:
            b.enable_gpu_pipeline(*specs_for_adapter(adapter))
        results, done = [], threading.Event()

        def on_result(r):
            results.append(r)
            if len(results) == len(frames):
                done.set()
        with Pipeline(lambda f: (f, None),
                      [lambda f, b=b: b.detect_image(f, adapter.class_names) for b in backends],
                      lambda det, meta: det, on_result, queue_size=len(frames),
                      full_policy='block') as pipe:
            for i, f in enumerate(frames):
                pipe.submit(f, context=i)
            assert done.wait(120)
        assert [r.context for r in results] == list(range(len(frames)))
        assert all(r.ok for r in results), [r.error for r in results if not r.ok]
        assert len({r.worker for r in results}) > 1
        for r, d in zip(results, dets):
            _same_detections(r.result, d)
    finally:
        for b in backends:
            b.close()
    assert loaded_engines() == {}


def test_autotune_tunes_workers_and_queue_only(trt, yolox_model, frames, tmp_path):
    from faster_deployment_ros.core.autotune import autotune
    from faster_deployment_ros.models import create_adapter

    precision = 'fp32' if trt.__version__.startswith('11') else 'fp16'  # 11.x: no ModelOpt

    def make(threads):
        return create_backend('tensorrt', str(yolox_model), precision=precision,
                              cache_dir=str(tmp_path), threads=threads)
    choice = autotune(make, lambda b: create_adapter('yolox', b.inputs, b.outputs, b.metadata),
                      frames[:4], camera_rate=30.0, latency_budget_ms=200.0, threads=[0],
                      iters=5, refine=2, validate_s=1.0, validate_top=1, log=print)
    assert choice.threads == 0 and choice.workers >= 1 and choice.queue_size >= 1
    assert loaded_engines() == {}


# ---------------------------------------------------------------- int8 ----------------------

def test_int8(trt, yolox_model, frames, reference, tmp_path, plaza_video, monkeypatch):
    """Build and run int8 engines.

    8.6/10.x: the entropy calibrator gets device pointers of the adapter's tensors and writes
    a cache; 11.x: the Q/DQ ONNX from ModelOpt.
    """
    adapter, raw, _ = reference
    cache = _cache(tmp_path)
    calib = _calib(tmp_path, plaza_video)
    opts = {'precision': 'int8', 'cache_dir': str(cache), 'int8_calibration': str(calib),
            'adapter_factory': adapter_factory()}
    if trt.__version__.startswith('11'):
        _modelopt_or_skip(cache, monkeypatch)
    else:
        opts['calibration_cache'] = str(tmp_path / 'calib.cache')
    b = create_backend('tensorrt', str(yolox_model), **opts)
    try:
        (out,) = b.infer(adapter.preprocess(frames[0])[0])
        assert out.shape == raw[0].shape and np.isfinite(out).all()
        if not trt.__version__.startswith('11'):
            np.testing.assert_allclose(out, raw[0], atol=1e-4)  # the stand-in keeps fp32 math
            assert (tmp_path / 'calib.cache').is_file()
            head = (tmp_path / 'calib.cache').read_bytes()
            assert b'batches' in head
    finally:
        b.close()


# ---------------------------------------------------------------- cache, rebuild, errors ----

def test_rebuild_builds_once_per_process_and_engines_are_released(trt, yolox_model, tmp_path,
                                                                  caplog):
    import logging
    b0 = create_backend('tensorrt', str(yolox_model), precision='fp32', cache_dir=str(tmp_path))
    first = b0.engine_path
    b0.close()
    first.write_bytes(first.read_bytes())  # now an engine this process did not write
    stamp = first.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger='faster_deployment_ros.tensorrt'):
        b1 = create_backend('tensorrt', str(yolox_model), precision='fp32',
                            cache_dir=str(tmp_path), rebuild=True)
        b2 = create_backend('tensorrt', str(yolox_model), precision='fp32',
                            cache_dir=str(tmp_path), rebuild=True)
    try:
        assert b1.engine_path == b2.engine_path == first
        assert first.stat().st_mtime_ns != stamp  # really rebuilt
        assert any('rebuilt by this process already' in r.getMessage() for r in caplog.records)
        assert loaded_engines() == {str(first): 2}
    finally:
        b1.close()
        assert loaded_engines() == {str(first): 1}
        b2.close()
    assert loaded_engines() == {}


def test_dynamic_model_profile_and_bare_input_shape(trt, tmp_path):
    model = CACHE / 'models' / 'midas_small_style.onnx'
    if not model.is_file():
        pytest.skip(f'{model} missing (make test-assets)')
    b = create_backend('tensorrt', str(model), precision='fp32', cache_dir=str(tmp_path),
                       input_shape='1x3x256x256')
    engine = b.engine_path
    assert b.inputs[0].shape == (1, 3, 256, 256)
    b.close()
    # the .engine with a bare shape: inside the profile fine, outside a clear error
    b = create_backend('tensorrt', str(engine), input_shape='1x3x256x256')
    assert b.inputs[0].shape == (1, 3, 256, 256)
    b.close()
    with pytest.raises(BackendError, match='outside the engine.s optimization profile'):
        create_backend('tensorrt', str(engine), input_shape='1x3x320x320')
    assert loaded_engines() == {}


@pytest.mark.skipif(REAL, reason='swaps in a stand-in of another version')
def test_engine_of_another_tensorrt_without_sidecar(trt, yolox_model, tmp_path, monkeypatch):
    b = create_backend('tensorrt', str(yolox_model), precision='fp32', cache_dir=str(tmp_path))
    plan = tmp_path / 'model.plan'
    shutil.copyfile(b.engine_path, plan)  # no sidecar: only TensorRT itself can tell
    b.close()
    other = load('10' if trt.__version__.startswith('8') else '8.6')
    monkeypatch.setitem(sys.modules, 'tensorrt', other)
    with pytest.raises(BackendError, match='cannot load') as info:
        create_backend('tensorrt', str(plan))
    assert 'not compatible with this version' in str(info.value)
    assert loaded_engines() == {}


def test_convert_command_then_the_engine_file(trt, yolox_model, tmp_path, capsys):
    from faster_deployment_ros.tools.convert import main
    out = tmp_path / 'deploy' / 'yolox.engine'
    assert main(['tensorrt', str(yolox_model), '--precision', 'fp32', '--cache-dir',
                 str(tmp_path / 'c'), '-o', str(out)]) == 0
    err = capsys.readouterr().err
    assert f'TensorRT {trt.__version__}' in err and out.is_file()
    assert out.with_name(out.name + '.json').is_file()
    b = create_backend('tensorrt', str(out))
    try:
        assert b.inputs[0].shape == (1, 3, 416, 416)
    finally:
        b.close()


def test_two_input_model_int8(trt, tmp_path, frames, plaza_video, monkeypatch):
    """Build int8 for the original RT-DETR signature (images + orig_target_sizes).

    8.6/10.x: the calibrator hands TensorRT both inputs' device pointers (8.6: the int64 sizes
    cast to the engine's INT32); 11.x: the Q/DQ ONNX calibrated on both. Outputs equal ONNX
    Runtime's where the arithmetic is fp32.
    """
    from faster_deployment_ros.models import create_adapter
    model = Path(__file__).with_name('fixtures') / 'tiny_rtdetr_orig.onnx'
    cache = _cache(tmp_path)
    calib = _calib(tmp_path, plaza_video)
    opts = {'precision': 'int8', 'cache_dir': str(cache), 'int8_calibration': str(calib),
            'adapter_factory': adapter_factory()}
    v11 = trt.__version__.startswith('11')
    if v11:
        _modelopt_or_skip(cache, monkeypatch, 'tiny_rtdetr_orig')
    else:
        opts['calibration_cache'] = str(tmp_path / 'calib.cache')
    ort = create_backend('onnxruntime', str(model))
    adapter = create_adapter('auto', ort.inputs, ort.outputs, ort.metadata)
    b = create_backend('tensorrt', str(model), **opts)
    try:
        assert [t.name for t in b.inputs] == ['images', 'orig_target_sizes']
        for f in frames[:4]:
            x, _ = adapter.preprocess(f)
            got, ref = b.infer(x), ort.infer(x)
            assert [g.shape for g in got] == [r.shape for r in ref]
            if not v11:
                np.testing.assert_array_equal(got[0], ref[0])  # labels
                np.testing.assert_allclose(got[1], ref[1], atol=1e-3)
                np.testing.assert_allclose(got[2], ref[2], atol=1e-5)
        if not v11:
            assert b'batches' in (tmp_path / 'calib.cache').read_bytes()
    finally:
        b.close()
        ort.close()
    assert loaded_engines() == {}
