"""Greedy non-maximum suppression, plain and class-aware; rotated NMS by probiou.

Greedy NMS is inherently sequential; the numpy version loops once per *kept* box with the IoU
against all remaining boxes vectorised (the same algorithm YOLOX's demo and torchvision use).
`nms` uses OpenCV's C++ implementation when it gives the same answer for the input, which is
several times faster for the tens-to-hundreds of candidates a frame typically has.
"""
from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

_HAS_CV2_NMS = hasattr(cv2, 'dnn') and hasattr(cv2.dnn, 'NMSBoxes')


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Return the IoU of one xyxy box against (N, 4) xyxy boxes; 0 where the union is empty."""
    xx1 = np.maximum(box[0], boxes[:, 0])
    yy1 = np.maximum(box[1], boxes[:, 1])
    xx2 = np.minimum(box[2], boxes[:, 2])
    yy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(union > 0, inter / union, 0.0)


def greedy_nms(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float,
               dtype: Any = np.float64, nan_suppresses: bool = False) -> np.ndarray:
    """Return indices kept by greedy NMS, by descending score (ties: lower index first); int64.

    The one greedy loop: keep the best box, drop the rest whose IoU with it is over the
    threshold, repeat. IoU is inter / union computed in `dtype`: float64 for torchvision's
    decisions (YOLOX), float32 to reproduce ultralytics' TorchNMS at the threshold (with the
    class offset its coordinates are rounded to 1/16 px, so float64 would decide some pairs
    the other way). A 0/0 IoU (two empty boxes) never suppresses, as in torchvision; with
    `nan_suppresses` it does unless the kept box overlaps nothing at all, as in TorchNMS.
    """
    dt = np.dtype(dtype).type
    boxes = np.asarray(boxes_xyxy, dt).reshape(-1, 4)
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-np.asarray(scores, dt).reshape(-1), kind='stable')
    thr, zero = dt(iou_threshold), dt(0)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        if not rest.size:
            break
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), zero)
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), zero)
        inter = w * h
        if nan_suppresses and not inter.any():
            order = rest
            continue
        with np.errstate(divide='ignore', invalid='ignore'):
            iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= thr] if nan_suppresses else rest[~(iou > thr)]
    return np.asarray(keep, np.int64)


def _nms_cv2(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Run OpenCV's NMSBoxes on xyxy boxes; scores must be float32 and > 0."""
    xywh = boxes.astype(np.float64, copy=True)
    xywh[:, 2:] -= xywh[:, :2]
    keep = cv2.dnn.NMSBoxes(xywh, scores, 0.0, float(iou_threshold))
    return np.asarray(keep, np.int64).reshape(-1)


def nms(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Return the indices greedy NMS keeps (IoU > iou_threshold suppresses), best first; int64."""
    boxes = np.asarray(boxes_xyxy).reshape(-1, 4)
    n = boxes.shape[0]
    if n == 0:
        return np.zeros((0,), np.int64)
    if n == 1:
        return np.zeros((1,), np.int64)
    # OpenCV drops scores <= 0 (its threshold must be >= 0) and treats inverted boxes
    # differently; those inputs take the numpy path.
    scores32 = np.asarray(scores, np.float32).reshape(-1)
    if _HAS_CV2_NMS and bool(np.all(scores32 > 0)) and bool(np.all(boxes[:, 2:] >= boxes[:, :2])):
        return _nms_cv2(boxes, scores32, iou_threshold)
    return greedy_nms(boxes, scores, iou_threshold)


def batched_nms(boxes_xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                iou_threshold: float) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other.

    Uses torchvision's trick of shifting each class to its own disjoint coordinate range, so
    one NMS pass does all classes. Returns kept indices by descending score; int64.
    """
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    if boxes.shape[0] == 0:
        return np.zeros((0,), np.int64)
    # Span of all coordinates + 1 keeps every class's shifted boxes disjoint, negative ones too.
    span = float(boxes.max() - min(boxes.min(), 0.0)) + 1.0
    offsets = np.asarray(class_ids, np.float64).reshape(-1, 1) * span
    return nms(boxes + offsets, scores, iou_threshold)


def _covariance(obb: np.ndarray, dt) -> tuple:
    """Return the (a, b, c) of each Gaussian [[a, c], [c, b]], as ultralytics computes them."""
    wh = obb[:, 2:4] * obb[:, 2:4] / dt(12)
    cos, sin = np.cos(obb[:, 4]), np.sin(obb[:, 4])
    a, b = wh[:, 0], wh[:, 1]
    cos2, sin2 = cos * cos, sin * sin
    return a * cos2 + b * sin2, a * sin2 + b * cos2, (a - b) * cos * sin


def _probiou(g1: tuple, g2: tuple, eps, dt) -> np.ndarray:
    """Probiou of broadcastable (x, y, a, b, c) tuples: ultralytics' operations, in order."""
    x1, y1, a1, b1, c1 = g1
    x2, y2, a2, b2, c2 = g2
    sa, sb, sc = a1 + a2, b1 + b2, c1 + c2
    with np.errstate(divide='ignore', invalid='ignore', over='ignore'):
        det = sa * sb - sc * sc
        t1 = ((sa * (y1 - y2) ** 2 + sb * (x1 - x2) ** 2) / (det + eps)) * dt(0.25)
        t2 = ((sc * (x2 - x1) * (y1 - y2)) / (det + eps)) * dt(0.5)
        prod = np.maximum(a1 * b1 - c1 * c1, dt(0)) * np.maximum(a2 * b2 - c2 * c2, dt(0))
        t3 = np.log(det / (dt(4) * np.sqrt(prod) + eps) + eps) * dt(0.5)
        bd = np.clip(t1 + t2 + t3, eps, dt(100))
        hd = np.sqrt(dt(1) - np.exp(-bd) + eps)
    return dt(1) - hd


def _gaussians(obb: np.ndarray, dt) -> tuple:
    return (obb[:, 0], obb[:, 1]) + _covariance(obb, dt)


def probiou(obb1: np.ndarray, obb2: np.ndarray, eps: float = 1e-7,
            dtype: Any = np.float32) -> np.ndarray:
    """Return ultralytics' `batch_probiou` of (N, 5) and (M, 5) xywhr boxes: (N, M).

    1 - the Hellinger distance of the boxes' Gaussians (covariance w^2 / 12, h^2 / 12 turned by
    theta; Llerena et al., arXiv:2106.06072): symmetric, 1 for identical boxes, the same for
    every description of one rectangle. Computed in `dtype` with ultralytics' operation order.
    """
    dt = np.dtype(dtype).type
    g1 = tuple(v[:, None] for v in _gaussians(np.asarray(obb1, dt).reshape(-1, 5), dt))
    g2 = tuple(v[None] for v in _gaussians(np.asarray(obb2, dt).reshape(-1, 5), dt))
    return _probiou(g1, g2, dt(eps), dt)


def rotated_nms(obb: np.ndarray, scores: np.ndarray, iou_threshold: float,
                dtype: Any = np.float32, block: int = 1024) -> np.ndarray:
    """Return the indices ultralytics' rotated NMS keeps, by descending score; int64.

    Its `TorchNMS.fast_nms` with `batch_probiou`: a box is dropped when ANY higher-scoring box,
    kept or not, has probiou > the threshold with it (Fast NMS, not greedy NMS, so a box
    suppressed by a suppressed box is dropped too). Ties in score keep the lower index first.

    probiou is computed only for pairs that can exceed the threshold: its Bhattacharyya
    distance is at least |centre difference|^2 / (4 * trace of the summed covariances), so
    pairs farther apart than that (with a 4x margin; boxes of another class, shifted by the
    class offset, among them) cannot suppress each other. `block` columns at a time bound the
    memory.
    """
    dt = np.dtype(dtype).type
    boxes = np.asarray(obb, dt).reshape(-1, 5)
    n = boxes.shape[0]
    if n == 0:
        return np.zeros((0,), np.int64)
    order = np.argsort(-np.asarray(scores, np.float64).reshape(-1), kind='stable')
    g = _gaussians(boxes[order], dt)
    x, y = g[0].astype(np.float64), g[1].astype(np.float64)
    a, b, c = (v.astype(np.float64) for v in g[2:])
    spread = a + b  # trace of each covariance: (w^2 + h^2) / 12
    spread[~(a * b - c * c >= 1e-6)] = np.inf  # near-degenerate boxes: always computed
    thr = dt(iou_threshold)
    bd_max = -math.log(1.0 + 1e-7 - (1.0 - float(iou_threshold)) ** 2)
    reach = 4.0 * 4.0 * bd_max  # d^2 < 4 * bd * trace is needed; 4x margin for rounding
    keep = np.ones(n, bool)
    for c0 in range(1, n, block):
        c1 = min(n, c0 + block)
        d2 = (x[:c1, None] - x[None, c0:c1]) ** 2 + (y[:c1, None] - y[None, c0:c1]) ** 2
        near = d2 <= reach * (spread[:c1, None] + spread[None, c0:c1])
        near &= np.arange(c1)[:, None] < np.arange(c0, c1)[None]  # higher-ranked boxes only
        i, j = np.nonzero(near)
        if i.size:
            iou = _probiou(tuple(v[i] for v in g), tuple(v[c0 + j] for v in g), dt(1e-7), dt)
            keep[c0 + np.unique(j[iou > thr])] = False
    return order[keep].astype(np.int64)


__all__ = ['nms', 'greedy_nms', 'batched_nms', 'box_iou', 'probiou', 'rotated_nms']
