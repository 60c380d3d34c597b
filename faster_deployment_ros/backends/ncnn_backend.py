"""ncnn backend: a .param/.bin pair (from `fdr-convert ncnn`), on CPU threads or a Vulkan GPU.

ncnn's Mat has no batch axis, and pnnx renames tensors to in0/out0. The sidecar JSON written by
the converter restores the ONNX names, shapes and metadata, so model adapters see exactly what
ONNX Runtime would give them. Without a sidecar the blob names are discovered (or given) and one
dummy run measures the output shapes; the batch axis is put back in front.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .base import Backend, BackendError, flag_option, TensorSpec

_log = logging.getLogger(__name__)
_OPTIONS = ('threads', 'light_mode', 'use_vulkan', 'gpu_device', 'fp16', 'input_names',
            'output_names', 'input_shape')


def _import_ncnn():
    try:
        import ncnn
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise BackendError('the ncnn backend needs the `ncnn` package (pip install ncnn): '
                           f'{exc}') from exc
    return ncnn


def model_files(model_path: str) -> tuple:
    """(param, bin, sidecar json) for `x.param`, `x.bin` or the stem `x`."""
    p = Path(os.fspath(model_path))
    stem = p.with_suffix('') if p.suffix in ('.param', '.bin') else p
    return (stem.with_name(stem.name + '.param'), stem.with_name(stem.name + '.bin'),
            stem.with_name(stem.name + '.json'))


def _flag(value: Any, name: str) -> Optional[bool]:
    """Bool option from Python or ROS parameters; None for 'auto' / unset."""
    return flag_option(value, f'ncnn option {name}', allow_auto=True)


def _names(value: Any, name: str) -> Optional[List[str]]:
    if value is None or value == '' or value == []:
        return None
    items = value.split(',') if isinstance(value, str) else list(value)
    names = [str(v).strip() for v in items if str(v).strip()]
    if not names:
        raise BackendError(f'ncnn option {name} is empty')
    return names


class NcnnBackend(Backend):
    """Runs an ncnn model on the CPU (or Vulkan).

    Options: threads (0 = ncnn default), light_mode (free intermediate blobs early, default true),
    use_vulkan (GPU when ncnn has Vulkan and a device exists, else a logged fall-back to CPU),
    gpu_device, fp16 (auto | true | false: fp16 storage/arithmetic where ncnn supports it; false
    keeps every layer in fp32), input_names / output_names (blob names, default: the sidecar's
    or the net's), input_shape (NCHW, for a model without sidecar).
    """

    name = 'ncnn'

    def __init__(self, model_path: str, **options: Any) -> None:
        super().__init__(model_path, **options)
        self.check_options(_OPTIONS)
        ncnn = _import_ncnn()
        param, weights, sidecar = model_files(model_path)
        for f in (param, weights):
            if not f.is_file():
                raise BackendError(f'ncnn model file not found: {f} (make it with fdr-convert '
                                   'ncnn)')
        self._sidecar: Dict[str, Any] = (json.loads(sidecar.read_text()) if sidecar.is_file()
                                         else {})

        threads = options.get('threads', 0) or 0
        try:
            threads = int(threads)
        except (TypeError, ValueError):
            raise BackendError(f'threads must be an integer, not {threads!r}') from None
        net = ncnn.Net()
        opt = net.opt
        if threads > 0:
            opt.num_threads = threads
        light = _flag(options.get('light_mode'), 'light_mode')
        opt.lightmode = True if light is None else light
        fp16 = _flag(options.get('fp16'), 'fp16')
        if fp16 is not None:
            opt.use_fp16_storage = opt.use_fp16_packed = opt.use_fp16_arithmetic = fp16
        self.use_vulkan = bool(_flag(options.get('use_vulkan'), 'use_vulkan'))
        if self.use_vulkan:
            count = ncnn.get_gpu_count() if hasattr(ncnn, 'get_gpu_count') else 0
            device = int(options.get('gpu_device', 0) or 0)
            if count <= device:
                _log.warning('ncnn: use_vulkan requested but %s; running on the CPU',
                             'no Vulkan device was found' if count == 0 else
                             f'gpu_device {device} does not exist ({count} devices)')
                self.use_vulkan = False
            else:
                opt.use_vulkan_compute = True
                net.set_vulkan_device(device)
        self.threads = opt.num_threads

        from .ncnn_layers import register_custom_layers
        self._custom_layers = register_custom_layers(net, param.read_text())
        if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
            raise BackendError(f'ncnn cannot load {param} / {weights.name}: a layer type this '
                               "ncnn lacks, or a truncated file (see ncnn's message above)")
        self._net = net

        side_in = self._sidecar.get('inputs', [])
        side_out = self._sidecar.get('outputs', [])
        self._in_blobs = _names(options.get('input_names'), 'input_names') \
            or [s.get('blob', s['name']) for s in side_in] or list(net.input_names())
        self._out_blobs = _names(options.get('output_names'), 'output_names') \
            or [s.get('blob', s['name']) for s in side_out] or list(net.output_names())
        if not self._in_blobs or not self._out_blobs:
            raise BackendError(f'{param} declares no input/output blobs; give input_names and '
                               'output_names')
        if side_in and len(side_in) == len(self._in_blobs):
            self._inputs = [TensorSpec.from_dict(s) for s in side_in]
        else:
            shape = options.get('input_shape')
            shape = tuple(int(d) for d in shape) if shape else (1, None, None, None)
            self._inputs = [TensorSpec(b, shape) for b in self._in_blobs]
        if side_out and len(side_out) == len(self._out_blobs):
            self._outputs = [TensorSpec.from_dict(s) for s in side_out]
        elif all(d is not None for d in self._inputs[0].shape):
            # No sidecar: one run on zeros tells the output shapes (and warms the net up).
            self._outputs = [TensorSpec(b, ()) for b in self._out_blobs]
            outs = self.infer([np.zeros(s.shape, np.float32) for s in self._inputs])
            self._outputs = [TensorSpec(b, o.shape) for b, o in zip(self._out_blobs, outs)]
        else:
            self._outputs = [TensorSpec(b, (1, None)) for b in self._out_blobs]
        self._metadata = {str(k): str(v) for k, v in self._sidecar.get('metadata', {}).items()}
        self._ncnn = ncnn

    @property
    def precision(self) -> str:
        """'fp16' / 'fp32' weights as converted, 'unknown' without sidecar."""
        return str(self._sidecar.get('precision', 'unknown'))

    def infer(self, inputs: Sequence[np.ndarray]) -> List[np.ndarray]:
        if len(inputs) != len(self._in_blobs):
            raise BackendError(f'ncnn model takes {len(self._in_blobs)} input(s), got '
                               f'{len(inputs)}')
        ncnn = _import_ncnn()
        batch = int(np.shape(inputs[0])[0]) if np.ndim(inputs[0]) == 4 else 0
        if batch <= 1:
            return self._run_one([x[0] if np.ndim(x) == 4 else x for x in inputs], ncnn)
        # ncnn has no batch axis: run the items one by one and stack them back.
        per_item = [self._run_one([x[i] for x in inputs], ncnn) for i in range(batch)]
        return [np.concatenate(outs, axis=0) for outs in zip(*per_item)]

    def _run_one(self, items: Sequence[np.ndarray], ncnn) -> List[np.ndarray]:
        ex = self._net.create_extractor()
        for blob, x in zip(self._in_blobs, items):
            ex.input(blob, ncnn.Mat(np.ascontiguousarray(x, dtype=np.float32)))
        results = []
        for blob, spec in zip(self._out_blobs, self._outputs):
            ret, mat = ex.extract(blob)
            if ret != 0:
                raise BackendError(f'ncnn failed to compute blob {blob!r} (error {ret})')
            out = np.array(mat)  # a copy: the Mat's memory belongs to the extractor
            results.append(self._restore_shape(out, spec))
        return results

    @staticmethod
    def _restore_shape(out: np.ndarray, spec: TensorSpec) -> np.ndarray:
        shape = spec.shape
        if shape and all(isinstance(d, int) for d in shape):
            item = tuple(shape[1:]) if shape[0] == 1 else tuple(shape)
            if out.size == int(np.prod(item)):
                return out.reshape((1,) + item if shape[0] == 1 else item)
        return out[None]

    def close(self) -> None:
        net = getattr(self, '_net', None)
        if net is not None:
            net.clear()
            self._net = None
