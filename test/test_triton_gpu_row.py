"""benchmarks/triton_gpu_row.py: its arguments, output check and the repacked carried wheels."""
import importlib.util
import io
from pathlib import Path
import tarfile
import zipfile

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def row():
    spec = importlib.util.spec_from_file_location(
        'triton_gpu_row', ROOT / 'benchmarks' / 'triton_gpu_row.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_defaults_and_overrides(row):
    args = row.parse_args(['run', '--bundle', 'B', '--out', 'O'])
    assert (args.clients, args.duration, args.rate) == ('1,4,8', 4.0, 30.0)
    assert (args.max_batch, args.queue_delay_us) == (8, 1000)
    args = row.parse_args(['serve', '--bundle', 'B', '--grpc-port', '9001', '--max-batch', '4'])
    assert (args.cmd, args.grpc_port, args.max_batch) == ('serve', 9001, 4)
    with pytest.raises(SystemExit):
        row.parse_args(['run', '--out', 'O'])  # --bundle is required


def test_compare_splits_boxes_from_scores(row):
    a = np.zeros((1, 84, 8400), np.float32)
    b = a.copy()
    b[0, 2, 5] = 0.05    # a box coordinate, pixels: rounding
    b[0, 40, 7] = 5e-4   # a class score
    diff = row.compare(a, b)
    assert diff['boxes_px'] == pytest.approx(0.05)
    assert diff['scores'] == pytest.approx(5e-4)
    assert row.close_enough(diff)
    b[0, 40, 7] = 0.2    # another network, not rounding
    assert not row.close_enough(row.compare(a, b))


def _wheel(path: Path, names):
    with zipfile.ZipFile(path, 'w') as zf:
        for name in names:
            zf.writestr(name, b'x' * 10)
    return path


def test_trim_pytriton_keeps_python_312_only(row, tmp_path):
    stubs = 'pytriton/tritonserver/python_backend_stubs'
    wheel = _wheel(tmp_path / 'p.whl', [
        'pytriton/__init__.py', f'{stubs}/3.11/triton_python_backend_stub',
        f'{stubs}/3.12/triton_python_backend_stub', f'{stubs}/3.13/triton_python_backend_stub',
        'nvidia_pytriton.libs/libpython3-419a3a08.13.so.1.0',
        'nvidia_pytriton.libs/libtritonserver-717102f0.so'])
    out = tmp_path / 'p.tar.xz'
    row.trim_pytriton(wheel, out)
    with tarfile.open(out) as tar:
        assert sorted(tar.getnames()) == [
            'nvidia_pytriton.libs/libtritonserver-717102f0.so', 'pytriton/__init__.py',
            f'{stubs}/3.12/triton_python_backend_stub']
        assert tar.extractfile('pytriton/__init__.py').read() == b'x' * 10


def test_trim_numpy1_drops_tests_and_build_tools(row, tmp_path):
    wheel = _wheel(tmp_path / 'n.whl', [
        'numpy/__init__.py', 'numpy/__init__.pyi', 'numpy/core/tests/test_a.py',
        'numpy/f2py/__init__.py', 'numpy/distutils/core.py', 'numpy.libs/libopenblas.so'])
    out = tmp_path / 'n.tar.xz'
    row.trim_numpy1(wheel, out)
    with tarfile.open(out) as tar:
        assert sorted(tar.getnames()) == ['numpy.libs/libopenblas.so', 'numpy/__init__.py']
        data = io.BytesIO(tar.extractfile('numpy/__init__.py').read()).read()
        assert data == b'x' * 10
