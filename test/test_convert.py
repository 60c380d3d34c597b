"""`fdr-convert`: discovery, converter venvs, progress, sidecars, rewrites, clear failures.

Numeric agreement of the converted models is tested in test_ncnn_backend.py /
test_rknn_backend.py.
"""
from __future__ import annotations

import io
import shutil
import subprocess
import sys
import textwrap

from faster_deployment_ros.tools import convert
import pytest
from support.edge_assets import converted, need_venv, ROOT, sidecar, VENVS, yolov8_onnx

FDR_CONVERT = ROOT / '.venv' / 'bin' / 'fdr-convert'


def run_convert(*args, timeout=300):
    cmd = [str(FDR_CONVERT)] if FDR_CONVERT.exists() else \
        [sys.executable, '-m', 'faster_deployment_ros.tools.convert']
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout)


def test_targets_are_discovered():
    assert {'ncnn', 'rknn'} <= set(convert.targets())
    proc = run_convert('--help')
    assert proc.returncode == 0
    assert 'ncnn' in proc.stdout and 'rknn' in proc.stdout


def test_progress_steps_and_failure():
    out = io.StringIO()
    progress = convert.Progress(2, stream=out)
    with progress.step('first'):
        pass
    with pytest.raises(ValueError):
        with progress.step('second'):
            raise ValueError('boom')
    lines = out.getvalue().splitlines()
    assert lines[0] == '[1/2] first ...' and lines[1].startswith('[1/2] first done (')
    assert lines[3].startswith('[2/2] second FAILED (')


def test_ncnn_yolox_conversion(yolox_model, tmp_path):
    need_venv('ncnn')
    src = tmp_path / 'in' / 'yolox.onnx'
    src.parent.mkdir()
    shutil.copy(yolox_model, src)
    out = tmp_path / 'out' / 'yolox.ncnn.param'
    proc = run_convert('ncnn', src, '--precision', 'fp32', '-o', out)
    assert proc.returncode == 0, proc.stderr
    assert '(running in' in proc.stderr and '.venv-convert' in proc.stderr
    for i in range(1, 5):
        assert f'[{i}/4]' in proc.stderr and 'FAILED' not in proc.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == \
        ['yolox.ncnn.bin', 'yolox.ncnn.json', 'yolox.ncnn.param']
    assert sorted(p.name for p in src.parent.iterdir()) == ['yolox.onnx']  # no pnnx litter
    side = sidecar(out)
    assert side['format'] == 'ncnn' and side['precision'] == 'fp32'
    assert side['inputs'] == [{'name': 'images', 'shape': [1, 3, 416, 416], 'dtype': 'float32',
                               'blob': 'in0'}]
    assert side['outputs'] == [{'name': 'output', 'shape': [1, 3549, 85], 'dtype': 'float32',
                                'blob': 'out0'}]
    assert any('space-to-depth' in r for r in side['converter']['rewrites'])
    text = out.read_text()
    assert 'Tensor.slice' not in text and 'Permute' in text


def test_ncnn_without_rewrite_names_the_layer(yolox_model, tmp_path):
    need_venv('ncnn')
    out = tmp_path / 'plain.ncnn.param'
    proc = run_convert('ncnn', yolox_model, '--no-rewrite', '-o', out)
    assert proc.returncode == 2
    assert 'Tensor.slice (x4)' in proc.stderr and 'step 2 is not supported' in proc.stderr
    assert not out.exists() and not out.with_suffix('.bin').exists()


def test_ncnn_fp16_scales_the_input_conv(yolox_model, tmp_path_factory):
    model = converted('ncnn', yolox_model, 'fp16', tmp_path_factory.mktemp('ncnn'))
    rewrites = sidecar(model)['converter']['rewrites']
    assert any('fp16: input conv' in r for r in rewrites), rewrites
    # the compensating scale runs in ncnn in front of the first convolution
    layers = [ln.split()[0] for ln in model.read_text().splitlines()[2:8]]
    assert layers[4:6] == ['BinaryOp', 'Convolution'], layers


def test_ncnn_yolov8_keeps_ultralytics_metadata(tmp_path_factory):
    onnx = yolov8_onnx()
    model = converted('ncnn', onnx, 'fp32', tmp_path_factory.mktemp('ncnn'))
    side = sidecar(model)
    assert 'names' in side['metadata'] and 'stride' in side['metadata']
    assert side['outputs'][0]['shape'][:2] == [1, 84]
    assert not any('space-to-depth' in r for r in side['converter']['rewrites'])


_REWRITE_CHECK = textwrap.dedent("""
    import numpy as np, onnx, onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from faster_deployment_ros.tools.convert_ncnn import rewrite_focus

    def focus_model(order, opset):
        nodes, inits = [], []
        def const(name, values):
            inits.append(numpy_helper.from_array(np.array(values, np.int64), name))
        const('big', [2 ** 62]); const('two', [2]); const('ax2', [2]); const('ax3', [3])
        const('zero', [0]); const('one', [1])
        outs = []
        for k, (dy, dx) in enumerate(order):
            s = f's{k}'
            nodes.append(helper.make_node(
                'Slice', ['x', 'one' if dy else 'zero', 'big', 'ax2', 'two'], [s + 'a']))
            nodes.append(helper.make_node(
                'Slice', [s + 'a', 'one' if dx else 'zero', 'big', 'ax3', 'two'], [s]))
            outs.append(s)
        nodes.append(helper.make_node('Concat', outs, ['cat'], axis=1))
        nodes.append(helper.make_node('Relu', ['cat'], ['y']))
        g = helper.make_graph(
            nodes, 'focus', [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 3, 8, 12])],
            [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 12, 4, 6])], inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid('', opset)])

    x = np.random.default_rng(0).normal(size=(1, 3, 8, 12)).astype(np.float32)
    for order, expect in [([(0, 0), (1, 0), (0, 1), (1, 1)], 1),   # YOLOX / YOLOv5
                          ([(0, 0), (0, 1), (1, 0), (1, 1)], 1),   # dy-major
                          ([(1, 1), (0, 0), (1, 0), (0, 1)], 0)]:  # no transpose gives this
        m = focus_model(order, 13)
        ref = ort.InferenceSession(m.SerializeToString()).run(None, {'x': x})[0]
        n = rewrite_focus(m, {'x': [1, 3, 8, 12]})
        assert n == expect, (order, n)
        ops = [node.op_type for node in m.graph.node]
        assert ('Slice' in ops) == (expect == 0), ops
        got = ort.InferenceSession(m.SerializeToString()).run(None, {'x': x})[0]
        assert np.array_equal(ref, got), order
    print('ok')
""")


def test_focus_rewrite_orders():
    """Both transposable channel orders are rewritten exactly; any other order is left alone."""
    need_venv('ncnn')
    proc = subprocess.run([str(VENVS['ncnn'] / 'bin' / 'python'), '-c', _REWRITE_CHECK],
                          capture_output=True, text=True, timeout=120,
                          env={'PYTHONPATH': str(ROOT), 'PATH': '/usr/bin:/bin'})
    assert proc.returncode == 0 and proc.stdout.strip() == 'ok', proc.stderr


def test_rknn_conversion_sidecar(yolox_model, tmp_path_factory):
    model = converted('rknn', yolox_model, 'fp16', tmp_path_factory.mktemp('rknn'))
    assert model.stat().st_size > 1_000_000
    side = sidecar(model)
    assert side['format'] == 'rknn' and side['target_platform'] == 'rk3588'
    assert side['preset'] == 'yolox' and side['channel_order'] == 'bgr'
    assert side['mean_values'] == [[0.0] * 3] and side['std_values'] == [[1.0] * 3]
    assert side['outputs'][0]['shape'] == [1, 3549, 85]
    assert side['converter'] == {'tool': 'rknn-toolkit2', 'version': '2.3.2'}


def test_rknn_yolov8_preset_from_metadata(tmp_path_factory):
    model = converted('rknn', yolov8_onnx(), 'fp16', tmp_path_factory.mktemp('rknn'))
    side = sidecar(model)
    assert side['preset'] == 'yolov8' and side['channel_order'] == 'rgb'
    assert side['std_values'] == [[255.0] * 3]


def test_rknn_clear_failures(yolox_model, tmp_path):
    need_venv('rknn')
    proc = run_convert('rknn', yolox_model, '--precision', 'int8', '-o', tmp_path / 'x.rknn')
    assert proc.returncode == 2 and 'int8 needs --calibration' in proc.stderr
    proc = run_convert('rknn', tmp_path / 'missing.onnx')
    assert proc.returncode == 2 and 'does not exist' in proc.stderr
    bad = tmp_path / 'bad.onnx'
    bad.write_bytes(b'not an onnx file')
    proc = run_convert('rknn', bad)
    assert proc.returncode == 2 and 'ONNX Runtime cannot load' in proc.stderr
    (tmp_path / 'list.txt').write_text('nowhere.jpg\n')
    proc = run_convert('rknn', yolox_model, '--precision', 'int8', '--calibration',
                       tmp_path / 'list.txt', '-o', tmp_path / 'x.rknn')
    assert proc.returncode == 2 and 'nowhere.jpg cannot be read' in proc.stderr


def test_missing_converter_venv_is_explained(yolox_model, tmp_path):
    proc = run_convert('--venv', tmp_path / 'no-venv', 'ncnn', yolox_model)
    assert proc.returncode == 2
    assert 'ncnn conversion needs' in proc.stderr and 'pnnx' in proc.stderr
