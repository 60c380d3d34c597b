"""TensorRT backend: cached engine, one execution context + CUDA stream per worker.

Presents the same tensors as ONNX Runtime (names, shapes, float32 I/O; metadata from a sidecar
JSON beside the engine), so model adapters work unchanged through `infer`. Device buffers and
pinned host buffers are allocated once and their addresses set on the context once; a call is
copy in -> execute_async_v3 -> copy out on the worker's stream.

GPU fast path (opt-in, `supports_gpu_pipeline`): `enable_gpu_pipeline(pre, decode)` makes
`detect_image(bgr)` letterbox on the GPU straight into the engine's input buffer and decode +
NMS on the GPU, returning final detections with one small device->host copy; `infer_image(bgr)`
does the GPU pre-processing only and returns the raw outputs for the adapter's CPU decode.
See docs/tensorrt_gpu.md.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from ..core.types import Detections
from .base import Backend, BackendError, flag_option, TensorSpec
from . import tensorrt_engine as E

_OPTIONS = ('device', 'precision', 'workspace', 'cache_dir', 'timing_cache', 'input_shape',
            'int8_calibration', 'calibration_cache', 'calibration_limit', 'calibration_preprocess',
            'rebuild', 'verbose', 'worker_index')
ENGINE_SUFFIXES = ('.engine', '.plan', '.trt')


def parse_options(options: Dict[str, Any]) -> Dict[str, Any]:
    """Validated options with defaults; unknown names and bad values fail with what is accepted."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise BackendError(f'unknown tensorrt option(s) {", ".join(unknown)}; accepted: '
                           f'{", ".join(_OPTIONS)}')
    o = dict(options)
    precision = str(o.get('precision') or 'fp16').lower()
    if precision not in E.PRECISIONS:
        raise BackendError(f'tensorrt precision must be one of {", ".join(E.PRECISIONS)}, '
                           f'not {precision!r}')
    try:
        workspace = E.parse_bytes(o.get('workspace') or '1GiB')
        shapes = E.parse_input_shapes(o.get('input_shape'))
        device = int(o.get('device') or 0)
        limit = int(o.get('calibration_limit') or 0)
    except (TypeError, ValueError) as exc:
        raise BackendError(f'tensorrt option: {exc}') from None
    if device < 0:
        raise BackendError(f'tensorrt device must be a GPU index >= 0, not {device}')
    calib = o.get('int8_calibration') or None
    calib_cache = o.get('calibration_cache') or None
    if precision == 'int8' and not calib and not (calib_cache and Path(calib_cache).is_file()):
        raise BackendError('tensorrt precision int8 needs int8_calibration (a folder or list of '
                           'images) or an existing calibration_cache')
    return dict(precision=precision, workspace=workspace, input_shapes=shapes, device=device,
                cache_dir=Path(o['cache_dir']) if o.get('cache_dir') else E.default_cache_dir(),
                timing_cache=Path(o['timing_cache']) if o.get('timing_cache') else None,
                int8_calibration=calib, calibration_cache=Path(calib_cache) if calib_cache else None,
                calibration_limit=limit,
                calibration_preprocess=str(o.get('calibration_preprocess') or 'yolox'),
                rebuild=flag_option(o.get('rebuild'), 'tensorrt option rebuild', False),
                verbose=flag_option(o.get('verbose'), 'tensorrt option verbose', False))


def onnx_signature(path: Path) -> Tuple[List[Tuple[str, Tuple[Any, ...]]], Dict[str, str]]:
    """(inputs as (name, shape with None for dynamic dims), metadata) read with ONNX Runtime."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendError('reading the ONNX model needs onnxruntime (pip install onnxruntime)') from None
    try:
        sess = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    except Exception as exc:  # ORT raises several private exception types
        raise BackendError(f'cannot read ONNX model {path}: {exc}') from None
    inputs = [(i.name, tuple(d if isinstance(d, int) else None for d in i.shape))
              for i in sess.get_inputs()]
    return inputs, dict(sess.get_modelmeta().custom_metadata_map or {})


def _sidecar(engine: Path) -> Path:
    return engine.with_name(engine.name + '.json')


# Engines are shared by the workers of a process; each worker has its own context and stream.
_engines_lock = threading.Lock()
_engines: Dict[str, Any] = {}


class TensorRTBackend(Backend):
    """Runs an ONNX model (built and cached as a TensorRT engine) or a prebuilt .engine file.

    Options: device (GPU index, 0), precision (fp16 | fp32 | int8), workspace ('1GiB'),
    cache_dir (engine cache; default ~/.cache/faster_deployment_ros/tensorrt or $FDR_TRT_CACHE),
    timing_cache (file, reused across builds), input_shape ('images:1x3x640x640' for dynamic
    models), int8_calibration (image folder or list file), calibration_cache (file),
    calibration_limit (images, 0 = all), calibration_preprocess ('yolox' | 'ultralytics'),
    rebuild (ignore a cached engine), verbose (TensorRT builder log).
    """

    name = 'tensorrt'
    supports_gpu_pipeline = True

    def __init__(self, model_path: str, **options: Any) -> None:
        super().__init__(model_path, **options)
        self._opts = parse_options(options)
        path = Path(os.fspath(model_path))
        if not path.is_file():
            raise BackendError(f'model file not found: {path}')
        if path.suffix.lower() not in ('.onnx', *ENGINE_SUFFIXES):
            raise BackendError(f'the tensorrt backend loads .onnx (built and cached) or '
                               f'{"/".join(ENGINE_SUFFIXES)} files, not {path.name}')
        trt = E.import_tensorrt()
        self._api = E.TrtApi(trt)
        from ..gpu.cuda import DeviceBuffer, GpuUnavailable, PinnedBuffer, Stream, get_device
        try:
            self._device = get_device(self._opts['device'])
        except GpuUnavailable as exc:
            raise BackendError(f'the tensorrt backend needs an NVIDIA GPU: {exc}') from None
        self.engine_path, self._metadata = self._resolve_engine(path)
        self._engine = self._load_engine(self.engine_path)
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BackendError(f'TensorRT could not create an execution context for '
                               f'{self.engine_path} (out of GPU memory?)')
        self._stream = Stream(self._device)
        io = self._api.io_tensors(self._engine)
        for t in io:  # dynamic engines are built for one shape: min = opt = max
            if t.is_input and any(d < 0 for d in t.shape):
                shape = self._opts['input_shapes'].get(t.name) or self._profile_shape(t.name)
                self._context.set_input_shape(t.name, shape)
        io = self._api.io_tensors(self._engine, self._context)
        self._io = io
        self._dev: Dict[str, DeviceBuffer] = {}
        self._host: Dict[str, PinnedBuffer] = {}
        for t in io:
            if any(d < 0 for d in t.shape):
                raise BackendError(f'tensor {t.name!r} still has a dynamic shape {t.shape}; give '
                                   'input_shape')
            nbytes = int(np.prod(t.shape)) * t.dtype.itemsize
            self._dev[t.name] = DeviceBuffer(nbytes, self._device)
            self._host[t.name] = PinnedBuffer(t.shape, t.dtype, self._device)
            self._context.set_tensor_address(t.name, self._dev[t.name].ptr)  # once, not per call
        self._in = [t for t in io if t.is_input]
        self._out = [t for t in io if not t.is_input]
        self._pipeline = None

    # ---- engine cache ---------------------------------------------------------------------

    def _resolve_engine(self, path: Path) -> Tuple[Path, Dict[str, str]]:
        if path.suffix.lower() in ENGINE_SUFFIXES:
            side = _sidecar(path)
            meta = json.loads(side.read_text()).get('metadata', {}) if side.is_file() else {}
            return path, {str(k): str(v) for k, v in meta.items()}
        engine, key, meta, _ = prepare_engine(path, self._opts, self._api, self._device,
                                              log=lambda s: None)
        return engine, meta

    def _load_engine(self, path: Path) -> Any:
        with _engines_lock:
            entry = _engines.get(str(path))
            if entry is None:
                trt = self._api.trt
                runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
                engine = runtime.deserialize_cuda_engine(path.read_bytes())
                if engine is None:
                    raise BackendError(f'TensorRT cannot deserialize {path}: built by another '
                                       'TensorRT version or for another GPU? Delete it or set '
                                       'rebuild: true')
                entry = _engines[str(path)] = (runtime, engine)  # runtime outlives engine
        return entry[1]

    def _profile_shape(self, name: str) -> Tuple[int, ...]:
        shapes = self._engine.get_tensor_profile_shape(name, 0)  # (min, opt, max)
        return tuple(int(d) for d in shapes[1])

    # ---- Backend interface ----------------------------------------------------------------

    @property
    def inputs(self) -> List[TensorSpec]:
        return [TensorSpec(t.name, t.shape, t.dtype) for t in self._in]

    @property
    def outputs(self) -> List[TensorSpec]:
        return [TensorSpec(t.name, t.shape, t.dtype) for t in self._out]

    def infer(self, inputs: Sequence[np.ndarray]) -> List[np.ndarray]:
        if self._context is None:
            raise BackendError('the tensorrt backend was closed')
        self._device.activate()  # the pipeline calls from its worker thread
        if len(inputs) != len(self._in):
            raise BackendError(f'engine takes {len(self._in)} input(s) '
                               f'({", ".join(t.name for t in self._in)}), got {len(inputs)}')
        for t, x in zip(self._in, inputs):
            x = np.asarray(x)
            if x.shape != t.shape:
                raise BackendError(f'input {t.name!r} must be {t.shape}, got {x.shape}')
            host = self._host[t.name].array
            np.copyto(host, x, casting='same_kind' if x.dtype.kind == 'f' else 'unsafe')
            self._dev[t.name].upload(host, self._stream)
        self._api.execute(self._context, self._stream.handle)
        for t in self._out:
            self._dev[t.name].download(self._host[t.name].array, self._stream)
        self._stream.synchronize()
        # Copies: the pinned buffers are reused by the next call while the caller holds these.
        return [self._host[t.name].array.copy() for t in self._out]

    # ---- GPU fast path --------------------------------------------------------------------

    def enable_gpu_pipeline(self, preprocess: Any, decode: Any = None) -> None:
        """Pre-process (and optionally decode) on the GPU: see gpu.pipeline.specs_for_adapter."""
        from ..gpu.pipeline import GpuFramePipeline
        if len(self._in) != 1:
            raise BackendError('the GPU pipeline handles single-input models')
        t_in, t_out = self._in[0], self._out[0]
        if tuple(preprocess.tensor_shape) != t_in.shape or np.dtype(preprocess.dtype) != t_in.dtype:
            raise BackendError(f'GPU pre-processing makes {preprocess.tensor_shape} '
                               f'{preprocess.dtype}; the engine input is {t_in.shape} {t_in.dtype}')
        self._pipeline = GpuFramePipeline(
            preprocess, self._dev[t_in.name], self._dev[t_out.name], t_out.shape,
            lambda stream: self._api.execute(self._context, stream.handle), decode,
            stream=self._stream, device=self._device, output_dtype=t_out.dtype)

    def infer_image(self, image_bgr: np.ndarray) -> Tuple[List[np.ndarray], Any]:
        """([first output], LetterboxMeta): GPU letterbox + engine; decode stays with the adapter."""
        out, meta = self._require_pipeline().infer(image_bgr)
        return [out], meta

    def detect_image(self, image_bgr: np.ndarray, class_names: Sequence[str] = ()) -> Detections:
        """Final detections in source pixels: GPU letterbox, engine, GPU decode + NMS."""
        boxes, scores, classes, _ = self._require_pipeline().detect(image_bgr)
        return Detections(boxes, scores, classes, list(class_names))

    def _require_pipeline(self) -> Any:
        if self._pipeline is None:
            raise BackendError('call enable_gpu_pipeline(preprocess, decode) first')
        return self._pipeline

    def describe(self) -> str:
        return (f'tensorrt {self._api.version_text} engine={self.engine_path} '
                f'gpu={self._device.info.name} precision={self._opts["precision"]}')

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.close()
            self._pipeline = None
        for b in (*getattr(self, '_dev', {}).values(), *getattr(self, '_host', {}).values()):
            b.close()
        self._dev, self._host = {}, {}
        if getattr(self, '_stream', None) is not None:
            self._stream.close()
            self._stream = None
        self._context = None


def prepare_engine(onnx_path: Path, opts: Dict[str, Any], api: Any, device: Any,
                   log=print) -> Tuple[Path, 'E.EngineKey', Dict[str, str], bool]:
    """(engine path, key, metadata, built): the cached engine for this model and settings,
    building (and caching) it first when there is none or `rebuild` is set."""
    inputs, metadata = onnx_signature(onnx_path)
    try:
        shapes = E.resolve_input_shapes(inputs, opts['input_shapes'])
    except ValueError as exc:
        raise BackendError(str(exc)) from None
    calib_paths: List[Path] = []
    calib_id = ''
    if opts['precision'] == 'int8' and opts['int8_calibration']:
        try:
            calib_paths = E.list_calibration_images(opts['int8_calibration'],
                                                    opts['calibration_limit'] or None)
        except ValueError as exc:
            raise BackendError(str(exc)) from None
        calib_id = E.calibration_fingerprint(calib_paths, opts['calibration_preprocess'])
    elif opts['precision'] == 'int8':
        calib_id = 'cache:' + E.file_sha256(opts['calibration_cache'])[:16]
    key = E.EngineKey.create(E.file_sha256(onnx_path), api.version_text, device.info.name,
                             device.info.compute_capability, opts['precision'],
                             opts['workspace'], shapes, calib_id)
    path = E.engine_path(opts['cache_dir'], onnx_path, key)
    if path.is_file() and not opts['rebuild']:
        log(f'using cached engine {path}')
        return path, key, metadata, False
    preprocess = None
    if calib_paths:
        from ..core.specs import preset
        from ..gpu.pipeline import preprocess_cpu
        shape = shapes[inputs[0][0]]
        spec = preset(opts['calibration_preprocess'], (shape[2], shape[3]))
        preprocess = lambda img: preprocess_cpu(img, spec)[0]  # noqa: E731
    build = E.BuildOptions(precision=opts['precision'], workspace_bytes=opts['workspace'],
                           input_shapes=shapes, timing_cache=opts['timing_cache'],
                           calibration_images=calib_paths,
                           calibration_cache=opts['calibration_cache'],
                           calibration_preprocess=preprocess, calibration_id=calib_id,
                           verbose=opts['verbose'])
    data = E.build_engine(api, onnx_path, build, device, log=log)
    E.atomic_write(path, data)
    side = {'source_model': str(onnx_path), 'key': key.as_dict(), 'metadata': metadata,
            'inputs': [{'name': n, 'shape': list(s)} for n, s in shapes.items()]}
    E.atomic_write(_sidecar(path), (json.dumps(side, indent=2) + '\n').encode())
    log(f'engine written to {path} ({len(data) / 1e6:.1f} MB)')
    return path, key, metadata, True


__all__ = ['TensorRTBackend', 'parse_options', 'onnx_signature', 'prepare_engine', 'ENGINE_SUFFIXES']
