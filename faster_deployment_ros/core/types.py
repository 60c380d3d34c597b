"""Value types shared across layers.

Tensor descriptions (backends <-> model adapters) and results (model adapters -> pipeline -> ROS
layer).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as the backend reports it."""

    name: str
    shape: Tuple[Any, ...]  # ints, or None / str for dynamic dimensions
    dtype: np.dtype = field(default=np.dtype(np.float32))

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> 'TensorSpec':
        """From a converter sidecar entry: {'name', 'shape', 'dtype'}."""
        return cls(d['name'], tuple(d['shape']), np.dtype(d.get('dtype', 'float32')))


#: ONNX (Runtime) tensor type names -> numpy dtypes
ONNX_DTYPES: Dict[str, np.dtype] = {
    f'tensor({onnx})': np.dtype(np_name) for onnx, np_name in (
        ('float', 'float32'), ('float16', 'float16'), ('double', 'float64'), ('uint8', 'uint8'),
        ('int8', 'int8'), ('uint16', 'uint16'), ('int16', 'int16'), ('int32', 'int32'),
        ('int64', 'int64'), ('uint32', 'uint32'), ('uint64', 'uint64'), ('bool', 'bool'))}


def static_dim(dim: Any) -> Optional[int]:
    """Return a dimension's size when the model fixes it, None when it is dynamic."""
    return dim if isinstance(dim, (int, np.integer)) and dim > 0 else None


@dataclass
class Detections:
    """Detections of one frame, in source-image pixels.

    boxes: (N, 4) float32 x1, y1, x2, y2 (for oriented boxes: the axis-aligned box around each);
    scores: (N,) float32; class_ids: (N,) int64;
    track_ids: (N,) int64 identities from a tracker (core.tracking), None when not tracked;
    obb: (N, 5) float32 oriented boxes cx, cy, w, h, theta (source pixels, radians), None for
    axis-aligned models;
    masks: per-detection instance masks (an object with `__len__` and `select(index)`, e.g.
    core.masks.InstanceMasks), None for models without masks.
    Every per-detection field follows `select`, so filters and trackers keep them aligned.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    class_names: Sequence[str] = field(default_factory=list)
    track_ids: Optional[np.ndarray] = None
    obb: Optional[np.ndarray] = None
    masks: Any = None

    @classmethod
    def empty(cls, class_names: Sequence[str] = ()) -> 'Detections':
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                   np.zeros((0,), np.int64), list(class_names))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def names(self) -> List[str]:
        n = len(self.class_names)
        return [self.class_names[i] if 0 <= i < n else str(i) for i in self.class_ids.tolist()]

    def select(self, index: Any, track_ids: Optional[np.ndarray] = None) -> 'Detections':
        """Return the detections at `index` (boolean mask or integer indices), all fields along.

        `track_ids` replaces the selected ones (a tracker's output).
        """
        index = np.asarray(index)
        if track_ids is None and self.track_ids is not None:
            track_ids = np.asarray(self.track_ids)[index]
        return Detections(
            np.asarray(self.boxes)[index], np.asarray(self.scores)[index],
            np.asarray(self.class_ids)[index], self.class_names, track_ids,
            None if self.obb is None else np.asarray(self.obb)[index],
            None if self.masks is None else self.masks.select(index))


@dataclass
class DepthMap:
    """A depth (or inverse-depth) map at the source image's resolution, float32 (H, W)."""

    depth: np.ndarray
    meaning: str = 'relative_inverse'


#: class id of a pixel with no class (below the confidence threshold) in a SegmentationMap
NO_CLASS = 255


@dataclass
class SegmentationMap:
    """A semantic segmentation at the source image's resolution.

    `mask`: uint8 (H, W) class ids (NO_CLASS = none); `confidence`: uint8 (H, W), the softmax
    probability of the pixel's argmax class x 255, rounded; `class_names` index -> name.
    """

    mask: np.ndarray
    confidence: np.ndarray
    class_names: Optional[Sequence[str]] = None
