"""The model adapter interface: pre-process a frame into backend inputs, decode outputs back."""
from __future__ import annotations

from typing import Any, List, Sequence, Tuple

import cv2
import numpy as np


def as_bgr_u8(image: np.ndarray, who: str) -> np.ndarray:
    """Grey and BGRA frames as 3-channel BGR (what every adapter expects); non-uint8 rejected."""
    if image.ndim == 2 or image.shape[2] == 1:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.dtype != np.uint8:
        raise ValueError(f'{who} preprocess expects a uint8 image, got {image.dtype}')
    return image


class ModelAdapter:
    """Turns frames into tensors and tensors into results, independent of the backend.

    `preprocess` takes an HxWx3 uint8 BGR image and returns (inputs, meta); `postprocess`
    takes the backend's outputs and that meta and returns a `Detections` or `DepthMap`.
    Both must be thread-safe for different frames: the pipeline runs them concurrently.
    """

    family = 'base'
    task = 'detection'

    def preprocess(self, image: np.ndarray) -> Tuple[List[np.ndarray], Any]:
        raise NotImplementedError

    def postprocess(self, outputs: Sequence[np.ndarray], meta: Any) -> Any:
        raise NotImplementedError
