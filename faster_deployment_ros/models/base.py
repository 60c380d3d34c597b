"""The model adapter interface: pre-process a frame into backend inputs, decode outputs back."""
from __future__ import annotations

from typing import Any, List, Sequence, Tuple

import numpy as np


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
