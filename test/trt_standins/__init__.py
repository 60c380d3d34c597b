"""Strict stand-ins for the `tensorrt` Python module of TensorRT 8.6, 10.x and 11.x (see
_core.py for what they model and where they differ from TensorRT). `install(version)` puts one
into sys.modules['tensorrt'] (the test fixture `trt` does it per test and undoes it)."""
from __future__ import annotations

import importlib
import sys
from types import ModuleType

VERSIONS = {'8.6': 'trt86', '10': 'trt10', '11': 'trt11'}


def load(version: str) -> ModuleType:
    """Return a fresh stand-in module for '8.6', '10' or '11' (its own classes, nothing shared)."""
    name = f'{__name__}.{VERSIONS[version]}'
    sys.modules.pop(name, None)
    module = importlib.import_module(name)
    module.__name__ = 'tensorrt'
    return module
