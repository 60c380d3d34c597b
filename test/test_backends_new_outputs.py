"""Instance masks, oriented boxes and semantic maps on every backend that runs their models.

Each model goes through the backend and the model adapter chosen from the backend's own tensor
specs (family auto), on real frames of ../shared/data, and is compared with the same adapter on
ONNX Runtime:

* instance masks (yolov8n-seg: two outputs, boxes + coefficients and prototypes): every
  reference detection matched (same class, box IoU > 0.5), each matched mask IoU >= 0.99;
* oriented boxes (yolo11n-obb): every reference box matched, centre and size within 1 px,
  angle within 1e-3 rad (regularised forms);
* semantic maps (LR-ASPP MobileNetV3): >= 99.9 % of the pixels get the same class.

Those bounds hold fp32 conversions (ncnn fp32; TensorRT fp32 under the stand-ins, whose engine
runs the ONNX model, so there they are nearly exact). fp16 conversions (ncnn fp16, the RKNN
simulator's fp16 build) are held to ONNX Runtime with the weights rounded to fp16: the test
models have random (conditioned) weights, whose wide distributions make fp16 alone move boxes by
tens of px and masks by several % IoU (measured below), so a fixed fp32-like bound would fail on
every correct fp16 build. Their drift may be at most twice that yardstick's: instance masks
(1 - mean IoU), oriented boxes (median centre error + 0.25 px), semantic maps (share of pixels
that change class); and at least 95 % of the reference detections must still be matched.

TensorRT: seg and OBB adapters declare no GPU decode (`decode_spec()` None: the GPU kernels
carry no mask coefficients or angles), so with `gpu_pipeline: true` the runtime logs why and
keeps pre/post-processing on the CPU, as the parameter table documents (tested). These tests
need a GPU (the stand-in engine reads device buffers) and are skipped without one.

Missing models, converter venvs or ncnn skip locally and fail in CI (support.shared_data.missing).
"""
from __future__ import annotations

import sys
import time
from typing import Dict, List

from faster_deployment_ros.backends import create_backend
from faster_deployment_ros.models import create_adapter
import numpy as np
import pytest
from support.edge_assets import (converted, fp16_weight_model, mask_ious, match_boxes,
                                 rbox_errors, real_frames)
from support.shared_data import CACHE, missing

MODELS = {'masks': 'yolov8n-seg', 'obb': 'yolo11n-obb', 'semantic': 'lraspp_mobilenet_v3_large'}
FAMILY = {'masks': 'yolov8', 'obb': 'obb', 'semantic': 'semantic_seg'}
KINDS = list(MODELS)
MIN_MASK_IOU = 0.99
OBB_PX, OBB_RAD = 1.0, 1e-3
MIN_AGREEMENT = 0.999
FP16_FACTOR = 2.0       # fp16 drift at most this many times fp16-rounded weights' own
FP16_MIN_MATCHED = 0.95


def onnx_model(kind: str):
    path = CACHE / 'models' / f'{MODELS[kind]}.onnx'
    if not path.exists():
        missing(f'{path} not built: run `bash scripts/test_assets.d/20_test_models.sh`')
    return path


def need_ncnn() -> None:
    try:
        import ncnn  # noqa: F401
    except ImportError:
        missing('the ncnn package is missing (requirements/runtime.txt)')


def run_model(backend, frames) -> tuple:
    """Return (adapter, results per frame, seconds per frame) of adapter + backend."""
    adapter = create_adapter('auto', backend.inputs, backend.outputs, backend.metadata)
    out, t0 = [], time.perf_counter()
    for _, frame in frames:
        inputs, meta = adapter.preprocess(frame)
        out.append(adapter.postprocess(backend.infer(inputs), meta))
    return adapter, out, (time.perf_counter() - t0) / len(frames)


@pytest.fixture(scope='module')
def frames():
    return real_frames()


_REFERENCE: Dict[str, list] = {}


@pytest.fixture
def reference(frames):
    """Return the ONNX Runtime results of a kind's model (computed once per module)."""
    def get(kind: str) -> list:
        if kind not in _REFERENCE:
            with create_backend('onnxruntime', str(onnx_model(kind)), threads=2) as b:
                adapter, results, seconds = run_model(b, frames)
            assert adapter.family == FAMILY[kind]
            print(f'onnxruntime {MODELS[kind]}: {seconds:.3f} s/frame')
            _REFERENCE[kind] = results
        return _REFERENCE[kind]
    return get


# ---------------------------------------------------------------- measures -------------------

def measure(kind: str, refs: list, gots: list) -> dict:
    """Differences of `gots` from `refs` over all frames (see the module doc)."""
    if kind == 'semantic':
        agree = [float((r.mask == g.mask).mean()) for r, g in zip(refs, gots)]
        assert all(r.mask.shape == g.mask.shape for r, g in zip(refs, gots))
        return {'agreement': min(agree), 'changed': 1.0 - float(np.mean(agree))}
    total = matched = 0
    ious: List[np.ndarray] = []
    errs: List[np.ndarray] = []
    for r, g in zip(refs, gots):
        assert len(r) > 0, 'the reference has no detections here: the case proves nothing'
        pairs = match_boxes(r, g)
        total, matched = total + len(r), matched + len(pairs[0])
        if kind == 'masks':
            ious.append(mask_ious(r, g, pairs))
        else:
            e = rbox_errors(r.obb[pairs[0]], g.obb[pairs[1]])
            errs.append(e[np.arange(len(pairs[0])), np.arange(len(pairs[0]))])
    out = {'matched': matched / total, 'detections': total}
    if kind == 'masks':
        iou = np.concatenate(ious)
        out.update(min_iou=float(iou.min()), mean_iou=float(iou.mean()))
    else:
        err = np.concatenate(errs)
        out.update(centre_px=float(err[:, 0].max()), size_px=float(err[:, 1].max()),
                   angle_rad=float(err[:, 2].max()),
                   median_centre_px=float(np.median(err[:, 0])))
    return out


def assert_fp32(kind: str, m: dict, what: str) -> None:
    print(f'{what} vs onnxruntime: {m}')
    if kind == 'semantic':
        assert m['agreement'] >= MIN_AGREEMENT, f'{what}: {m}'
        return
    assert m['matched'] == 1.0, f'{what}: reference detections without a match: {m}'
    if kind == 'masks':
        assert m['min_iou'] >= MIN_MASK_IOU, f'{what}: {m}'
    else:
        assert m['centre_px'] <= OBB_PX and m['size_px'] <= OBB_PX, f'{what}: {m}'
        assert m['angle_rad'] <= OBB_RAD, f'{what}: {m}'


_YARDSTICK: Dict[str, dict] = {}


def fp16_yardstick(kind: str, frames, refs, tmp_path_factory) -> dict:
    """measure() of ONNX Runtime with fp16-rounded weights (once per kind)."""
    if kind not in _YARDSTICK:
        onnx16 = fp16_weight_model(onnx_model(kind), tmp_path_factory.mktemp('fp16w'))
        with create_backend('onnxruntime', str(onnx16), threads=2) as b:
            _, gots, _ = run_model(b, frames)
        _YARDSTICK[kind] = measure(kind, refs, gots)
    return _YARDSTICK[kind]


def assert_fp16(kind: str, m: dict, yard: dict, what: str) -> None:
    print(f'{what} vs onnxruntime: {m}\n  onnxruntime, fp16-rounded weights: {yard}')
    if kind == 'semantic':
        assert m['changed'] <= FP16_FACTOR * yard['changed'], f'{what}: {m} vs {yard}'
        return
    assert m['matched'] >= FP16_MIN_MATCHED, f'{what}: {m}'
    if kind == 'masks':
        assert 1 - m['mean_iou'] <= FP16_FACTOR * (1 - yard['mean_iou']), f'{what}: {m} vs {yard}'
    else:
        assert m['median_centre_px'] <= FP16_FACTOR * yard['median_centre_px'] + 0.25, \
            f'{what}: {m} vs {yard}'


# ---------------------------------------------------------------- ncnn ----------------------

@pytest.mark.parametrize('kind', KINDS)
def test_ncnn_fp32(kind, frames, reference, tmp_path_factory):
    need_ncnn()
    refs = reference(kind)
    model = converted('ncnn', onnx_model(kind), 'fp32', tmp_path_factory.mktemp('ncnn'))
    with create_backend('ncnn', str(model), threads=2) as b:
        with create_backend('onnxruntime', str(onnx_model(kind))) as ort_b:
            # names, shapes and order of the outputs survive pnnx (seg: boxes, then prototypes)
            assert [(s.name, s.shape) for s in b.outputs] == \
                [(s.name, s.shape) for s in ort_b.outputs]
        adapter, gots, seconds = run_model(b, frames)
    assert adapter.family == FAMILY[kind]
    if kind == 'masks':
        assert adapter.num_masks == 32
    print(f'ncnn fp32 {MODELS[kind]}: {seconds:.3f} s/frame')
    assert_fp32(kind, measure(kind, refs, gots), f'ncnn fp32 {MODELS[kind]}')


@pytest.mark.slow
@pytest.mark.parametrize('kind', KINDS)
def test_ncnn_fp16(kind, frames, reference, tmp_path_factory):
    need_ncnn()
    refs = reference(kind)
    model = converted('ncnn', onnx_model(kind), 'fp16', tmp_path_factory.mktemp('ncnn'))
    with create_backend('ncnn', str(model), threads=2) as b:
        adapter, gots, seconds = run_model(b, frames)
    assert adapter.family == FAMILY[kind]
    print(f'ncnn fp16 {MODELS[kind]}: {seconds:.3f} s/frame')
    assert_fp16(kind, measure(kind, refs, gots),
                fp16_yardstick(kind, frames, refs, tmp_path_factory), f'ncnn fp16 {MODELS[kind]}')


# ---------------------------------------------------------------- RKNN simulator ------------

@pytest.mark.slow
@pytest.mark.parametrize('kind', KINDS)
def test_rknn_simulator_fp16(kind, frames, reference, tmp_path_factory):
    refs = reference(kind)
    model = converted('rknn', onnx_model(kind), 'fp16', tmp_path_factory.mktemp('rknn'))
    with create_backend('rknn', str(model), simulator=True) as b:
        adapter, gots, seconds = run_model(b, frames)
    assert adapter.family == FAMILY[kind]
    print(f'rknn simulator fp16 {MODELS[kind]}: {seconds:.3f} s/frame')
    assert_fp16(kind, measure(kind, refs, gots),
                fp16_yardstick(kind, frames, refs, tmp_path_factory),
                f'rknn simulator fp16 {MODELS[kind]}')


# ---------------------------------------------------------------- TensorRT (stand-ins) ------

@pytest.fixture(params=['8.6', '10', '11'])
def trt(request, monkeypatch):
    """Return the stand-in of one TensorRT version as `tensorrt` (test/support/trt_standins)."""
    from support.trt_standins import load
    module = load(request.param)
    monkeypatch.setitem(sys.modules, 'tensorrt', module)
    return module


@pytest.mark.gpu
@pytest.mark.parametrize('kind', KINDS)
def test_tensorrt_cpu_postprocess(kind, trt, frames, reference, tmp_path):
    """Run a TensorRT fp32 engine + the adapter's CPU post-processing: ONNX Runtime's output."""
    refs = reference(kind)
    with create_backend('tensorrt', str(onnx_model(kind)), precision='fp32',
                        cache_dir=str(tmp_path)) as b:
        with create_backend('onnxruntime', str(onnx_model(kind))) as ort_b:
            assert [(s.name, s.shape) for s in b.outputs] == \
                [(s.name, s.shape) for s in ort_b.outputs]
        adapter, gots, seconds = run_model(b, frames)
    if kind != 'semantic':
        assert adapter.decode_spec() is None  # no GPU decode for masks or angles
    assert_fp32(kind, measure(kind, refs, gots), f'tensorrt {trt.__version__} {MODELS[kind]}')


@pytest.mark.gpu
@pytest.mark.parametrize('kind', ['masks', 'obb'])
def test_tensorrt_gpu_pipeline_falls_back_to_cpu(kind, trt, frames, reference, tmp_path):
    """Run gpu_pipeline: true with a -seg / OBB model: logged, CPU post-processing, same output."""
    import threading

    from faster_deployment_ros.runtime.config import RuntimeConfig
    from faster_deployment_ros.runtime.perception_runtime import PerceptionRuntime
    refs = reference(kind)
    cfg = RuntimeConfig(model_path=str(onnx_model(kind)), backend='tensorrt', gpu_pipeline=True,
                        queue_size=len(frames), full_policy='block',
                        backend_options={'precision': 'fp32', 'cache_dir': str(tmp_path)})
    logs: List[str] = []
    results, done = [], threading.Event()

    def on_result(r):
        results.append(r)
        if len(results) == len(frames):
            done.set()
    runtime = PerceptionRuntime(cfg, lambda b: create_adapter('auto', b.inputs, b.outputs,
                                                              b.metadata),
                                on_result, log=logs.append, warn=logs.append)
    try:
        assert runtime.gpu_path is False
        assert any('pre/post-processing on the CPU' in line and 'no GPU pre/post-processing'
                   in line for line in logs), logs
        for i, (_, frame) in enumerate(frames):
            assert runtime.submit(frame, context=i)
        assert done.wait(120)
    finally:
        runtime.close()
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    gots = [r.result[0] for r in sorted(results, key=lambda r: r.context)]
    assert_fp32(kind, measure(kind, refs, gots), f'tensorrt runtime {MODELS[kind]}')


@pytest.mark.parametrize('kind', KINDS + ['detection'])
def test_gpu_path_declines_masks_angles_and_maps(kind):
    """Which adapters the runtime's GPU path takes (`PerceptionRuntime._stages`), no GPU needed.

    -seg and OBB adapters declare no GPU decode, so `specs_for_adapter` refuses them with the
    reason the runtime logs before keeping pre/post-processing on the CPU; the semantic adapter
    is not a detection task, which the GPU path is limited to; a plain detector is taken.
    """
    from faster_deployment_ros.gpu.pipeline import specs_for_adapter
    path = (CACHE / 'models' / 'yolov8n.onnx') if kind == 'detection' else onnx_model(kind)
    if not path.exists():
        missing(f'{path} not built: run `bash scripts/test_assets.d/20_test_models.sh`')
    with create_backend('onnxruntime', str(path)) as b:
        adapter = create_adapter('auto', b.inputs, b.outputs, b.metadata)
    if kind == 'detection':
        pre, dec = specs_for_adapter(adapter)
        assert adapter.task == 'detection' and dec.layout == 'yolov8'
    elif kind == 'semantic':
        assert adapter.task == 'segmentation' and adapter.decode_spec() is None
    else:
        assert adapter.task == 'detection' and adapter.decode_spec() is None
        with pytest.raises(ValueError, match='no GPU pre/post-processing for .*use the CPU'):
            specs_for_adapter(adapter)
