"""Oriented boxes (cx, cy, w, h, theta): corners, enclosing boxes, canonical form, exact IoU.

Convention (ultralytics' xywhr and vision_msgs' BoundingBox2D alike): centre and size in
pixels, `w` along the box's own x axis, which is the image x axis turned by `theta` radians
towards the image y axis (clockwise on screen, since image y points down). One rectangle has
several descriptions: (w, h, theta), (w, h, theta + pi) and (h, w, theta + pi / 2) are the same
box; `regularize_obb` picks the one with theta in [0, pi / 2).
"""
from __future__ import annotations

import math

import cv2
import numpy as np


def obb_corners(obb: np.ndarray) -> np.ndarray:
    """Return the (N, 4, 2) corners of (N, 5) boxes, in ultralytics' `xywhr2xyxyxyxy` order.

    The first corner is (+w/2, +h/2) in the box frame; consecutive corners share an edge.
    """
    obb = np.asarray(obb).reshape(-1, 5)
    ctr = obb[:, None, :2]
    cos, sin = np.cos(obb[:, 4:5]), np.sin(obb[:, 4:5])
    half_w, half_h = obb[:, 2:3] * 0.5, obb[:, 3:4] * 0.5
    vec1 = np.concatenate((half_w * cos, half_w * sin), -1)[:, None]
    vec2 = np.concatenate((-half_h * sin, half_h * cos), -1)[:, None]
    return np.concatenate((ctr + vec1 + vec2, ctr + vec1 - vec2, ctr - vec1 - vec2,
                           ctr - vec1 + vec2), 1)


def obb_to_xyxy(obb: np.ndarray) -> np.ndarray:
    """Return the axis-aligned (N, 4) x1, y1, x2, y2 box around each oriented box (unclipped)."""
    corners = obb_corners(obb)
    return np.concatenate((corners.min(1), corners.max(1)), -1)


def regularize_obb(obb: np.ndarray) -> np.ndarray:
    """Return the same boxes with theta in [0, pi / 2), w and h swapped where that turns them.

    ultralytics' `regularize_rboxes`: the canonical form to compare two decodings in.
    """
    obb = np.array(obb, copy=True).reshape(-1, 5)
    t = obb[:, 4]
    swap = np.mod(t, math.pi) >= math.pi / 2
    obb[swap, 2], obb[swap, 3] = obb[swap, 3], obb[swap, 2].copy()
    obb[:, 4] = np.mod(t, math.pi / 2)
    return obb


def obb_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return the exact polygon IoU of every box of `a` (N, 5) with every box of `b` (M, 5).

    Intersection of the rotated rectangles (OpenCV's intersectConvexConvex); 0 where the union
    is empty. For NMS use `core.nms.probiou`, ultralytics' Gaussian approximation.
    """
    ca = obb_corners(a).astype(np.float32)
    cb = obb_corners(b).astype(np.float32)
    area_a = np.abs(np.asarray(a, np.float64).reshape(-1, 5)[:, 2:4].prod(1))
    area_b = np.abs(np.asarray(b, np.float64).reshape(-1, 5)[:, 2:4].prod(1))
    out = np.zeros((len(ca), len(cb)), np.float64)
    lo_a, hi_a = ca.min(1), ca.max(1)
    lo_b, hi_b = cb.min(1), cb.max(1)
    for i in range(len(ca)):
        near = np.flatnonzero(np.all((lo_b <= hi_a[i]) & (hi_b >= lo_a[i]), 1))
        for j in near:
            inter, _ = cv2.intersectConvexConvex(ca[i], cb[j])
            union = area_a[i] + area_b[j] - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


__all__ = ['obb_corners', 'obb_iou', 'obb_to_xyxy', 'regularize_obb']
