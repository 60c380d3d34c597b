"""What a model adapter does around the model, declared as data.

A model adapter states its frame -> tensor pre-processing (`PreprocessSpec`) and, for detector
heads, its decode (`DecodeSpec`). Consumers that redo that work elsewhere (the GPU path in
`gpu.pipeline`) read these values instead of the adapter's internals, so they cannot disagree
with the CPU path and need not know any model family.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class PreprocessSpec:
    """Letterbox into (h, w), then (pixel - mean[c]) * scale[c], channels after swap, CHW.

    YOLOX: defaults (BGR 0-255, pad 114 top-left). Ultralytics: swap_rb=True, center=True,
    scale=(1/255,)*3. ImageNet-normalised models: mean = 255*mean_rgb, scale = 1/(255*std_rgb).
    """

    size: Tuple[int, int]  # (h, w) of the model input
    center: bool = False
    rounding: Optional[str] = None  # see core.letterbox.letterbox_geometry
    pad_value: int = 114
    swap_rb: bool = False
    mean: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    dtype: str = 'float32'  # or 'float16'

    def __post_init__(self) -> None:
        if self.dtype not in ('float32', 'float16'):
            raise ValueError(f"dtype must be 'float32' or 'float16', not {self.dtype!r}")
        if len(self.size) != 2 or min(self.size) <= 0:
            raise ValueError(f'size must be (h, w) > 0, not {self.size!r}')
        if not 0 <= int(self.pad_value) <= 255:
            raise ValueError(f'pad_value must be 0..255, not {self.pad_value}')

    @property
    def tensor_shape(self) -> Tuple[int, int, int, int]:
        return (1, 3, int(self.size[0]), int(self.size[1]))

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.tensor_shape)) * np.dtype(self.dtype).itemsize


#: Pre-processing conventions by name (named after the projects that define them), for a
#: model input of (h, w): what `preset` builds for the adapters that follow them.
PRESETS: Dict[str, Dict] = {
    'yolox': {'center': False, 'pad_value': 114, 'swap_rb': False},
    'ultralytics': {'center': True, 'pad_value': 114, 'swap_rb': True, 'scale': (1 / 255,) * 3},
}


def preset(name: str, size: Tuple[int, int], dtype: str = 'float32') -> PreprocessSpec:
    """Return the PreprocessSpec of convention `name` for an input of `size` (h, w)."""
    try:
        kw = PRESETS[name]
    except KeyError:
        raise ValueError(f'unknown pre-processing preset {name!r}; '
                         f'one of {", ".join(PRESETS)}') from None
    return PreprocessSpec(size=(int(size[0]), int(size[1])), dtype=dtype, **kw)


#: Detector head layouts -> (has objectness, grid decode needed, channels first)
HEAD_LAYOUTS = {
    'yolox': (True, True, False),          # (1, N, 5 + C): raw head, xy grid offsets, log wh
    'yolox_decoded': (True, False, False),  # (1, N, 5 + C): exported with decode_in_inference
    'yolov8': (False, False, True),        # (1, 4 + C, N): ultralytics YOLOv8/YOLO11 head
    'yolov8_transposed': (False, False, False),  # (1, N, 4 + C): some exporters transpose it
}


@dataclass(frozen=True)
class DecodeSpec:
    """Detector head layout and thresholds: how an adapter turns the head output into boxes."""

    layout: str = 'yolox'
    conf_threshold: float = 0.25
    nms_threshold: float = 0.45
    max_detections: int = 300
    class_agnostic: bool = False
    top_k: int = 4096  # candidates kept (highest scores first) before NMS
    strides: Tuple[int, ...] = (8, 16, 32)  # grid strides, for layouts with a grid decode
    inclusive: bool = False  # score >= threshold instead of >
    clip: bool = True
    # ultralytics' scale_boxes divides by the per-axis gain of the rounded resize
    # (new_w / src_w, new_h / src_h); YOLOX by the single letterbox scale.
    per_axis_scale: bool = False
    center: bool = False  # letterbox placement, for the per-axis gains

    def __post_init__(self) -> None:
        if self.layout not in HEAD_LAYOUTS:
            raise ValueError(f'unknown head layout {self.layout!r}; '
                             f'one of {", ".join(HEAD_LAYOUTS)}')
        if self.top_k < 1:
            raise ValueError(f'top_k must be >= 1, not {self.top_k}')
        if self.max_detections < 1:
            raise ValueError('max_detections must be >= 1')
        if self.conf_threshold < 0:
            raise ValueError('conf_threshold must be >= 0 (keys sort scores as unsigned bits)')


__all__ = ['PreprocessSpec', 'PRESETS', 'preset', 'HEAD_LAYOUTS', 'DecodeSpec']
