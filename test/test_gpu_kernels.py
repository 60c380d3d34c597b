"""GPU pre/post-processing kernels against the CPU reference (core.letterbox, the model adapters).

The GPU tests need an NVIDIA GPU and cuda-python; without them they skip with the reason.
Run them on a GPU host:  python -m pytest -v test/test_gpu_kernels.py
(FDR_SHARED=/path/to/shared when the test data is not in ../shared.) The first test needs no
GPU: it checks the integer resize model the kernel implements against cv2.resize itself.
"""
from __future__ import annotations

import cv2
from faster_deployment_ros.core.letterbox import letterbox, unletterbox_boxes
from faster_deployment_ros.core.nms import batched_nms, nms
from faster_deployment_ros.core.types import TensorSpec
from faster_deployment_ros.gpu import gpu_status
from faster_deployment_ros.gpu.resize_tables import linear_table, resize_linear_u8
from faster_deployment_ros.tools.frames import read_frames
import numpy as np
import pytest

GPU_OK, GPU_REASON = gpu_status()
gpu = pytest.mark.gpu  # skipped with the reason where no usable GPU is (conftest)


def _read_frames(path, count: int, step: int):
    frames = read_frames(path, count, step)
    if not frames:
        pytest.skip(f'cannot decode frames from {path}')
    return frames


@pytest.fixture(scope='module')
def frames(plaza_video, dog_image_path):
    """Real frames: 1280x720 video frames spread over the clip, plus the 768x576 dog photo."""
    out = _read_frames(plaza_video, 6, 40)
    assert out[0].shape == (720, 1280, 3)
    out.append(cv2.imread(str(dog_image_path)))
    return out


# ------------------------------------------------------------------ no GPU needed ----------

def test_resize_model_equals_opencv_on_downscales(frames):
    """The kernel's integer arithmetic (tables + fixed-point rows) is cv2.resize, bit for bit."""
    for f in frames[:3] + frames[-1:]:
        for w, h in [(416, 234), (640, 360), (320, 180), (417, 235), (333, 251)]:
            ref = cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR)
            got = resize_linear_u8(f, w, h)
            assert np.array_equal(got, ref), (f.shape, w, h, np.abs(got.astype(int) - ref).max())


def test_resize_model_upscale_within_one_level(frames):
    f = frames[0][:200, :300]
    ref = cv2.resize(f, (517, 345), interpolation=cv2.INTER_LINEAR).astype(int)
    assert np.abs(resize_linear_u8(f, 517, 345).astype(int) - ref).max() <= 1


def test_linear_table_borders_and_weights():
    ofs, coef = linear_table(1280, 416)
    assert ofs.min() >= 0 and ofs.max() <= 1279
    assert np.all(coef.astype(int).sum(1) == 2048)  # weights always sum to one
    ofs, coef = linear_table(10, 40)  # upscale clamps both ends to the edge pixel
    assert ofs[0] == 0 and tuple(coef[0]) == (2048, 0)
    assert ofs[-1] == 9 and tuple(coef[-1]) == (2048, 0)
    with pytest.raises(ValueError):
        linear_table(0, 10)


# ------------------------------------------------------------------ GPU -------------------

@pytest.fixture(scope='module')
def device():
    if not GPU_OK:
        pytest.skip(GPU_REASON)
    from faster_deployment_ros.gpu.cuda import get_device
    return get_device(0)


@gpu
@pytest.mark.parametrize('center', [False, True])
@pytest.mark.parametrize('size', [(416, 416), (640, 640), (384, 640)])
def test_letterbox_u8_equals_cpu(device, frames, center, size):
    from faster_deployment_ros.core.specs import PreprocessSpec
    from faster_deployment_ros.gpu.preprocess import GpuLetterbox
    lb = GpuLetterbox(PreprocessSpec(size=size, center=center), device=device)
    try:
        for f in frames:
            ref, ref_meta = letterbox(f, size, pad_value=114, center=center)
            got, meta = lb.letterbox_u8(f)
            assert meta == ref_meta
            diff = np.abs(got.astype(int) - ref.astype(int))
            assert diff.max() <= 1, (f.shape, size, center, diff.max())
            # Bit-exact on downscales is what the fixed-point model promises; allow 1 LSB anyway.
            assert (diff == 0).mean() > 0.999
    finally:
        lb.close()


@gpu
@pytest.mark.parametrize('preset_name,dtype', [('yolox', 'float32'), ('ultralytics', 'float32'),
                                               ('ultralytics', 'float16')])
def test_chw_tensor_equals_cpu(device, frames, preset_name, dtype):
    from faster_deployment_ros.core.specs import preset
    from faster_deployment_ros.gpu.pipeline import preprocess_cpu
    from faster_deployment_ros.gpu.preprocess import GpuLetterbox
    spec = preset(preset_name, (416, 416) if preset_name == 'yolox' else (640, 640), dtype)
    lb = GpuLetterbox(spec, device=device)
    try:
        for f in frames:
            lb.output.fill_u8(0xFF, lb.stream)  # NaN poison: every element must be written
            meta = lb.run(f)
            got = lb.download().astype(np.float32)
            ref, ref_meta = preprocess_cpu(f, spec)
            assert meta == ref_meta
            assert not np.isnan(got).any()
            one_level = max(spec.scale) * (1 + 1e-3)  # 1 LSB of the 8-bit letterbox
            assert np.abs(got - ref.astype(np.float32)).max() <= one_level
    finally:
        lb.close()


@gpu
@pytest.mark.parametrize('staging', ['direct', 'pinned'])
def test_staging_modes_roi_and_bgra_inputs(device, frames, staging):
    """A non-contiguous ROI and a 4-channel BGRA frame give the BGR letterbox, either staging."""
    from faster_deployment_ros.core.specs import PreprocessSpec
    from faster_deployment_ros.gpu.preprocess import GpuLetterbox
    lb = GpuLetterbox(PreprocessSpec(size=(416, 416)), device=device, staging=staging)
    try:
        roi = frames[1][100:600, 200:1100]
        bgra = cv2.cvtColor(frames[2], cv2.COLOR_BGR2BGRA)
        for img, bgr in ((roi, roi), (bgra, frames[2]), (frames[0], frames[0])):
            got, meta = lb.letterbox_u8(img)
            ref, ref_meta = letterbox(np.ascontiguousarray(bgr), (416, 416), pad_value=114)
            assert meta == ref_meta
            assert np.abs(got.astype(int) - ref).max() <= 1
    finally:
        lb.close()
    with pytest.raises(ValueError, match='staging'):
        GpuLetterbox(PreprocessSpec(size=(416, 416)), device=device, staging='mapped')


@gpu
def test_imagenet_style_normalisation(device, frames):
    from faster_deployment_ros.core.specs import PreprocessSpec
    from faster_deployment_ros.gpu.pipeline import preprocess_cpu
    from faster_deployment_ros.gpu.preprocess import GpuLetterbox
    mean_rgb, std_rgb = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    spec = PreprocessSpec(size=(518, 518), center=True, pad_value=0, swap_rb=True,
                          mean=tuple(255 * mean_rgb), scale=tuple(1 / (255 * std_rgb)))
    lb = GpuLetterbox(spec, device=device)
    try:
        lb.run(frames[0])
        got = lb.download()
        ref, _ = preprocess_cpu(frames[0], spec)
        assert np.abs(got - ref).max() <= max(spec.scale) * (1 + 1e-3)
    finally:
        lb.close()


@gpu
def test_yolox_adapter_tensor_equals_gpu(device, frames, yolox_model):
    """The GPU tensor equals what the YOLOX adapter feeds ONNX Runtime (within 1 level)."""
    from faster_deployment_ros.backends import create_backend
    from faster_deployment_ros.gpu.pipeline import specs_for_adapter
    from faster_deployment_ros.gpu.preprocess import GpuLetterbox
    from faster_deployment_ros.models import create_adapter
    with create_backend('onnxruntime', str(yolox_model)) as be:
        adapter = create_adapter('yolox', be.inputs, be.outputs, be.metadata)
    pre, _ = specs_for_adapter(adapter)
    lb = GpuLetterbox(pre, device=device)
    try:
        for f in frames:
            (ref,), ref_meta = adapter.preprocess(f)
            assert lb.run(f) == ref_meta
            assert np.abs(lb.download() - ref).max() <= 1.0
    finally:
        lb.close()


def _assert_same_detections(got, ref, what=''):
    boxes, scores, classes = got
    assert len(scores) == len(ref.scores), (what, len(scores), len(ref.scores))
    np.testing.assert_array_equal(classes, ref.class_ids, err_msg=what)
    np.testing.assert_allclose(scores, ref.scores, rtol=1e-6, atol=1e-7, err_msg=what)
    np.testing.assert_allclose(boxes, ref.boxes, rtol=1e-5, atol=2e-3, err_msg=what)


def _upload(device, stream, array):
    from faster_deployment_ros.gpu.cuda import DeviceBuffer
    arr = np.ascontiguousarray(array, np.float32)
    buf = DeviceBuffer(arr.nbytes, device)
    buf.upload(arr, stream)
    stream.synchronize()
    return buf


@pytest.fixture(scope='module')
def yolox_runs(frames, yolox_model):
    """(frame, ONNX Runtime output, meta) for real frames through the real YOLOX-nano model."""
    from faster_deployment_ros.backends import create_backend
    from faster_deployment_ros.models import create_adapter
    be = create_backend('onnxruntime', str(yolox_model))
    adapter = create_adapter('yolox', be.inputs, be.outputs, be.metadata)
    runs = []
    for f in frames:
        inputs, meta = adapter.preprocess(f)
        runs.append((f, be.infer(inputs)[0], meta))
    yield be, runs
    be.close()


@gpu
@pytest.mark.parametrize('params', [
    {},                                               # the adapter's defaults (conf 0.3, aware)
    {'class_agnostic': True},
    {'conf_threshold': 0.01, 'nms_threshold': 0.6},   # hundreds of candidates
    {'conf_threshold': 0.05, 'max_detections': 5},    # truncation at max_detections
])
def test_yolox_decode_equals_adapter(device, yolox_runs, params):
    from faster_deployment_ros.gpu.cuda import Stream
    from faster_deployment_ros.gpu.pipeline import specs_for_adapter
    from faster_deployment_ros.gpu.postprocess import GpuDetectionDecoder
    from faster_deployment_ros.models import create_adapter
    be, runs = yolox_runs
    adapter = create_adapter('yolox', be.inputs, be.outputs, be.metadata, **params)
    _, spec = specs_for_adapter(adapter)
    stream = Stream(device)
    dec = GpuDetectionDecoder(spec, be.outputs[0].shape, adapter.input_size, stream, device)
    total = 0
    try:
        for _, out, meta in runs:
            ref = adapter.postprocess([out], meta)
            buf = _upload(device, stream, out)
            try:
                _assert_same_detections(dec(buf.ptr, meta), ref, str(params))
            finally:
                buf.close()
            total += len(ref)
    finally:
        dec.close()
    assert total > 0  # the frames do contain people: a decoder returning nothing must fail


@gpu
def test_yolox_full_gpu_path_equals_cpu_path(device, yolox_runs):
    """Frame -> GPU letterbox -> model -> GPU decode equals the CPU adapter around the model.

    The model is ONNX Runtime on the CPU behind a copy (TensorRT is not available).
    """
    from faster_deployment_ros.gpu.cuda import DeviceBuffer
    from faster_deployment_ros.gpu.pipeline import GpuFramePipeline, specs_for_adapter
    from faster_deployment_ros.models import create_adapter
    be, runs = yolox_runs
    adapter = create_adapter('yolox', be.inputs, be.outputs, be.metadata)
    pre, dec = specs_for_adapter(adapter)
    in_buf = DeviceBuffer(pre.nbytes, device)
    out_shape = be.outputs[0].shape
    out_buf = DeviceBuffer(int(np.prod(out_shape)) * 4, device)
    host_in = np.empty(pre.tensor_shape, np.float32)

    def run_model(stream):
        in_buf.download(host_in, stream)
        stream.synchronize()
        out = np.ascontiguousarray(be.infer([host_in])[0], np.float32)
        out_buf.upload(out, stream)
        stream.synchronize()

    pipe = GpuFramePipeline(pre, in_buf, out_buf, out_shape, run_model, dec, device=device)
    try:
        for f, _, _ in runs:
            ref = adapter.postprocess(*adapter_forward(be, adapter, f))
            boxes, scores, classes, _ = pipe.detect(f)
            _assert_same_detections((boxes, scores, classes), ref)
            raw, meta = pipe.infer(f)
            _assert_same_detections(
                _tuple(adapter.postprocess([raw], meta)), ref)
    finally:
        pipe.close()
        in_buf.close()
        out_buf.close()


def adapter_forward(be, adapter, frame):
    inputs, meta = adapter.preprocess(frame)
    return be.infer(inputs), meta


def _tuple(dets):
    return dets.boxes, dets.scores, dets.class_ids


def _synthetic_v8(rng, num_classes=80, size=(640, 640), hot=60):
    """Return a (1, 4 + C, N) YOLOv8 head output.

    Boxes spread over the image, sigmoid-like scores mostly near zero with `hot` confident anchors
    clustered into overlapping groups.
    """
    n = sum((size[0] // s) * (size[1] // s) for s in (8, 16, 32))
    pred = np.empty((4 + num_classes, n), np.float32)
    pred[0] = rng.uniform(0, size[1], n)
    pred[1] = rng.uniform(0, size[0], n)
    pred[2] = rng.uniform(4, 200, n)
    pred[3] = rng.uniform(4, 200, n)
    pred[4:] = rng.beta(0.3, 12, (num_classes, n)).astype(np.float32)
    centres = rng.uniform(50, min(size) - 50, (hot // 6, 2))
    idx = rng.choice(n, hot, replace=False)
    for k, a in enumerate(idx):  # clusters of near-duplicate boxes: NMS has work to do
        c = centres[k % len(centres)]
        pred[0, a], pred[1, a] = c + rng.normal(0, 6, 2)
        pred[2, a], pred[3, a] = rng.uniform(60, 120, 2)
        pred[4 + rng.integers(0, 3), a] = rng.uniform(0.3, 0.99)
    return pred[None]


def _v8_adapter(**params):
    from faster_deployment_ros.models.yolov8 import Yolov8Adapter
    return Yolov8Adapter([TensorSpec('images', (1, 3, 640, 640))],
                         [TensorSpec('output0', (1, 84, 8400))], {}, **params)


@gpu
@pytest.mark.parametrize('params', [{}, {'class_agnostic': True}, {'conf_threshold': 0.05},
                                    {'conf_threshold': 0.1, 'max_detections': 7}])
def test_yolov8_decode_equals_adapter(device, params):
    pytest.importorskip('faster_deployment_ros.models.yolov8')
    from faster_deployment_ros.core.letterbox import letterbox_geometry, LetterboxMeta
    from faster_deployment_ros.gpu.cuda import Stream
    from faster_deployment_ros.gpu.pipeline import specs_for_adapter
    from faster_deployment_ros.gpu.postprocess import GpuDetectionDecoder
    adapter = _v8_adapter(**params)
    _, spec = specs_for_adapter(adapter)
    stream = Stream(device)
    dec = GpuDetectionDecoder(spec, (1, 84, 8400), adapter.input_size, stream, device)
    rng = np.random.default_rng(1234)
    try:
        for src_hw in [(720, 1280), (576, 768), (480, 640)]:
            r, nw, nh, left, top = letterbox_geometry(src_hw, (640, 640), center=True,
                                                      rounding='round')
            meta = LetterboxMeta(r, float(left), float(top), src_hw[1], src_hw[0])
            pred = _synthetic_v8(rng)
            ref = adapter.postprocess([pred], meta)
            assert len(ref) > 0
            buf = _upload(device, stream, pred)
            try:
                _assert_same_detections(dec(buf.ptr, meta), ref, f'{params} {src_hw}')
            finally:
                buf.close()
    finally:
        dec.close()


def _reference_topk(pred, conf, iou, max_det, top_k, meta, agnostic):
    """Plain NumPy: best class, threshold, exact top-k by (score desc, index asc), NMS."""
    p = pred[0]
    cls = p[4:]
    ids = cls.argmax(0)
    scores = cls.max(0)
    cand = np.flatnonzero(scores > np.float32(conf))
    order = cand[np.lexsort((cand, -scores[cand]))][:top_k]
    half = p[2:4, order] * np.float32(0.5)
    boxes = np.concatenate((p[0:2, order] - half, p[0:2, order] + half), 0).T
    keep = (nms(boxes, scores[order], iou) if agnostic
            else batched_nms(boxes, scores[order], ids[order], iou))[:max_det]
    return unletterbox_boxes(boxes[keep], meta), scores[order][keep], ids[order][keep]


@gpu
@pytest.mark.parametrize('top_k', [256, 4096])
def test_top_k_radix_select_is_exact(device, top_k):
    """More candidates than top_k (all 8400 anchors pass): the kept set is exactly the top-k."""
    from faster_deployment_ros.core.letterbox import LetterboxMeta
    from faster_deployment_ros.core.specs import DecodeSpec
    from faster_deployment_ros.gpu.cuda import Stream
    from faster_deployment_ros.gpu.postprocess import GpuDetectionDecoder
    rng = np.random.default_rng(7)
    pred = _synthetic_v8(rng)
    pred[0, 4:] += 0.02  # every anchor over the threshold
    pred[0, 4, :50] = 0.5  # ties: equal scores must be ordered by anchor index
    spec = DecodeSpec(layout='yolov8', conf_threshold=0.01, nms_threshold=0.5,
                      max_detections=300, top_k=top_k)
    meta = LetterboxMeta(0.5, 0.0, 140.0, 1280, 720)
    stream = Stream(device)
    dec = GpuDetectionDecoder(spec, pred.shape, (640, 640), stream, device)
    buf = _upload(device, stream, pred)
    try:
        got = dec(buf.ptr, meta)
    finally:
        buf.close()
        dec.close()
    boxes, scores, ids = _reference_topk(pred, 0.01, 0.5, 300, top_k, meta, False)
    assert len(got[1]) == len(scores)
    np.testing.assert_array_equal(got[2], ids)
    np.testing.assert_array_equal(got[1], scores)
    np.testing.assert_allclose(got[0], boxes, rtol=1e-5, atol=2e-3)


@gpu
def test_no_candidates_gives_empty(device):
    from faster_deployment_ros.core.letterbox import LetterboxMeta
    from faster_deployment_ros.core.specs import DecodeSpec
    from faster_deployment_ros.gpu.cuda import Stream
    from faster_deployment_ros.gpu.postprocess import GpuDetectionDecoder
    pred = np.zeros((1, 3549, 85), np.float32)
    stream = Stream(device)
    dec = GpuDetectionDecoder(DecodeSpec(layout='yolox'), pred.shape, (416, 416), stream, device)
    buf = _upload(device, stream, pred)
    try:
        boxes, scores, ids = dec(buf.ptr, LetterboxMeta(0.325, 0, 0, 1280, 720))
        assert boxes.shape == (0, 4) and scores.shape == (0,) and ids.shape == (0,)
    finally:
        buf.close()
        dec.close()


@gpu
def test_kernel_argument_count_is_checked(device):
    from faster_deployment_ros.gpu.cuda import Stream
    from faster_deployment_ros.gpu.kernels import get_module
    with pytest.raises(TypeError, match='takes'):
        get_module(device)['decode_candidates'].launch((1,), (32,), (0, 1), Stream(device))


@gpu
def test_workers_on_their_own_threads_and_streams(device, yolox_runs):
    """As the pipeline uses them.

    Built on the main thread, each called from its own worker thread (where no CUDA context is
    current yet), two streams concurrently; same results.
    """
    import threading
    from faster_deployment_ros.gpu.cuda import Stream
    from faster_deployment_ros.gpu.pipeline import preprocess_cpu, specs_for_adapter
    from faster_deployment_ros.gpu.postprocess import GpuDetectionDecoder
    from faster_deployment_ros.gpu.preprocess import GpuLetterbox
    from faster_deployment_ros.models import create_adapter
    be, runs = yolox_runs
    adapter = create_adapter('yolox', be.inputs, be.outputs, be.metadata)
    pre, spec = specs_for_adapter(adapter)
    workers = []
    for _ in range(2):
        stream = Stream(device)
        workers.append((GpuLetterbox(pre, stream, device),
                        GpuDetectionDecoder(spec, be.outputs[0].shape, adapter.input_size, stream,
                                            device)))
    errors = []

    def work(k):
        lb, dec = workers[k]
        try:
            for rep in range(5):
                for f, out, meta in runs[k::2]:
                    assert lb.run(f) == meta
                    got = lb.download()
                    assert np.abs(got - preprocess_cpu(f, pre)[0]).max() <= 1.0
                    buf = _upload(device, lb.stream, out)
                    try:
                        _assert_same_detections(dec(buf.ptr, meta),
                                                adapter.postprocess([out], meta))
                    finally:
                        buf.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for lb, dec in workers:
        lb.close()
        dec.close()
    assert not errors, errors
