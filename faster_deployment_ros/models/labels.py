"""Class-name tables and the rules for picking a model's names (explicit > metadata > COCO)."""
from __future__ import annotations

import ast
from typing import Any, List, Mapping, Optional, Sequence

COCO_CLASSES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog',
    'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella',
    'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
    'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle',
    'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
    'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant',
    'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone',
    'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors',
    'teddy bear', 'hair drier', 'toothbrush',
)
assert len(COCO_CLASSES) == 80


def parse_class_names(value: Any) -> Optional[List[str]]:
    """Names from a list, a {index: name} dict, or their string forms.

    Accepts ultralytics' metadata (`"{0: 'person', 1: 'bicycle'}"`), a Python/JSON list literal,
    a comma-separated string, or a text file's lines joined by newlines. None when empty.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text[0] in '[{(':
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise ValueError(f'cannot parse class names from {text[:80]!r}') from None
        else:
            sep = '\n' if '\n' in text else ','
            return [n.strip() for n in text.split(sep) if n.strip()]
    if isinstance(value, Mapping):
        try:
            items = sorted((int(k), str(v)) for k, v in value.items())
        except (TypeError, ValueError):
            raise ValueError('class-name dict keys must be integer indices') from None
        if not items:
            return None
        names = [str(i) for i in range(items[-1][0] + 1)]
        for i, name in items:
            if i < 0:
                raise ValueError(f'negative class index {i} in class names')
            names[i] = name
        return names
    if isinstance(value, Sequence):
        return [str(v) for v in value] or None
    raise ValueError(f'class names must be a list, dict or string, not {type(value).__name__}')


def resolve_class_names(explicit: Any, metadata: Optional[Mapping[str, str]],
                        num_classes: Optional[int]) -> List[str]:
    """Return the class names to report.

    Explicit ones, else metadata `names`, else COCO when 80 classes, else the indices as
    strings. Raises when explicit names do not match the model's count.
    """
    names = parse_class_names(explicit)
    source = 'class_names'
    if names is None and metadata and metadata.get('names'):
        names, source = parse_class_names(metadata['names']), 'model metadata names'
    if names is None:
        if num_classes in (None, len(COCO_CLASSES)):
            return list(COCO_CLASSES)
        return [str(i) for i in range(num_classes)]
    if num_classes is not None and len(names) != num_classes:
        raise ValueError(f'{source} has {len(names)} entries but the model has {num_classes} '
                         'classes')
    return names


__all__ = ['COCO_CLASSES', 'parse_class_names', 'resolve_class_names']
