"""YOLOv8 / YOLO11 oriented-box adapter (ultralytics' OBB head, e.g. yolo11n-obb on DOTAv1).

Matches ultralytics' OBBPredictor for a fixed-size ONNX export. Pre-processing is the detector's
(`Yolov8Adapter.preprocess`: centred LetterBox, RGB, /255). The output is (1, 4 + nc + 1, N):
cx, cy, w, h in input pixels (the head's `dist2rbox` already applied), nc sigmoid class scores
and the angle in radians, (sigmoid - 0.25) * pi, so in [-pi/4, 3pi/4). Decoding is
`non_max_suppression(rotated=True)`: best class per box over conf, at most max_nms candidates
by score, classes separated by `cls * 7680` on the centre, `TorchNMS.fast_nms` with
`batch_probiou` (core.nms.rotated_nms), max_det; then `scale_boxes(xywh=True)`: the centre
minus the pad, centre and size divided by the per-axis gains, the angle untouched, no clipping.

`Detections.obb` holds (cx, cy, w, h, theta) in source pixels and radians, theta as the head
gives it (not regularised, as ultralytics' Results.obb.xywhr); `Detections.boxes` the
axis-aligned box around each (ultralytics' Results.obb.xyxy, unclipped).
"""
from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .yolov8 import Yolov8Adapter
from ..core.letterbox import letterbox_geometry, LetterboxMeta
from ..core.nms import rotated_nms
from ..core.obb import obb_to_xyxy
from ..core.options import parse_bool
from ..core.specs import DecodeSpec
from ..core.types import Detections, TensorSpec


def ultralytics_unletterbox_xywhr(obb: np.ndarray, meta: LetterboxMeta,
                                  size_hw: Tuple[int, int]) -> np.ndarray:
    """Ultralytics' `scale_boxes(..., xywh=True)` on (N, 5) xywhr boxes.

    The centre loses the pad; centre x and w are divided by the x gain of the rounded resize,
    centre y and h by the y gain; the angle is kept and nothing is clipped.
    """
    _, new_w, new_h, _, _ = letterbox_geometry((meta.src_h, meta.src_w), size_hw, center=True,
                                               rounding='round')
    out = np.asarray(obb, np.float32).reshape(-1, 5).copy()
    out[:, 0] -= np.float32(meta.pad_x)
    out[:, 1] -= np.float32(meta.pad_y)
    gain = np.array([new_w / meta.src_w, new_h / meta.src_h] * 2, np.float32)
    out[:, :4] /= gain
    return out


def ultralytics_rotated_nms(obb: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                            iou_threshold: float, agnostic: bool = False,
                            max_wh: float = 7680.0) -> np.ndarray:
    """Kept indices by descending score, as ultralytics' `non_max_suppression(rotated=True)`.

    Classes are kept apart by shifting each box's centre by `cls * max_wh` (float32).
    """
    b = np.array(obb, np.float32).reshape(-1, 5)
    if not agnostic:
        b[:, :2] += (np.asarray(class_ids, np.float32) * np.float32(max_wh))[:, None]
    return rotated_nms(b, scores, iou_threshold)


class ObbAdapter(Yolov8Adapter):
    """Oriented-box YOLOv8 / YOLO11 detector with one (1, 3, H, W) input.

    Params as Yolov8Adapter (conf_threshold 0.25, nms_threshold 0.7 on probiou, max_detections
    300, class_names, input_size, class_agnostic, max_nms 30000). End-to-end (NMS-free) OBB
    exports are refused.
    """

    family = 'obb'
    extra_rows = 1  # the angle
    KIND = 'OBB'

    def __init__(self, inputs: List[TensorSpec], outputs: List[TensorSpec],
                 metadata: Optional[Mapping[str, str]] = None, **params: Any) -> None:
        metadata = dict(metadata or {})
        end2end = params.get('end2end')
        if end2end is None:
            end2end = metadata.get('end2end')
        if parse_bool(end2end, 'end2end', allow_auto=True):
            raise ValueError('end-to-end (NMS-free) OBB exports are not supported: export the '
                             'OBB model with end2end=False (ultralytics: model.export(format='
                             '"onnx", nms=False, end2end=False)), or use a YOLO11 / YOLOv8 OBB '
                             'model')
        super().__init__(inputs, outputs, metadata, **params)
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f'OBB output {outputs[0].shape} has no class scores: it should be '
                             '(1, 4 + classes + 1 angle, anchors)')

    def decode_spec(self) -> Optional[DecodeSpec]:
        """None: the GPU decode has no rotated NMS; oriented boxes decode on the CPU."""
        return None

    def decode(self, outputs: Sequence[np.ndarray]
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidates before NMS, in model-input pixels: (xywhr (K, 5), scores, class ids)."""
        pred, cols, scores, class_ids = self._select(self._output(outputs))
        nc = self.num_classes
        rows = np.concatenate((pred[:4, cols], pred[4 + nc:5 + nc, cols]), 0)
        return (np.ascontiguousarray(rows.T, np.float32), scores[cols].astype(np.float32),
                class_ids[cols].astype(np.int64))

    def postprocess(self, outputs: Sequence[np.ndarray], meta: LetterboxMeta) -> Detections:
        obb, scores, class_ids = self.decode(outputs)
        if scores.size == 0:
            det = Detections.empty(self.class_names)
            det.obb = np.zeros((0, 5), np.float32)
            return det
        keep = ultralytics_rotated_nms(obb, scores, class_ids, self.nms_threshold,
                                       self.class_agnostic)[:self.max_detections]
        obb = ultralytics_unletterbox_xywhr(obb[keep], meta, self.input_size)
        return Detections(obb_to_xyxy(obb).astype(np.float32), scores[keep], class_ids[keep],
                          self.class_names, obb=obb)


__all__ = ['ObbAdapter', 'ultralytics_rotated_nms', 'ultralytics_unletterbox_xywhr']
