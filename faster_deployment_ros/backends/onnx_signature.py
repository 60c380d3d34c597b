"""An ONNX model's inputs, outputs and metadata, read straight from the protobuf.

Why not onnx or onnxruntime: the TensorRT backend needs only the signature before it builds an
engine, and Jetson images often have neither package. The reader walks the few ModelProto
fields involved (graph inputs/outputs, initializers, metadata_props) with the protobuf wire
format; external weights are not read, so any model TensorRT can parse is fine.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np

from ..core.types import TensorSpec

# TensorProto.DataType -> numpy
_ELEM_TYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32,
               7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32,
               13: np.uint64}


class OnnxReadError(ValueError):
    """The file is not a readable ONNX model."""


def _varint(buf: bytes, pos: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise OnnxReadError('truncated varint')
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[Tuple[int, Any]]:
    """(field number, value) of one message: ints for varints, bytes for length-delimited."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > end:
                raise OnnxReadError('truncated field')
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise OnnxReadError(f'unsupported wire type {wire}')
        yield number, value


def _value_info(buf: bytes) -> TensorSpec:
    name, elem, dims = '', 1, []
    for number, value in _fields(buf):
        if number == 1:
            name = value.decode()
        elif number == 2:  # TypeProto
            for n2, v2 in _fields(value):
                if n2 != 1:  # tensor_type
                    continue
                for n3, v3 in _fields(v2):
                    if n3 == 1:
                        elem = v3
                    elif n3 == 2:  # TensorShapeProto
                        for n4, v4 in _fields(v3):
                            if n4 != 1:
                                continue
                            dim: Any = None
                            for n5, v5 in _fields(v4):
                                if n5 == 1:
                                    dim = v5 if v5 < 1 << 63 else v5 - (1 << 64)
                                elif n5 == 2:
                                    dim = v5.decode()
                            dims.append(dim)
    dtype = _ELEM_TYPES.get(elem)
    if dtype is None:
        raise OnnxReadError(f'tensor {name!r} has an unsupported element type {elem}')
    return TensorSpec(name, tuple(dims), np.dtype(dtype))


def read_signature(path: 'Path | str'
                   ) -> Tuple[List[TensorSpec], List[TensorSpec], Dict[str, str]]:
    """Return (inputs, outputs, metadata) of an ONNX file; dynamic dims are None or their name."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise OnnxReadError(f'cannot read {path}: {exc}') from None
    graph = None
    metadata: Dict[str, str] = {}
    try:
        for number, value in _fields(data):
            if number == 7:
                graph = value
            elif number == 14:
                kv = dict(_fields(value))
                metadata[kv.get(1, b'').decode()] = kv.get(2, b'').decode()
        if graph is None:
            raise OnnxReadError(f'{path} is not an ONNX model (no graph)')
        inputs, outputs, initializers = [], [], set()
        for number, value in _fields(graph):
            if number == 11:
                inputs.append(_value_info(value))
            elif number == 12:
                outputs.append(_value_info(value))
            elif number == 5:
                for n2, v2 in _fields(value):
                    if n2 == 8:
                        initializers.add(v2.decode())
    except (UnicodeDecodeError, IndexError) as exc:
        raise OnnxReadError(f'{path} is not an ONNX model ({exc})') from None
    # Older exports list weights among the graph inputs too: they are not model inputs.
    return [t for t in inputs if t.name not in initializers], outputs, metadata


__all__ = ['OnnxReadError', 'read_signature']
