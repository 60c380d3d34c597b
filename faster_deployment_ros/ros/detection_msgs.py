"""Detections -> vision_msgs/Detection2DArray, and a debug overlay.

Without per-field copies beyond what the message API needs.

The node publishes `detection_array_cdr`: the message's serialised bytes (CDR, as rmw sends
them), written straight from the arrays. Building the Python message and letting rclpy convert
and serialise it costs per detection (every field setter checks its type); the bytes are the
same (test_detection_msgs compares them with rclpy's own serialisation).
"""
from __future__ import annotations

import struct
from typing import List, Optional, Sequence

import cv2
import numpy as np
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

from ..core.obb import obb_corners
from ..core.types import Detections


def track_id_strings(det: Detections) -> Optional[List[str]]:
    """Return each detection's Detection2D.id text, None when it has none.

    The track id (decimal) of tracked detections; untracked detections with instance masks get
    their instance mask value (1 + index, decimal); others none.
    """
    if det.track_ids is None:
        if det.masks is not None:
            return [str(i + 1) for i in range(len(det))]
        return None
    return [str(i) for i in np.asarray(det.track_ids).tolist()]


def bbox_fields(det: Detections) -> np.ndarray:
    """Return each detection's BoundingBox2D as (N, 5) float64: x, y, theta, size_x, size_y.

    Axis-aligned boxes: the centre and size of `boxes`, theta 0. Oriented boxes (`obb`): their
    centre, theta (radians, from the image x axis towards y) and size in the box's own frame.
    """
    n = len(det)
    out = np.empty((n, 5), np.float64)
    if det.obb is not None:
        obb = np.asarray(det.obb, np.float64).reshape(-1, 5)
        out[:, 0:2], out[:, 2], out[:, 3:5] = obb[:, 0:2], obb[:, 4], obb[:, 2:4]
        return out
    boxes = det.boxes.astype(np.float64)
    out[:, 0] = (boxes[:, 0] + boxes[:, 2]) * 0.5
    out[:, 1] = (boxes[:, 1] + boxes[:, 3]) * 0.5
    out[:, 2] = 0.0
    out[:, 3] = boxes[:, 2] - boxes[:, 0]
    out[:, 4] = boxes[:, 3] - boxes[:, 1]
    return out


def to_detection_array(det: Detections, header, class_id_mode: str = 'name') -> Detection2DArray:
    """One Detection2D per box: centre/size in source pixels, one hypothesis (class, score).

    Oriented boxes set bbox.center.theta (see bbox_fields). Detection2D.id carries the track id
    (decimal) of tracked detections, the instance mask value of untracked ones with masks
    (track_id_strings), else it stays empty.
    """
    out = Detection2DArray(header=header)
    if len(det) == 0:
        return out
    cx, cy, theta, w, h = (col.tolist() for col in bbox_fields(det).T)
    scores = det.scores.astype(np.float64).tolist()
    labels = det.names() if class_id_mode == 'name' else [str(i) for i in det.class_ids.tolist()]
    ids = track_id_strings(det)
    detections = []
    for i in range(len(scores)):
        d = Detection2D(header=header)
        if ids is not None:
            d.id = ids[i]
        d.bbox.center.position.x = cx[i]
        d.bbox.center.position.y = cy[i]
        d.bbox.center.theta = theta[i]
        d.bbox.size_x = w[i]
        d.bbox.size_y = h[i]
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = labels[i]
        hyp.hypothesis.score = scores[i]
        d.results = [hyp]
        detections.append(d)
    out.detections = detections
    return out


_CDR_LE = b'\x00\x01\x00\x00'  # encapsulation: plain CDR, little endian
# ObjectHypothesisWithPose.pose after the score: position (0, 0, 0), orientation (0, 0, 0, 1),
# a zero covariance; then bbox theta follows the centre. All float64, 8-aligned by construction.
_POSE = struct.pack('<7d', 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0) + bytes(36 * 8)
_BBOX = struct.Struct('<2dd2d')  # center.position x, y; center.theta; size_x, size_y
_ZERO = bytes(8)


def _cdr_string(out: bytearray, text: bytes) -> None:
    """uint32 length (with the NUL) at a 4-aligned offset, the bytes, NUL."""
    out += bytes(-(len(out) - 4) % 4)
    out += struct.pack('<I', len(text) + 1)
    out += text
    out += b'\x00'


def _align(out: bytearray, n: int) -> None:
    out += bytes(-(len(out) - 4) % n)  # CDR aligns relative to after the encapsulation


def detection_array_cdr(det: Detections, header, class_id_mode: str = 'name') -> bytes:
    """Return the serialised Detection2DArray of `to_detection_array`, built from the arrays."""
    stamp = struct.pack('<iI', header.stamp.sec, header.stamp.nanosec)
    frame_id = header.frame_id.encode('utf-8')
    out = bytearray(_CDR_LE)
    out += stamp
    _cdr_string(out, frame_id)
    n = len(det)
    _align(out, 4)
    out += struct.pack('<I', n)
    if n == 0:
        return bytes(out)
    bbox_bytes = bbox_fields(det).astype('<f8', copy=False).tobytes()
    scores = det.scores.astype('<f8').tobytes()
    labels: List[str] = (det.names() if class_id_mode == 'name'
                         else [str(i) for i in det.class_ids.tolist()])
    ids = track_id_strings(det)
    encoded = {}
    one = struct.pack('<I', 1)
    for i in range(n):
        _align(out, 4)
        out += stamp
        _cdr_string(out, frame_id)
        _align(out, 4)
        out += one  # results: one hypothesis
        label = labels[i]
        text = encoded.get(label)
        if text is None:
            text = encoded[label] = label.encode('utf-8')
        _cdr_string(out, text)
        _align(out, 8)
        out += scores[8 * i:8 * i + 8]
        out += _POSE
        out += bbox_bytes[40 * i:40 * i + 40]
        _cdr_string(out, b'' if ids is None else ids[i].encode('ascii'))  # id
    return bytes(out)


def _colour(class_id: int) -> tuple:
    rng = ((class_id + 1) * 2654435761) & 0xFFFFFF  # + 1: class 0 (COCO person) not black
    return (rng & 255, (rng >> 8) & 255, (rng >> 16) & 255)


def draw_detections(image: np.ndarray, det: Detections, out: Optional[np.ndarray] = None,
                    names: Optional[Sequence[str]] = None) -> np.ndarray:
    """Boxes and 'name score' labels (tracked: '#id name score') on a copy of a BGR image.

    Oriented boxes (`det.obb`) are drawn as their rotated rectangles.
    """
    if out is None:
        canvas = image.copy()
    else:
        np.copyto(out, image)
        canvas = out
    labels = names if names is not None else det.names()
    ids = track_id_strings(det)
    if ids is not None:
        labels = [f'#{i} {label}' for i, label in zip(ids, labels)]
    corners = None if det.obb is None else np.round(obb_corners(det.obb)).astype(np.int32)
    for k, ((x1, y1, x2, y2), score, cid, label) in enumerate(zip(
            det.boxes.astype(int).tolist(), det.scores.tolist(), det.class_ids.tolist(),
            labels)):
        colour = _colour(int(cid))
        if corners is None:
            cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
        else:
            cv2.polylines(canvas, [corners[k]], True, colour, 2)
        cv2.putText(canvas, f'{label} {score:.2f}', (x1, max(y1 - 4, 10)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return canvas
