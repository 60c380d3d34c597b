"""ONNX Runtime backend: one InferenceSession per worker, plain `run()` with cached names.

Options are checked up front so a typo or a missing execution provider fails at load time with
the list of what is accepted, not as a silent fallback to a slower provider.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .base import Backend, BackendError, TensorSpec
from ..core.options import parse_bool
from ..core.types import ONNX_DTYPES

_OPT_LEVELS = ('disable', 'basic', 'extended', 'all')
_OPTIONS = ('providers', 'intra_op_threads', 'inter_op_threads', 'threads', 'graph_optimization',
            'log_severity', 'allow_spinning', 'force_spinning_stop')


def _import_ort():
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise BackendError('the onnxruntime backend needs the `onnxruntime` package '
                           f'(pip install onnxruntime): {exc}') from exc
    return onnxruntime


def _parse_providers(value: Any, available: List[str]) -> List[Any]:
    """Return providers as ORT wants them: names, or (name, options) pairs; all available."""
    if value is None or value == '' or value == []:
        items: List[Any] = ['CPUExecutionProvider']
    elif isinstance(value, str):
        items = [p.strip() for p in value.split(',') if p.strip()]
    else:
        items = list(value)
    for item in items:
        name = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(name, str) or name not in available:
            raise BackendError(f'ONNX Runtime execution provider {name!r} is not available; '
                               f'available: {", ".join(available)}')
    return [tuple(i) if isinstance(i, list) else i for i in items]


def _thread_count(options: Dict[str, Any], key: str) -> int:
    value = options.get(key, 0)
    try:
        count = int(value if value is not None else 0)
    except (TypeError, ValueError):
        raise BackendError(
            f'{key} must be an integer (0 = ONNX Runtime default), not {value!r}') from None
    if count < 0:
        raise BackendError(f'{key} must be >= 0 (0 = ONNX Runtime default), not {count}')
    return count


#: allow_spinning 'auto' lets idle intra-op threads spin only on more cores than this
SPIN_MIN_CORES = 4


def spin_policy(value: Any, cores: Optional[int] = None) -> bool:
    """Whether idle intra-op threads may spin: true / false, or 'auto' by the core count."""
    try:
        spin = parse_bool(value, 'allow_spinning', default=None, allow_auto=True)
    except ValueError as exc:
        raise BackendError(str(exc)) from None
    if spin is not None:
        return spin
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # pragma: no cover - non-Linux
            cores = os.cpu_count() or 1
    return cores > SPIN_MIN_CORES


class OnnxRuntimeBackend(Backend):
    """Runs an .onnx model with ONNX Runtime.

    Options: providers (list or comma-separated string, default CPU), intra_op_threads
    (alias `threads`, which intra_op_threads overrides; 0 = ORT default), inter_op_threads,
    graph_optimization ('all' | 'extended' | 'basic' | 'disable'), allow_spinning (true,
    false or 'auto', the default: idle intra-op threads spin between inferences only on more
    than SPIN_MIN_CORES cores; on a small CPU the spinning threads take the cores the executor,
    the pipeline threads and the camera driver need, which costs far more latency than the
    spin saves; see docs/performance.md), force_spinning_stop (true: threads that spin do so
    only inside a run and stop the moment it returns, ORT's `session.force_spinning_stop`;
    default false), log_severity (0-4,
    default 3 = errors only). Unknown options are errors: a typo must not pass silently.
    """

    name = 'onnxruntime'

    def __init__(self, model_path: str, **options: Any) -> None:
        super().__init__(model_path, **options)
        unknown = sorted(set(options) - set(_OPTIONS) - set(self.COMMON_OPTIONS))
        if unknown:
            raise BackendError(f'unknown onnxruntime option(s) {", ".join(unknown)}; '
                               f'accepted: {", ".join(_OPTIONS)}')
        ort = _import_ort()
        path = os.fspath(model_path)
        if not os.path.isfile(path):
            raise BackendError(f'ONNX model file not found: {path}')

        providers = _parse_providers(options.get('providers'), ort.get_available_providers())
        # `threads` is the node's generic knob; an explicit intra_op_threads is more specific.
        intra_key = 'intra_op_threads' if 'intra_op_threads' in options else 'threads'
        intra = _thread_count(options, intra_key)
        inter = _thread_count(options, 'inter_op_threads')
        level = str(options.get('graph_optimization', 'all')).lower()
        if level not in _OPT_LEVELS:
            raise BackendError(f'graph_optimization must be one of {", ".join(_OPT_LEVELS)}, '
                               f'not {level!r}')

        so = ort.SessionOptions()
        so.intra_op_num_threads = intra
        so.inter_op_num_threads = inter
        so.graph_optimization_level = {
            'disable': ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            'basic': ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            'extended': ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            'all': ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
        so.log_severity_level = int(options.get('log_severity', 3))
        spin = spin_policy(options.get('allow_spinning', 'auto'))
        if not spin:
            so.add_session_config_entry('session.intra_op.allow_spinning', '0')
            so.add_session_config_entry('session.inter_op.allow_spinning', '0')
        try:
            stop_spin = parse_bool(options.get('force_spinning_stop', False),
                                   'force_spinning_stop')
        except ValueError as exc:
            raise BackendError(str(exc)) from None
        if stop_spin:
            so.add_session_config_entry('session.force_spinning_stop', '1')
        try:
            self._session = ort.InferenceSession(path, sess_options=so, providers=providers)
        except Exception as exc:  # noqa: B902 - ORT raises several private exception types
            raise BackendError(f'cannot load ONNX model {path}: {exc}') from exc

        self._inputs = [self._spec(a) for a in self._session.get_inputs()]
        self._outputs = [self._spec(a) for a in self._session.get_outputs()]
        self._input_names = [s.name for s in self._inputs]
        self._input_dtypes = [s.dtype for s in self._inputs]
        self._output_names = [s.name for s in self._outputs]
        self._metadata = dict(self._session.get_modelmeta().custom_metadata_map or {})
        self.providers = list(self._session.get_providers())
        self.intra_op_threads, self.inter_op_threads, self.graph_optimization = intra, inter, level
        self.allow_spinning, self.force_spinning_stop = spin, stop_spin

    @staticmethod
    def _spec(arg: Any) -> TensorSpec:
        shape = tuple(d if isinstance(d, int) else None if d is None else str(d)
                      for d in arg.shape)
        return TensorSpec(arg.name, shape, ONNX_DTYPES.get(arg.type, np.dtype(np.float32)))

    def infer(self, inputs: Sequence[np.ndarray]) -> List[np.ndarray]:
        session = self._session
        if session is None:
            raise BackendError('the onnxruntime backend was closed')
        if len(inputs) != len(self._input_names):
            raise BackendError(f'model takes {len(self._input_names)} input(s) '
                               f'({", ".join(self._input_names)}), got {len(inputs)}')
        # asarray is a no-op for the usual already-right contiguous tensors.
        feed = {name: np.ascontiguousarray(x, dtype)
                for name, dtype, x in zip(self._input_names, self._input_dtypes, inputs)}
        try:
            return session.run(self._output_names, feed)
        except Exception as exc:  # noqa: B902 - any runtime failure, with the shapes
            shapes = ', '.join(f'{n}{tuple(np.shape(x))}' for n, x in feed.items())
            raise BackendError(f'ONNX Runtime inference failed for {self.model_path} '
                               f'with inputs {shapes}: {exc}') from exc

    def describe(self) -> str:
        """One line for logs: what actually runs (ORT may drop providers it cannot use)."""
        return (f'onnxruntime providers={",".join(self.providers)} '
                f'intra_op_threads={self.intra_op_threads} '
                f'inter_op_threads={self.inter_op_threads} '
                f'graph_optimization={self.graph_optimization} '
                f'allow_spinning={self.allow_spinning} '
                f'force_spinning_stop={self.force_spinning_stop}')

    def close(self) -> None:
        self._session = None
