"""GPU pre/post-processing over cuda-python: NVRTC kernels, device/pinned buffers, streams.

Import is cheap and never touches CUDA; cuda-python is imported on first use, so CPU-only
machines can import the package and ask `gpu_status()` why the GPU path is unavailable.
"""
from __future__ import annotations

from typing import Tuple


def gpu_status(ordinal: int = 0) -> Tuple[bool, str]:
    """(usable, reason) for GPU `ordinal`: cuda-python installed, driver loaded, device present."""
    from .cuda import gpu_status as _status
    return _status(ordinal)


__all__ = ['gpu_status']
