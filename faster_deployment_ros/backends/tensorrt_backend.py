"""TensorRT backend: cached engine, one execution context + CUDA stream per worker.

Presents the same tensors as ONNX Runtime (names, shapes, float32 I/O; metadata from a sidecar
JSON beside the engine), so model adapters work unchanged through `infer`. Device buffers and
pinned host buffers are allocated once and their addresses set on the context once; a call is
copy in -> execute_async_v3 -> copy out on the worker's stream.

TensorRT 8.6, 10.x and 11.x (see tensorrt_engine.SUPPORTED). One `precision` option for all:
8.6/10.x set builder flags (int8 with an entropy calibrator); 11.x, strongly typed only, builds
from an ONNX converted with ModelOpt (tensorrt_modelopt.py). INT8 calibration tensors come from
the model adapter's own pre-processing, so every family (and multi-input models) calibrates as
it runs.

Engines are shared by the workers of a process and reference-counted: the last backend using
one releases it (close), so cleanup/configure with another model frees GPU memory and a rebuilt
file is loaded afresh. GPU fast path (opt-in, `supports_gpu_pipeline`): see docs/tensorrt_gpu.md.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import tensorrt_engine as engines
from . import tensorrt_modelopt as modelopt
from .base import Backend, BackendError, flag_option
from .onnx_signature import OnnxReadError, read_signature
from ..core.types import Detections, TensorSpec

_LOG = logging.getLogger('faster_deployment_ros.tensorrt')

_OPTIONS = ('device', 'precision', 'workspace', 'cache_dir', 'timing_cache', 'input_shape',
            'int8_calibration', 'calibration_cache', 'calibration_limit', 'calibration_preprocess',
            'rebuild', 'verbose', 'strongly_typed', 'modelopt_python', 'adapter_factory',
            # the node's common per-worker options: accepted, meaningless on a GPU
            'threads', 'workers', 'worker_index')
ENGINE_SUFFIXES = ('.engine', '.plan', '.trt')
# calibration_preprocess values: 'auto' (the model family, as the node infers it), a family
# name, or the two pre-processing conventions' names of earlier releases.
_PREPROCESS_ALIASES = {'ultralytics': 'yolov8'}

_told = set()


def _info_once(key: str, text: str) -> None:
    if key not in _told:
        _told.add(key)
        _LOG.info(text)


def parse_options(options: Dict[str, Any]) -> Dict[str, Any]:
    """Validate the options, fill defaults; unknown names and bad values say what is accepted."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise BackendError(f'unknown tensorrt option(s) {", ".join(unknown)}; accepted: '
                           f'{", ".join(_OPTIONS)}')
    o = dict(options)
    precision = str(o.get('precision') or 'fp16').lower()
    if precision not in engines.PRECISIONS:
        raise BackendError(f'tensorrt precision must be one of {", ".join(engines.PRECISIONS)}, '
                           f'not {precision!r}')
    try:
        workspace = engines.parse_bytes(o.get('workspace') or '1GiB')
        shapes = engines.parse_input_shapes(o.get('input_shape'))
        device = int(o.get('device') or 0)
        limit = int(o.get('calibration_limit') or 0)
        threads = int(o.get('threads') or 0)
    except (TypeError, ValueError) as exc:
        raise BackendError(f'tensorrt option: {exc}') from None
    if device < 0:
        raise BackendError(f'tensorrt device must be a GPU index >= 0, not {device}')
    if threads:
        _info_once('threads', f'tensorrt: threads={threads} ignored: inference runs on the GPU '
                   '(tune workers, i.e. execution contexts, instead)')
    calib = o.get('int8_calibration') or None
    calib_cache = o.get('calibration_cache') or None
    if precision == 'int8' and not calib and not (calib_cache and Path(calib_cache).is_file()):
        raise BackendError('tensorrt precision int8 needs int8_calibration (a folder or list of '
                           'images) or an existing calibration_cache')
    pre = str(o.get('calibration_preprocess') or 'auto').lower()
    return {
        'precision': precision, 'workspace': workspace, 'input_shapes': shapes, 'device': device,
        'cache_dir': Path(o['cache_dir']) if o.get('cache_dir') else engines.default_cache_dir(),
        'timing_cache': Path(o['timing_cache']) if o.get('timing_cache') else None,
        'int8_calibration': calib,
        'calibration_cache': Path(calib_cache) if calib_cache else None,
        'calibration_limit': limit,
        'calibration_preprocess': _PREPROCESS_ALIASES.get(pre, pre),
        'rebuild': flag_option(o.get('rebuild'), 'tensorrt option rebuild', False),
        'verbose': flag_option(o.get('verbose'), 'tensorrt option verbose', False),
        'strongly_typed': flag_option(o.get('strongly_typed'), 'tensorrt option strongly_typed',
                                      False),
        'modelopt_python': str(o.get('modelopt_python') or '') or None,
        'adapter_factory': o.get('adapter_factory')}


def onnx_tensors(path: Path) -> Tuple[List[TensorSpec], List[TensorSpec], Dict[str, str]]:
    """Return (inputs, outputs, metadata) of an ONNX model, read without onnx or onnxruntime."""
    try:
        return read_signature(path)
    except OnnxReadError as exc:
        raise BackendError(f'cannot read ONNX model {path}: {exc}') from None


def onnx_signature(path: Path) -> Tuple[List[Tuple[str, Tuple[Any, ...]]], Dict[str, str]]:
    """Return (inputs as (name, shape with None for dynamic dims), metadata)."""
    inputs, _, metadata = onnx_tensors(path)
    return [(t.name, tuple(d if isinstance(d, int) and d > 0 else None for d in t.shape))
            for t in inputs], metadata


def _sidecar(engine: Path) -> Path:
    return engine.with_name(engine.name + '.json')


class _TrtLog:
    """An ILogger that sends TensorRT's messages to Python logging and keeps the last errors.

    deserialize_cuda_engine and friends return None and say why only here.
    """

    def __new__(cls, trt: Any, verbose: bool = False) -> Any:
        levels = {trt.Logger.INTERNAL_ERROR: logging.ERROR, trt.Logger.ERROR: logging.ERROR,
                  trt.Logger.WARNING: logging.WARNING, trt.Logger.INFO: logging.DEBUG,
                  trt.Logger.VERBOSE: logging.DEBUG}
        limit = trt.Logger.VERBOSE if verbose else trt.Logger.WARNING

        class Log(trt.ILogger):

            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.errors: List[str] = []

            def log(self, severity: Any, msg: str) -> None:
                if severity <= trt.Logger.ERROR:
                    self.errors = (self.errors + [str(msg)])[-5:]
                if severity <= limit:
                    _LOG.log(levels.get(severity, logging.INFO), 'TensorRT: %s', msg)

        return Log()


class _Engine:
    """One deserialized engine shared by the backends of a process (reference-counted)."""

    def __init__(self, runtime: Any, engine: Any, stamp: Tuple[int, int]) -> None:
        self.runtime, self.engine, self.stamp, self.refs = runtime, engine, stamp, 0


_engines_lock = threading.Lock()
_engines: Dict[str, _Engine] = {}
_built_here: Dict[str, Tuple[int, int]] = {}  # engine path -> file stamp this process wrote


def _stamp(path: Path) -> Tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def loaded_engines() -> Dict[str, int]:
    """Engine file -> how many backends use it: what this process holds in GPU memory."""
    with _engines_lock:
        return {p: e.refs for p, e in _engines.items()}


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
        self._entry: Optional[_Engine] = None
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
        trt = engines.import_tensorrt()
        self._api = engines.TrtApi(trt)
        if path.suffix.lower() in ENGINE_SUFFIXES:
            self._check_engine_file(path)  # before the GPU: the version says it already
        from ..gpu.cuda import DeviceBuffer, get_device, GpuUnavailable, PinnedBuffer, Stream
        try:
            self._device = get_device(self._opts['device'])
        except GpuUnavailable as exc:
            raise BackendError(f'the tensorrt backend needs an NVIDIA GPU: {exc}') from None
        try:
            self.engine_path, self._metadata = self._resolve_engine(path)
            self._entry = self._acquire(self.engine_path)
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

    def _resolve_engine(self, path: Path) -> Tuple[Path, Dict[str, str]]:
        if path.suffix.lower() not in ENGINE_SUFFIXES:
            opts = dict(self._opts)
            if opts['rebuild'] and self._rebuilt_already(path, opts):
                opts['rebuild'] = False
            engine, _, meta, _ = prepare_engine(path, opts, self._api, self._device,
                                                log=_LOG.info)
            return engine, meta
        info = self._check_engine_file(path, self._device.info.name)
        meta = info.get('metadata', {})
        return path, {str(k): str(v) for k, v in meta.items()}

    def _check_engine_file(self, path: Path, gpu_name: Optional[str] = None) -> Dict[str, Any]:
        """Return the sidecar of a prebuilt engine: refuse one built by another TensorRT or GPU."""
        side = _sidecar(path)
        info = json.loads(side.read_text()) if side.is_file() else {}
        key = info.get('key', {})
        built_by = (key.get('tensorrt_version'), key.get('gpu_name'))
        here = (self._api.version_text, gpu_name or built_by[1])
        if key and built_by != here:
            raise BackendError(
                f'{path.name} was built by TensorRT {built_by[0]} for {built_by[1]}; this is '
                f'TensorRT {here[0]} on {here[1]}. Engines only run where they were built: '
                f'rebuild it here (fdr-convert tensorrt MODEL.onnx) or load the .onnx')
        return info

    def _rebuilt_already(self, onnx_path: Path, opts: Dict[str, Any]) -> bool:
        """`rebuild` builds once per process.

        The other workers, autotune's trial sessions and later configures reuse the engine this
        process just built.
        """
        try:
            engine, _, _ = engine_key_path(onnx_path, opts, self._api, self._device)
        except BackendError:
            return False
        with _engines_lock:
            done = _built_here.get(str(engine))
        if done is not None and engine.is_file() and _stamp(engine) == done:
            _LOG.info('rebuild: %s was rebuilt by this process already; reusing it', engine)
            return True
        return False

    def _acquire(self, path: Path) -> _Engine:
        stamp = _stamp(path)
        with _engines_lock:
            entry = _engines.get(str(path))
            if entry is None or entry.stamp != stamp:  # a rebuilt file is loaded afresh
                trt = self._api.trt
                log = _TrtLog(trt, self._opts['verbose'])
                runtime = trt.Runtime(log)
                engine = runtime.deserialize_cuda_engine(path.read_bytes())
                if engine is None:
                    why = '; '.join(log.errors) or 'no reason given'
                    raise BackendError(
                        f'TensorRT {self._api.version_text} cannot load {path} ({why}). Engines '
                        'only load in the TensorRT version and on the GPU model that built them: '
                        'rebuild it here (rebuild: true, or fdr-convert tensorrt)')
                entry = _engines[str(path)] = _Engine(runtime, engine, stamp)
            entry.refs += 1
        return entry

    def _release(self) -> None:
        entry, self._entry = self._entry, None
        if entry is None:
            return
        with _engines_lock:
            entry.refs -= 1
            if entry.refs <= 0:
                for p, e in list(_engines.items()):
                    if e is entry:
                        del _engines[p]

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
        from ..gpu.pipeline import GpuFramePipeline
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


# --------------------------------------------------------------------------- building --------

def _resolved_shapes(inputs: List[TensorSpec], opts: Dict[str, Any]) -> Dict[str, Tuple[int, ...]]:
    try:
        return engines.resolve_input_shapes(
            [(t.name, tuple(d if isinstance(d, int) and d > 0 else None for d in t.shape))
             for t in inputs], opts['input_shapes'])
    except ValueError as exc:
        raise BackendError(str(exc)) from None


def _calibration_id(opts: Dict[str, Any]) -> Tuple[List[Path], str]:
    if opts['precision'] != 'int8':
        return [], ''
    if opts['int8_calibration']:
        try:
            paths = engines.list_calibration_images(opts['int8_calibration'],
                                                    opts['calibration_limit'] or None)
        except ValueError as exc:
            raise BackendError(str(exc)) from None
        return paths, engines.calibration_fingerprint(paths, opts['calibration_preprocess'])
    return [], 'cache:' + engines.file_sha256(opts['calibration_cache'])[:16]


def _uses_modelopt(api: Any, opts: Dict[str, Any]) -> bool:
    """Strongly typed build from a converted ONNX: 11.x for fp16/int8; 10.x when asked."""
    if opts['precision'] == 'fp32':
        return False
    return not engines.has_weak_typing(api.version) or bool(opts.get('strongly_typed'))


def engine_key_path(onnx_path: Path, opts: Dict[str, Any], api: Any, device: Any
                    ) -> Tuple[Path, 'engines.EngineKey', Dict[str, str]]:
    """(engine path, key, metadata) for this model and settings, without building anything."""
    inputs, _, metadata = onnx_tensors(onnx_path)
    shapes = _resolved_shapes(inputs, opts)
    _, calib_id = _calibration_id(opts)
    conversion = f'modelopt-r{modelopt.RECIPE}' if _uses_modelopt(api, opts) else ''
    key = engines.EngineKey.create(engines.file_sha256(onnx_path), api.version_text,
                                   device.info.name, device.info.compute_capability,
                                   opts['precision'],
                                   opts['workspace'], shapes, calib_id, conversion)
    return engines.engine_path(opts['cache_dir'], onnx_path, key), key, metadata


def calibration_adapter(onnx_path: Path, family: str, shapes: Dict[str, Tuple[int, ...]],
                        factory: Any) -> Any:
    """Make the model adapter whose preprocess makes the calibration tensors (sized as built).

    `factory(family, inputs, outputs, metadata)` is models.adapter_factory's, handed in by the
    caller (the node, fdr-convert): backends sit below the models layer.
    """
    if factory is None:
        raise BackendError("int8 calibration needs the model's pre-processing: pass "
                           'adapter_factory=faster_deployment_ros.models.adapter_factory() '
                           '(the node and fdr-convert tensorrt do)')
    inputs, outputs, metadata = onnx_tensors(onnx_path)
    inputs = [TensorSpec(t.name, shapes.get(t.name, t.shape), t.dtype) for t in inputs]
    try:
        return factory(family, inputs, outputs, metadata)
    except ValueError as exc:
        raise BackendError(f"int8 calibration needs the model's pre-processing: {exc}; set "
                           'calibration_preprocess to the model family') from None


def calibration_batches(onnx_path: Path, opts: Dict[str, Any], paths: Sequence[Path],
                        shapes: Dict[str, Tuple[int, ...]],
                        log=lambda s: None) -> 'engines.CalibrationBatches':
    """Images -> tensors through the adapter's own preprocess, checked against the inputs."""
    adapter = calibration_adapter(onnx_path, opts['calibration_preprocess'], shapes,
                                  opts.get('adapter_factory'))
    names = list(shapes)
    batch = shapes[names[0]][0] if shapes[names[0]] else 1

    def preprocess(img: np.ndarray) -> List[np.ndarray]:
        tensors, _ = adapter.preprocess(img)
        if len(tensors) != len(names):
            raise BackendError(f'the {adapter.family} pre-processing makes {len(tensors)} '
                               f'tensor(s) but the model has inputs {names}: set '
                               'calibration_preprocess to the family that fits this model')
        for name, x in zip(names, tensors):
            want = (1,) + tuple(shapes[name][1:])
            if tuple(np.shape(x)) != want:
                raise BackendError(f'calibration tensor for {name!r} is {np.shape(x)}, the '
                                   f'engine is built for {shapes[name]}: set calibration_'
                                   'preprocess to the family that fits this model')
        return tensors

    log(f'int8 calibration: {len(paths)} image(s) through the {adapter.family} pre-processing')
    return engines.CalibrationBatches(
        paths, preprocess, batch,
        on_batch=lambda i, n: (log(f'  calibration batch {i}/{n}')
                               if i == n or i % 10 == 0 else None))


def prepare_engine(onnx_path: Path, opts: Dict[str, Any], api: Any, device: Any,
                   log=print) -> Tuple[Path, 'engines.EngineKey', Dict[str, str], bool]:
    """(engine path, key, metadata, built).

    The cached engine for this model and settings, building (and caching) it first when there is
    none or `rebuild` is set.
    """
    path, key, metadata = engine_key_path(onnx_path, opts, api, device)
    if path.is_file() and not opts['rebuild']:
        log(f'using cached engine {path}')
        return path, key, metadata, False
    inputs, _, _ = onnx_tensors(onnx_path)
    shapes = _resolved_shapes(inputs, opts)
    calib_paths, calib_id = _calibration_id(opts)
    batches = (calibration_batches(onnx_path, opts, calib_paths, shapes, log)
               if calib_paths else None)
    source = onnx_path
    strongly_typed = _uses_modelopt(api, opts)
    if strongly_typed:
        if opts['precision'] == 'int8' and batches is None:
            raise BackendError(f'TensorRT {api.version_text} int8 is built from a Q/DQ-quantized '
                               'ONNX, which needs int8_calibration images (a calibration_cache '
                               'is for the builder-flag INT8 of 8.6/10.x)')
        stem = path.name[:path.name.rindex(f'-{opts["precision"]}-')]
        target = modelopt.converted_path(opts['cache_dir'], engines.file_sha256(onnx_path), stem,
                                         opts['precision'], calib_id)
        feeds = (modelopt.calibration_feeds(batches.all_batches(), list(shapes))
                 if batches is not None else None)
        try:
            source = modelopt.convert(onnx_path, target, opts['precision'],
                                      modelopt.modelopt_python(opts.get('modelopt_python')),
                                      feeds, log, api.version_text)
        except RuntimeError as exc:
            raise BackendError(str(exc)) from None
        batches = None
    build = engines.BuildOptions(precision=opts['precision'], workspace_bytes=opts['workspace'],
                                 input_shapes=shapes, timing_cache=opts['timing_cache'],
                                 strongly_typed=strongly_typed, calibration=batches,
                                 calibration_cache=opts['calibration_cache'],
                                 verbose=opts['verbose'])
    data = engines.build_engine(api, source, build, device, log=log,
                                logger=_TrtLog(api.trt, opts['verbose']))
    engines.atomic_write(path, data)
    side = {'source_model': str(onnx_path), 'built_from': str(source), 'key': key.as_dict(),
            'metadata': metadata,
            'inputs': [{'name': n, 'shape': list(s)} for n, s in shapes.items()]}
    engines.atomic_write(_sidecar(path), (json.dumps(side, indent=2) + '\n').encode())
    with _engines_lock:
        _built_here[str(path)] = _stamp(path)
    log(f'engine written to {path} ({len(data) / 1e6:.1f} MB)')
    return path, key, metadata, True


__all__ = ['TensorRTBackend', 'parse_options', 'onnx_signature', 'onnx_tensors', 'prepare_engine',
           'engine_key_path', 'calibration_batches', 'loaded_engines', 'ENGINE_SUFFIXES']
