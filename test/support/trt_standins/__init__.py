"""Strict stand-ins for the `tensorrt` Python module of TensorRT 8.6, 10.x and 11.x.

_core.py says what they model and where they differ from TensorRT. The tests put one into
sys.modules['tensorrt'] per test (monkeypatch undoes it).
"""
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
