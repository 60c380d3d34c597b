"""RT-DETR adapter: stretched resize in, the decoder's own top-k queries out (no NMS).

Three export layouts, told apart by the I/O signature (or `layout`):

* `ultralytics` (ultralytics >= 8.4): output (1, K, 6) = cx, cy, w, h (0-1), score, class,
  already top-k over queries x classes. RTDETRPredictor: keep score > conf, first max_det,
  boxes x source size.
* `ultralytics_legacy` (ultralytics < 8.4): output (1, 300, 4 + nc) = cx, cy, w, h (0-1) and
  sigmoid class scores; best class per query, score > conf, in query order.
* `original` (lyuwenyu/RT-DETR deploy export): inputs `images` + `orig_target_sizes` (1, 2)
  int64 [w, h], outputs labels (1, K), boxes (1, K, 4) x1, y1, x2, y2 already in the given
  target size's pixels, scores (1, K); score > conf.

Pre-processing for all: ultralytics' LetterBox(scale_fill=True), i.e. a plain bilinear
resize to the input size, BGR->RGB, /255, no mean/std. (The original repo resizes with PIL,
whose antialiasing differs slightly when downscaling; cv2's bilinear is used here.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from .base import as_bgr_u8, ModelAdapter
from .labels import parse_class_names, resolve_class_names
from .yolov8 import model_input_size
from ..core.letterbox import clip_boxes, to_chw_tensor
from ..core.options import parse_bool
from ..core.types import Detections, static_dim, TensorSpec

LAYOUTS = ('ultralytics', 'ultralytics_legacy', 'original')


@dataclass(frozen=True)
class ResizeMeta:
    src_w: int
    src_h: int


def _is_original(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> bool:
    names = {o.name for o in outputs}
    return (any(i.name == 'orig_target_sizes' for i in inputs)
            or {'labels', 'boxes', 'scores'} <= names)


def rtdetr_layout(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                  metadata: Mapping[str, str]) -> Tuple[str, str]:
    """(layout, reason) from the I/O signature; ValueError when it is not an RT-DETR one."""
    if _is_original(inputs, outputs):
        return 'original', 'inputs/outputs named like the original RT-DETR export ' \
                           '(orig_target_sizes; labels, boxes, scores)'
    if len(outputs) != 1 or len(outputs[0].shape) != 3:
        raise ValueError(f'RT-DETR expects one (1, queries, 4 + classes) output, got '
                         f'{[o.shape for o in outputs]}')
    channels = static_dim(outputs[0].shape[2])
    names = parse_class_names(metadata.get('names')) if metadata.get('names') else None
    if names is not None and channels == 4 + len(names):
        return 'ultralytics_legacy', (f'output {outputs[0].shape} = 4 box + {len(names)} '
                                      'class scores')
    if channels == 6:
        return 'ultralytics', f'output {outputs[0].shape} = cx, cy, w, h, score, class'
    if channels is not None and channels > 6:
        return 'ultralytics_legacy', (f'output {outputs[0].shape} = 4 box + {channels - 4} '
                                      'class scores')
    raise ValueError(f'cannot tell the RT-DETR layout of output {outputs[0].shape}; set layout')


class RtdetrAdapter(ModelAdapter):
    """RT-DETR detector (ultralytics or original export).

    Params: conf_threshold (0.25), max_detections (300), class_names (metadata `names`, else
    COCO-80), input_size (for dynamic inputs), layout ('auto' or one of LAYOUTS), clip_boxes
    (True; the references leave boxes unclipped, which the tests compare with False).
    """

    family = 'rtdetr'
    task = 'detection'

    def __init__(self, inputs: List[TensorSpec], outputs: List[TensorSpec],
                 metadata: Optional[Mapping[str, str]] = None, *, conf_threshold: float = 0.25,
                 max_detections: int = 300, class_names: Any = None, input_size: Any = None,
                 layout: str = 'auto', clip_boxes: Any = True, **unused: Any) -> None:
        metadata = dict(metadata or {})
        _reject_unknown(unused)
        if layout in (None, '', 'auto'):
            self.layout, self.layout_reason = rtdetr_layout(inputs, outputs, metadata)
        elif layout in LAYOUTS:
            self.layout, self.layout_reason = layout, 'layout parameter'
        else:
            raise ValueError(f"layout must be 'auto' or one of {', '.join(LAYOUTS)}, not "
                             f'{layout!r}')
        image_inputs = [i for i in inputs if len(i.shape) == 4]
        self.input_size = model_input_size(image_inputs, input_size, metadata, 'RT-DETR')
        self.image_name = image_inputs[0].name
        self.input_dtype = np.dtype(image_inputs[0].dtype)
        self.input_order = [i.name for i in inputs]
        self.size_input = next((i for i in inputs if len(i.shape) != 4), None)
        if self.layout == 'original':
            if self.size_input is None:
                raise ValueError('the original RT-DETR layout needs an orig_target_sizes input')
            by_name = {o.name: k for k, o in enumerate(outputs)}
            try:
                self.out_idx = tuple(by_name[n] for n in ('labels', 'boxes', 'scores'))
            except KeyError:
                self.out_idx = (0, 1, 2)  # the export's order
            num_classes = None
        else:
            channels = static_dim(outputs[0].shape[2])
            legacy = self.layout == 'ultralytics_legacy'
            num_classes = channels - 4 if legacy and channels else None
        if num_classes is None and metadata.get('names'):
            num_classes = len(parse_class_names(metadata['names']) or []) or None
        self.num_classes = num_classes
        self.class_names = resolve_class_names(class_names, metadata, num_classes)
        self.conf_threshold = float(conf_threshold)
        self.max_detections = int(max_detections)
        if not 0.0 <= self.conf_threshold <= 1.0:
            raise ValueError('conf_threshold must be within [0, 1]')
        if self.max_detections < 1:
            raise ValueError('max_detections must be >= 1')
        self.clip = parse_bool(clip_boxes, 'clip_boxes', default=False)

    def preprocess(self, image: np.ndarray) -> Tuple[List[np.ndarray], ResizeMeta]:
        image = as_bgr_u8(image, 'RT-DETR')
        src_h, src_w = image.shape[:2]
        h, w = self.input_size
        resized = image if (src_h, src_w) == (h, w) else cv2.resize(
            image, (w, h), interpolation=cv2.INTER_LINEAR)
        tensor = to_chw_tensor(resized, dtype=self.input_dtype, scale=1.0 / 255.0, swap_rb=True)
        if self.size_input is None:
            return [tensor], ResizeMeta(src_w, src_h)
        sizes = np.array([[src_w, src_h]], dtype=np.dtype(self.size_input.dtype))
        feeds = {self.image_name: tensor, self.size_input.name: sizes}
        return [feeds[n] for n in self.input_order], ResizeMeta(src_w, src_h)

    def postprocess(self, outputs: Sequence[np.ndarray], meta: ResizeMeta) -> Detections:
        conf, k = self.conf_threshold, self.max_detections
        if self.layout == 'original':
            labels, boxes, scores = (np.asarray(outputs[i]) for i in self.out_idx)
            labels, boxes, scores = labels.reshape(-1), boxes.reshape(-1, 4), scores.reshape(-1)
            keep = np.flatnonzero(scores > conf)[:k]
            boxes = boxes[keep].astype(np.float32)
            scores, class_ids = scores[keep].astype(np.float32), labels[keep].astype(np.int64)
        else:
            pred = np.asarray(outputs[0])
            pred = pred[0] if pred.ndim == 3 else pred
            if self.layout == 'ultralytics':
                scores, class_ids = pred[:, 4], pred[:, 5]
            else:
                cls = pred[:, 4:]
                class_ids = cls.argmax(1)
                scores = np.take_along_axis(cls, class_ids[:, None], 1)[:, 0]
            keep = np.flatnonzero(scores > conf)[:k]
            cxcywh = pred[keep, :4].astype(np.float32)
            half = cxcywh[:, 2:4] * np.float32(0.5)
            boxes = np.concatenate((cxcywh[:, :2] - half, cxcywh[:, :2] + half), 1)
            boxes *= np.array([meta.src_w, meta.src_h, meta.src_w, meta.src_h], np.float32)
            scores = scores[keep].astype(np.float32)
            class_ids = class_ids[keep].astype(np.int64)
        if keep.size == 0:
            return Detections.empty(self.class_names)
        if self.clip:
            clip_boxes(boxes, meta.src_w, meta.src_h)
        return Detections(boxes, scores, class_ids, self.class_names)


def _reject_unknown(params: Mapping[str, Any]) -> None:
    # Detector-wide knobs that mean nothing without NMS are accepted and ignored.
    unknown = set(params) - {'nms_threshold', 'class_agnostic'}
    if unknown:
        raise TypeError(f'RT-DETR adapter got unexpected parameters: {", ".join(sorted(unknown))}')


__all__ = ['RtdetrAdapter', 'rtdetr_layout', 'LAYOUTS']
