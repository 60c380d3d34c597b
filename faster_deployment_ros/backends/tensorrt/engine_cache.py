"""The engine cache: keys, file names, sidecars, atomic writes and the engines loaded in memory.

An engine is only valid for the exact TensorRT version, GPU model and build settings that made
it, so the cache key (`EngineKey`) holds all of them (model bytes, TensorRT version, GPU name and
compute capability, precision, workspace, input shapes, INT8 calibration set, ONNX conversion);
a change of any one names a new file instead of loading a stale one. Each engine file has a JSON
sidecar beside it (`sidecar_path`: the key, the model's metadata and inputs).

The cache directory must be writable by this user alone (`cache_directory`, core.private_dir):
an engine planted there by another user would be loaded and run. Deserialized engines are
shared by the backends of a process and reference-counted: `acquire_engine` loads a file once
(again when the file on disk changed; `EngineLoadError` when TensorRT cannot load it) and
`release_engine` drops it with its last user, so cleanup frees GPU memory. `note_built` /
`built_by_this_process` let `rebuild` build once per process.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
import hashlib
import json
import os
from pathlib import Path
import re
import threading
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from .versions import PRECISIONS, TrtLogger
from ..base import BackendError
from ...core.atomic_file import atomic_write
from ...core.hashing import file_sha256
from ...core.private_dir import private_dir, UnsafeDirectory, user_cache_dir

KEY_VERSION = 2  # bump when the engine layout/build recipe changes


class EngineLoadError(BackendError):
    """TensorRT cannot deserialize an engine file (corrupt, truncated, or made elsewhere)."""


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
    """Return $FDR_TRT_CACHE, else $XDG_CACHE_HOME (~/.cache)/faster_deployment_ros/tensorrt."""
    return user_cache_dir('FDR_TRT_CACHE', 'tensorrt')


def cache_directory(path: os.PathLike) -> Path:
    """Create the engine cache directory where missing; refuse one another user can write."""
    try:
        return private_dir(path, 'tensorrt cache_dir')
    except UnsafeDirectory as exc:
        raise BackendError(f'{exc} (tensorrt option cache_dir, or $FDR_TRT_CACHE)') from None


def engine_path(cache_dir: os.PathLike, model_path: os.PathLike, key: EngineKey) -> Path:
    """`<cache>/<model stem>-<precision>-<digest>.engine`: readable, and unique per key."""
    stem = re.sub(r'[^A-Za-z0-9_.-]+', '_', Path(model_path).stem) or 'model'
    return Path(cache_dir) / f'{stem}-{key.precision}-{key.digest()}.engine'


def sidecar_path(engine: Path) -> Path:
    """`<engine>.json`: the key, metadata and inputs of the engine beside it."""
    return engine.with_name(engine.name + '.json')


def file_stamp(path: Path) -> Tuple[int, int]:
    """(mtime_ns, size): changes when the file is rewritten."""
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def check_engine_file(path: Path, version_text: str,
                      gpu_name: Optional[str] = None) -> Dict[str, Any]:
    """Return the sidecar of a prebuilt engine: refuse one built by another TensorRT or GPU."""
    side = sidecar_path(path)
    info = json.loads(side.read_text()) if side.is_file() else {}
    key = info.get('key', {})
    built_by = (key.get('tensorrt_version'), key.get('gpu_name'))
    here = (version_text, gpu_name or built_by[1])
    if key and built_by != here:
        raise BackendError(
            f'{path.name} was built by TensorRT {built_by[0]} for {built_by[1]}; this is '
            f'TensorRT {here[0]} on {here[1]}. Engines only run where they were built: '
            f'rebuild it here (fdr-convert tensorrt MODEL.onnx) or load the .onnx')
    return info


# --------------------------------------------------------------------------- in memory -------

class LoadedEngine:
    """One deserialized engine shared by the backends of a process (reference-counted)."""

    def __init__(self, runtime: Any, engine: Any, stamp: Tuple[int, int]) -> None:
        self.runtime, self.engine, self.stamp, self.refs = runtime, engine, stamp, 0


_engines_lock = threading.Lock()
_engines: Dict[str, LoadedEngine] = {}
_built_here: Dict[str, Tuple[int, int]] = {}  # engine path -> file stamp this process wrote


def loaded_engines() -> Dict[str, int]:
    """Engine file -> how many backends use it: what this process holds in GPU memory."""
    with _engines_lock:
        return {p: e.refs for p, e in _engines.items()}


def acquire_engine(api: Any, path: Path, verbose: bool = False) -> LoadedEngine:
    """Return the engine of `path` with one more reference, deserializing it when needed.

    A file rewritten since it was loaded is loaded afresh. Raises BackendError with TensorRT's
    reason when the file does not deserialize.
    """
    stamp = file_stamp(path)
    with _engines_lock:
        entry = _engines.get(str(path))
        if entry is None or entry.stamp != stamp:  # a rebuilt file is loaded afresh
            trt = api.trt
            log = TrtLogger(trt, verbose)
            runtime = trt.Runtime(log)
            engine = runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                why = '; '.join(log.errors) or 'no reason given'
                raise EngineLoadError(
                    f'TensorRT {api.version_text} cannot load {path} ({why}). Engines '
                    'only load in the TensorRT version and on the GPU model that built them: '
                    'rebuild it here (rebuild: true, or fdr-convert tensorrt)')
            entry = _engines[str(path)] = LoadedEngine(runtime, engine, stamp)
        entry.refs += 1
    return entry


def release_engine(entry: LoadedEngine) -> None:
    """Drop one reference; the last one forgets the engine (GPU memory freed with it)."""
    with _engines_lock:
        entry.refs -= 1
        if entry.refs <= 0:
            for p, e in list(_engines.items()):
                if e is entry:
                    del _engines[p]


def note_built(path: Path) -> None:
    """Record that this process wrote the engine file `path` (as it is now)."""
    with _engines_lock:
        _built_here[str(path)] = file_stamp(path)


def built_by_this_process(path: Path) -> bool:
    """Whether `path` is still the file this process built (see `note_built`)."""
    with _engines_lock:
        done = _built_here.get(str(path))
    return done is not None and path.is_file() and file_stamp(path) == done


__all__ = ['KEY_VERSION', 'EngineLoadError', 'EngineKey', 'default_cache_dir',
           'cache_directory', 'engine_path', 'sidecar_path',
           'atomic_write', 'file_sha256', 'file_stamp', 'check_engine_file', 'LoadedEngine',
           'loaded_engines', 'acquire_engine', 'release_engine', 'note_built',
           'built_by_this_process']
