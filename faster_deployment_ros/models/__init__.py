"""Model adapters by family; `create_adapter` builds one from a loaded backend's signature."""
from __future__ import annotations

import importlib
import logging
from typing import Any, Dict, List, Mapping, Tuple

from .base import ModelAdapter
from ..core.types import TensorSpec

# family -> (module, class)
_REGISTRY: Dict[str, Tuple[str, str]] = {
    'yolox': ('.yolox', 'YoloxAdapter'),
    'yolov8': ('.yolov8', 'Yolov8Adapter'),
    'yolo11': ('.yolov8', 'Yolov8Adapter'),  # same anchor-free head and decode
    'yolo26': ('.yolov8', 'Yolov8Adapter'),  # NMS-free (end2end) exports: metadata end2end
    'obb': ('.obb', 'ObbAdapter'),  # oriented boxes: ultralytics' OBB head (metadata task obb)
    'yolo11-obb': ('.obb', 'ObbAdapter'),
    'yolov8-obb': ('.obb', 'ObbAdapter'),
    'rtdetr': ('.rtdetr', 'RtdetrAdapter'),
    'depth': ('.depth', 'DepthAdapter'),  # preset picked from metadata / input size
    'depth_anything_v2': ('.depth', 'depth_anything_v2'),
    'midas': ('.depth', 'midas'),
    'semantic_seg': ('.semantic_seg', 'SemanticSegAdapter'),  # (1, C, H, W) logits
}

_LOG = logging.getLogger(__name__)


def resolve_family(family: str, inputs: List[TensorSpec], outputs: List[TensorSpec],
                   metadata: Mapping[str, str]) -> Tuple[str, str]:
    """Return (family, reason): `family` itself, or for 'auto' the one the signature implies.

    'auto' (or empty) asks models.detect_family; ValueError when that is ambiguous.
    """
    if family not in ('auto', '', None):
        return family, 'model_family parameter'
    from .detect_family import detect_family
    return detect_family(inputs, outputs, metadata)


def available_families() -> List[str]:
    return sorted(_REGISTRY)


def create_adapter(family: str, inputs: List[TensorSpec], outputs: List[TensorSpec],
                   metadata: Mapping[str, str], **params: Any) -> ModelAdapter:
    """Adapter for `family`, sized from the backend's tensor specs.

    Params are the family's knobs (conf_threshold, nms_threshold, max_detections, class_names,
    ...). `family='auto'` infers it (see resolve_family) and logs the choice; the adapter's
    `family` attribute tells it.
    """
    explicit = family not in ('auto', '', None)
    if not explicit:
        family, reason = resolve_family(family, inputs, outputs, metadata)
        _LOG.info('model family auto -> %s (%s)', family, reason)
    try:
        module, cls = _REGISTRY[family]
    except KeyError:
        raise ValueError(f'unknown model family {family!r}; choose one of '
                         f'{", ".join(available_families())}') from None
    try:
        adapter = getattr(importlib.import_module(module, __name__), cls)(
            inputs, outputs, metadata, **params)
    except ValueError as exc:
        named = _name_the_family(family, exc, inputs, outputs, metadata)
        if named == str(exc):
            raise  # nothing to add: the adapter's own exception (e.g. DepthKindError) stands
        raise ValueError(named) from exc
    if explicit:  # a layout that fits more than one family decodes, but maybe as garbage
        doubt = _name_the_family(family, None, inputs, outputs, metadata)
        if doubt:
            _LOG.warning('model_family %s decodes this model, but %s', family, doubt)
    return adapter


_FAMILY_ALIASES = {'yolo11': 'yolov8', 'yolo26': 'yolov8', 'depth_anything_v2': 'depth',
                   'midas': 'depth', 'yolo11-obb': 'obb', 'yolov8-obb': 'obb'}


def _name_the_family(family: str, exc: ValueError, inputs, outputs, metadata) -> str:
    """When a model does not fit the family it was given, say which family it looks like."""
    own = '' if exc is None else str(exc)
    try:
        guess, reason = resolve_family('auto', inputs, outputs, metadata)
    except Exception:  # noqa: BLE001 - no confident guess: the adapter's own message stands
        return own
    if _FAMILY_ALIASES.get(guess, guess) == _FAMILY_ALIASES.get(family, family):
        return own
    named = {'depth': 'a depth model', 'obb': 'an oriented-box (OBB) head',
             'semantic_seg': 'a semantic segmentation model'}
    what = named.get(guess, f'a {guess.upper().replace("YOLOV", "YOLOv")} head')
    return (f'this looks like {what} ({reason}), not {family}: set model_family: {guess} or '
            f'auto' + (f' ({exc})' if exc is not None else ''))


def adapter_factory(default_family: str = 'auto', **params: Any):
    """Return `make(family, inputs, outputs, metadata) -> adapter` for layers below models.

    A backend that needs a model's pre-processing (TensorRT int8 calibration) cannot import
    this layer; its caller hands it this instead. family 'auto' means `default_family` (the
    node's configured family; itself 'auto' = inferred from the signature).
    """
    def make(family: str, inputs: List[TensorSpec], outputs: List[TensorSpec],
             metadata: Mapping[str, str]) -> ModelAdapter:
        chosen = default_family if family in ('auto', '', None) else family
        return create_adapter(chosen, inputs, outputs, metadata, **params)
    return make


__all__ = ['ModelAdapter', 'adapter_factory', 'create_adapter', 'available_families',
           'resolve_family']
