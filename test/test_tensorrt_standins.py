"""The TensorRT backend's build and configuration paths under strict stand-ins of TensorRT.

Stand-ins of 8.6, 10.x and 11.x (test/support/trt_standins: only the names each version has, its
return values and error conventions). These run without a GPU: engine builds through
`prepare_engine`, each version's precision route (builder flags on 8.6/10.x, ModelOpt-converted
strongly typed ONNX on 11.x), INT8 calibration inputs from the model adapters, the engine
cache, and the errors a user sees. What needs a GPU (load, infer, the GPU pre/post path,
workers, autotune) is in test_tensorrt_gpu.py.
"""
from __future__ import annotations

import json
import struct
import sys

from faster_deployment_ros.backends import BackendError, create_backend
from faster_deployment_ros.backends.tensorrt import options, versions
from faster_deployment_ros.backends.tensorrt.build import prepare_engine
from faster_deployment_ros.backends.tensorrt.calibration import calibration_batches
from faster_deployment_ros.backends.tensorrt.options import onnx_tensors, parse_options
from faster_deployment_ros.models import adapter_factory
import numpy as np
import pytest
from support.shared_data import CACHE
from support.tensorrt_assets import calibration_frames, device_identity, modelopt_python
from support.trt_standins import load
from support.trt_standins._core import MAGIC

VERSIONS = ['8.6', '10', '11']


@pytest.fixture(params=VERSIONS)
def trt(request, monkeypatch):
    """Return the stand-in of one TensorRT version as `tensorrt`."""
    module = load(request.param)
    monkeypatch.setitem(sys.modules, 'tensorrt', module)
    return module


def _install(monkeypatch, version):
    module = load(version)
    monkeypatch.setitem(sys.modules, 'tensorrt', module)
    return module


def _engine_head(path):
    data = path.read_bytes()
    assert data.startswith(MAGIC)
    n = struct.unpack('<I', data[len(MAGIC):len(MAGIC) + 4])[0]
    start = len(MAGIC) + 4
    return json.loads(data[start:start + n]), data[start + n:]


# ---------------------------------------------------------------- the stand-ins themselves ---

def test_each_version_has_only_its_names():
    t86, t10, t11 = (load(v) for v in VERSIONS)
    # weak typing: 8.6 and 10.x; gone in 11.x
    for t in (t86, t10):
        assert t.BuilderFlag.FP16 is not None and t.BuilderFlag.INT8 is not None
        assert hasattr(t, 'IInt8EntropyCalibrator2')
        assert hasattr(t.IBuilderConfig, 'int8_calibrator')
        assert hasattr(t.Builder, 'platform_has_fast_fp16')
    for name in ('FP16', 'INT8', 'BF16', 'OBEY_PRECISION_CONSTRAINTS', 'DIRECT_IO'):
        with pytest.raises(AttributeError):
            getattr(t11.BuilderFlag, name)
    for owner, name in ((t11.IBuilderConfig, 'int8_calibrator'),
                        (t11.IBuilderConfig, 'set_calibration_profile'),
                        (t11.Builder, 'platform_has_fast_fp16'),
                        (t11.ICudaEngine, 'device_memory_size'),
                        (t11, 'IInt8EntropyCalibrator2'),
                        (t11.NetworkDefinitionCreationFlag, 'EXPLICIT_BATCH')):
        with pytest.raises(AttributeError):
            getattr(owner, name)
    # bindings API and execute_async_v2: 8.6 only; IProgressMonitor from 10.0
    assert hasattr(t86.IExecutionContext, 'execute_async_v2')
    assert hasattr(t86.ICudaEngine, 'num_bindings')
    for t in (t10, t11):
        for owner, name in ((t.IExecutionContext, 'execute_async_v2'),
                            (t.ICudaEngine, 'num_bindings'), (t.ICudaEngine, 'get_binding_shape')):
            with pytest.raises(AttributeError):
                getattr(owner, name)
        assert hasattr(t, 'IProgressMonitor')
    assert not hasattr(t86, 'IProgressMonitor')
    assert not hasattr(t86.NetworkDefinitionCreationFlag, 'STRONGLY_TYPED')
    # the named-tensor API that the backend uses is in all three
    for t in (t86, t10, t11):
        for name in ('execute_async_v3', 'set_input_shape', 'set_tensor_address'):
            assert hasattr(t.IExecutionContext, name)
        for name in ('num_io_tensors', 'get_tensor_name', 'get_tensor_profile_shape'):
            assert hasattr(t.ICudaEngine, name)


def test_error_conventions(trt, yolox_model, tmp_path):
    """None from the builder and the runtime, False from the parser and set_input_shape."""
    logger = trt.Logger(trt.Logger.ERROR)
    assert trt.Runtime(logger).deserialize_cuda_engine(b'not an engine') is None
    builder = trt.Builder(logger)
    flags = (1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
             if trt.__version__.startswith('8.') else 0)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(b'garbage') is False and parser.num_errors == 1
    assert parser.parse_from_file(str(yolox_model)) is True
    config = builder.create_builder_config()
    engine_bytes = builder.build_serialized_network(network, config)
    engine = trt.Runtime(logger).deserialize_cuda_engine(engine_bytes)
    ctx = engine.create_execution_context()
    assert ctx.set_input_shape('images', (1, 3, 416, 416)) is True
    assert ctx.set_input_shape('images', (1, 3, 640, 640)) is False
    assert ctx.set_input_shape('nope', (1,)) is False
    assert ctx.execute_async_v3(0) is False  # no tensor addresses: refused, not a crash
    # an engine of another version does not deserialize
    other = load('10' if trt.__version__.startswith('8.') else '8.6')
    assert other.Runtime(other.Logger()).deserialize_cuda_engine(engine_bytes) is None


def test_8_6_needs_explicit_batch(yolox_model):
    t86 = load('8.6')
    logger = t86.Logger()
    network = t86.Builder(logger).create_network(0)
    parser = t86.OnnxParser(network, logger)
    assert not parser.parse_from_file(str(yolox_model))
    assert 'explicit batch' in str(parser.get_error(0))
    explicit = 1 << int(t86.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    assert versions.TrtApi(t86).network_flags() == explicit


# ---------------------------------------------------------------- versions ----------------

@pytest.mark.parametrize('text', ['8.5.2', '9.2.0', '12.0.0'])
def test_unsupported_tensorrt_is_named(monkeypatch, text, yolox_model):
    module = _install(monkeypatch, '10')
    module.__version__ = text
    with pytest.raises(BackendError, match='supports TensorRT 8.6') as info:
        create_backend('tensorrt', str(yolox_model))
    assert text in str(info.value) and '11.x' in str(info.value)


# ---------------------------------------------------------------- build paths --------------

@pytest.mark.parametrize('precision', ['fp32', 'fp16'])
def test_build_fp32_fp16_on_weak_typing_versions(monkeypatch, tmp_path, yolox_model, precision):
    """8.6 / 10.x: the flags route; the ONNX is built as given."""
    for version in ('8.6', '10'):
        trt = _install(monkeypatch, version)
        api = versions.TrtApi(versions.import_tensorrt())
        opts = parse_options({'cache_dir': str(tmp_path), 'precision': precision})
        logs = []
        path, key, meta, built = prepare_engine(yolox_model, opts, api, device_identity(),
                                                log=logs.append)
        assert built and path.is_file() and key.tensorrt_version == trt.__version__
        head, onnx = _engine_head(path)
        assert head['version'] == trt.__version__
        assert head['precision_flags'] == ([] if precision == 'fp32' else ['FP16'])
        assert onnx == yolox_model.read_bytes()
        side = json.loads(path.with_name(path.name + '.json').read_text())
        assert side['key']['precision'] == precision and side['built_from'] == str(yolox_model)
        if version == '10':
            assert any('Building engine' in m for m in logs)  # the IProgressMonitor route
        # second call: the cache
        _, _, _, again = prepare_engine(yolox_model, opts, api, device_identity(), log=logs.append)
        assert not again


def test_build_fp32_on_11_needs_no_modelopt(monkeypatch, tmp_path, yolox_model):
    _install(monkeypatch, '11')
    monkeypatch.setenv('FDR_MODELOPT_PYTHON', '/nonexistent/python')
    api = versions.TrtApi(versions.import_tensorrt())
    opts = parse_options({'cache_dir': str(tmp_path), 'precision': 'fp32'})
    path, _, _, built = prepare_engine(yolox_model, opts, api, device_identity(), log=print)
    head, onnx = _engine_head(path)
    assert built and head['strongly_typed'] and head['precision_flags'] == []
    assert onnx == yolox_model.read_bytes()


@pytest.mark.parametrize('precision', ['fp16', 'int8'])
def test_11_without_modelopt_says_the_pip_line(monkeypatch, tmp_path, yolox_model,
                                               dog_image_path, precision):
    _install(monkeypatch, '11')
    monkeypatch.setenv('FDR_MODELOPT_PYTHON', sys.executable)  # the test venv has no ModelOpt
    pytest.importorskip('numpy')
    if __import__('importlib').util.find_spec('modelopt') is not None:
        pytest.skip('this interpreter has ModelOpt')
    api = versions.TrtApi(versions.import_tensorrt())
    calib = tmp_path / 'calib'
    calib.mkdir()
    (calib / 'a.jpg').write_bytes(dog_image_path.read_bytes())
    opts = parse_options({'cache_dir': str(tmp_path), 'precision': precision,
                          'int8_calibration': str(calib), 'adapter_factory': adapter_factory()})
    with pytest.raises(BackendError) as info:
        prepare_engine(yolox_model, opts, api, device_identity(), log=print)
    text = str(info.value)
    assert 'TensorRT 11.4.0' in text and 'ModelOpt' in text
    assert 'pip install "nvidia-modelopt[onnx]"' in text and 'modelopt_python' in text


def test_11_int8_from_a_calibration_cache_alone_is_refused(monkeypatch, tmp_path, yolox_model):
    _install(monkeypatch, '11')
    cache = tmp_path / 'calib.cache'
    cache.write_bytes(b'TRT-8601-EntropyCalibration2\n')
    api = versions.TrtApi(versions.import_tensorrt())
    opts = parse_options({'cache_dir': str(tmp_path), 'precision': 'int8',
                          'calibration_cache': str(cache)})
    with pytest.raises(BackendError, match='int8_calibration images'):
        prepare_engine(yolox_model, opts, api, device_identity(), log=print)


def test_int8_flags_route_with_a_calibration_cache(monkeypatch, tmp_path, yolox_model):
    """8.6/10.x int8: INT8 + FP16 flags and the entropy calibrator.

    With a cache TensorRT asks the calibrator for no batch (so this runs without a GPU).
    """
    cache = tmp_path / 'calib.cache'
    cache.write_bytes(b'TRT-8601-EntropyCalibration2\nimages: 3c010204\n')
    for version in ('8.6', '10'):
        _install(monkeypatch, version)
        api = versions.TrtApi(versions.import_tensorrt())
        opts = parse_options({'cache_dir': str(tmp_path), 'precision': 'int8',
                              'calibration_cache': str(cache)})
        path, key, _, built = prepare_engine(yolox_model, opts, api, device_identity(), log=print)
        head, _ = _engine_head(path)
        assert built and head['precision_flags'] == ['FP16', 'INT8']
        assert key.calibration.startswith('cache:')


def test_modelopt_fp16_and_int8_on_11(monkeypatch, tmp_path, yolox_model, plaza_video):
    """11.x: fp16 = AutoCast, int8 = Q/DQ with calibration tensors from the YOLOX adapter.

    Both cached by hash beside the engines and reused; the engine embeds the converted ONNX.
    """
    python = modelopt_python()
    _install(monkeypatch, '11')
    monkeypatch.setenv('FDR_MODELOPT_PYTHON', str(python))
    calib = calibration_frames(plaza_video, tmp_path / 'calib', count=4)
    api = versions.TrtApi(versions.import_tensorrt())
    cache_dir = tmp_path / 'cache'
    for precision in ('fp16', 'int8'):
        opts = parse_options({'cache_dir': str(cache_dir), 'precision': precision,
                              'int8_calibration': str(calib),
                              'adapter_factory': adapter_factory()})
        logs = []
        path, key, _, built = prepare_engine(yolox_model, opts, api, device_identity(),
                                             log=logs.append)
        assert built and key.conversion.startswith('modelopt-r')
        head, onnx = _engine_head(path)
        assert head['strongly_typed'] and head['precision_flags'] == []
        converted = json.loads(path.with_name(path.name + '.json').read_text())['built_from']
        assert converted.endswith('.onnx') and f'-{precision}-modelopt-' in converted
        assert onnx == open(converted, 'rb').read()
        ins, outs, _ = onnx_tensors(converted)  # I/O stays float32 for adapters and GPU decode
        assert [t.dtype for t in ins + outs] == [np.dtype(np.float32)] * 2
        if precision == 'fp16':
            assert b'Cast' in onnx
        else:
            assert b'QuantizeLinear' in onnx and b'DequantizeLinear' in onnx
            assert any('yolox pre-processing' in m for m in logs)
        # rebuild: the converted ONNX is reused, the engine rebuilt
        logs.clear()
        opts['rebuild'] = True
        prepare_engine(yolox_model, opts, api, device_identity(), log=logs.append)
        assert any('using converted' in m for m in logs)
    # 10.x with strongly_typed: the 11.x route (same converted ONNX), STRONGLY_TYPED network
    _install(monkeypatch, '10')
    api = versions.TrtApi(versions.import_tensorrt())
    opts = parse_options({'cache_dir': str(cache_dir), 'precision': 'fp16',
                          'strongly_typed': True})
    logs = []
    path, key, _, built = prepare_engine(yolox_model, opts, api, device_identity(),
                                         log=logs.append)
    head, _ = _engine_head(path)
    assert built and head['strongly_typed'] and head['precision_flags'] == []
    assert key.conversion.startswith('modelopt-r') and any('using converted' in m for m in logs)


# ---------------------------------------------------------------- calibration inputs --------

def _model(name):
    from support.shared_data import missing  # same skip/fail rule as the shared data
    path = CACHE / 'models' / name
    if not path.is_file():
        missing(f'{path} missing (make test-assets builds it)')
    return path


@pytest.mark.parametrize('model,family,expect', [
    ('yolov8n.onnx', 'yolov8', 'ultralytics'),
    ('rtdetr-l-orig.onnx', 'rtdetr', 'two inputs'),
    ('depth_anything_v2_vits.onnx', 'depth_anything_v2', 'imagenet'),
])
def test_calibration_uses_the_adapter_of_each_family(tmp_path, dog_image_path, model, family,
                                                     expect):
    """Auto picks the model's family.

    The tensors equal the adapter's preprocess, for every input of a multi-input model.
    """
    from faster_deployment_ros.models import create_adapter
    path = _model(model)
    ins, outs, meta = onnx_tensors(path)
    shapes = options.resolve_input_shapes([(t.name, t.shape) for t in ins], {})
    opts = parse_options({'precision': 'int8', 'int8_calibration': str(dog_image_path.parent),
                          'adapter_factory': adapter_factory()})
    batches = calibration_batches(path, opts, [dog_image_path], shapes)
    got = batches.next_batch()
    with create_backend('onnxruntime', str(path)) as be:
        ref, _ = create_adapter(family, be.inputs, be.outputs, be.metadata).preprocess(
            __import__('cv2').imread(str(dog_image_path)))
    assert len(got) == len(ins) == len(ref)
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)
    if expect == 'ultralytics':
        assert 0.0 <= got[0].min() and got[0].max() <= 1.0  # RGB / 255, not YOLOX's 0-255
    if expect == 'two inputs':
        h, w = __import__('cv2').imread(str(dog_image_path)).shape[:2]
        assert got[1].tolist() == [[w, h]]


def test_calibration_with_a_family_that_does_not_fit_fails_clearly(dog_image_path):
    path = _model('rtdetr-l-orig.onnx')
    ins, _, _ = onnx_tensors(path)
    shapes = options.resolve_input_shapes([(t.name, t.shape) for t in ins], {})
    opts = parse_options({'precision': 'int8', 'int8_calibration': str(dog_image_path.parent),
                          'calibration_preprocess': 'yolox', 'adapter_factory': adapter_factory()})
    with pytest.raises(BackendError, match='calibration_preprocess'):
        calibration_batches(path, opts, [dog_image_path], shapes).next_batch()
    # without the caller's adapter factory (backends cannot import the models layer)
    opts['adapter_factory'] = None
    with pytest.raises(BackendError, match='adapter_factory'):
        calibration_batches(path, opts, [dog_image_path], shapes)


# ---------------------------------------------------------------- load-time errors ----------

def test_engine_from_another_tensorrt_is_named(monkeypatch, tmp_path, yolox_model):
    """A prebuilt .engine whose sidecar says another TensorRT: refused before the GPU is used."""
    _install(monkeypatch, '10')
    api = versions.TrtApi(versions.import_tensorrt())
    opts = parse_options({'cache_dir': str(tmp_path), 'precision': 'fp32'})
    path, _, _, _ = prepare_engine(yolox_model, opts, api, device_identity(), log=print)
    _install(monkeypatch, '11')
    with pytest.raises(BackendError) as info:
        create_backend('tensorrt', str(path))
    text = str(info.value)
    if 'needs an NVIDIA GPU' not in text:
        assert 'TensorRT 10.3.0' in text and 'TensorRT 11.4.0' in text and 'rebuild' in text


def test_no_gpu_is_said_clearly(trt, yolox_model):
    from faster_deployment_ros.gpu import gpu_status
    ok, _ = gpu_status()
    if ok:
        pytest.skip('a GPU is present')
    with pytest.raises(BackendError, match='needs an NVIDIA GPU'):
        create_backend('tensorrt', str(yolox_model), threads=2)


def test_convert_command_without_a_gpu(trt, yolox_model, tmp_path, capsys):
    from faster_deployment_ros.gpu import gpu_status
    from faster_deployment_ros.tools.convert import main
    if gpu_status()[0]:
        pytest.skip('a GPU is present: test_tensorrt_gpu.py runs the command')
    assert main(['tensorrt', str(yolox_model), '--cache-dir', str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f'TensorRT {trt.__version__}' not in err or 'GPU' in err
    assert 'needs the target GPU' in err


# ---------------------------------------------------------------- common options ------------

@pytest.mark.parametrize('backend', ['onnxruntime', 'ncnn'])
def test_every_backend_accepts_the_common_node_options(backend, yolox_model):
    """Accept threads / workers / worker_index, which the node may pass to any backend.

    tensorrt: test_common_node_options_are_accepted; rknn uses all three.
    """
    if backend == 'onnxruntime':
        model = yolox_model
    else:
        pytest.importorskip('ncnn')
        model = CACHE / 'models' / 'converted' / 'yolov8n.fp32.ncnn.param'
        if not model.is_file():
            pytest.skip(f'{model} missing (make test-assets)')
    with create_backend(backend, str(model), threads=1, workers=2, worker_index=1) as b:
        assert b.inputs


# ---------------------------------------------------------------- two-input models ----------

TINY_RTDETR = __import__('pathlib').Path(__file__).with_name('fixtures') / 'tiny_rtdetr_orig.onnx'


def test_two_input_model_builds_on_each_version(monkeypatch, tmp_path):
    """Build the original RT-DETR signature (images + int64 orig_target_sizes) everywhere.

    8.6 has no INT64: its parser takes the input as INT32; 10.x/11.x keep INT64.
    """
    for version, want in (('8.6', 'INT32'), ('10', 'INT64'), ('11', 'INT64')):
        _install(monkeypatch, version)
        api = versions.TrtApi(versions.import_tensorrt())
        opts = parse_options({'cache_dir': str(tmp_path), 'precision': 'fp32'})
        path, _, _, _ = prepare_engine(TINY_RTDETR, opts, api, device_identity(), log=print)
        head, _ = _engine_head(path)
        assert [i[0] for i in head['inputs']] == ['images', 'orig_target_sizes']
        assert head['inputs'][1][2] == want


def test_two_input_model_int8_on_11_calibrates_both_inputs(monkeypatch, tmp_path, plaza_video):
    python = modelopt_python()
    _install(monkeypatch, '11')
    monkeypatch.setenv('FDR_MODELOPT_PYTHON', str(python))
    calib = calibration_frames(plaza_video, tmp_path / 'calib', count=3)
    api = versions.TrtApi(versions.import_tensorrt())
    opts = parse_options({'cache_dir': str(tmp_path / 'c'), 'precision': 'int8',
                          'int8_calibration': str(calib), 'adapter_factory': adapter_factory()})
    logs = []
    path, _, _, built = prepare_engine(TINY_RTDETR, opts, api, device_identity(), log=logs.append)
    assert built and any('rtdetr pre-processing' in m for m in logs)
    _, onnx = _engine_head(path)
    assert b'QuantizeLinear' in onnx
