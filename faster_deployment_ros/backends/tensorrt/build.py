"""Building engines: from an ONNX model and the parsed options to a cached engine file.

Contract: `prepare_engine(onnx, opts, api, device)` returns the cached engine for this model and
settings, building it first when there is none (or `rebuild` is set): the ONNX is converted by
ModelOpt first where the TensorRT version builds strongly typed (11.x fp16/int8; 10.x with
`strongly_typed`), INT8 is calibrated with the model's own pre-processing (calibration.py), and
the engine and its sidecar are written atomically under the engine key's name in a cache
directory only this user can write (engine_cache.py). `load_engine` also loads it, building it
again (and replacing the file) when a cached engine does not load. `engine_key_path` names that
file without building anything. `build_engine`
is the TensorRT builder call itself (parse, config, profile, calibrator, timing cache); every
failure is a BackendError that says what to change.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from . import engine_cache as cache
from . import modelopt_convert as modelopt
from .calibration import (calibration_batches, calibration_id, CalibrationBatches,
                          make_calibrator)
from .options import build_shapes, onnx_tensors
from .versions import TrtApi, TrtLogger, uses_modelopt
from ..base import BackendError

_LOG = logging.getLogger('faster_deployment_ros.tensorrt')


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

    timing = None
    if opts.timing_cache is not None:
        data = Path(opts.timing_cache).read_bytes() if Path(opts.timing_cache).is_file() else b''
        timing = config.create_timing_cache(data)
        if not config.set_timing_cache(timing, ignore_mismatch=False):
            log(f'timing cache {opts.timing_cache} is from another TensorRT/GPU: starting anew')
            timing = config.create_timing_cache(b'')
            config.set_timing_cache(timing, ignore_mismatch=False)
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
    if timing is not None:
        cache.atomic_write(Path(opts.timing_cache), bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def engine_key_path(onnx_path: Path, opts: Dict[str, Any], api: Any, device: Any
                    ) -> Tuple[Path, cache.EngineKey, Dict[str, str]]:
    """(engine path, key, metadata) for this model and settings, without building anything."""
    inputs, _, metadata = onnx_tensors(onnx_path)
    shapes = build_shapes(inputs, opts)
    _, calib_id = calibration_id(opts)
    conversion = f'modelopt-r{modelopt.RECIPE}' if uses_modelopt(api, opts) else ''
    key = cache.EngineKey.create(cache.file_sha256(onnx_path), api.version_text,
                                 device.info.name, device.info.compute_capability,
                                 opts['precision'],
                                 opts['workspace'], shapes, calib_id, conversion)
    return cache.engine_path(opts['cache_dir'], onnx_path, key), key, metadata


def prepare_engine(onnx_path: Path, opts: Dict[str, Any], api: Any, device: Any,
                   log=print) -> Tuple[Path, cache.EngineKey, Dict[str, str], bool]:
    """(engine path, key, metadata, built).

    The cached engine for this model and settings, building (and caching) it first when there is
    none or `rebuild` is set. The cache directory is created (mode 0700) or checked first.
    """
    cache.cache_directory(opts['cache_dir'])
    path, key, metadata = engine_key_path(onnx_path, opts, api, device)
    if path.is_file() and not opts['rebuild']:
        log(f'using cached engine {path}')
        return path, key, metadata, False
    inputs, _, _ = onnx_tensors(onnx_path)
    shapes = build_shapes(inputs, opts)
    calib_paths, calib_id = calibration_id(opts)
    batches = (calibration_batches(onnx_path, opts, calib_paths, shapes, log)
               if calib_paths else None)
    source = onnx_path
    strongly_typed = uses_modelopt(api, opts)
    if strongly_typed:
        if opts['precision'] == 'int8' and batches is None:
            raise BackendError(f'TensorRT {api.version_text} int8 is built from a Q/DQ-quantized '
                               'ONNX, which needs int8_calibration images (a calibration_cache '
                               'is for the builder-flag INT8 of 8.6/10.x)')
        stem = path.name[:path.name.rindex(f'-{opts["precision"]}-')]
        target = modelopt.converted_path(opts['cache_dir'], cache.file_sha256(onnx_path), stem,
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
    build = BuildOptions(precision=opts['precision'], workspace_bytes=opts['workspace'],
                         input_shapes=shapes, timing_cache=opts['timing_cache'],
                         strongly_typed=strongly_typed, calibration=batches,
                         calibration_cache=opts['calibration_cache'],
                         verbose=opts['verbose'])
    data = build_engine(api, source, build, device, log=log,
                        logger=TrtLogger(api.trt, opts['verbose']))
    cache.atomic_write(path, data)
    side = {'source_model': str(onnx_path), 'built_from': str(source), 'key': key.as_dict(),
            'metadata': metadata,
            'inputs': [{'name': n, 'shape': list(s)} for n, s in shapes.items()]}
    cache.atomic_write(cache.sidecar_path(path), (json.dumps(side, indent=2) + '\n').encode())
    cache.note_built(path)
    log(f'engine written to {path} ({len(data) / 1e6:.1f} MB)')
    return path, key, metadata, True


def load_engine(onnx_path: Path, opts: Dict[str, Any], api: Any, device: Any, log=print
                ) -> Tuple[cache.LoadedEngine, Path, Dict[str, str]]:
    """Return (loaded engine, engine path, metadata): `prepare_engine`, then `acquire_engine`.

    A cached engine that TensorRT cannot load (truncated, corrupt, stale) is not a dead end: a
    warning names the file, the engine is built again and the file replaced. One that fails
    right after being built raises EngineLoadError.
    """
    path, _, metadata, built = prepare_engine(onnx_path, opts, api, device, log=log)
    try:
        return cache.acquire_engine(api, path, opts['verbose']), path, metadata
    except cache.EngineLoadError as exc:
        if built:
            raise
        _LOG.warning('cached engine %s does not load; building it again and replacing the file '
                     '(%s)', path, exc)
    path, _, metadata, _ = prepare_engine(onnx_path, dict(opts, rebuild=True), api, device,
                                          log=log)
    return cache.acquire_engine(api, path, opts['verbose']), path, metadata


__all__ = ['BuildOptions', 'build_engine', 'engine_key_path', 'prepare_engine', 'load_engine']
