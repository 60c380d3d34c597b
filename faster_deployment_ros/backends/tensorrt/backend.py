"""The tensorrt Backend: runs a cached engine, one execution context + CUDA stream per worker.

Contract: `TensorRTBackend(model, **options)` loads a prebuilt engine file or the cached engine
of an ONNX model (building it first: build.py), and presents the same tensors as ONNX Runtime
(names, shapes, float32 I/O; metadata from the sidecar JSON beside the engine), so model
adapters work unchanged through `infer`. Device buffers and pinned host buffers are allocated
once and their addresses set on the context once; a call is copy in -> execute_async_v3 -> copy
out on the worker's stream. `close` releases the context, stream and buffers, then its
reference to the shared engine (engine_cache.py).

GPU fast path (opt-in, `supports_gpu_pipeline`): `enable_gpu_pipeline(preprocess, decode)`, then
`infer_image` / `detect_image`; see docs/tensorrt_gpu.md. TensorRT 8.6, 10.x and 11.x
(versions.py); one `precision` option for all.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import engine_cache as cache
from .build import engine_key_path, load_engine
from .options import ENGINE_SUFFIXES, parse_options
from .versions import import_tensorrt, TrtApi
from ..base import Backend, BackendError
from ...core.types import Detections, TensorSpec

_LOG = logging.getLogger('faster_deployment_ros.tensorrt')


class TensorRTBackend(Backend):
    """Runs an ONNX model (built and cached as a TensorRT engine) or a prebuilt .engine file.

    Options: device (GPU index, 0), precision (fp16 | fp32 | int8), workspace ('1GiB'),
    cache_dir (engine cache; default ~/.cache/faster_deployment_ros/tensorrt or $FDR_TRT_CACHE),
    timing_cache (file, reused across builds), input_shape ('images:1x3x640x640' for dynamic
    models; a bare '1x3x640x640' for a single-input model, .engine files too), int8_calibration
    (image folder or list file), calibration_cache (file; 8.6/10.x), calibration_limit (images,
    0 = all), calibration_preprocess ('auto' = the model family's own pre-processing, or a
    family name: yolox, yolov8, yolo11, rtdetr, depth_anything_v2, midas), rebuild (build even
    if cached; once per process), verbose (TensorRT log), strongly_typed (10.x: precision from a
    ModelOpt-converted ONNX as on 11.x), modelopt_python (the Python with ModelOpt for that
    conversion). threads / workers / worker_index are accepted and ignored.
    """

    name = 'tensorrt'
    supports_gpu_pipeline = True
    uses_threads = False  # autotune tunes workers (contexts) and queue size only
    takes_adapter_factory = True  # int8 calibration runs the model's own pre-processing

    def __init__(self, model_path: str, **options: Any) -> None:
        super().__init__(model_path, **options)
        self._entry: Optional[cache.LoadedEngine] = None
        self._context = None
        self._stream = None
        self._dev: Dict[str, Any] = {}
        self._host: Dict[str, Any] = {}
        self._pipeline = None
        self._opts = parse_options(options)
        path = Path(os.fspath(model_path))
        if not path.is_file():
            raise BackendError(f'model file not found: {path}')
        if path.suffix.lower() not in ('.onnx', *ENGINE_SUFFIXES):
            raise BackendError(f'the tensorrt backend loads .onnx (built and cached) or '
                               f'{"/".join(ENGINE_SUFFIXES)} files, not {path.name}')
        trt = import_tensorrt()
        self._api = TrtApi(trt)
        if path.suffix.lower() in ENGINE_SUFFIXES:
            self._check_engine_file(path)  # before the GPU: the version says it already
        from ...gpu.cuda import DeviceBuffer, get_device, GpuUnavailable, PinnedBuffer, Stream
        try:
            self._device = get_device(self._opts['device'])
        except GpuUnavailable as exc:
            raise BackendError(f'the tensorrt backend needs an NVIDIA GPU: {exc}') from None
        try:
            self.engine_path, self._metadata, self._entry = self._load_engine(path)
            engine = self._entry.engine
            self._context = engine.create_execution_context()
            if self._context is None:
                raise BackendError(f'TensorRT could not create an execution context for '
                                   f'{self.engine_path} (out of GPU memory?)')
            self._stream = Stream(self._device)
            self._set_input_shapes(engine)
            io = self._api.io_tensors(engine, self._context)
            for t in io:
                if any(d < 0 for d in t.shape):
                    raise BackendError(f'tensor {t.name!r} still has a dynamic shape {t.shape}; '
                                       'give input_shape')
                nbytes = int(np.prod(t.shape)) * t.dtype.itemsize
                self._dev[t.name] = DeviceBuffer(nbytes, self._device)
                self._host[t.name] = PinnedBuffer(t.shape, t.dtype, self._device)
                if not self._context.set_tensor_address(t.name, self._dev[t.name].ptr):
                    raise BackendError(f'TensorRT rejected the address of tensor {t.name!r}')
        except BaseException:  # noqa: B902 - release what was made, then re-raise
            self.close()
            raise
        self._io = io
        self._in = [t for t in io if t.is_input]
        self._out = [t for t in io if not t.is_input]
        self._inputs = [TensorSpec(t.name, t.shape, t.dtype) for t in self._in]
        self._outputs = [TensorSpec(t.name, t.shape, t.dtype) for t in self._out]

    # ---- engine cache ---------------------------------------------------------------------

    def _load_engine(self, path: Path) -> Tuple[Path, Dict[str, str], cache.LoadedEngine]:
        """(engine file, metadata, loaded engine): the cached engine of an ONNX, or the file.

        A cached engine that does not load is built again (build.load_engine); a prebuilt
        engine file that does not load is an error naming it.
        """
        if path.suffix.lower() not in ENGINE_SUFFIXES:
            opts = dict(self._opts)
            if opts['rebuild'] and self._rebuilt_already(path, opts):
                opts['rebuild'] = False
            entry, engine, meta = load_engine(path, opts, self._api, self._device,
                                              log=_LOG.info)
            return engine, meta, entry
        info = self._check_engine_file(path, self._device.info.name)
        meta = info.get('metadata', {})
        entry = cache.acquire_engine(self._api, path, self._opts['verbose'])
        return path, {str(k): str(v) for k, v in meta.items()}, entry

    def _check_engine_file(self, path: Path, gpu_name: Optional[str] = None) -> Dict[str, Any]:
        """Return the sidecar of a prebuilt engine: refuse one built by another TensorRT or GPU."""
        return cache.check_engine_file(path, self._api.version_text, gpu_name)

    def _rebuilt_already(self, onnx_path: Path, opts: Dict[str, Any]) -> bool:
        """`rebuild` builds once per process.

        The other workers, autotune's trial sessions and later configures reuse the engine this
        process just built.
        """
        try:
            engine, _, _ = engine_key_path(onnx_path, opts, self._api, self._device)
        except BackendError:
            return False
        if cache.built_by_this_process(engine):
            _LOG.info('rebuild: %s was rebuilt by this process already; reusing it', engine)
            return True
        return False

    def _release(self) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            cache.release_engine(entry)

    def _set_input_shapes(self, engine: Any) -> None:
        """Set each dynamic input's shape: input_shape (bare for the only input) or the profile's.

        TensorRT's verdict (set_input_shape's result) is checked, not assumed.
        """
        given = dict(self._opts['input_shapes'])
        io = self._api.io_tensors(engine)
        inputs = [t for t in io if t.is_input]
        if '' in given:
            if len(inputs) != 1:
                raise BackendError(f'the engine has inputs {[t.name for t in inputs]}: name '
                                   'each shape (NAME:1x3xHxW)')
            given[inputs[0].name] = given.pop('')
        unknown = sorted(set(given) - {t.name for t in inputs})
        if unknown:
            raise BackendError(f'input_shape names {unknown}; the engine inputs are '
                               f'{[t.name for t in inputs]}')
        for t in inputs:
            shape = given.get(t.name)
            if not any(d < 0 for d in t.shape):
                if shape is not None and tuple(shape) != t.shape:
                    raise BackendError(f'input {t.name!r} of this engine is fixed at {t.shape}; '
                                       f'input_shape asks for {tuple(shape)}')
                continue
            if shape is None:
                shape = self._profile(engine, t.name)[1]
            if not self._context.set_input_shape(t.name, tuple(int(d) for d in shape)):
                lo, _, hi = self._profile(engine, t.name)
                raise BackendError(
                    f"input {t.name!r}: shape {tuple(shape)} is outside the engine's "
                    f'optimization profile ({lo} .. {hi}); rebuild for it (input_shape '
                    f'{t.name}:{"x".join(map(str, shape))}, rebuild: true)')

    @staticmethod
    def _profile(engine: Any, name: str) -> Tuple[Tuple[int, ...], ...]:
        shapes = engine.get_tensor_profile_shape(name, 0)  # (min, opt, max)
        if len(shapes) != 3:
            raise BackendError(f'input {name!r} is dynamic but the engine has no profile for it')
        return tuple(tuple(int(d) for d in s) for s in shapes)

    # ---- Backend interface ----------------------------------------------------------------

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
        from ...gpu.pipeline import GpuFramePipeline
        if len(self._in) != 1:
            raise BackendError('the GPU pipeline handles single-input models')
        t_in, t_out = self._in[0], self._out[0]
        if (tuple(preprocess.tensor_shape) != t_in.shape
                or np.dtype(preprocess.dtype) != t_in.dtype):
            raise BackendError(f'GPU pre-processing makes {preprocess.tensor_shape} '
                               f'{preprocess.dtype}; the engine input is {t_in.shape} '
                               f'{t_in.dtype}')
        self._pipeline = GpuFramePipeline(
            preprocess, self._dev[t_in.name], self._dev[t_out.name], t_out.shape,
            lambda stream: self._api.execute(self._context, stream.handle), decode,
            stream=self._stream, device=self._device, output_dtype=t_out.dtype)

    def infer_image(self, image_bgr: np.ndarray) -> Tuple[List[np.ndarray], Any]:
        """Return ([first output], LetterboxMeta): GPU letterbox + engine, adapter decodes."""
        out, meta = self._require_pipeline().infer(image_bgr)
        return [out], meta

    def detect_image(self, image_bgr: np.ndarray, class_names: Sequence[str] = ()) -> Detections:
        """Return final detections in source pixels: GPU letterbox, engine, GPU decode + NMS."""
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
        for b in (*self._dev.values(), *self._host.values()):
            b.close()
        self._dev, self._host = {}, {}
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._context = None  # before the engine it came from
        self._release()


__all__ = ['TensorRTBackend']
