"""YOLOX adapter: top-left letterbox in, grid decode + class-aware NMS out.

Matches YOLOX's own pre-processing (`yolox.data.data_augment.preproc`: BGR kept, 0-255 float,
no mean/std, pad 114 at the bottom/right, resized size truncated) and the decode of its
`demo_postprocess`. Scoring follows `yolox.utils.postprocess` (what tools/demo.py uses): one
best class per box, score = objectness x class score, class-aware NMS; `class_agnostic=True`
gives the ONNX demo's `multiclass_nms_class_agnostic` instead.

Defaults: conf_threshold 0.3 and nms_threshold 0.45, the thresholds YOLOX's ONNX Runtime demo
(demo/ONNXRuntime/onnx_inference.py) draws and suppresses with.
"""
from __future__ import annotations

import threading
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .base import as_bgr_u8, ModelAdapter
from .labels import resolve_class_names
from ..core.letterbox import letterbox, LetterboxMeta, to_chw_tensor, unletterbox_boxes
from ..core.nms import batched_nms, nms
from ..core.options import parse_bool, parse_size
from ..core.specs import DecodeSpec, PreprocessSpec, preset
from ..core.types import Detections, static_dim, TensorSpec


def make_grids(size_hw: Tuple[int, int], strides: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
    """Return per-anchor (x, y) grid cells and strides in YOLOX's order (by stride, row-major)."""
    grids, expanded = [], []
    for s in strides:
        gh, gw = size_hw[0] // s, size_hw[1] // s
        ys, xs = np.mgrid[0:gh, 0:gw]
        grids.append(np.stack((xs.ravel(), ys.ravel()), 1))
        expanded.append(np.full((gh * gw, 1), s))
    return (np.concatenate(grids).astype(np.float32),
            np.concatenate(expanded).astype(np.float32))


class YoloxAdapter(ModelAdapter):
    """YOLOX detector (any size, raw or decoded head) with one (1, 3, H, W) input.

    Params: conf_threshold (0.3), nms_threshold (0.45), max_detections (300), class_names
    (default: metadata `names`, else COCO-80), input_size (h, w; needed when the model's input
    is dynamic), class_agnostic (False), decoded (None = metadata `decoded` /
    `decode_in_inference`, else False: raw grid offsets as `export_onnx.py` writes by default;
    True for exports that already output pixel cx, cy, w, h), strides (default 8/16/32, or
    8/16/32/64 when the output's anchor count says P6).
    """

    family = 'yolox'
    task = 'detection'

    def __init__(self, inputs: List[TensorSpec], outputs: List[TensorSpec],
                 metadata: Optional[Mapping[str, str]] = None, *, conf_threshold: float = 0.3,
                 nms_threshold: float = 0.45, max_detections: int = 300, class_names: Any = None,
                 input_size: Any = None, class_agnostic: Any = False, decoded: Any = None,
                 strides: Optional[Sequence[int]] = None) -> None:
        metadata = dict(metadata or {})
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError('YOLOX expects one NCHW image input, got '
                             f'{[i.shape for i in inputs]}')
        if len(outputs) < 1 or len(outputs[0].shape) != 3:
            raise ValueError(f'YOLOX expects a (1, anchors, 5 + classes) output, got '
                             f'{[o.shape for o in outputs]}')
        in_shape, out_shape = inputs[0].shape, outputs[0].shape
        if static_dim(in_shape[1]) not in (None, 3):
            raise ValueError(f'YOLOX expects 3 input channels, model input is {in_shape}')
        model_hw = (static_dim(in_shape[2]), static_dim(in_shape[3]))
        if input_size is not None:
            size = parse_size(input_size)
            for got, want in zip(model_hw, size):
                if got is not None and got != want:
                    raise ValueError(f'input_size {size} does not match the model input '
                                     f'{in_shape}')
        elif None in model_hw:
            raise ValueError(f'the model input {in_shape} is dynamic: give input_size (h, w)')
        else:
            size = (int(model_hw[0]), int(model_hw[1]))
        self.input_size = size
        self.input_dtype = np.dtype(inputs[0].dtype)

        channels = static_dim(out_shape[2])
        self.num_classes = channels - 5 if channels is not None else None
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f'YOLOX output {out_shape} has no class scores')
        self.class_names = resolve_class_names(class_names, metadata, self.num_classes)
        if self.num_classes is None:
            self.num_classes = len(self.class_names)

        self.decoded = parse_bool(decoded, 'decoded', allow_auto=True)
        if self.decoded is None:
            meta_flag = metadata.get('decoded', metadata.get('decode_in_inference'))
            self.decoded = bool(parse_bool(meta_flag, 'metadata decoded', allow_auto=True))
        anchors = static_dim(out_shape[1])
        if strides is None:
            candidates = [(8, 16, 32), (8, 16, 32, 64)]
            strides = next((s for s in candidates if self._anchor_count(s) == anchors),
                           candidates[0])
        self.strides = tuple(int(s) for s in strides)
        self.num_anchors = self._anchor_count(self.strides)
        if anchors is not None and anchors != self.num_anchors:
            raise ValueError(f'output {out_shape} has {anchors} anchors; input {size} with '
                             f'strides {self.strides} gives {self.num_anchors}')
        self._grid, self._stride = make_grids(size, self.strides)

        self.conf_threshold = float(conf_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_detections = int(max_detections)
        if not 0.0 <= self.conf_threshold <= 1.0 or not 0.0 <= self.nms_threshold <= 1.0:
            raise ValueError('conf_threshold and nms_threshold must be within [0, 1]')
        if self.max_detections < 1:
            raise ValueError('max_detections must be >= 1')
        self.class_agnostic = parse_bool(class_agnostic, 'class_agnostic', default=False)
        self._local = threading.local()

    def _anchor_count(self, strides: Sequence[int]) -> int:
        h, w = self.input_size
        return sum((h // s) * (w // s) for s in strides)

    def preprocess(self, image: np.ndarray) -> Tuple[List[np.ndarray], LetterboxMeta]:
        image = as_bgr_u8(image, 'YOLOX')
        h, w = self.input_size
        # The uint8 canvas is consumed within this call, so one per thread is safe to reuse.
        # The tensor is not: the pipeline may still hold the previous frame's, so it is fresh.
        canvas = getattr(self._local, 'canvas', None)
        if canvas is None:
            canvas = self._local.canvas = np.empty((h, w, 3), np.uint8)
        canvas, meta = letterbox(image, (h, w), pad_value=114, center=False, out=canvas)
        return [to_chw_tensor(canvas, dtype=self.input_dtype)], meta

    def preprocess_spec(self, dtype: str = 'float32') -> PreprocessSpec:
        return preset('yolox', self.input_size, dtype)

    def decode_spec(self) -> DecodeSpec:
        return DecodeSpec(layout='yolox_decoded' if self.decoded else 'yolox',
                          strides=self.strides, conf_threshold=self.conf_threshold,
                          nms_threshold=self.nms_threshold, max_detections=self.max_detections,
                          class_agnostic=self.class_agnostic)

    def postprocess(self, outputs: Sequence[np.ndarray], meta: LetterboxMeta) -> Detections:
        pred = np.asarray(outputs[0])
        if pred.ndim == 3:
            if pred.shape[0] != 1:
                raise ValueError(f'YOLOX postprocess handles batch 1, got output {pred.shape}')
            pred = pred[0]
        if pred.shape != (self.num_anchors, 5 + self.num_classes):
            raise ValueError(f'YOLOX output {pred.shape} does not match the expected '
                             f'({self.num_anchors}, {5 + self.num_classes})')
        # score = obj * cls <= obj (both sigmoids), so only rows with obj > conf can pass:
        # decoding and scoring those few rows instead of all anchors is exact and far cheaper.
        rows = np.flatnonzero(pred[:, 4] > self.conf_threshold)
        if rows.size == 0:
            return Detections.empty(self.class_names)
        cand = pred[rows].astype(np.float32, copy=False)
        cls_scores = cand[:, 5:] * cand[:, 4:5]
        class_ids = cls_scores.argmax(1)
        scores = np.take_along_axis(cls_scores, class_ids[:, None], 1)[:, 0]
        passed = scores > self.conf_threshold
        if not passed.any():
            return Detections.empty(self.class_names)
        rows, cand = rows[passed], cand[passed]
        class_ids, scores = class_ids[passed], scores[passed]

        if self.decoded:
            cxcy, wh = cand[:, 0:2], cand[:, 2:4]
        else:
            stride = self._stride[rows]
            cxcy = (cand[:, 0:2] + self._grid[rows]) * stride
            wh = np.exp(cand[:, 2:4]) * stride
        half = wh * np.float32(0.5)
        boxes = np.concatenate((cxcy - half, cxcy + half), 1)

        if self.class_agnostic:
            keep = nms(boxes, scores, self.nms_threshold)
        else:
            keep = batched_nms(boxes, scores, class_ids, self.nms_threshold)
        keep = keep[:self.max_detections]  # NMS returns by descending score
        return Detections(unletterbox_boxes(boxes[keep], meta, clip=True),
                          scores[keep].astype(np.float32), class_ids[keep].astype(np.int64),
                          self.class_names)


__all__ = ['YoloxAdapter', 'make_grids']
