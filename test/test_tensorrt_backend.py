"""TensorRT backend logic that needs neither TensorRT nor a GPU.

Engine cache keys and paths, shape resolution against the real YOLOX model, option validation,
calibration inputs, and the errors a user sees when TensorRT or the GPU is missing. The build paths
under stand-ins of each TensorRT version are in test_tensorrt_standins.py, the GPU paths in
test_tensorrt_gpu.py.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from types import SimpleNamespace

import cv2
from faster_deployment_ros.backends import available_backends, BackendError, create_backend
from faster_deployment_ros.backends.tensorrt import calibration, engine_cache, options, versions
from faster_deployment_ros.backends.tensorrt.build import prepare_engine
from faster_deployment_ros.backends.tensorrt.options import onnx_signature, parse_options
import numpy as np
import pytest

HAVE_TRT = importlib.util.find_spec('tensorrt') is not None


# ---------------------------------------------------------------- versions ---------------

def test_parse_version_forms():
    assert versions.parse_version('10.3.0.26') == (10, 3, 0, 26)
    assert versions.parse_version('8.6.1.post1') == (8, 6, 1)
    assert versions.parse_version('8.5.2') == (8, 5, 2)
    with pytest.raises(ValueError):
        versions.parse_version('abc')


def test_version_shim_decisions():
    assert versions.needs_explicit_batch_flag((8, 6, 1))
    assert not versions.needs_explicit_batch_flag((10, 0, 1))
    assert not versions.has_progress_monitor((8, 6, 1))
    assert versions.has_progress_monitor((10, 3))
    assert versions.has_weak_typing((8, 6)) and versions.has_weak_typing((10, 3))
    assert not versions.has_weak_typing((11, 4))
    for ok in ((8, 6, 1), (10, 3, 0), (10, 13, 2), (11, 0, 0), (11, 4, 0)):
        versions.check_version(ok)
    for bad, why in (((8, 5, 2), 'too old'), ((8, 4, 3), 'too old'), ((9, 3, 0), 'not supported'),
                     ((12, 0, 0), 'newer')):
        with pytest.raises(BackendError, match=why) as info:
            versions.check_version(bad)
        assert '8.6 (JetPack 6.0), 10.x' in str(info.value) and '11.x' in str(info.value)


# ---------------------------------------------------------------- sizes and shapes ----------

@pytest.mark.parametrize('text,expected', [
    (1073741824, 1 << 30), ('1GiB', 1 << 30), ('512MiB', 512 << 20), ('1.5G', 3 << 29),
    ('2048', 2048), ('1GB', 10 ** 9), (' 64 MB ', 64 * 10 ** 6)])
def test_parse_bytes(text, expected):
    assert options.parse_bytes(text) == expected


@pytest.mark.parametrize('bad', ['', 'lots', '1TiBs', '-1', 0])
def test_parse_bytes_rejects(bad):
    with pytest.raises(ValueError):
        options.parse_bytes(bad)


def test_parse_input_shapes_forms():
    assert options.parse_input_shapes(None) == {}
    assert options.parse_input_shapes('images:1x3x640x640') == {'images': (1, 3, 640, 640)}
    assert options.parse_input_shapes('1,3,416,416') == {'': (1, 3, 416, 416)}
    assert options.parse_input_shapes(['a:1x3x8x8', 'b:1x4']) == {'a': (1, 3, 8, 8), 'b': (1, 4)}
    assert options.parse_input_shapes({'x': [1, 2]}) == {'x': (1, 2)}
    with pytest.raises(ValueError):
        options.parse_input_shapes('images:1x3xHx640')
    with pytest.raises(ValueError):
        options.parse_input_shapes('images:1x0x640x640')


def test_resolve_shapes_of_the_real_model(yolox_model):
    inputs, metadata = onnx_signature(yolox_model)
    assert inputs == [('images', (1, 3, 416, 416))]
    assert options.resolve_input_shapes(inputs, {}) == {'images': (1, 3, 416, 416)}
    shapes = options.resolve_input_shapes(inputs, {'': (1, 3, 416, 416)})
    assert shapes == {'images': (1, 3, 416, 416)}
    with pytest.raises(ValueError, match='does not fit'):
        options.resolve_input_shapes(inputs, {'images': (1, 3, 640, 640)})
    with pytest.raises(ValueError, match='model inputs are'):
        options.resolve_input_shapes(inputs, {'input': (1, 3, 416, 416)})


def test_resolve_dynamic_shapes():
    dyn = [('images', (None, 3, None, None))]
    with pytest.raises(ValueError, match='dynamic shape'):
        options.resolve_input_shapes(dyn, {})
    want = {'images': (1, 3, 640, 480)}
    assert options.resolve_input_shapes(dyn, want) == want
    assert options.resolve_input_shapes([('x', (None, 3, 32, 32))], {}) == {'x': (1, 3, 32, 32)}
    two = [('a', (1, 3)), ('b', (1, 4))]
    with pytest.raises(ValueError, match='name each shape'):
        options.resolve_input_shapes(two, {'': (1, 3)})


# ---------------------------------------------------------------- cache keys ---------------

def _key(**over):
    base = {'model_sha256': 'ab' * 32, 'tensorrt_version': '10.3.0',
            'gpu_name': 'NVIDIA H100 80GB HBM3', 'compute_capability': (9, 0),
            'precision': 'fp16', 'workspace_bytes': 1 << 30,
            'input_shapes': {'images': (1, 3, 416, 416)}, 'calibration': ''}
    base.update(over)
    return engine_cache.EngineKey.create(**base)


def test_engine_key_is_stable_and_sensitive_to_every_field():
    k = _key()
    assert k.digest() == _key().digest() and len(k.digest()) == 16
    changes = [{'model_sha256': 'cd' * 32}, {'tensorrt_version': '8.6.1'},
               {'gpu_name': 'Orin'}, {'compute_capability': (8, 7)}, {'precision': 'fp32'},
               {'workspace_bytes': 2 << 30}, {'input_shapes': {'images': (1, 3, 640, 640)}},
               {'precision': 'int8', 'calibration': '1234'}, {'conversion': 'modelopt-r1'}]
    digests = {k.digest()} | {_key(**c).digest() for c in changes}
    assert len(digests) == len(changes) + 1
    # calibration only matters for int8 engines
    assert _key(calibration='1234').digest() == k.digest()
    assert (_key(precision='int8', calibration='1').digest()
            != _key(precision='int8', calibration='2').digest())
    # shape order in the mapping does not matter
    a = _key(input_shapes={'a': (1,), 'b': (2,)})
    b = _key(input_shapes={'b': (2,), 'a': (1,)})
    assert a.digest() == b.digest()
    json.dumps(k.as_dict())  # serialisable for the sidecar
    with pytest.raises(ValueError, match='precision'):
        _key(precision='bf16')


def test_engine_path_names(tmp_path):
    k = _key()
    p = engine_cache.engine_path(tmp_path, '/models/yolox nano.onnx', k)
    assert p.parent == tmp_path
    assert p.name == f'yolox_nano-fp16-{k.digest()}.engine'


def test_default_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv('FDR_TRT_CACHE', str(tmp_path / 'c'))
    assert engine_cache.default_cache_dir() == tmp_path / 'c'
    monkeypatch.delenv('FDR_TRT_CACHE')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
    assert engine_cache.default_cache_dir() == tmp_path / 'faster_deployment_ros' / 'tensorrt'


def test_file_hash_follows_content(tmp_path, yolox_model):
    f = tmp_path / 'm.onnx'
    shutil.copyfile(yolox_model, f)
    h1 = engine_cache.file_sha256(f)
    assert h1 == engine_cache.file_sha256(f)
    data = bytearray(f.read_bytes())
    data[-1] ^= 1
    time.sleep(0.01)
    f.write_bytes(bytes(data))
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert engine_cache.file_sha256(f) != h1


def test_atomic_write_leaves_no_temp(tmp_path):
    p = tmp_path / 'sub' / 'x.engine'
    engine_cache.atomic_write(p, b'123')
    engine_cache.atomic_write(p, b'4567')
    assert p.read_bytes() == b'4567'
    assert [q.name for q in p.parent.iterdir()] == ['x.engine']


def _opts(tmp_path, **over):
    o = {'cache_dir': str(tmp_path)}
    o.update(over)
    return parse_options(o)


def test_prepare_engine_finds_cached_engine(tmp_path, yolox_model):
    """A cache hit needs no TensorRT build: the key from the real model finds the engine file."""
    api = SimpleNamespace(version_text='10.3.0', version=(10, 3, 0))
    device = SimpleNamespace(info=SimpleNamespace(name='NVIDIA H100 80GB HBM3',
                                                  compute_capability=(9, 0)))
    opts = _opts(tmp_path)
    key = engine_cache.EngineKey.create(engine_cache.file_sha256(yolox_model), '10.3.0',
                                        'NVIDIA H100 80GB HBM3', (9, 0),
                                        'fp16', 1 << 30, {'images': (1, 3, 416, 416)})
    expected = engine_cache.engine_path(tmp_path, yolox_model, key)
    engine_cache.atomic_write(expected, b'engine bytes')
    logs = []
    path, got_key, meta, built = prepare_engine(yolox_model, opts, api, device, log=logs.append)
    assert (path, got_key, built) == (expected, key, False)
    assert 'cached' in logs[0]
    # another GPU, TensorRT version or precision must not reuse it
    for other_api, other_dev, o in [
            (SimpleNamespace(version_text='8.6.1', version=(8, 6, 1)), device, opts),
            (api,
             SimpleNamespace(info=SimpleNamespace(name='Orin', compute_capability=(8, 7))), opts),
            (api, device, _opts(tmp_path, precision='fp32'))]:
        k2 = engine_cache.EngineKey.create(
            engine_cache.file_sha256(yolox_model), other_api.version_text, other_dev.info.name,
            other_dev.info.compute_capability, o['precision'], o['workspace'],
            {'images': (1, 3, 416, 416)})
        assert engine_cache.engine_path(tmp_path, yolox_model, k2) != expected


# ---------------------------------------------------------------- options -----------------

def test_parse_options_defaults(tmp_path):
    o = parse_options({})
    assert o['precision'] == 'fp16' and o['workspace'] == 1 << 30 and o['device'] == 0
    assert o['cache_dir'] == engine_cache.default_cache_dir() and o['rebuild'] is False
    o = parse_options({'precision': 'FP32', 'workspace': '256MiB',
                       'input_shape': 'images:1x3x320x320',
                       'rebuild': 'true', 'worker_index': 1})
    assert o['precision'] == 'fp32' and o['workspace'] == 256 << 20 and o['rebuild'] is True
    assert o['input_shapes'] == {'images': (1, 3, 320, 320)}
    assert o['calibration_preprocess'] == 'auto' and o['strongly_typed'] is False
    assert parse_options({'calibration_preprocess': 'ultralytics'})['calibration_preprocess'] == \
        'yolov8'


def test_common_node_options_are_accepted(caplog):
    """The node passes threads (autotune always does) and may pass workers/worker_index.

    Accepted, and threads ignored with one info log.
    """
    import logging
    options._told.discard('threads')
    with caplog.at_level(logging.INFO, logger='faster_deployment_ros.tensorrt'):
        for _ in range(3):
            parse_options({'threads': 4, 'workers': 2, 'worker_index': 1})
    told = [r for r in caplog.records if 'threads=4 ignored' in r.getMessage()]
    assert len(told) == 1


@pytest.mark.parametrize('options,match', [
    ({'precison': 'fp16'}, 'unknown tensorrt option'),
    ({'precision': 'bf16'}, 'precision must be one of'),
    ({'workspace': 'huge'}, 'bad size'),
    ({'device': -1}, 'GPU index'),
    ({'precision': 'int8'}, 'int8_calibration'),
])
def test_parse_options_errors(options, match):
    with pytest.raises(BackendError, match=match):
        parse_options(options)


# ---------------------------------------------------------------- calibration -------------

def test_calibration_images_from_folder_and_list(tmp_path, dog_image_path):
    d = tmp_path / 'imgs'
    d.mkdir()
    for name in ('b.jpg', 'a.png', 'notes.txt'):
        shutil.copyfile(dog_image_path, d / name)
    assert [p.name for p in calibration.list_calibration_images(d)] == ['a.png', 'b.jpg']
    assert [p.name for p in calibration.list_calibration_images(d, limit=1)] == ['a.png']
    lst = tmp_path / 'list.txt'
    lst.write_text('# calibration set\nimgs/b.jpg\n\nimgs/a.png  # second\n')
    assert [p.name for p in calibration.list_calibration_images(lst)] == ['b.jpg', 'a.png']
    lst.write_text('imgs/missing.jpg\n')
    with pytest.raises(ValueError, match='missing'):
        calibration.list_calibration_images(lst)
    with pytest.raises(ValueError, match='no calibration images'):
        calibration.list_calibration_images(_empty_dir(tmp_path))
    images = calibration.list_calibration_images
    f1 = calibration.calibration_fingerprint(images(d), 'yolox')
    assert f1 != calibration.calibration_fingerprint(images(d), 'ultralytics')
    assert f1 != calibration.calibration_fingerprint(images(d, limit=1), 'yolox')


def _empty_dir(tmp_path):
    e = tmp_path / 'empty'
    e.mkdir(exist_ok=True)
    return e


def test_calibration_batches_use_the_model_preprocessing(dog_image_path, yolox_model):
    """Calibration tensors are exactly what the YOLOX adapter feeds the model."""
    from faster_deployment_ros.models import create_adapter
    with create_backend('onnxruntime', str(yolox_model)) as be:
        adapter = create_adapter('yolox', be.inputs, be.outputs, be.metadata)
    seen = []
    batches = calibration.CalibrationBatches([dog_image_path] * 3,
                                             lambda img: adapter.preprocess(img)[0], batch_size=2,
                                             on_batch=lambda i, n: seen.append((i, n)))
    assert len(batches) == 1
    (b,) = batches.next_batch()
    assert b.shape == (2, 3, 416, 416) and b.dtype == np.float32 and b.flags.c_contiguous
    assert batches.next_batch() is None and seen == [(1, 1)]
    (ref,), _ = adapter.preprocess(cv2.imread(str(dog_image_path)))
    np.testing.assert_array_equal(b[0], ref[0])


# ---------------------------------------------------------------- missing TensorRT / GPU ---

def test_registered():
    assert 'tensorrt' in available_backends()


def test_missing_model_and_wrong_suffix(tmp_path):
    with pytest.raises(BackendError, match='not found'):
        create_backend('tensorrt', str(tmp_path / 'nope.onnx'))
    f = tmp_path / 'model.tflite'
    f.write_bytes(b'x')
    with pytest.raises(BackendError, match='loads .onnx'):
        create_backend('tensorrt', str(f))


@pytest.mark.skipif(HAVE_TRT, reason='TensorRT is installed here')
def test_missing_tensorrt_says_what_to_do(yolox_model):
    with pytest.raises(BackendError) as info:
        create_backend('tensorrt', str(yolox_model))
    text = str(info.value)
    assert 'TensorRT' in text and 'pip install tensorrt' in text and 'onnxruntime' in text


@pytest.mark.skipif(HAVE_TRT, reason='TensorRT is installed here')
def test_convert_command_without_tensorrt(yolox_model, capsys):
    from faster_deployment_ros.tools.convert import main
    assert main(['tensorrt', str(yolox_model), '--precision', 'fp16']) == 2
    err = capsys.readouterr().err
    assert 'checking TensorRT' in err and 'TensorRT Python package' in err


def test_convert_command_arguments(tmp_path, yolox_model, capsys):
    from faster_deployment_ros.tools import convert_tensorrt
    from faster_deployment_ros.tools.convert import main
    assert main(['tensorrt', str(tmp_path / 'missing.onnx')]) == 2
    assert 'not found' in capsys.readouterr().err
    import argparse
    p = argparse.ArgumentParser()
    convert_tensorrt.add_arguments(p)
    args = p.parse_args([str(yolox_model), '--precision', 'int8', '--calib-images', str(tmp_path),
                         '--workspace', '2GiB', '--input-shape', 'images:1x3x416x416',
                         '--timing-cache', str(tmp_path / 't.cache'),
                         '--cache-dir', str(tmp_path)])
    opts = parse_options(convert_tensorrt.backend_options(args))
    assert opts['precision'] == 'int8' and opts['workspace'] == 2 << 30
    assert opts['input_shapes'] == {'images': (1, 3, 416, 416)}
    assert opts['timing_cache'] == tmp_path / 't.cache' and opts['cache_dir'] == tmp_path


def test_gpu_status_reports_a_reason():
    from faster_deployment_ros.gpu import gpu_status
    ok, reason = gpu_status()
    assert isinstance(ok, bool) and reason
    if importlib.util.find_spec('cuda') is None:
        assert not ok and 'cuda-python' in reason
