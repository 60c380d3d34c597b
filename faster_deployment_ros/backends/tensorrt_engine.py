"""TensorRT engines: build from ONNX, cache on disk, and one shim over the 8.6, 10.x and 11.x APIs.

An engine is only valid for the exact TensorRT version, GPU model and build settings that made
it, so the cache key holds all of them (model bytes, TensorRT version, GPU name and compute
capability, precision, workspace, input shapes, INT8 calibration set); a change of any one
builds a new engine instead of loading a stale one. TensorRT is imported lazily.

Supported: 8.6 (JetPack 6.0), 10.x (JetPack 6.1/6.2 ship 10.3; pip) and 11.x (pip). API used by
all three: OnnxParser, build_serialized_network, set_memory_pool_limit(WORKSPACE), timing caches,
num_io_tensors / get_tensor_name / get_tensor_mode / get_tensor_shape / get_tensor_dtype,
get_tensor_profile_shape, set_input_shape, set_tensor_address, execute_async_v3. The
differences: 8.6 needs the EXPLICIT_BATCH network flag (10 made it implicit); IProgressMonitor
exists from 10.0; precision. Up to 10.x reduced precision is asked for with weak-typing builder
flags (BuilderFlag.FP16 / INT8 with an IInt8EntropyCalibrator2). 11.x removed those: networks
are strongly typed, so fp16 and int8 come from the ONNX itself, converted first with NVIDIA
ModelOpt (AutoCast fp16, Q/DQ int8; see tensorrt_modelopt.py) and cached beside the engines.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
import hashlib
import json
import os
from pathlib import Path
import re
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .base import BackendError
from ..core.hashing import file_sha256

MIN_VERSION = (8, 6)
SUPPORTED = '8.6 (JetPack 6.0), 10.x (JetPack 6.1/6.2: 10.3) and 11.x'
PRECISIONS = ('fp32', 'fp16', 'int8')
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
KEY_VERSION = 2  # bump when the engine layout/build recipe changes

_INSTALL_HINT = ('install TensorRT for your platform: on Jetson it comes with JetPack '
                 '(python3-libnvinfer); on x86-64 `pip install tensorrt` (10.x, CUDA 12) or the '
                 "wheel in NVIDIA's TensorRT tarball. Without it use backend 'onnxruntime'")


# --------------------------------------------------------------------------- versions --------

def parse_version(text: str) -> Tuple[int, ...]:
    """'10.3.0.26' -> (10, 3, 0, 26); '8.6.1.post1' -> (8, 6, 1)."""
    parts = []
    for piece in str(text).split('.'):
        m = re.match(r'\d+', piece)
        if not m:
            break
        parts.append(int(m.group()))
    if not parts:
        raise ValueError(f'cannot read a version from {text!r}')
    return tuple(parts)


def check_version(version: Sequence[int]) -> None:
    """8.6.x, 10.x and 11.x are what the backend is written and tested (stand-ins) against."""
    v = tuple(version[:2])
    if v[:1] == (8,) and v >= (8, 6) or v[:1] in ((10,), (11,)):
        return
    text = '.'.join(map(str, version))
    why = ('too old' if v < MIN_VERSION else 'newer than this backend knows' if v[0] > 11
           else 'not supported (9.x was a short-lived release)')
    raise BackendError(f'TensorRT {text} is {why}: the tensorrt backend supports TensorRT '
                       f'{SUPPORTED}')


def needs_explicit_batch_flag(version: Sequence[int]) -> bool:
    """8.x builds implicit-batch networks unless told otherwise; 10.x has only explicit batch."""
    return tuple(version[:1]) < (10,)


def has_progress_monitor(version: Sequence[int]) -> bool:
    return tuple(version[:1]) >= (10,)


def has_weak_typing(version: Sequence[int]) -> bool:
    """BuilderFlag.FP16/INT8 and INT8 calibrators exist (up to 10.x); 11.x removed them."""
    return tuple(version[:1]) < (11,)


def import_tensorrt() -> Any:
    """Return the `tensorrt` module, or a BackendError that says how to get it."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendError(f'the tensorrt backend needs the TensorRT Python package, which '
                           f'cannot be imported ({exc}); {_INSTALL_HINT}') from None
    except OSError as exc:  # the wheel is there but libnvinfer / CUDA libraries are not
        raise BackendError(f'TensorRT is installed but its libraries do not load ({exc}); '
                           'check that the CUDA and TensorRT shared libraries match and are on '
                           'the library path') from None
    check_version(parse_version(trt.__version__))
    return trt


# --------------------------------------------------------------------------- sizes/shapes ----

_UNITS = {'': 1, 'b': 1, 'k': 1 << 10, 'kb': 1000, 'kib': 1 << 10, 'm': 1 << 20, 'mb': 10 ** 6,
          'mib': 1 << 20, 'g': 1 << 30, 'gb': 10 ** 9, 'gib': 1 << 30}


def parse_bytes(value: Any) -> int:
    """1073741824, '1GiB', '512MiB', '1.5G' -> bytes (binary units for bare K/M/G)."""
    if isinstance(value, (int, np.integer)):
        n = int(value)
    else:
        m = re.fullmatch(r'\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*', str(value))
        if not m or m.group(2).lower() not in _UNITS:
            raise ValueError(f'bad size {value!r}; write e.g. 1GiB, 512MiB or a byte count')
        n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n <= 0:
        raise ValueError(f'size must be positive, not {value!r}')
    return n


def parse_input_shapes(values: Any) -> Dict[str, Tuple[int, ...]]:
    """Shapes given by the user: 'images:1x3x416x416', a list of those, or a dict.

    A bare '1,3,416,416' (no name) applies to the model's only input and is stored under ''.
    """
    if values is None or values == '' or values == []:
        return {}
    if isinstance(values, Mapping):
        items = [(str(k), v) for k, v in values.items()]
    else:
        if isinstance(values, str):
            values = [v for v in re.split(r'[;\s]+', values) if v]
        items = []
        for v in values:
            name, sep, dims = str(v).rpartition(':')
            items.append((name if sep else '', dims))
    shapes = {}
    for name, dims in items:
        if isinstance(dims, str):
            try:
                dims = [int(d) for d in re.split(r'[x,]', dims) if d.strip()]
            except ValueError:
                raise ValueError(f'bad input shape {dims!r}; write NAME:1x3x416x416') from None
        shape = tuple(int(d) for d in dims)
        if not shape or any(d <= 0 for d in shape):
            raise ValueError(f'input shape {shape} for {name or "the input"} must be all positive')
        shapes[name] = shape
    return shapes


def resolve_input_shapes(model_inputs: Sequence[Tuple[str, Sequence[Any]]],
                         given: Mapping[str, Sequence[int]]) -> Dict[str, Tuple[int, ...]]:
    """Return the concrete shape to build each input for.

    model_inputs: (name, shape) with None/str/<=0 for dynamic dims, as ONNX Runtime reports
    them. A dynamic batch defaults to 1; any other dynamic dim must be given; a given shape
    must agree with every static dim.
    """
    names = [n for n, _ in model_inputs]
    given = dict(given)
    if '' in given:
        if len(model_inputs) != 1:
            raise ValueError(f'the model has inputs {names}: name each shape (NAME:1x3xHxW)')
        given[names[0]] = given.pop('')
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ValueError(f'input shape given for {unknown}, but the model inputs are {names}')
    resolved = {}
    for name, shape in model_inputs:
        dims = [d if isinstance(d, (int, np.integer)) and d > 0 else None for d in shape]
        if name in given:
            want = tuple(given[name])
            if len(want) != len(dims) or any(d is not None and d != w for d, w in zip(dims, want)):
                raise ValueError(f'input {name!r} has shape {tuple(shape)}; the given '
                                 f'{want} does not fit it')
            resolved[name] = want
            continue
        if dims and dims[0] is None:
            dims[0] = 1
        if any(d is None for d in dims):
            raise ValueError(f'input {name!r} has dynamic shape {tuple(shape)}: give the shape '
                             f'to build for, e.g. input_shape {name}:1x3x640x640')
        resolved[name] = tuple(int(d) for d in dims)
    return resolved


# --------------------------------------------------------------------------- cache -----------

@dataclass(frozen=True)
class EngineKey:
    """Everything that makes a built engine invalid when it changes."""

    model_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: Tuple[int, int]
    precision: str
    workspace_bytes: int
    input_shapes: Tuple[Tuple[str, Tuple[int, ...]], ...]
    calibration: str = ''  # fingerprint of the INT8 calibration data ('' unless int8)
    conversion: str = ''  # how the ONNX was converted before the build ('' = as given)
    key_version: int = KEY_VERSION

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f'precision must be one of {", ".join(PRECISIONS)}, not '
                             f'{self.precision!r}')

    @classmethod
    def create(cls, model_sha256: str, tensorrt_version: str, gpu_name: str,
               compute_capability: Sequence[int], precision: str, workspace_bytes: int,
               input_shapes: Mapping[str, Sequence[int]], calibration: str = '',
               conversion: str = '') -> 'EngineKey':
        shapes = tuple(sorted((str(n), tuple(int(d) for d in s)) for n, s in input_shapes.items()))
        return cls(model_sha256, str(tensorrt_version), str(gpu_name),
                   (int(compute_capability[0]), int(compute_capability[1])), precision,
                   int(workspace_bytes), shapes, calibration if precision == 'int8' else '',
                   conversion)

    def as_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d['compute_capability'] = list(self.compute_capability)
        d['input_shapes'] = {n: list(s) for n, s in self.input_shapes}
        return d

    def digest(self) -> str:
        text = json.dumps(self.as_dict(), sort_keys=True, separators=(',', ':'))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    base = os.environ.get('FDR_TRT_CACHE')
    if base:
        return Path(base)
    base = Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache'))
    return base / 'faster_deployment_ros' / 'tensorrt'


def engine_path(cache_dir: os.PathLike, model_path: os.PathLike, key: EngineKey) -> Path:
    """`<cache>/<model stem>-<precision>-<digest>.engine`: readable, and unique per key."""
    stem = re.sub(r'[^A-Za-z0-9_.-]+', '_', Path(model_path).stem) or 'model'
    return Path(cache_dir) / f'{stem}-{key.precision}-{key.digest()}.engine'


def atomic_write(path: Path, data: bytes) -> None:
    """Write-then-rename, so a crashed or concurrent build never leaves half an engine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:  # noqa: B902 - remove the temporary file, then re-raise
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# --------------------------------------------------------------------------- calibration -----

def list_calibration_images(source: os.PathLike, limit: Optional[int] = None) -> List[Path]:
    """Images for INT8 calibration.

    A folder (sorted) or a text file of paths, one per line (relative paths are relative to the
    list file; '#' starts a comment).
    """
    src = Path(source)
    if src.is_dir():
        paths = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    elif src.is_file():
        paths = []
        for line in src.read_text().splitlines():
            line = line.split('#', 1)[0].strip()
            if line:
                p = Path(line)
                paths.append(p if p.is_absolute() else src.parent / p)
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ValueError(f'calibration list {src} names missing files: {missing[:3]}'
                             + (' ...' if len(missing) > 3 else ''))
    else:
        raise ValueError(f'calibration images: {src} is neither a folder nor a list file')
    if limit is not None and limit > 0:
        paths = paths[:limit]
    if not paths:
        raise ValueError(f'no calibration images found in {src} ({", ".join(IMAGE_SUFFIXES)})')
    return paths


def calibration_fingerprint(paths: Sequence[Path], preprocess_id: str = '') -> str:
    """Content hash of the calibration set (and how it is pre-processed)."""
    h = hashlib.sha256(preprocess_id.encode())
    for p in paths:
        h.update(Path(p).name.encode())
        h.update(file_sha256(p).encode())
    return h.hexdigest()[:16]


class CalibrationBatches:
    """Calibration tensors, one batch at a time, from images through the model's pre-processing.

    `preprocess(image_bgr) -> [one array per model input]` (a model adapter's preprocess, in
    the model's input order); a batch stacks `batch_size` images per input along axis 0.
    """

    def __init__(self, paths: Sequence[Path],
                 preprocess: Callable[[np.ndarray], Sequence[np.ndarray]],
                 batch_size: int = 1,
                 on_batch: Optional[Callable[[int, int], None]] = None) -> None:
        self.paths = list(paths)
        self.preprocess = preprocess
        self.batch_size = max(1, int(batch_size))
        self.on_batch = on_batch
        self._next = 0

    def __len__(self) -> int:
        return len(self.paths) // self.batch_size

    def reset(self) -> None:
        self._next = 0

    def next_batch(self) -> Optional[List[np.ndarray]]:
        """Return the next batch, one contiguous array per input; None when all are used."""
        import cv2
        if self._next >= len(self):
            return None
        chunk = self.paths[self._next * self.batch_size:(self._next + 1) * self.batch_size]
        per_image = []
        for p in chunk:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f'cannot read calibration image {p}')
            tensors = self.preprocess(img)
            if isinstance(tensors, np.ndarray):
                tensors = [tensors]
            per_image.append([np.asarray(t) for t in tensors])
        self._next += 1
        if self.on_batch is not None:
            self.on_batch(self._next, len(self))
        return [np.ascontiguousarray(np.concatenate([t[i] for t in per_image], 0))
                for i in range(len(per_image[0]))]

    def all_batches(self) -> List[List[np.ndarray]]:
        self.reset()
        out = []
        while True:
            batch = self.next_batch()
            if batch is None:
                return out
            out.append(batch)


def make_calibrator(trt: Any, batches: CalibrationBatches, cache_file: Optional[Path],
                    device: Any = None,
                    inputs: Optional[Sequence[Tuple[str, Any]]] = None) -> Any:
    """Make an IInt8EntropyCalibrator2 (TensorRT 8.6/10.x) feeding `batches`.

    One device buffer per input. The stream and buffers are made at the first batch: with a
    calibration cache TensorRT asks for none, and nothing touches the GPU. `inputs`: the
    network's (name, numpy dtype) in the order `batches` gives them; each batch is cast to the
    network's type (8.x takes an ONNX int64 input as INT32) and handed over in the order of
    the names TensorRT asks for.
    """
    from ..gpu.cuda import DeviceBuffer, Stream

    class _Calibrator(trt.IInt8EntropyCalibrator2):

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._stream: Optional[Any] = None
            self._dev: List[DeviceBuffer] = []

        def get_batch_size(self) -> int:
            return batches.batch_size

        def get_batch(self, names: List[str], p_str: Any = None) -> Optional[List[int]]:
            batch = batches.next_batch()
            if batch is None:
                return None
            if len(batch) != len(names):
                raise BackendError(f'calibration pre-processing gives {len(batch)} input(s), '
                                   f'the engine has {len(names)} ({", ".join(names)})')
            if inputs:
                by_name = {n: np.ascontiguousarray(x, dtype)
                           for (n, dtype), x in zip(inputs, batch)}
                batch = [by_name[n] for n in names]
            if self._stream is None:
                self._stream = Stream(device)
            if len(self._dev) != len(batch) or any(
                    d.nbytes < x.nbytes for d, x in zip(self._dev, batch)):
                self._dev = [DeviceBuffer(x.nbytes, device) for x in batch]
            for d, x in zip(self._dev, batch):
                d.upload(x, self._stream)
            self._stream.synchronize()
            return [d.ptr for d in self._dev]

        def read_calibration_cache(self) -> Optional[bytes]:
            if cache_file is not None and Path(cache_file).is_file():
                return Path(cache_file).read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            if cache_file is not None:
                atomic_write(Path(cache_file), bytes(cache))

    return _Calibrator()


# --------------------------------------------------------------------------- the shim --------

@dataclass(frozen=True)
class IoTensor:

    name: str
    is_input: bool
    shape: Tuple[int, ...]
    dtype: np.dtype


class TrtApi:
    """The few calls whose spelling differs between TensorRT 8.6, 10.x and 11.x."""

    def __init__(self, trt: Any) -> None:
        self.trt = trt
        self.version = parse_version(trt.__version__)
        check_version(self.version)
        self.version_text = trt.__version__

    @property
    def weak_typing(self) -> bool:
        return has_weak_typing(self.version)

    def network_flags(self, strongly_typed: bool = False) -> int:
        flags = 0
        if needs_explicit_batch_flag(self.version):
            flags |= 1 << int(self.trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        if strongly_typed and self.version[0] == 10:  # 11.x: always strongly typed
            flags |= 1 << int(self.trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        return flags

    def set_workspace(self, config: Any, nbytes: int) -> None:
        config.set_memory_pool_limit(self.trt.MemoryPoolType.WORKSPACE, int(nbytes))

    def attach_progress(self, config: Any, log: Callable[[str], None]) -> Optional[Any]:
        """Attach an IProgressMonitor logging top-level phases (10.0+); None where none."""
        if not has_progress_monitor(self.version) or not hasattr(self.trt, 'IProgressMonitor'):
            return None
        trt = self.trt

        class _Monitor(trt.IProgressMonitor):

            def __init__(self) -> None:
                trt.IProgressMonitor.__init__(self)
                self._lock = threading.Lock()
                self._steps: Dict[str, int] = {}
                self._last = 0.0

            def phase_start(self, phase_name: str, parent_phase: Optional[str],
                            num_steps: int) -> None:
                with self._lock:
                    self._steps[phase_name] = num_steps
                    if parent_phase is None:
                        log(f'{phase_name} ({num_steps} steps)')

            def step_complete(self, phase_name: str, step: int) -> bool:
                now = time.monotonic()
                with self._lock:
                    if now - self._last > 5.0:  # at most one line per 5 s
                        self._last = now
                        log(f'  {phase_name}: {step + 1}/{self._steps.get(phase_name, "?")}')
                return True  # False would cancel the build

            def phase_finish(self, phase_name: str) -> None:
                with self._lock:
                    self._steps.pop(phase_name, None)

        monitor = _Monitor()
        config.progress_monitor = monitor
        return monitor  # the caller keeps it alive for the build

    def io_tensors(self, engine: Any, context: Any = None) -> List[IoTensor]:
        trt = self.trt
        out = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = (context.get_tensor_shape(name) if context is not None
                     else engine.get_tensor_shape(name))
            out.append(IoTensor(name, is_input, tuple(int(d) for d in shape),
                                np.dtype(trt.nptype(engine.get_tensor_dtype(name)))))
        return out

    def execute(self, context: Any, stream_handle: int) -> None:
        if not context.execute_async_v3(int(stream_handle)):
            raise BackendError('TensorRT execute_async_v3 failed (see the TensorRT log above)')


# --------------------------------------------------------------------------- building --------

@dataclass
class BuildOptions:

    precision: str = 'fp16'
    workspace_bytes: int = 1 << 30
    input_shapes: Dict[str, Tuple[int, ...]] = field(default_factory=dict)  # resolved
    timing_cache: Optional[Path] = None
    # Strongly typed: no precision flags; the ONNX's own types decide (11.x always; 10.x when
    # asked). The ONNX handed to build_engine is then the ModelOpt-converted one.
    strongly_typed: bool = False
    calibration: Optional[CalibrationBatches] = None  # int8 with builder flags (8.6/10.x)
    calibration_cache: Optional[Path] = None
    verbose: bool = False


def build_engine(api: TrtApi, onnx_path: Path, opts: BuildOptions, device: Any = None,
                 log: Callable[[str], None] = lambda s: None, logger: Any = None) -> bytes:
    """Parse ONNX, build a serialized engine with the options; raises BackendError on failure.

    logger: a trt.ILogger; its `errors` (if it keeps them) go into the failure message.
    """
    trt = api.trt
    if logger is None:
        logger = trt.Logger(trt.Logger.VERBOSE if opts.verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(api.network_flags(opts.strongly_typed))
    parser = trt.OnnxParser(network, logger)
    log(f'parsing {onnx_path}')
    if not parser.parse_from_file(str(onnx_path)):  # from the file: finds external weights
        errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f'TensorRT cannot parse {onnx_path}: {errors}')

    config = builder.create_builder_config()
    api.set_workspace(config, opts.workspace_bytes)
    weak = opts.precision in ('fp16', 'int8') and not opts.strongly_typed
    if weak and not api.weak_typing:
        raise BackendError(f'TensorRT {api.version_text} has no {opts.precision} builder flag '
                           '(strongly typed only): the ONNX must be converted first')
    if weak:
        config.set_flag(trt.BuilderFlag.FP16)  # int8 layers fall back to fp16, not fp32
    profile = builder.create_optimization_profile()
    dynamic = False
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = opts.input_shapes.get(tensor.name)
        if shape is None:
            raise BackendError(f'no build shape for input {tensor.name!r}')
        if any(d < 0 for d in tensor.shape):
            dynamic = True
            profile.set_shape(tensor.name, shape, shape, shape)  # one fixed shape per engine
    if dynamic:
        config.add_optimization_profile(profile)

    calibrator = None
    if weak and opts.precision == 'int8':
        config.set_flag(trt.BuilderFlag.INT8)
        have_cache = opts.calibration_cache is not None and Path(opts.calibration_cache).is_file()
        if opts.calibration is None and not have_cache:
            raise BackendError('int8 needs calibration images (a folder or list file) '
                               'or an existing calibration cache')
        batches = opts.calibration or CalibrationBatches([], lambda img: [img])
        net_inputs = [(network.get_input(i).name,
                       np.dtype(trt.nptype(network.get_input(i).dtype)))
                      for i in range(network.num_inputs)]
        calibrator = make_calibrator(trt, batches, opts.calibration_cache, device, net_inputs)
        config.int8_calibrator = calibrator
        if dynamic:
            config.set_calibration_profile(profile)

    cache = None
    if opts.timing_cache is not None:
        data = Path(opts.timing_cache).read_bytes() if Path(opts.timing_cache).is_file() else b''
        cache = config.create_timing_cache(data)
        if not config.set_timing_cache(cache, ignore_mismatch=False):
            log(f'timing cache {opts.timing_cache} is from another TensorRT/GPU: starting anew')
            cache = config.create_timing_cache(b'')
            config.set_timing_cache(cache, ignore_mismatch=False)
        log(f'timing cache {opts.timing_cache} ({"loaded" if data else "new"})')

    monitor = api.attach_progress(config, log)
    how = ('strongly typed, from the converted ONNX' if opts.strongly_typed
           else 'builder flags' if weak else 'fp32')
    log(f'building {opts.precision} engine ({how}; TensorRT {api.version_text}); '
        'this takes minutes')
    serialized = builder.build_serialized_network(network, config)
    del monitor, calibrator
    if serialized is None:
        why = '; '.join(getattr(logger, 'errors', [])) or 'run with verbose for the builder log'
        raise BackendError(f'TensorRT failed to build an engine for {onnx_path}: {why}')
    if cache is not None:
        atomic_write(Path(opts.timing_cache), bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


__all__ = ['MIN_VERSION', 'SUPPORTED', 'PRECISIONS', 'parse_version', 'check_version',
           'import_tensorrt', 'needs_explicit_batch_flag', 'has_progress_monitor',
           'has_weak_typing', 'parse_bytes',
           'parse_input_shapes', 'resolve_input_shapes', 'file_sha256', 'EngineKey',
           'default_cache_dir', 'engine_path', 'atomic_write', 'list_calibration_images',
           'calibration_fingerprint', 'CalibrationBatches', 'make_calibrator', 'IoTensor',
           'TrtApi', 'BuildOptions', 'build_engine']
