"""What converters need to know about an ONNX model, and the sidecar JSON they write with it.

A converted model (ncnn .param/.bin, .rknn) loses the ONNX tensor names, the batch dimension and
the metadata (class names, strides). The sidecar (`<model>.json` beside it) keeps them so the
backend presents exactly the tensors ONNX Runtime would, and the same model adapter works.
Runs in the converter venvs: needs onnx and onnxruntime, imported lazily.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..core.types import ONNX_DTYPES

SIDECAR_VERSION = 1


def parse_shape(text: str) -> List[int]:
    """'1,3,416,416' or '1x3x416x416' -> [1, 3, 416, 416]."""
    try:
        return [int(v) for v in text.replace('x', ',').split(',') if v.strip()]
    except ValueError:
        raise ValueError(f'bad shape {text!r}; write it as 1,3,416,416') from None


def describe(model_path: Path, input_shapes: Optional[Sequence[Sequence[int]]] = None
             ) -> Dict[str, Any]:
    """Inputs/outputs (name, static shape, dtype) and metadata of an ONNX model.

    Dynamic input dimensions come from `input_shapes`, else batch 1; a dynamic spatial dimension
    without a given shape is an error. Output shapes are measured by one ONNX Runtime run on
    zeros, which also proves the model loads.
    """
    import numpy as np
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(model_path), providers=['CPUExecutionProvider'])
    except Exception as exc:  # noqa: B902 - whatever ONNX Runtime raises, said plainly
        raise ValueError(f'ONNX Runtime cannot load {model_path}: {exc}') from None
    inputs = []
    for i, inp in enumerate(sess.get_inputs()):
        given = list(input_shapes[i]) if input_shapes and i < len(input_shapes) else None
        shape = [d if isinstance(d, int) and d > 0 else None for d in inp.shape]
        if given is not None:
            if len(given) != len(shape) or any(s is not None and s != g
                                               for s, g in zip(shape, given)):
                raise ValueError(f'input {inp.name!r} has shape {inp.shape}; given {given} does '
                                 'not fit it')
            shape = given
        elif shape and shape[0] is None:
            shape[0] = 1
        if any(d is None for d in shape):
            raise ValueError(f'input {inp.name!r} has dynamic shape {inp.shape}: give the '
                             'size to convert for with --input-shape, e.g. 1,3,640,640')
        dtype = ONNX_DTYPES.get(inp.type)
        if dtype is None:
            raise ValueError(f'input {inp.name!r} has unsupported type {inp.type}')
        inputs.append({'name': inp.name, 'shape': shape, 'dtype': dtype.name})
    feeds = {i['name']: np.zeros(i['shape'], i['dtype']) for i in inputs}
    results = sess.run(None, feeds)
    outputs = [{'name': o.name, 'shape': list(r.shape), 'dtype': str(r.dtype)}
               for o, r in zip(sess.get_outputs(), results)]
    meta = sess.get_modelmeta()
    return {'inputs': inputs, 'outputs': outputs,
            'metadata': dict(meta.custom_metadata_map or {}),
            'producer': meta.producer_name or ''}


def sidecar_path(model_file: Path) -> Path:
    """`x.ncnn.param` -> `x.ncnn.json`, `x.rknn` -> `x.rknn.json`."""
    model_file = Path(model_file)
    if model_file.suffix in ('.param', '.bin'):
        return model_file.with_suffix('.json')
    return model_file.with_name(model_file.name + '.json')


def write_sidecar(model_file: Path, info: Dict[str, Any]) -> Path:
    path = sidecar_path(model_file)
    data = {'sidecar_version': SIDECAR_VERSION, **info}
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + '\n')
    return path
