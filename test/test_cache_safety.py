"""Caches of code that gets loaded (TensorRT engines, ModelOpt-converted ONNX, GPU kernel images).

A cache directory another user can write is refused with the fix in the message
(core.private_dir); a cached engine or kernel image that does not load is rebuilt and the file
replaced, with a warning naming it. TensorRT through the strict stand-ins
(test/support/trt_standins), no GPU needed; the kernel cache's file format and directory check
need no GPU either (the load retry on the driver is in test_gpu_kernels.py).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
import stat
import sys

from faster_deployment_ros.backends import BackendError
from faster_deployment_ros.backends.tensorrt import engine_cache, modelopt_convert
from faster_deployment_ros.backends.tensorrt.build import load_engine, prepare_engine
from faster_deployment_ros.backends.tensorrt.options import parse_options
from faster_deployment_ros.backends.tensorrt.versions import import_tensorrt, TrtApi
from faster_deployment_ros.core.private_dir import check_private_dir, private_dir, UnsafeDirectory
from faster_deployment_ros.gpu import kernels
from faster_deployment_ros.gpu.cuda import CudaError
import pytest
from support.tensorrt_assets import device_identity
from support.trt_standins import load

ROOT_ONLY = pytest.mark.skipif(not hasattr(os, 'geteuid') or os.geteuid() != 0,
                               reason='giving a folder to another user needs root (chown)')


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------- core.private_dir -----------

def test_missing_directories_are_made_private(tmp_path):
    made = private_dir(tmp_path / 'a' / 'b', 'test cache')
    assert made == tmp_path / 'a' / 'b' and made.is_dir()
    assert _mode(tmp_path / 'a') == 0o700 and _mode(made) == 0o700
    assert private_dir(made) == made  # an existing private one is accepted as is


@pytest.mark.parametrize('mode,who', [(0o777, 'its group and every user'),
                                      (0o775, 'its group'), (0o757, 'every user'),
                                      (0o1777, 'its group and every user')])
def test_a_directory_others_can_write_is_refused(tmp_path, mode, who):
    d = tmp_path / 'c'
    d.mkdir()
    d.chmod(mode)
    with pytest.raises(UnsafeDirectory) as err:
        check_private_dir(d, 'test cache')
    text = str(err.value)
    assert f'test cache {d} is writable by {who}' in text
    assert f'chmod go-w {d}' in text and 'choose a directory of your own' in text


def test_inside_a_writable_folder_only_with_the_sticky_bit(tmp_path):
    shared = tmp_path / 'shared'
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(UnsafeDirectory, match=f'lies inside {shared}, which is writable by '
                       'its group and every user without the sticky bit.*chmod \\+t'):
        private_dir(shared / 'cache')
    shared.chmod(0o1777)  # as /tmp: others cannot rename what is ours
    assert private_dir(shared / 'cache').is_dir()


def test_a_symlink_is_judged_by_its_target(tmp_path):
    target = tmp_path / 'open'
    target.mkdir()
    target.chmod(0o777)
    link = tmp_path / 'link'
    link.symlink_to(target)
    with pytest.raises(UnsafeDirectory, match=f'{link} \\(-> {target}\\) is writable'):
        check_private_dir(link)


def test_a_file_is_not_a_directory(tmp_path):
    f = tmp_path / 'f'
    f.write_text('x')
    with pytest.raises(UnsafeDirectory, match='is not a directory'):
        check_private_dir(f)


@ROOT_ONLY
def test_a_directory_of_another_user_is_refused(tmp_path):
    d = tmp_path / 'theirs'
    d.mkdir(mode=0o700)
    os.chown(d, 65534, 65534)
    with pytest.raises(UnsafeDirectory, match=f'belongs to .*uid 65534.*chown .* {d}'):
        check_private_dir(d, 'test cache')
    inner = d / 'inner'
    inner.mkdir(mode=0o700)  # ours, but inside theirs
    with pytest.raises(UnsafeDirectory, match=f'lies inside {d}, which belongs to'):
        check_private_dir(inner)


# ---------------------------------------------------------------- TensorRT (stand-ins) -------

def _api(monkeypatch, version):
    monkeypatch.setitem(sys.modules, 'tensorrt', load(version))
    return TrtApi(import_tensorrt())


@pytest.mark.parametrize('mode', [0o777, 0o770])
def test_tensorrt_refuses_a_cache_dir_others_can_write(monkeypatch, tmp_path, yolox_model, mode):
    cache = tmp_path / 'trt'
    cache.mkdir()
    cache.chmod(mode)
    opts = parse_options({'cache_dir': str(cache), 'precision': 'fp32'})
    with pytest.raises(BackendError) as err:
        prepare_engine(yolox_model, opts, _api(monkeypatch, '10'), device_identity(), log=print)
    text = str(err.value)
    assert f'tensorrt cache_dir {cache} is writable by' in text
    assert f'chmod go-w {cache}' in text and 'tensorrt option cache_dir' in text
    assert list(cache.iterdir()) == []  # nothing built, nothing loaded


def test_tensorrt_makes_a_missing_cache_dir_private(monkeypatch, tmp_path, yolox_model):
    cache = tmp_path / 'new' / 'trt'
    opts = parse_options({'cache_dir': str(cache), 'precision': 'fp32'})
    path, _, _, built = prepare_engine(yolox_model, opts, _api(monkeypatch, '10'),
                                       device_identity(), log=print)
    assert built and path.parent == cache and _mode(cache) == 0o700


@pytest.mark.parametrize('damage', ['truncate', 'garbage', 'other_version'])
@pytest.mark.parametrize('version', ['8.6', '10', '11'])
def test_a_cached_engine_that_does_not_load_is_rebuilt(monkeypatch, tmp_path, yolox_model,
                                                       caplog, version, damage):
    api = _api(monkeypatch, version)
    opts = parse_options({'cache_dir': str(tmp_path), 'precision': 'fp32'})
    entry, path, _ = load_engine(yolox_model, opts, api, device_identity(), log=print)
    good = path.read_bytes()
    engine_cache.release_engine(entry)
    assert engine_cache.loaded_engines() == {}
    if damage == 'truncate':
        path.write_bytes(good[:len(good) // 3])
    elif damage == 'garbage':
        path.write_bytes(b'\0' * 100)
    else:  # an engine of another TensorRT under this key's name (a stale or copied file)
        other = _api(monkeypatch, '11' if version != '11' else '10')
        stale = tmp_path / 'stale'
        other_path, _, _, _ = prepare_engine(yolox_model, dict(opts, cache_dir=stale),
                                             other, device_identity(), log=print)
        path.write_bytes(other_path.read_bytes())
        monkeypatch.setitem(sys.modules, 'tensorrt', api.trt)
    with caplog.at_level(logging.WARNING, 'faster_deployment_ros.tensorrt'):
        entry, again, _ = load_engine(yolox_model, opts, api, device_identity(), log=print)
    try:
        assert again == path and path.read_bytes() == good  # the file is replaced
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(f'cached engine {path} does not load; building it again' in w
                   for w in warnings), warnings
        assert engine_cache.loaded_engines() == {str(path): 1}
        assert entry.engine.num_io_tensors == 2
    finally:
        engine_cache.release_engine(entry)
    assert engine_cache.loaded_engines() == {}


def test_a_prebuilt_engine_file_that_does_not_load_stays_an_error(monkeypatch, tmp_path):
    api = _api(monkeypatch, '10')
    bad = tmp_path / 'model.engine'
    bad.write_bytes(b'not an engine')
    with pytest.raises(engine_cache.EngineLoadError, match=f'cannot load {bad}.*rebuild it here'):
        engine_cache.acquire_engine(api, bad)
    assert engine_cache.loaded_engines() == {}


def test_modelopt_refuses_a_target_folder_others_can_write(tmp_path, yolox_model):
    out = tmp_path / 'open'
    out.mkdir()
    out.chmod(0o777)
    with pytest.raises(RuntimeError, match=f'converted ONNX cache directory {out} is writable'):
        modelopt_convert.convert(yolox_model, out / 'm.onnx', 'fp16', '/nonexistent/python')


# ---------------------------------------------------------------- GPU kernel image cache -----

def test_kernel_cache_file_round_trip(tmp_path):
    path = tmp_path / 'k.img'
    kernels.write_cached_image(path, b'\x7fELF cubin bytes', 'cubin')
    assert kernels.read_cached_image(path) == (b'\x7fELF cubin bytes', 'cubin')
    assert kernels.read_cached_image(tmp_path / 'none.img') is None
    assert [p.name for p in tmp_path.iterdir()] == ['k.img']  # no temporary file left


@pytest.mark.parametrize('damage', ['truncate', 'flip', 'old_format', 'empty'])
def test_a_damaged_kernel_cache_file_is_reported_and_ignored(tmp_path, caplog, damage):
    path = tmp_path / 'k.img'
    kernels.write_cached_image(path, bytes(range(256)) * 8, 'cubin')
    data = path.read_bytes()
    path.write_bytes({'truncate': data[:-100],
                      'flip': data[:-1] + bytes([data[-1] ^ 1]),
                      'old_format': b'cubin\n' + bytes(range(256)) * 8,
                      'empty': b''}[damage])
    with caplog.at_level(logging.WARNING, 'faster_deployment_ros.gpu'):
        assert kernels.read_cached_image(path) is None
    assert any(f'GPU kernel cache file {path} is not a whole kernel image' in r.getMessage()
               for r in caplog.records)


def test_kernel_cache_directory_others_can_write_is_refused(tmp_path, monkeypatch):
    d = tmp_path / 'nvrtc'
    monkeypatch.setenv('FDR_NVRTC_CACHE', str(d))
    assert kernels.cache_directory() == d and _mode(d) == 0o700  # made private
    d.chmod(0o777)
    with pytest.raises(CudaError, match=f'GPU kernel cache directory {d} is writable by .*'
                       f'chmod go-w {d}.*FDR_NVRTC_CACHE chooses another'):
        kernels.cache_directory()


def test_kernel_cache_directory_that_cannot_be_made_costs_only_a_compile(tmp_path,
                                                                         monkeypatch):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    monkeypatch.setenv('FDR_NVRTC_CACHE', str(blocker / 'nvrtc'))
    assert kernels.cache_directory() is None
