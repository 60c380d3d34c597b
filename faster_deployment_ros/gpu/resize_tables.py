"""OpenCV INTER_LINEAR coefficient tables and a NumPy model of the GPU resize arithmetic.

cv2.resize on uint8 images does not interpolate in float: it quantises each tap weight to 11
bits (`INTER_RESIZE_COEF_BITS`), sums the horizontal taps exactly in int32, and combines two
rows with 16-bit fixed-point multiplies. The GPU kernel reads these tables and repeats that
integer arithmetic, so its letterbox equals OpenCV's instead of drifting by a grey level.
Pure NumPy: the tables are built on the host once per geometry and tested without a GPU.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

COEF_BITS = 11
COEF_SCALE = 1 << COEF_BITS


def linear_table(src_len: int, dst_len: int) -> Tuple[np.ndarray, np.ndarray]:
    """Return the linear resize taps as cv2.resize builds them.

    (first tap index int32 (dst_len,), tap weights int16 (dst_len, 2)).

    Half-pixel centres: src = (dst + 0.5) * src_len / dst_len - 0.5, clamped at both borders.
    """
    if src_len <= 0 or dst_len <= 0:
        raise ValueError(f'cannot resize {src_len} -> {dst_len} pixels')
    scale = 1.0 / (dst_len / src_len)  # OpenCV keeps inv_scale = dst/src, then scale = 1/inv_scale
    dx = np.arange(dst_len, dtype=np.float64)
    fx = ((dx + 0.5) * scale - 0.5).astype(np.float32)
    sx = np.floor(fx).astype(np.int64)
    fx = (fx - sx.astype(np.float32)).astype(np.float32)
    low = sx < 0
    fx[low], sx[low] = 0, 0
    high = sx >= src_len - 1
    fx[high], sx[high] = 0, src_len - 1
    cbuf = np.stack([np.float32(1) - fx, fx], axis=1).astype(np.float32)
    # saturate_cast<short>: round half to even
    coef = np.rint(cbuf * np.float32(COEF_SCALE)).astype(np.int16)
    return sx.astype(np.int32), coef


def resize_linear_u8(src: np.ndarray, dst_w: int, dst_h: int) -> np.ndarray:
    """Compute what the GPU kernel does for an HxWxC uint8 image: cv2.resize(INTER_LINEAR)."""
    src = np.ascontiguousarray(src)
    if src.ndim == 2:
        src = src[:, :, None]
    h, w = src.shape[:2]
    xofs, alpha = linear_table(w, dst_w)
    yofs, beta = linear_table(h, dst_h)
    x1 = np.minimum(xofs + 1, w - 1)
    y1 = np.minimum(yofs + 1, h - 1)
    s = src.astype(np.int32)
    a0 = alpha[:, 0, None].astype(np.int32)
    a1 = alpha[:, 1, None].astype(np.int32)
    # Horizontal pass, exact in int32 (rows needed by the vertical pass only).
    r0 = s[yofs][:, xofs] * a0 + s[yofs][:, x1] * a1
    r1 = s[y1][:, xofs] * a0 + s[y1][:, x1] * a1
    b0 = beta[:, 0, None, None].astype(np.int32)
    b1 = beta[:, 1, None, None].astype(np.int32)
    return vertical_combine(r0, r1, b0, b1)


def vertical_combine(r0: np.ndarray, r1: np.ndarray, b0: np.ndarray, b1: np.ndarray) -> np.ndarray:
    """Combine two rows as OpenCV's SIMD vertical pass does.

    16-bit multiply-high of (row >> 4) by each weight, then a rounding shift by 2
    (VResizeLinearVec_32s8u); the kernel uses the same formula.
    """
    v = ((b0 * (r0 >> 4)) >> 16) + ((b1 * (r1 >> 4)) >> 16)
    return np.clip((v + 2) >> 2, 0, 255).astype(np.uint8)


__all__ = ['COEF_BITS', 'COEF_SCALE', 'linear_table', 'resize_linear_u8', 'vertical_combine']
