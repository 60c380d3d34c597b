"""Letterbox resize and its inverse, shared by every detector adapter.

Two placements, each matching its training code exactly so scores do not drift:
YOLOX pads at the bottom/right with the resized size truncated (`int(w * r)`);
ultralytics centres the image with `round(w * r)` and pads `round(d - 0.1)` before it.
`out` lets the hot path reuse one buffer instead of allocating megabytes per frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np


@dataclass(frozen=True)
class LetterboxMeta:
    """Maps model-input coordinates back to source pixels: src = (model - pad) / scale."""

    scale: float
    pad_x: float
    pad_y: float
    src_w: int
    src_h: int


def letterbox_geometry(src_hw: Tuple[int, int], size: Tuple[int, int], center: bool = False,
                       rounding: Optional[str] = None) -> Tuple[float, int, int, int, int]:
    """(scale, new_w, new_h, left, top) for a `src_hw` image letterboxed into `size` (h, w).

    rounding: 'floor' (YOLOX) or 'round' (ultralytics); default 'round' when centred, else 'floor'.
    """
    src_h, src_w = int(src_hw[0]), int(src_hw[1])
    dst_h, dst_w = int(size[0]), int(size[1])
    if src_h <= 0 or src_w <= 0:
        raise ValueError(f'cannot letterbox an empty image of size {src_w}x{src_h}')
    r = min(dst_h / src_h, dst_w / src_w)
    mode = rounding or ('round' if center else 'floor')
    if mode == 'round':
        new_w, new_h = int(round(src_w * r)), int(round(src_h * r))
    elif mode == 'floor':
        new_w, new_h = int(src_w * r), int(src_h * r)
    else:
        raise ValueError(f"rounding must be 'floor' or 'round', not {rounding!r}")
    new_w, new_h = max(1, min(new_w, dst_w)), max(1, min(new_h, dst_h))
    if center:
        left = int(round((dst_w - new_w) / 2 - 0.1))
        top = int(round((dst_h - new_h) / 2 - 0.1))
    else:
        left = top = 0
    return r, new_w, new_h, left, top


def letterbox(image: np.ndarray, size: Tuple[int, int], pad_value: int = 114, center: bool = False,
              out: Optional[np.ndarray] = None, interpolation: int = cv2.INTER_LINEAR,
              rounding: Optional[str] = None) -> Tuple[np.ndarray, LetterboxMeta]:
    """Resize `image` (HxWxC) to fit `size` (h, w) keeping aspect, pad the rest with `pad_value`.

    Returns (padded image, meta). With `out` (h, w, C, same dtype) the result is written there.
    """
    if image.ndim == 2:
        image = image[:, :, None]
    src_h, src_w, ch = image.shape
    dst_h, dst_w = int(size[0]), int(size[1])
    r, new_w, new_h, left, top = letterbox_geometry((src_h, src_w), (dst_h, dst_w), center,
                                                    rounding)
    if out is None:
        out = np.empty((dst_h, dst_w, ch), image.dtype)
    elif out.shape != (dst_h, dst_w, ch) or out.dtype != image.dtype:
        raise ValueError(f'out buffer is {out.shape} {out.dtype}, need {(dst_h, dst_w, ch)} '
                         f'{image.dtype}')
    # Fill only the borders: the resize below overwrites the rest.
    bottom, right = top + new_h, left + new_w
    if top:
        out[:top] = pad_value
    if bottom < dst_h:
        out[bottom:] = pad_value
    if left:
        out[top:bottom, :left] = pad_value
    if right < dst_w:
        out[top:bottom, right:] = pad_value
    region = out[top:bottom, left:right]
    if (new_h, new_w) == (src_h, src_w):
        region[...] = image
    else:
        res = cv2.resize(image, (new_w, new_h), dst=region, interpolation=interpolation)
        if res.ndim == 2:  # single-channel input comes back without its channel axis
            res = res[:, :, None]
        if not np.shares_memory(res, out):
            region[...] = res
    return out, LetterboxMeta(float(r), float(left), float(top), int(src_w), int(src_h))


def unletterbox_boxes(boxes_xyxy: np.ndarray, meta: LetterboxMeta, clip: bool = True,
                      out: Optional[np.ndarray] = None) -> np.ndarray:
    """Map (N, 4) x1, y1, x2, y2 boxes from model input to source pixels, float32."""
    boxes = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)
    if out is None:
        out = np.empty_like(boxes)
    pad = np.array([meta.pad_x, meta.pad_y, meta.pad_x, meta.pad_y], np.float32)
    np.subtract(boxes, pad, out=out)
    out /= np.float32(meta.scale)
    if clip:
        clip_boxes(out, meta.src_w, meta.src_h)
    return out


def clip_boxes(boxes_xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip (N, 4) xyxy boxes in place to [0, width] x [0, height]; returns them."""
    np.clip(boxes_xyxy[:, 0::2], 0, width, out=boxes_xyxy[:, 0::2])
    np.clip(boxes_xyxy[:, 1::2], 0, height, out=boxes_xyxy[:, 1::2])
    return boxes_xyxy


def to_chw_tensor(img: np.ndarray, dtype=np.float32, scale: Optional[float] = None,
                  swap_rb: bool = False, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Turn an HxWxC image into a contiguous 1xCxHxW tensor (times `scale`, R/B swap optional)."""
    if img.ndim == 2:
        img = img[:, :, None]
    h, w, ch = img.shape
    if out is None:
        out = np.empty((1, ch, h, w), dtype)
    elif out.shape != (1, ch, h, w) or not out.flags.c_contiguous:
        raise ValueError(f'out buffer is {out.shape}, need contiguous {(1, ch, h, w)}')
    swap = swap_rb and ch >= 3  # R/B swap: channels 0 and 2, alpha stays last
    if img.dtype == np.uint8 and 1 < ch <= 4:
        # cv2.split de-interleaves faster than a strided numpy transpose; the per-plane
        # copies are then contiguous casts.
        planes = list(cv2.split(img))
        if swap:
            planes[0], planes[2] = planes[2], planes[0]
        for c, plane in enumerate(planes):
            np.copyto(out[0, c], plane, casting='unsafe')
    else:
        src = img[:, :, [2, 1, 0] + list(range(3, ch))] if swap else img
        np.copyto(out[0], src.transpose(2, 0, 1), casting='unsafe')
    if scale is not None and scale != 1:
        np.multiply(out, out.dtype.type(scale), out=out)
    return out


__all__ = ['LetterboxMeta', 'letterbox', 'letterbox_geometry', 'unletterbox_boxes', 'clip_boxes',
           'to_chw_tensor']
