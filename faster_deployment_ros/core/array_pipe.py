"""Arrays between processes over a byte stream: a length-prefixed JSON header, then raw bytes.

No pickle: the two ends may run different numpy major versions (the RKNN simulator's toolkit
venv pins an old one). numpy only, so a bare toolkit environment can import it.
"""
from __future__ import annotations

import json
import struct
from typing import Any, BinaryIO, Dict, List, Optional, Sequence, Tuple

import numpy as np


def send(stream: BinaryIO, header: Dict[str, Any], arrays: Sequence[np.ndarray] = ()) -> None:
    """Write `header` (JSON-able) and `arrays` as one message, and flush."""
    arrays = [np.ascontiguousarray(a) for a in arrays]
    header = dict(header, arrays=[{'shape': list(a.shape), 'dtype': a.dtype.str} for a in arrays])
    blob = json.dumps(header).encode()
    stream.write(struct.pack('>I', len(blob)) + blob)
    for a in arrays:
        stream.write(memoryview(a).cast('B'))
    stream.flush()


def _read_exact(stream: BinaryIO, n: int) -> Optional[bytes]:
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def recv(stream: BinaryIO) -> Tuple[Optional[Dict[str, Any]], List[np.ndarray]]:
    """(header, arrays) of the next message; (None, []) at end of stream."""
    size = _read_exact(stream, 4)
    if size is None:
        return None, []
    raw = _read_exact(stream, struct.unpack('>I', size)[0])
    if raw is None:
        return None, []
    header = json.loads(raw)
    arrays = []
    for spec in header.pop('arrays', []):
        dtype = np.dtype(spec['dtype'])
        n = int(np.prod(spec['shape'], dtype=np.int64)) * dtype.itemsize
        data = _read_exact(stream, n)
        if data is None:
            return None, []
        arrays.append(np.frombuffer(data, dtype).reshape(spec['shape']))
    return header, arrays


__all__ = ['send', 'recv']
