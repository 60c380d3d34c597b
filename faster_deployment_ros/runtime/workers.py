"""What an inference worker is made of: its backend, and the whole-frame worker of a process.

- `create_worker_backend(config, index)`: the backend of worker `index` (both worker modes);
- `preprocess_image(adapter, image)`: the adapter's pre-processing, a frame it cannot scale
  reported as an `ImageCodecError` (both worker modes);
- `FrameWorkerSpec`: what `core.process_pipeline.ProcessPipeline` builds in each worker process
  (`worker_mode: processes`): the backend from the same `RuntimeConfig` and a copy of the
  parent's adapter; `FrameWorker` then runs pre-process + infer + post-process of whole frames
  and takes the adapter's threshold changes (`adapter_controls`) between frames.
"""
from __future__ import annotations

from dataclasses import dataclass
import time
from typing import Any, Dict, Optional, Tuple

import cv2
import numpy as np

from .config import RuntimeConfig
from ..backends import backend_class, create_backend
from ..backends.base import Backend
from ..core.image_codec import ImageCodecError
from ..models import adapter_factory

_now = time.perf_counter


def create_worker_backend(config: RuntimeConfig, index: int,
                          threads: Optional[int] = None) -> Backend:
    """Return the backend of inference worker `index` (`threads` overrides the config's)."""
    options = dict(config.backend_options)
    threads = config.threads if threads is None else threads
    if threads:
        options.setdefault('threads', threads)
    cls = backend_class(config.backend)
    if cls.pins_workers:
        options.setdefault('worker_index', index)
        options.setdefault('workers', config.workers)
    if cls.takes_adapter_factory:
        options.setdefault('adapter_factory', adapter_factory(config.model_family))
    return create_backend(config.backend, config.model_path, **options)


def preprocess_image(adapter: Any, image: np.ndarray) -> Tuple[Any, Any]:
    """`adapter.preprocess(image)`; a frame the model input cannot take is an ImageCodecError."""
    try:
        return adapter.preprocess(image)
    except (ArithmeticError, cv2.error) as exc:  # e.g. a 1x2000 frame scales to 0 rows
        size = getattr(adapter, 'input_size', None)
        raise ImageCodecError(
            f'{image.shape[1]}x{image.shape[0]} frame is too small or too elongated for the '
            f'model input{f" {size[1]}x{size[0]}" if size else ""}: '
            f'{str(exc).strip().splitlines()[-1]}') from exc


def adapter_controls(adapter: Any) -> Dict[str, Any]:
    """Return the adapter's settings a running node may change (its thresholds), by name."""
    return {name: getattr(adapter, name) for name in getattr(adapter, 'THRESHOLDS', ())
            if hasattr(adapter, name)}


class FrameWorker:
    """One process's worker: pre-process + infer + post-process of a whole frame."""

    def __init__(self, backend: Backend, adapter: Any) -> None:
        self.backend, self.adapter = backend, adapter

    def __call__(self, image: np.ndarray) -> Tuple[Any, Dict[str, float]]:
        """Return (model result, {'pre', 'infer', 'post'} seconds) of `image`."""
        t0 = _now()
        tensors, meta = preprocess_image(self.adapter, image)
        t1 = _now()
        outputs = self.backend.infer(tensors)
        t2 = _now()
        result = self.adapter.postprocess(outputs, meta)
        return result, {'pre': t1 - t0, 'infer': t2 - t1, 'post': _now() - t2}

    def control(self, settings: Dict[str, Any]) -> None:
        """Take the parent adapter's current thresholds (`adapter_controls`)."""
        if settings:
            self.adapter.set_thresholds(**settings)

    def close(self) -> None:
        self.backend.close()


@dataclass
class FrameWorkerSpec:
    """How a worker process builds its `FrameWorker` (picklable: it travels to the process).

    `adapter` is the parent's adapter (a copy of it arrives); `opencv_threads` is OpenCV's
    thread count inside the process (1: the parallelism is the N processes).
    """

    config: RuntimeConfig
    adapter: Any
    opencv_threads: int = 1

    def build(self, index: int) -> FrameWorker:
        cv2.setNumThreads(self.opencv_threads)
        return FrameWorker(create_worker_backend(self.config, index), self.adapter)


__all__ = ['adapter_controls', 'create_worker_backend', 'FrameWorker', 'FrameWorkerSpec',
           'preprocess_image']
