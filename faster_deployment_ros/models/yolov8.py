"""YOLOv8 / YOLO11 adapter (ultralytics' anchor-free head): centred letterbox in, NMS out.

Matches ultralytics' DetectionPredictor for a fixed-size ONNX export: `LetterBox` (centred,
`round()` sizes, pad 114, bilinear), BGR->RGB, /255; output (1, 4 + nc, N) of cx, cy, w, h in
input pixels and per-class sigmoid scores (no objectness); `non_max_suppression` with its defaults
(conf 0.25, IoU 0.7, max_det 300, best class per box, class-aware, at most 30000 candidates by
score into NMS); `scale_boxes` back to source pixels with the per-axis gains of the rounded
resize, clipped to the image.

Instance segmentation exports (-seg) add mask coefficients after the class rows, output0
(1, 4 + nc + nm, N), and the prototypes output1 (1, nm, H / 4, W / 4); each detection then
carries its mask (core.masks.InstanceMasks: ultralytics' `retina_masks=True` arithmetic at the
source resolution, made only when rendered). Detections with an empty mask are kept (ultralytics'
predictor drops them).

Also decodes the two variants seen in the wild: the transposed (1, N, 4 + nc) layout some
exporters write, and end-to-end exports (YOLOv10 / YOLO26, metadata `end2end`) whose
(1, K, 6) output already holds x1, y1, x2, y2, score, class after the model's own top-k.
"""
from __future__ import annotations

import threading
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .base import as_bgr_u8, ModelAdapter
from .labels import parse_class_names, resolve_class_names
from ..core.letterbox import (clip_boxes, letterbox, letterbox_geometry, LetterboxMeta,
                              to_chw_tensor)
from ..core.masks import InstanceMasks
from ..core.nms import greedy_nms
from ..core.options import parse_bool, parse_size
from ..core.specs import DecodeSpec, PreprocessSpec, preset
from ..core.types import Detections, static_dim, TensorSpec

STRIDES = (8, 16, 32)


def anchor_count(size_hw: Tuple[int, int], strides: Sequence[int] = STRIDES) -> int:
    return sum((size_hw[0] // s) * (size_hw[1] // s) for s in strides)


def model_input_size(inputs: List[TensorSpec], input_size: Any, metadata: Mapping[str, str],
                     what: str) -> Tuple[int, int]:
    """Return (h, w) of an NCHW image input: static shape, else input_size, else metadata imgsz."""
    if not inputs or len(inputs[0].shape) != 4:
        raise ValueError(f'{what} expects an NCHW image input, got {[i.shape for i in inputs]}')
    shape = inputs[0].shape
    if static_dim(shape[1]) not in (None, 3):
        raise ValueError(f'{what} expects 3 input channels, model input is {shape}')
    model_hw = (static_dim(shape[2]), static_dim(shape[3]))
    if input_size is None and None in model_hw and metadata.get('imgsz'):
        input_size = metadata['imgsz'].strip('[]() ')
    if input_size is not None:
        size = parse_size(input_size)
        for got, want in zip(model_hw, size):
            if got is not None and got != want:
                raise ValueError(f'input_size {size} does not match the model input {shape}')
        return size
    if None in model_hw:
        raise ValueError(f'the model input {shape} is dynamic: give input_size (h, w)')
    return int(model_hw[0]), int(model_hw[1])


def ultralytics_unletterbox(boxes: np.ndarray, meta: LetterboxMeta, size_hw: Tuple[int, int],
                            clip: bool = True) -> np.ndarray:
    """Ultralytics' `scale_boxes`.

    Undo the pad, then divide by the *per-axis* gain of the rounded resize (new_w / src_w, new_h /
    src_h), which differs from the single scale by < 1 px.
    """
    _, new_w, new_h, _, _ = letterbox_geometry((meta.src_h, meta.src_w), size_hw, center=True,
                                               rounding='round')
    out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    out -= np.array([meta.pad_x, meta.pad_y, meta.pad_x, meta.pad_y], np.float32)
    out /= np.array([new_w / meta.src_w, new_h / meta.src_h] * 2, np.float32)
    if clip:
        clip_boxes(out, meta.src_w, meta.src_h)
    return out


def ultralytics_nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                    iou_threshold: float, agnostic: bool = False,
                    max_wh: float = 7680.0) -> np.ndarray:
    """Kept indices by descending score, exactly as ultralytics' `non_max_suppression` decides.

    Classes separated by a `cls * 7680` offset and IoU computed in float32 (TorchNMS, which matches
    torchvision). At that offset float32 rounds coordinates to 1/16 px, so IoUs near the threshold
    go the other way than in float64: hence greedy_nms in float32, TorchNMS' rules.
    """
    b = np.asarray(boxes, np.float32)
    if not agnostic:
        b = b + (np.asarray(class_ids, np.float32) * np.float32(max_wh))[:, None]
    return greedy_nms(b, scores, iou_threshold, dtype=np.float32, nan_suppresses=True)


class Yolov8Adapter(ModelAdapter):
    """YOLOv8 / YOLO11 detector (any size / class count) with one (1, 3, H, W) input.

    Params: conf_threshold (0.25), nms_threshold (0.7), max_detections (300), class_names
    (default: metadata `names`, else COCO-80), input_size (h, w; for dynamic inputs, else
    metadata `imgsz`), class_agnostic (False), max_nms (30000), end2end (None = metadata).
    """

    family = 'yolov8'
    task = 'detection'
    #: rows after the class scores in the (1, 4 + nc + extra, N) output (OBB: the angle)
    extra_rows = 0  # rows after the class scores besides mask coefficients (OBB: the angle)
    KIND = 'YOLOv8'  # in error messages

    def __init__(self, inputs: List[TensorSpec], outputs: List[TensorSpec],
                 metadata: Optional[Mapping[str, str]] = None, *, conf_threshold: float = 0.25,
                 nms_threshold: float = 0.7, max_detections: int = 300, class_names: Any = None,
                 input_size: Any = None, class_agnostic: Any = False, max_nms: int = 30000,
                 end2end: Any = None) -> None:
        metadata = dict(metadata or {})
        self.input_size = model_input_size(inputs, input_size, metadata, 'YOLOv8')
        self.input_dtype = np.dtype(inputs[0].dtype)
        if not outputs or len(outputs[0].shape) != 3:
            raise ValueError(f'YOLOv8 expects a (1, 4 + classes, anchors) output, got '
                             f'{[o.shape for o in outputs]}')
        out_shape = outputs[0].shape
        self.num_anchors = anchor_count(self.input_size)
        # -seg: prototypes (1, nm, H / 4, W / 4) as the second output, nm coefficient rows
        self.num_masks = (static_dim(outputs[1].shape[1]) or 0) if len(outputs) > 1 \
            and len(outputs[1].shape) == 4 else 0
        meta_names = parse_class_names(metadata.get('names')) if metadata.get('names') else None
        self.end2end = parse_bool(end2end, 'end2end', allow_auto=True)
        if self.end2end is None:
            self.end2end = bool(parse_bool(metadata.get('end2end'), 'metadata end2end',
                                           allow_auto=True))
        d1, d2 = static_dim(out_shape[1]), static_dim(out_shape[2])
        if self.end2end:
            if d2 not in (None, 6):
                raise ValueError(f'end-to-end output {out_shape} should be (1, K, 6)')
            self.transposed, channels = False, None
        elif d1 == self.num_anchors and d2 != self.num_anchors:
            self.transposed, channels = True, d2  # (1, N, 4 + nc)
        elif d2 in (None, self.num_anchors):
            self.transposed, channels = False, d1  # (1, 4 + nc, N): ultralytics' own layout
        else:
            raise ValueError(f'output {out_shape} has no axis of {self.num_anchors} anchors, the '
                             f'count for a {self.input_size} input with strides {STRIDES}')
        self.num_classes = (channels - 4 - self.extra_rows - self.num_masks
                            if channels is not None else None)
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f'YOLOv8 output {out_shape} has no class scores')
        if self.num_classes is None and meta_names:
            self.num_classes = len(meta_names)
        self.class_names = resolve_class_names(class_names, metadata, self.num_classes)
        self.conf_threshold = float(conf_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_detections = int(max_detections)
        self.max_nms = int(max_nms)
        if not 0.0 <= self.conf_threshold <= 1.0 or not 0.0 <= self.nms_threshold <= 1.0:
            raise ValueError('conf_threshold and nms_threshold must be within [0, 1]')
        if self.max_detections < 1 or self.max_nms < 1:
            raise ValueError('max_detections and max_nms must be >= 1')
        self.class_agnostic = parse_bool(class_agnostic, 'class_agnostic', default=False)
        self._local = threading.local()

    def preprocess(self, image: np.ndarray) -> Tuple[List[np.ndarray], LetterboxMeta]:
        image = as_bgr_u8(image, 'YOLOv8')
        h, w = self.input_size
        canvas = getattr(self._local, 'canvas', None)  # consumed within this call: reusable
        if canvas is None:
            canvas = self._local.canvas = np.empty((h, w, 3), np.uint8)
        canvas, meta = letterbox(image, (h, w), pad_value=114, center=True, out=canvas,
                                 rounding='round')
        x = to_chw_tensor(canvas, dtype=self.input_dtype, scale=1.0 / 255.0, swap_rb=True)
        return [x], meta

    def preprocess_spec(self, dtype: str = 'float32') -> PreprocessSpec:
        return preset('ultralytics', self.input_size, dtype)

    def decode_spec(self) -> Optional[DecodeSpec]:
        """None for end-to-end exports: they decode in the model."""
        if self.end2end or self.num_masks:  # the GPU decode carries no mask coefficients
            return None
        return DecodeSpec(layout='yolov8_transposed' if self.transposed else 'yolov8',
                          top_k=self.max_nms, per_axis_scale=True, center=True,
                          conf_threshold=self.conf_threshold, nms_threshold=self.nms_threshold,
                          max_detections=self.max_detections, class_agnostic=self.class_agnostic)

    def decode(self, outputs: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidates before NMS, in model-input pixels: (boxes xyxy, scores, class ids)."""
        return self._candidates(outputs)[:3]

    def _output(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """Return the first output without its batch axis (batch 1 only)."""
        pred = np.asarray(outputs[0])
        if pred.ndim == 3:
            if pred.shape[0] != 1:
                raise ValueError(f'{self.KIND} postprocess handles batch 1, got output '
                                 f'{pred.shape}')
            pred = pred[0]
        return pred

    def _select(self, pred: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Return (rows x anchors output, candidate columns, best-class scores, class ids).

        Best class first, then the threshold: ultralytics' `amax > conf`, then `conf > conf`;
        above max_nms candidates ultralytics keeps the highest-scoring ones.
        """
        if self.transposed:
            pred = pred.T
        nc, extra = self.num_classes, self.extra_rows + self.num_masks
        if pred.shape[0] != 4 + nc + extra:
            raise ValueError(f'{self.KIND} output {pred.shape} does not have 4 + {nc} '
                             + (f'+ {extra} ' if extra else '') + 'rows')
        cls = pred[4:4 + nc]
        class_ids = cls.argmax(0)
        scores = np.take_along_axis(cls, class_ids[None], 0)[0]
        cols = np.flatnonzero(scores > self.conf_threshold)
        if cols.size > self.max_nms:
            cols = cols[np.argsort(-scores[cols], kind='stable')[:self.max_nms]]
        return pred, cols, scores, class_ids

    def _candidates(self, outputs: Sequence[np.ndarray]):
        """Return decode's (boxes, scores, class ids) and -seg mask coefficients (else None)."""
        pred = self._output(outputs)
        if self.end2end:
            keep = np.flatnonzero(pred[:, 4] > self.conf_threshold)[:self.max_detections]
            rows = pred[keep].astype(np.float32, copy=False)
            return rows[:, :4].copy(), rows[:, 4].copy(), rows[:, 5].astype(np.int64), None
        pred, cols, scores, class_ids = self._select(pred)
        nc = self.num_classes
        box = pred[:4, cols].astype(np.float32, copy=False)
        half = box[2:4] * np.float32(0.5)
        boxes = np.concatenate((box[0:2] - half, box[0:2] + half), 0).T
        coeffs = pred[4 + nc:, cols].T if self.num_masks else None
        return (np.ascontiguousarray(boxes), scores[cols].astype(np.float32),
                class_ids[cols].astype(np.int64), coeffs)

    def postprocess(self, outputs: Sequence[np.ndarray], meta: LetterboxMeta) -> Detections:
        boxes, scores, class_ids, coeffs = self._candidates(outputs)
        hw = (meta.src_h, meta.src_w)
        if scores.size == 0:
            det = Detections.empty(self.class_names)
            if self.num_masks:
                det.masks = InstanceMasks((), hw)
            return det
        if not self.end2end:
            keep = ultralytics_nms(boxes, scores, class_ids, self.nms_threshold,
                                   self.class_agnostic)[:self.max_detections]
            boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
            coeffs = None if coeffs is None else coeffs[keep]
        boxes = ultralytics_unletterbox(boxes, meta, self.input_size)
        masks = None
        if coeffs is not None:
            protos = np.asarray(outputs[1])
            masks = InstanceMasks.from_prototypes(coeffs, protos.reshape(protos.shape[-3:]),
                                                  boxes, hw)
        return Detections(boxes, scores, class_ids, self.class_names, masks=masks)


__all__ = ['Yolov8Adapter', 'anchor_count', 'model_input_size', 'ultralytics_nms',
           'ultralytics_unletterbox']
