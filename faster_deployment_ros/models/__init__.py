"""Model adapters by family; `create_adapter` builds one from a loaded backend's signature."""
from __future__ import annotations

import importlib
from typing import Any, Dict, List, Mapping, Tuple

from ..backends.base import TensorSpec
from .base import ModelAdapter

# family -> (module, class)
_REGISTRY: Dict[str, Tuple[str, str]] = {
    'yolox': ('.yolox', 'YoloxAdapter'),
}


def available_families() -> List[str]:
    return sorted(_REGISTRY)


def create_adapter(family: str, inputs: List[TensorSpec], outputs: List[TensorSpec],
                   metadata: Mapping[str, str], **params: Any) -> ModelAdapter:
    """Adapter for `family`, sized from the backend's tensor specs; params are the family's knobs
    (conf_threshold, nms_threshold, max_detections, class_names, ...)."""
    try:
        module, cls = _REGISTRY[family]
    except KeyError:
        raise ValueError(f'unknown model family {family!r}; choose one of '
                         f'{", ".join(available_families())}') from None
    return getattr(importlib.import_module(module, __name__), cls)(inputs, outputs, metadata, **params)


__all__ = ['ModelAdapter', 'create_adapter', 'available_families']
