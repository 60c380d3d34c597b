"""RKNN backend: an .rknn model on a Rockchip NPU through RKNNLite, one NPU core per worker.

On a board (aarch64, rknn-toolkit-lite2) this loads the .rknn file and calls
`RKNNLite.inference`. On a PC, `simulator: true` runs the same inference call in
rknn-toolkit2's simulator, which cannot load .rknn files: it rebuilds the model from the ONNX
source recorded in the sidecar, in the toolkit's own Python (`simulator_python`, or
FDR_RKNN_PYTHON; `make test-assets` builds one in .venv-rknn) behind a pipe, where it runs
`python -m faster_deployment_ros.tools.rknn_toolkit serve`.

The sidecar (`model.rknn.json`, written by `fdr-convert rknn`) carries the ONNX tensor names,
shapes and metadata, and the mean/std baked into the .rknn: adapters hand over the same
normalised NCHW tensor as to ONNX Runtime, and the backend undoes that normalisation
(x * std + mean) so the NPU gets the pixel values its built-in normalisation expects.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
import subprocess
import tempfile
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from .base import Backend, BackendError, flag_option, TensorSpec
from ..core import array_pipe

_log = logging.getLogger(__name__)
_OPTIONS = ('npu_core', 'worker_index', 'workers', 'num_npu_cores', 'data_format', 'simulator',
            'simulator_onnx', 'simulator_python', 'runtime_factory', 'threads')
#: the folder that holds this package (a source tree or site-packages): the simulator's
#: Python imports the server module from there
PACKAGE_PARENT = Path(__file__).resolve().parents[2]
SIMULATOR_SERVER = 'faster_deployment_ros.tools.rknn_toolkit'

# npu_core parameter -> RKNNLite constant name
NPU_CORES = {'auto': 'NPU_CORE_AUTO', '0': 'NPU_CORE_0', '1': 'NPU_CORE_1', '2': 'NPU_CORE_2',
             '0_1': 'NPU_CORE_0_1', '0_1_2': 'NPU_CORE_0_1_2', 'all': 'NPU_CORE_ALL'}


def resolve_core_mask(npu_core: Any = 'auto', worker_index: Optional[int] = None,
                      workers: Optional[int] = None, num_npu_cores: int = 3) -> str:
    """Return the RKNNLite core-mask name for one worker.

    'auto' pins worker i to core i % num_npu_cores when the pipeline runs pinned workers
    (worker_index given and not a single-worker run), so RK3588's three cores serve three
    workers in parallel; a lone worker leaves the choice to the driver (NPU_CORE_AUTO).
    """
    key = str(npu_core).strip().lower() if npu_core is not None else 'auto'
    if key not in NPU_CORES:
        raise BackendError(f'npu_core must be one of {", ".join(NPU_CORES)}, not {npu_core!r}')
    if key != 'auto' or worker_index is None or (workers is not None and int(workers) <= 1) \
            or int(num_npu_cores) <= 1:
        return NPU_CORES[key]
    return NPU_CORES[str(int(worker_index) % int(num_npu_cores))]


def model_files(model_path: str) -> tuple:
    p = Path(os.fspath(model_path))
    return p, p.with_name(p.name + '.json')


class RknnLiteRuntime:
    """RKNNLite on the board: load_rknn + init_runtime(core_mask)."""

    def __init__(self, model_path: str, core_mask: str) -> None:
        try:
            from rknnlite.api import RKNNLite
        except ImportError as exc:
            raise BackendError(
                'the rknn backend needs RKNNLite (rknn-toolkit-lite2, aarch64 Rockchip boards '
                'with the NPU driver); on a PC use the simulator (rknn.simulator: true) '
                f'with rknn-toolkit2 in .venv-rknn: {exc}') from exc
        self._rt = RKNNLite(verbose=False)
        if self._rt.load_rknn(model_path) != 0:
            raise BackendError(f'RKNNLite cannot load {model_path}')
        ret = self._rt.init_runtime(core_mask=getattr(RKNNLite, core_mask))
        if ret != 0:
            self._rt.release()
            raise BackendError(f'RKNNLite init_runtime(core_mask={core_mask}) failed ({ret}); '
                               'is the NPU driver loaded and the core present on this SoC?')

    def inference(self, inputs, data_format=None):
        return self._rt.inference(inputs=inputs, data_format=data_format)

    def release(self) -> None:
        self._rt.release()


def _log_tail(path: str, limit: int = 12) -> str:
    """Return the last lines of the simulator's log (the toolkit's own error lines come last)."""
    try:
        with open(path, errors='replace') as f:
            lines = [ln.rstrip() for ln in f.read().replace('\r', '\n').splitlines() if ln.strip()]
    except OSError:
        return ''
    return '\n'.join(lines[-limit:])


class SimulatorRuntime:
    """rknn-toolkit2's PC simulator in its own venv, behind a pipe (same `inference` call)."""

    def __init__(self, config: Dict[str, Any], python: Optional[str] = None) -> None:
        python = python or os.environ.get('FDR_RKNN_PYTHON')
        if not python:
            raise BackendError('the RKNN simulator runs in a Python with rknn-toolkit2: give '
                               'rknn.simulator_python or set FDR_RKNN_PYTHON (make test-assets '
                               'builds .venv-rknn/bin/python)')
        if not Path(python).exists():
            raise BackendError(f'the RKNN simulator needs rknn-toolkit2 in {python}, which does '
                               'not exist (make test-assets builds .venv-rknn)')
        fd, self._log_path = tempfile.mkstemp(prefix='fdr-rknn-sim-', suffix='.log')
        os.close(fd)
        path = os.pathsep.join(p for p in (str(PACKAGE_PARENT), os.environ.get('PYTHONPATH', ''))
                               if p)
        env = dict(os.environ, FDR_RKNN_LOG=self._log_path, PYTHONPATH=path)
        with open(self._log_path, 'ab') as log:
            self._proc = subprocess.Popen(
                [python, '-m', SIMULATOR_SERVER, 'serve'],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env)
        self.build_seconds = self._call({'cmd': 'build', 'config': config})[0].get('seconds', 0.0)

    def _call(self, header: Dict[str, Any], arrays: Sequence[np.ndarray] = ()):
        try:
            array_pipe.send(self._proc.stdin, header, arrays)
            reply, outs = array_pipe.recv(self._proc.stdout)
        except (BrokenPipeError, OSError):
            reply, outs = None, []
        if reply is None:
            raise BackendError('the RKNN simulator process died:\n' + _log_tail(self._log_path))
        if not reply.get('ok'):
            raise BackendError(f'RKNN simulator: {reply.get("error")}')
        return reply, outs

    def inference(self, inputs, data_format=None):
        return self._call({'cmd': 'infer', 'data_format': data_format}, inputs)[1]

    def release(self) -> None:
        proc, self._proc = getattr(self, '_proc', None), None
        if proc is None:
            return
        try:
            array_pipe.send(proc.stdin, {'cmd': 'close'})
            proc.stdin.close()
            proc.wait(timeout=10)
        except Exception:  # noqa: B902 - a wedged simulator is killed
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout:
                proc.stdout.close()
            try:
                os.unlink(self._log_path)
            except OSError:
                pass


class RknnBackend(Backend):
    """Runs an .rknn model with RKNNLite (or the rknn-toolkit2 simulator).

    Options: npu_core (auto | 0 | 1 | 2 | 0_1 | 0_1_2 | all), worker_index (set by the pipeline),
    workers / num_npu_cores (for 'auto' pinning), data_format (default: the sidecar's, nchw),
    simulator (true: PC simulator), simulator_onnx (ONNX to build there; default the sidecar's
    source), simulator_python (the toolkit venv's python), runtime_factory (a callable
    (model_path, core_mask) -> object with inference()/release(), e.g. for tests or a custom
    runtime). `threads` is accepted and ignored: the NPU has no CPU threads to set.
    """

    name = 'rknn'
    pins_workers = True

    def __init__(self, model_path: str, **options: Any) -> None:
        super().__init__(model_path, **options)
        self.check_options(_OPTIONS)
        path, sidecar_file = model_files(model_path)
        if not sidecar_file.is_file():
            raise BackendError(f'{sidecar_file} not found: the rknn backend takes tensor names, '
                               'shapes and normalisation from the sidecar fdr-convert rknn writes')
        side = json.loads(sidecar_file.read_text())
        self._sidecar = side
        self._inputs = [TensorSpec.from_dict(s) for s in side['inputs']]
        self._outputs = [TensorSpec.from_dict(s) for s in side['outputs']]
        self._metadata = {str(k): str(v) for k, v in side.get('metadata', {}).items()}
        fmt = options.get('data_format') or side.get('data_format', 'nchw')
        self.data_format = str(fmt).lower()
        if self.data_format not in ('nchw', 'nhwc'):
            raise BackendError(f'data_format must be nchw or nhwc, not {self.data_format!r}')
        self._denorm = self._denormaliser(side.get('mean_values'), side.get('std_values'))
        worker = options.get('worker_index')
        self.core_mask = resolve_core_mask(options.get('npu_core', 'auto'),
                                           None if worker is None else int(worker),
                                           options.get('workers'),
                                           int(options.get('num_npu_cores', 3)))
        factory: Optional[Callable] = options.get('runtime_factory')
        self.simulated = flag_option(options.get('simulator'), 'rknn option simulator', False)
        if factory is not None:
            self._rt = factory(str(path), self.core_mask)
        elif self.simulated:
            if self.core_mask != 'NPU_CORE_AUTO':
                _log.info('rknn: simulator ignores npu_core (%s)', self.core_mask)
            self._rt = SimulatorRuntime(self._simulator_config(options.get('simulator_onnx')),
                                        options.get('simulator_python'))
        else:
            if not path.is_file():
                raise BackendError(f'RKNN model file not found: {path}')
            self._rt = RknnLiteRuntime(str(path), self.core_mask)

    def _simulator_config(self, onnx_override: Optional[str]) -> Dict[str, Any]:
        side = self._sidecar
        onnx = onnx_override or side.get('source_path')
        if not onnx or not Path(onnx).is_file():
            raise BackendError(f'the RKNN simulator rebuilds from ONNX, and {onnx!r} is not a '
                               'file: give rknn.simulator_onnx')
        cfg = dict(side.get('build', {}))
        cfg['onnx'] = str(onnx)
        if cfg.get('precision') == 'int8' and not Path(cfg.get('dataset') or '').is_file():
            raise BackendError('the RKNN simulator needs the int8 calibration list '
                               f'{cfg.get("dataset")!r} the model was built with')
        return cfg

    @staticmethod
    def _denormaliser(mean: Any, std: Any) -> Optional[tuple]:
        """Per-channel (std, mean) shaped (1, C, 1, 1), or None when they are 0 and 1."""
        if not mean and not std:
            return None
        m = np.asarray(mean[0] if mean else [0.0], np.float32)
        s = np.asarray(std[0] if std else [1.0], np.float32)
        if np.all(m == 0) and np.all(s == 1):
            return None
        return s.reshape(1, -1, 1, 1), m.reshape(1, -1, 1, 1)

    @property
    def precision(self) -> str:
        return str(self._sidecar.get('precision', 'unknown'))

    def infer(self, inputs: Sequence[np.ndarray]) -> List[np.ndarray]:
        if len(inputs) != len(self._inputs):
            raise BackendError(f'rknn model takes {len(self._inputs)} input(s), got {len(inputs)}')
        batch = int(np.shape(inputs[0])[0]) if np.ndim(inputs[0]) == 4 else 1
        if batch > 1 and self._inputs[0].shape[0] == 1:
            # .rknn models are built for batch 1: run the items one by one.
            per_item = [self._infer_one([x[i:i + 1] for x in inputs]) for i in range(batch)]
            return [np.concatenate(outs, axis=0) for outs in zip(*per_item)]
        return self._infer_one(inputs)

    def _infer_one(self, inputs: Sequence[np.ndarray]) -> List[np.ndarray]:
        feeds = []
        for x in inputs:
            x = np.asarray(x, np.float32)
            if self._denorm is not None and x.ndim == 4:
                s, m = self._denorm
                x = x * s + m  # back to the pixel values the .rknn normalises itself
            if self.data_format == 'nhwc' and x.ndim == 4:
                x = x.transpose(0, 2, 3, 1)
            feeds.append(np.ascontiguousarray(x))
        outs = self._rt.inference(inputs=feeds, data_format=self.data_format)
        if outs is None:
            raise BackendError('RKNN inference returned no outputs')
        results = []
        for out, spec in zip(outs, self._outputs):
            out = np.asarray(out, np.float32)
            if out.size == int(np.prod(spec.shape)):
                out = out.reshape(spec.shape)  # RKNN may add or drop unit axes
            results.append(out)
        return results

    def close(self) -> None:
        rt = getattr(self, '_rt', None)
        if rt is not None:
            self._rt = None
            rt.release()
