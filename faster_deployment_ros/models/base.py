"""The model adapter interface: pre-process a frame into backend inputs, decode outputs back."""
from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..core.specs import DecodeSpec, PreprocessSpec


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

    def __getstate__(self) -> Dict[str, Any]:
        """Picklable (a worker process gets a copy): per-thread scratch is left behind."""
        state = {k: v for k, v in self.__dict__.items() if not isinstance(v, threading.local)}
        state['_thread_locals'] = [k for k, v in self.__dict__.items()
                                   if isinstance(v, threading.local)]
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        state = dict(state)
        for name in state.pop('_thread_locals', ()):
            state[name] = threading.local()
        self.__dict__.update(state)

    def preprocess(self, image: np.ndarray) -> Tuple[List[np.ndarray], Any]:
        raise NotImplementedError

    def postprocess(self, outputs: Sequence[np.ndarray], meta: Any) -> Any:
        raise NotImplementedError

    def preprocess_spec(self, dtype: str = 'float32') -> Optional[PreprocessSpec]:
        """Return what `preprocess` does, as data (for the GPU path).

        None where it is not a plain letterbox + per-channel affine.
        """
        return None

    def decode_spec(self) -> Optional[DecodeSpec]:
        """Return what `postprocess` does, as data, with the current thresholds (for the GPU path).

        None where the head has no such decode.
        """
        return None

    #: the decoding knobs a running node may change between frames
    THRESHOLDS = ('conf_threshold', 'nms_threshold', 'max_detections')

    def set_thresholds(self, **values: Any) -> None:
        """Change conf_threshold / nms_threshold / max_detections from the next frame on.

        Each is read once per postprocess call. Every value is checked first, so a bad one
        changes nothing; a knob this family does not have is an error, not ignored.
        """
        checked = {}
        for name, value in values.items():
            if name not in self.THRESHOLDS or not hasattr(self, name):
                raise ValueError(f'{type(self).__name__} has no {name} to set')
            if name == 'max_detections':
                if int(value) < 1:
                    raise ValueError(f'max_detections must be >= 1, got {value}')
                checked[name] = int(value)
            else:
                if not 0.0 <= float(value) <= 1.0:
                    raise ValueError(f'{name} must lie in [0, 1], got {value}')
                checked[name] = float(value)
        for name, value in checked.items():
            setattr(self, name, value)
