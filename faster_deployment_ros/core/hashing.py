"""Content hashes of files (model identity for caches, sidecars and golden results).

Standard library only: scripts that run outside the package's environment (the test-model
builder in .venv-export) load this file by path.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
import threading
from typing import Dict, Tuple

_lock = threading.Lock()
_cache: Dict[Tuple[str, int, int], str] = {}


def file_sha256(path: 'os.PathLike[str] | str') -> str:
    """Hex sha256 of a file's bytes, memoised on (path, size, mtime).

    A model is hashed once per process however often it is loaded, and again when it changes.
    """
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    with _lock:
        if key in _cache:
            return _cache[key]
    h = hashlib.sha256()
    with open(p, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    digest = h.hexdigest()
    with _lock:
        _cache[key] = digest
    return digest


__all__ = ['file_sha256']
