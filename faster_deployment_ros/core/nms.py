"""Greedy non-maximum suppression, plain and class-aware.

Greedy NMS is inherently sequential; the numpy version loops once per *kept* box with the IoU
against all remaining boxes vectorised (the same algorithm YOLOX's demo and torchvision use).
`nms` uses OpenCV's C++ implementation when it gives the same answer for the input, which is
several times faster for the tens-to-hundreds of candidates a frame typically has.
"""
from __future__ import annotations

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


__all__ = ['nms', 'greedy_nms', 'batched_nms', 'box_iou']
