"""Plain re-implementation of YOLOX's ONNX Runtime demo pipeline, written for clarity only.

Follows the official flow step by step: `preproc` (resize by int(size * r), paste at the
top-left of a 114-filled canvas, HWC->CHW float32), `demo_postprocess` (grid decode for
strides 8/16/32), xyxy conversion, division by the resize ratio, then NMS in source pixels
with an explicit Python loop. Deliberately shares no code with the package under test.

Two documented choices, both the ones our adapter promises:
- classes: the best class per box (as `yolox.utils.postprocess` does), then NMS within each
  class (class_agnostic=True: one NMS over all boxes, as `multiclass_nms_class_agnostic`);
- IoU without the legacy "+1" pixel convention of `demo_utils.nms` (torchvision's, which the
  adapter uses); `plus_one=True` gives the demo's variant for comparison.
"""
from __future__ import annotations

import math

import cv2
import numpy as np


def preproc(img, input_hw):
    canvas = np.full((input_hw[0], input_hw[1], 3), 114, dtype=np.uint8)
    ratio = min(input_hw[0] / img.shape[0], input_hw[1] / img.shape[1])
    new_w = int(img.shape[1] * ratio)
    new_h = int(img.shape[0] * ratio)
    resized = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas[:new_h, :new_w] = resized
    chw = canvas.transpose(2, 0, 1).astype(np.float32)
    return chw[None], ratio


def decode(raw, input_hw, strides=(8, 16, 32)):
    """(N, 5 + C) raw head outputs -> cx, cy, w, h in model-input pixels (a decoded copy)."""
    out = np.array(raw, dtype=np.float32, copy=True)
    row = 0
    for stride in strides:
        rows_y = input_hw[0] // stride
        cols_x = input_hw[1] // stride
        for gy in range(rows_y):
            for gx in range(cols_x):
                out[row, 0] = (raw[row, 0] + gx) * stride
                out[row, 1] = (raw[row, 1] + gy) * stride
                out[row, 2] = math.exp(float(raw[row, 2])) * stride
                out[row, 3] = math.exp(float(raw[row, 3])) * stride
                row += 1
    assert row == out.shape[0], 'anchor count does not match the strides'
    return out


def iou(a, b, plus_one=False):
    extra = 1.0 if plus_one else 0.0
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + extra)
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + extra)
    inter = iw * ih
    area_a = (a[2] - a[0] + extra) * (a[3] - a[1] + extra)
    area_b = (b[2] - b[0] + extra) * (b[3] - b[1] + extra)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def greedy_nms(boxes, scores, threshold, plus_one=False):
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    keep = []
    suppressed = [False] * len(scores)
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in order[pos + 1:]:
            if not suppressed[j] and iou(boxes[i], boxes[j], plus_one) > threshold:
                suppressed[j] = True
    return keep


def postprocess(raw, input_hw, ratio, src_hw, conf=0.3, nms_thr=0.45, class_agnostic=False,
                max_det=300, plus_one=False, decoded=False):
    """Return (boxes xyxy source pixels, scores, class ids), sorted by descending score."""
    pred = raw if decoded else decode(raw, input_hw)
    dets = []  # (score, class, x1, y1, x2, y2)
    for row in pred:
        obj = float(row[4])
        best_cls, best_score = -1, -1.0
        for c in range(5, row.shape[0]):
            s = float(np.float32(obj) * np.float32(row[c]))
            if s > best_score:
                best_cls, best_score = c - 5, s
        if best_score <= conf:
            continue
        cx, cy, w, h = (float(v) for v in row[:4])
        box = [(cx - w / 2) / ratio, (cy - h / 2) / ratio,
               (cx + w / 2) / ratio, (cy + h / 2) / ratio]
        dets.append((best_score, best_cls, box))

    kept = []
    if class_agnostic:
        groups = {None: dets}
    else:
        groups = {}
        for d in dets:
            groups.setdefault(d[1], []).append(d)
    for group in groups.values():
        keep = greedy_nms([d[2] for d in group], [d[0] for d in group], nms_thr, plus_one)
        kept.extend(group[i] for i in keep)
    kept.sort(key=lambda d: -d[0])
    kept = kept[:max_det]

    src_h, src_w = src_hw
    boxes = np.array([[min(max(d[2][0], 0.0), src_w), min(max(d[2][1], 0.0), src_h),
                       min(max(d[2][2], 0.0), src_w), min(max(d[2][3], 0.0), src_h)]
                      for d in kept], dtype=np.float64).reshape(-1, 4)
    scores = np.array([d[0] for d in kept], dtype=np.float64)
    classes = np.array([d[1] for d in kept], dtype=np.int64)
    return boxes, scores, classes


def letterbox_centered(img, new_hw, pad=114):
    """Ultralytics' LetterBox(center=True, auto=False) written out, for checking our letterbox."""
    h, w = img.shape[:2]
    r = min(new_hw[0] / h, new_hw[1] / w)
    new_w, new_h = int(round(w * r)), int(round(h * r))
    dw = (new_hw[1] - new_w) / 2
    dh = (new_hw[0] - new_h) / 2
    if (w, h) != (new_w, new_h):
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    out = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT,
                             value=(pad, pad, pad))
    return out, r, left, top
