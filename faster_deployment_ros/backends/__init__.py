"""Inference backends behind one interface; `create_backend` picks one by name.

Each backend module imports its runtime lazily, so a missing runtime only matters when chosen.
"""
from __future__ import annotations

import importlib
from typing import Any, Dict, Tuple

from .base import Backend, BackendError, TensorSpec

# name -> (module, class)
_REGISTRY: Dict[str, Tuple[str, str]] = {
    'onnxruntime': ('.onnxruntime_backend', 'OnnxRuntimeBackend'),
    'ncnn': ('.ncnn_backend', 'NcnnBackend'),
    'rknn': ('.rknn_backend', 'RknnBackend'),
    'tensorrt': ('.tensorrt.backend', 'TensorRTBackend'),
    'triton': ('.triton_backend', 'TritonBackend'),
}


def register_backend(name: str, module: str, cls: str) -> None:
    _REGISTRY[name] = (module, cls)


def available_backends() -> list:
    return sorted(_REGISTRY)


def backend_class(name: str) -> type:
    try:
        module, cls = _REGISTRY[name]
    except KeyError:
        raise BackendError(
            f'unknown backend {name!r}; choose one of {", ".join(available_backends())}') from None
    return getattr(importlib.import_module(module, __name__), cls)


def create_backend(name: str, model_path: str, **options: Any) -> Backend:
    return backend_class(name)(model_path, **options)


__all__ = ['Backend', 'BackendError', 'TensorSpec', 'create_backend', 'register_backend',
           'available_backends', 'backend_class']
