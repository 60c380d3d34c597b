"""The tensorrt backend's options: names, defaults, validation, and the input shapes they give.

Contract: `parse_options(options)` turns what the node or fdr-convert passes into a complete
dict (defaults filled, sizes in bytes, paths as Path, yes/no as bool) or raises a BackendError
that names the bad option and what is accepted; nothing here touches TensorRT or the GPU.
`parse_input_shapes` reads the `input_shape` option; `resolve_input_shapes` / `build_shapes`
decide the concrete shape each model input is built for; `onnx_tensors` / `onnx_signature`
read a model's inputs and outputs without onnx or onnxruntime.
"""
from __future__ import annotations

import logging
from pathlib import Path
import re
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from .engine_cache import default_cache_dir
from .versions import PRECISIONS
from ..base import BackendError, flag_option
from ..onnx_signature import OnnxReadError, read_signature
from ...core.types import TensorSpec

_LOG = logging.getLogger('faster_deployment_ros.tensorrt')

OPTIONS = ('device', 'precision', 'workspace', 'cache_dir', 'timing_cache', 'input_shape',
           'int8_calibration', 'calibration_cache', 'calibration_limit', 'calibration_preprocess',
           'rebuild', 'verbose', 'strongly_typed', 'modelopt_python', 'adapter_factory',
           # the node's common per-worker options: accepted, meaningless on a GPU
           'threads', 'workers', 'worker_index')
#: Prebuilt engine files the backend loads as they are (an .onnx is built and cached).
ENGINE_SUFFIXES = ('.engine', '.plan', '.trt')
#: calibration_preprocess values: 'auto' (the model family, as the node infers it), a family
#: name, or the two pre-processing conventions' names of earlier releases.
PREPROCESS_ALIASES = {'ultralytics': 'yolov8'}

_told = set()


def info_once(key: str, text: str) -> None:
    """Log `text` at INFO the first time `key` is seen in this process."""
    if key not in _told:
        _told.add(key)
        _LOG.info(text)


def parse_options(options: Dict[str, Any]) -> Dict[str, Any]:
    """Validate the options, fill defaults; unknown names and bad values say what is accepted."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise BackendError(f'unknown tensorrt option(s) {", ".join(unknown)}; accepted: '
                           f'{", ".join(OPTIONS)}')
    o = dict(options)
    precision = str(o.get('precision') or 'fp16').lower()
    if precision not in PRECISIONS:
        raise BackendError(f'tensorrt precision must be one of {", ".join(PRECISIONS)}, '
                           f'not {precision!r}')
    try:
        workspace = parse_bytes(o.get('workspace') or '1GiB')
        shapes = parse_input_shapes(o.get('input_shape'))
        device = int(o.get('device') or 0)
        limit = int(o.get('calibration_limit') or 0)
        threads = int(o.get('threads') or 0)
    except (TypeError, ValueError) as exc:
        raise BackendError(f'tensorrt option: {exc}') from None
    if device < 0:
        raise BackendError(f'tensorrt device must be a GPU index >= 0, not {device}')
    if threads:
        info_once('threads', f'tensorrt: threads={threads} ignored: inference runs on the GPU '
                  '(tune workers, i.e. execution contexts, instead)')
    calib = o.get('int8_calibration') or None
    calib_cache = o.get('calibration_cache') or None
    if precision == 'int8' and not calib and not (calib_cache and Path(calib_cache).is_file()):
        raise BackendError('tensorrt precision int8 needs int8_calibration (a folder or list of '
                           'images) or an existing calibration_cache')
    pre = str(o.get('calibration_preprocess') or 'auto').lower()
    return {
        'precision': precision, 'workspace': workspace, 'input_shapes': shapes, 'device': device,
        'cache_dir': Path(o['cache_dir']) if o.get('cache_dir') else default_cache_dir(),
        'timing_cache': Path(o['timing_cache']) if o.get('timing_cache') else None,
        'int8_calibration': calib,
        'calibration_cache': Path(calib_cache) if calib_cache else None,
        'calibration_limit': limit,
        'calibration_preprocess': PREPROCESS_ALIASES.get(pre, pre),
        'rebuild': flag_option(o.get('rebuild'), 'tensorrt option rebuild', False),
        'verbose': flag_option(o.get('verbose'), 'tensorrt option verbose', False),
        'strongly_typed': flag_option(o.get('strongly_typed'), 'tensorrt option strongly_typed',
                                      False),
        'modelopt_python': str(o.get('modelopt_python') or '') or None,
        'adapter_factory': o.get('adapter_factory')}


# --------------------------------------------------------------------------- sizes -----------

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


# --------------------------------------------------------------------------- shapes ----------

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


def build_shapes(inputs: List[TensorSpec], opts: Dict[str, Any]) -> Dict[str, Tuple[int, ...]]:
    """Return the shape each model input is built for (parsed options); BackendError if none."""
    try:
        return resolve_input_shapes(
            [(t.name, tuple(d if isinstance(d, int) and d > 0 else None for d in t.shape))
             for t in inputs], opts['input_shapes'])
    except ValueError as exc:
        raise BackendError(str(exc)) from None


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


__all__ = ['OPTIONS', 'ENGINE_SUFFIXES', 'PREPROCESS_ALIASES', 'info_once', 'parse_options',
           'parse_bytes', 'parse_input_shapes', 'resolve_input_shapes', 'build_shapes',
           'onnx_tensors', 'onnx_signature']
