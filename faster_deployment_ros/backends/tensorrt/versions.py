"""TensorRT as imported here: which versions are supported and the calls that differ between them.

Contract: `import_tensorrt()` returns the `tensorrt` module or a BackendError that says how to
get one; `TrtApi(trt)` wraps it and is the only place that spells a call differently per
version; the `has_*` / `needs_*` / `uses_modelopt` predicates decide from a version tuple
alone (no TensorRT needed, so they are testable anywhere). `TrtLogger` sends TensorRT's log to
Python logging and keeps its last errors for the messages of failed calls.

Supported: 8.6 (JetPack 6.0), 10.x (JetPack 6.1/6.2 ship 10.3; pip) and 11.x (pip). API used by
all three: OnnxParser, build_serialized_network, set_memory_pool_limit(WORKSPACE), timing caches,
num_io_tensors / get_tensor_name / get_tensor_mode / get_tensor_shape / get_tensor_dtype,
get_tensor_profile_shape, set_input_shape, set_tensor_address, execute_async_v3. The
differences: 8.6 needs the EXPLICIT_BATCH network flag (10 made it implicit); IProgressMonitor
exists from 10.0; precision. Up to 10.x reduced precision is asked for with weak-typing builder
flags (BuilderFlag.FP16 / INT8 with an IInt8EntropyCalibrator2). 11.x removed those: networks
are strongly typed, so fp16 and int8 come from the ONNX itself, converted first with NVIDIA
ModelOpt (AutoCast fp16, Q/DQ int8; see modelopt_convert.py) and cached beside the engines.
TensorRT is imported lazily.
"""
from __future__ import annotations

from dataclasses import dataclass
import logging
import re
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..base import BackendError

_LOG = logging.getLogger('faster_deployment_ros.tensorrt')

MIN_VERSION = (8, 6)
SUPPORTED = '8.6 (JetPack 6.0), 10.x (JetPack 6.1/6.2: 10.3) and 11.x'
#: What the one `precision` option may be on every version (the route differs: see above).
PRECISIONS = ('fp32', 'fp16', 'int8')

_INSTALL_HINT = ('install TensorRT for your platform: on Jetson it comes with JetPack '
                 '(python3-libnvinfer); on x86-64 `pip install tensorrt` (10.x, CUDA 12) or the '
                 "wheel in NVIDIA's TensorRT tarball. Without it use backend 'onnxruntime'")


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


def uses_modelopt(api: Any, opts: Mapping[str, Any]) -> bool:
    """Strongly typed build from a converted ONNX: 11.x for fp16/int8; 10.x when asked."""
    if opts['precision'] == 'fp32':
        return False
    return not has_weak_typing(api.version) or bool(opts.get('strongly_typed'))


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


class TrtLogger:
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


__all__ = ['MIN_VERSION', 'SUPPORTED', 'PRECISIONS', 'parse_version', 'check_version',
           'needs_explicit_batch_flag', 'has_progress_monitor', 'has_weak_typing',
           'uses_modelopt', 'import_tensorrt', 'TrtLogger', 'IoTensor', 'TrtApi']
