"""The one interface every inference backend implements: adapters never care which runs."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..core.options import parse_bool
from ..core.types import TensorSpec


class BackendError(RuntimeError):
    """Loading or running a model failed; the message says what to fix."""


def flag_option(value: Any, what: str, default: Optional[bool] = None,
                allow_auto: bool = False) -> Optional[bool]:
    """Return a yes/no backend option (core.options.parse_bool); a bad value is a BackendError."""
    try:
        return parse_bool(value, what, default, allow_auto)
    except ValueError as exc:
        raise BackendError(str(exc)) from None


class Backend:
    """A loaded model on one runtime; one instance serves one inference worker.

    `infer` takes the inputs in `inputs` order and returns the outputs in `outputs` order.
    Instances are not shared between threads: the pipeline creates one per worker.
    """

    name = 'base'
    #: True where each worker is pinned to its own unit (an NPU core, a GPU stream): the
    #: node then passes `worker_index` and `workers` so the backend can choose the unit.
    pins_workers = False
    #: False where inference does not run on CPU threads (a GPU): the node's `threads` is then
    #: accepted and ignored, and autotune tunes workers and the queue only.
    uses_threads = True
    #: What the node may pass to every backend; a backend ignores the ones it has no use for.
    COMMON_OPTIONS = ('threads', 'workers', 'worker_index')
    #: True where the backend needs the model's pre-processing (TensorRT int8 calibration):
    #: the caller passes `adapter_factory` (models.adapter_factory), since backends sit below
    #: the models layer and cannot import it.
    takes_adapter_factory = False
    #: True where the backend runs a whole detection frame on its device: letterbox from the
    #: raw frame, the model, decode and NMS (TensorRT with the GPU kernels). The runtime then
    #: calls `enable_gpu_pipeline` once and `detect_image` per frame instead of the adapter's
    #: CPU pre/post-processing.
    supports_gpu_pipeline = False

    def __init__(self, model_path: str, **options: Any) -> None:
        self.model_path = model_path
        self.options = options
        # Filled by the subclass once the model is loaded.
        self._inputs: List[TensorSpec] = []
        self._outputs: List[TensorSpec] = []
        self._metadata: Dict[str, str] = {}

    def check_options(self, accepted: Sequence[str]) -> None:
        """Raise BackendError naming every option outside `accepted` and COMMON_OPTIONS.

        Unknown options are errors: a typo must not pass silently.
        """
        unknown = sorted(set(self.options) - set(accepted) - set(self.COMMON_OPTIONS))
        if unknown:
            raise BackendError(f'unknown {self.name} option(s) {", ".join(unknown)}; '
                               f'accepted: {", ".join(accepted)}')

    @property
    def inputs(self) -> List[TensorSpec]:
        return list(self._inputs)

    @property
    def outputs(self) -> List[TensorSpec]:
        return list(self._outputs)

    @property
    def metadata(self) -> Dict[str, str]:
        """Return the model's metadata, e.g. ultralytics' `names`; empty if the format has none."""
        return dict(self._metadata)

    def infer(self, inputs: Sequence[np.ndarray]) -> List[np.ndarray]:
        raise NotImplementedError

    def enable_gpu_pipeline(self, preprocess: Any, decode: Any = None) -> None:
        """Set up the device path from the adapter's `PreprocessSpec` and `DecodeSpec`.

        Only where `supports_gpu_pipeline` is True.
        """
        raise NotImplementedError(f'the {self.name} backend has no GPU pipeline '
                                  '(supports_gpu_pipeline is False)')

    def detect_image(self, image_bgr: np.ndarray, class_names: Sequence[str] = ()) -> Any:
        """Return `core.types.Detections` for one bgr8 frame in source pixels (GPU path)."""
        raise NotImplementedError(f'the {self.name} backend has no GPU pipeline '
                                  '(supports_gpu_pipeline is False)')

    def close(self) -> None:
        """Release the runtime's resources; the instance is unusable afterwards."""

    def __enter__(self) -> 'Backend':
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
