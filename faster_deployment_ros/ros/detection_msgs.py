"""Detections -> vision_msgs/Detection2DArray, and a debug overlay, without per-field copies
beyond what the message API needs."""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

from ..core.types import Detections


def to_detection_array(det: Detections, header, class_id_mode: str = 'name') -> Detection2DArray:
    """One Detection2D per box: centre/size in source pixels, one hypothesis (class, score)."""
    out = Detection2DArray(header=header)
    if len(det) == 0:
        return out
    boxes = det.boxes.astype(np.float64)
    cx = ((boxes[:, 0] + boxes[:, 2]) * 0.5).tolist()
    cy = ((boxes[:, 1] + boxes[:, 3]) * 0.5).tolist()
    w = (boxes[:, 2] - boxes[:, 0]).tolist()
    h = (boxes[:, 3] - boxes[:, 1]).tolist()
    scores = det.scores.astype(np.float64).tolist()
    labels = det.names() if class_id_mode == 'name' else [str(i) for i in det.class_ids.tolist()]
    detections = []
    for i in range(len(scores)):
        d = Detection2D(header=header)
        d.bbox.center.position.x = cx[i]
        d.bbox.center.position.y = cy[i]
        d.bbox.size_x = w[i]
        d.bbox.size_y = h[i]
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = labels[i]
        hyp.hypothesis.score = scores[i]
        d.results = [hyp]
        detections.append(d)
    out.detections = detections
    return out


def _colour(class_id: int) -> tuple:
    rng = (class_id * 2654435761) & 0xFFFFFF
    return (rng & 255, (rng >> 8) & 255, (rng >> 16) & 255)


def draw_detections(image: np.ndarray, det: Detections, out: Optional[np.ndarray] = None,
                    names: Optional[Sequence[str]] = None) -> np.ndarray:
    """Boxes and 'name score' labels on a copy of a BGR image."""
    if out is None:
        canvas = image.copy()
    else:
        np.copyto(out, image)
        canvas = out
    labels = names if names is not None else det.names()
    for (x1, y1, x2, y2), score, cid, label in zip(det.boxes.astype(int).tolist(),
                                                   det.scores.tolist(), det.class_ids.tolist(),
                                                   labels):
        colour = _colour(int(cid))
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
        cv2.putText(canvas, f'{label} {score:.2f}', (x1, max(y1 - 4, 10)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return canvas
