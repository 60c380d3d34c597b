"""ONNX Runtime backend against the real runtime: shared YOLOX model, tiny generated models."""
from __future__ import annotations

from faster_deployment_ros.backends import BackendError, create_backend
from faster_deployment_ros.backends.onnxruntime_backend import OnnxRuntimeBackend
import numpy as np
import onnxruntime as ort
import pytest
from support.tiny_onnx import sub_model

META = {'names': "{0: 'cat', 1: 'dog'}", 'stride': '32', 'imgsz': '[64, 64]'}


@pytest.fixture(scope='module')
def sub_path(tmp_path_factory):
    path = tmp_path_factory.mktemp('onnx') / 'sub.onnx'
    path.write_bytes(sub_model(META))
    return path


@pytest.fixture(scope='module')
def yolox_backend(yolox_model):
    with create_backend('onnxruntime', str(yolox_model), threads=1) as backend:
        yield backend


def test_yolox_specs_and_inference(yolox_backend):
    assert isinstance(yolox_backend, OnnxRuntimeBackend)
    [inp], [out] = yolox_backend.inputs, yolox_backend.outputs
    assert (inp.name, inp.shape, inp.dtype) == ('images', (1, 3, 416, 416), np.float32)
    assert (out.name, out.shape, out.dtype) == ('output', (1, 3549, 85), np.float32)
    assert yolox_backend.metadata == {}
    assert yolox_backend.providers == ['CPUExecutionProvider']

    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 416, 416)).astype(np.float32)
    [y] = yolox_backend.infer([x])
    assert y.shape == (1, 3549, 85) and y.dtype == np.float32
    # Same numbers as a plain ONNX Runtime session on the same input.
    plain = ort.InferenceSession(str(yolox_backend.model_path), providers=['CPUExecutionProvider'])
    np.testing.assert_allclose(y, plain.run(None, {'images': x})[0], rtol=1e-4, atol=1e-4)
    # Objectness and class scores are sigmoids.
    assert 0.0 <= y[..., 4:].min() and y[..., 4:].max() <= 1.0


def test_inputs_in_order_outputs_in_order_and_metadata(sub_path):
    backend = create_backend('onnxruntime', str(sub_path))
    assert [s.name for s in backend.inputs] == ['a', 'b']
    assert [s.name for s in backend.outputs] == ['diff', 'copy']
    assert backend.inputs[0].shape == (1, 'n')  # dynamic dimension kept by name
    assert backend.metadata == META
    backend.metadata['names'] = 'changed'
    assert backend.metadata == META  # callers get a copy

    a = np.array([[5.0, 7.0, 9.0]], np.float32)
    b = np.array([[1.0, 2.0, 3.0]], np.float32)
    diff, copy = backend.infer([a, b])
    np.testing.assert_array_equal(diff, a - b)
    np.testing.assert_array_equal(copy, a)
    # Non-contiguous and float64 inputs are converted, not rejected.
    diff, _ = backend.infer([np.asfortranarray(a.astype(np.float64)), b])
    np.testing.assert_array_equal(diff, a - b)


def test_infer_errors(sub_path):
    backend = create_backend('onnxruntime', str(sub_path))
    one = np.ones((1, 3), np.float32)
    with pytest.raises(BackendError, match='takes 2 input'):
        backend.infer([one])
    with pytest.raises(BackendError, match='inference failed'):
        backend.infer([one, np.ones((1, 4), np.float32)])
    backend.close()
    with pytest.raises(BackendError, match='closed'):
        backend.infer([one, one])


def test_missing_and_corrupt_model_paths(tmp_path):
    missing = tmp_path / 'nope' / 'model.onnx'
    with pytest.raises(BackendError, match='not found') as err:
        create_backend('onnxruntime', str(missing))
    assert str(missing) in str(err.value)

    corrupt = tmp_path / 'corrupt.onnx'
    corrupt.write_bytes(b'this is not a protobuf' * 20)
    with pytest.raises(BackendError, match='cannot load') as err:
        create_backend('onnxruntime', str(corrupt))
    assert str(corrupt) in str(err.value)

    with pytest.raises(BackendError, match='not found'):
        create_backend('onnxruntime', str(tmp_path))  # a directory is no model file


def test_providers(sub_path):
    available = ort.get_available_providers()
    with pytest.raises(BackendError) as err:
        create_backend('onnxruntime', str(sub_path), providers=['NoSuchExecutionProvider'])
    for name in ['NoSuchExecutionProvider'] + available:
        assert name in str(err.value)
    if 'CUDAExecutionProvider' not in available:  # no silent fallback to CPU
        with pytest.raises(BackendError, match='CUDAExecutionProvider'):
            create_backend('onnxruntime', str(sub_path),
                           providers='CUDAExecutionProvider,CPUExecutionProvider')

    for value in ('CPUExecutionProvider', ' CPUExecutionProvider ,', ['CPUExecutionProvider'],
                  [('CPUExecutionProvider', {})], None, []):
        backend = create_backend('onnxruntime', str(sub_path), providers=value)
        assert backend.providers == ['CPUExecutionProvider']


def test_thread_and_optimisation_options(yolox_model, sub_path):
    path = str(sub_path)
    assert create_backend('onnxruntime', path).intra_op_threads == 0
    assert create_backend('onnxruntime', path, threads=2).intra_op_threads == 2
    assert create_backend('onnxruntime', path, threads='1').intra_op_threads == 1
    b = create_backend('onnxruntime', path, threads=2, intra_op_threads=1, inter_op_threads=1)
    assert (b.intra_op_threads, b.inter_op_threads) == (1, 1)  # the specific option wins
    assert 'intra_op_threads=1' in b.describe()
    for bad in ({'threads': -1}, {'intra_op_threads': 'many'}, {'inter_op_threads': -2},
                {'graph_optimization': 'max'}, {'num_threads': 1}):
        with pytest.raises(BackendError):
            create_backend('onnxruntime', path, **bad)

    # Every optimisation level loads the real model and computes the same result.
    x = np.random.default_rng(1).uniform(0, 255, (1, 3, 416, 416)).astype(np.float32)
    ref = None
    for level in ('disable', 'basic', 'extended', 'ALL'):
        backend = create_backend('onnxruntime', str(yolox_model), threads=1,
                                 graph_optimization=level)
        assert backend.graph_optimization == level.lower()
        [y] = backend.infer([x])
        if ref is None:
            ref = y
        np.testing.assert_allclose(y, ref, rtol=1e-3, atol=1e-3)
        backend.close()


def test_spinning_policy_follows_the_core_count(sub_path):
    """Keep idle intra-op threads from spinning on a small CPU ('auto', the default).

    There they would take the cores the executor and the pipeline threads need
    (docs/performance.md).
    """
    from faster_deployment_ros.backends.onnxruntime_backend import SPIN_MIN_CORES, spin_policy
    assert spin_policy('auto', cores=2) is False
    assert spin_policy('auto', cores=SPIN_MIN_CORES) is False
    assert spin_policy('auto', cores=16) is True
    assert spin_policy('false', cores=16) is False and spin_policy(True, cores=2) is True
    with pytest.raises(BackendError, match='allow_spinning'):
        spin_policy('sometimes')
    import os
    cores = len(os.sched_getaffinity(0))
    b = create_backend('onnxruntime', str(sub_path))
    assert b.allow_spinning is (cores > SPIN_MIN_CORES)
    assert f'allow_spinning={b.allow_spinning}' in b.describe()
    assert create_backend('onnxruntime', str(sub_path), allow_spinning='on').allow_spinning
    with pytest.raises(BackendError, match='allow_spinning'):
        create_backend('onnxruntime', str(sub_path), allow_spinning='maybe')
    # ORT's session.force_spinning_stop: spin inside a run only (an A/B of latency_budget.sh)
    b = create_backend('onnxruntime', str(sub_path), allow_spinning=True,
                       force_spinning_stop='true')
    assert b.force_spinning_stop is True and 'force_spinning_stop=True' in b.describe()
    a, c = np.array([[5.0, 7.0]], np.float32), np.array([[1.0, 3.0]], np.float32)
    np.testing.assert_array_equal(b.infer([a, c])[0], a - c)
    with pytest.raises(BackendError, match='force_spinning_stop'):
        create_backend('onnxruntime', str(sub_path), force_spinning_stop='sometimes')
