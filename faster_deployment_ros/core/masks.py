"""Instance masks of one frame at the source resolution, and the images made from them.

`InstanceMasks` holds one mask per detection, each known only inside its detection's box, so a
frame's masks never take N x H x W memory. Two sources:

* `InstanceMasks.from_prototypes`: a YOLO segmentation head's mask coefficients (N, nm) and
  prototypes (nm, mh, mw). The masks are made only when rendered (`crop`, `render`), so a frame
  whose masks nobody asks for costs nothing but the references. The arithmetic is ultralytics'
  `retina_masks=True` path (ops.process_mask_native, ops.scale_masks with ratio_pad None):
  logits = coefficients x prototypes; a bilinear 1x / 2x / 4x upsample (the smallest that makes
  the letterbox padding whole pixels); the letterbox content cropped and bilinearly resized
  (half-pixel centres, align_corners False) to the source size; > 0; only pixels (c, r) with
  x1 <= c < x2 and y1 <= r < y2 of the detection's (source-pixel) box kept. Both resizes are
  linear per axis, so each is one (source x prototype) matrix per axis with a few non-zero
  taps per source pixel, and a detection needs only the prototype rows / columns its box
  reaches: logits @ columns.T at the prototypes' row resolution, then each source row as the
  weighted sum of its (two, for the usual 1x upsample) prototype rows.
* `InstanceMasks(crops, image_hw)`: explicit boolean crops (y0, x0, mask) in source pixels.

Rendering (`render`): every requested image in one pass, instances painted in ascending score
order so that where masks overlap the higher score wins (equal scores: the lower index):

* instance: 1 + the detection's index, 0 none; uint8 (mono8) for up to 254 detections, else
  uint16 (mono16);
* semantic: the class id, 255 none (uint8: class ids must lie in 0..254);
* confidence: round(score x 255) of the instance shown, at least 1; 0 none (uint8).

Unlike ultralytics' predictor, which drops detections whose mask is empty, every detection is
kept (the detections do not depend on whether masks are rendered); an empty mask just never
shows in the images.
"""
from __future__ import annotations

from functools import lru_cache
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

#: most detections the mono8 instance image can name (0 = none, 255 kept free as in mono8 masks)
MONO8_INSTANCES = 254
#: most detections the mono16 instance image can name
MONO16_INSTANCES = 65534
#: the semantic image's value where no instance is
NO_CLASS = 255

Crop = Tuple[int, int, np.ndarray]  # y0, x0, bool (h, w) mask of the box region


def _bilinear_matrix(out_size: int, in_size: int, scale: float) -> np.ndarray:
    """(out, in) weights of a PyTorch bilinear resize (align_corners False) along one axis.

    `scale` is input / output as PyTorch uses it (in_size / out_size for a target size,
    1 / factor for a scale factor); float32 arithmetic as its CPU kernel.
    """
    dst = np.arange(out_size, dtype=np.float32)
    src = np.float32(scale) * (dst + np.float32(0.5)) - np.float32(0.5)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.floor(src).astype(np.int64)
    i0 = np.minimum(i0, in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    lam = (src - i0.astype(np.float32)).astype(np.float32)
    m = np.zeros((out_size, in_size), np.float32)
    rows = np.arange(out_size)
    np.add.at(m, (rows, i0), np.float32(1.0) - lam)
    np.add.at(m, (rows, i1), lam)
    return m


@lru_cache(maxsize=16)
def prototype_axes(image_hw: Tuple[int, int],
                   proto_hw: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """(rows (H, mh), cols (W, mw)): source pixel <- prototype cell weights, per axis.

    ultralytics' process_mask_native + scale_masks geometry for a letterboxed (4 mh, 4 mw) input.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    mh, mw = int(proto_hw[0]), int(proto_hw[1])
    gain = min(4 * mh / h, 4 * mw / w)
    pad = (4 * mh - max(round(h * gain), 1)) | (4 * mw - max(round(w * gain), 1))
    f = 4 // math.gcd(4, pad | pad // 2)
    big_h, big_w = f * mh, f * mw

    def up(n: int) -> np.ndarray:
        return np.eye(n, dtype=np.float32) if f == 1 else _bilinear_matrix(f * n, n, 1.0 / f)

    up_rows, up_cols = up(mh), up(mw)
    if (big_h, big_w) == (h, w):  # scale_masks returns the masks unchanged
        return up_rows, up_cols
    g = min(big_h / h, big_w / w)
    pad_w, pad_h = (big_w - max(round(w * g), 1)) / 2, (big_h - max(round(h * g), 1)) / 2
    top, left = round(pad_h - 0.1), round(pad_w - 0.1)
    bottom, right = top + max(round(h * g), 1), left + max(round(w * g), 1)

    def crop_resize(out: int, start: int, stop: int, size: int) -> np.ndarray:
        m = np.zeros((out, size), np.float32)
        n = stop - start
        m[:, start:stop] = _bilinear_matrix(out, n, np.float32(n) / np.float32(out))
        return m

    rows = crop_resize(h, top, bottom, big_h) @ up_rows
    cols = crop_resize(w, left, right, big_w) @ up_cols
    return rows, cols


def _bands(m: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """First and one-past-last non-zero column of each row (monotone for a resize)."""
    nz = m != 0
    first = nz.argmax(1)
    last = m.shape[1] - nz[:, ::-1].argmax(1)
    return first, last


def _taps(m: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(index (n, K), weight (n, K)): each row's non-zero columns, padded with weight 0."""
    nz = m != 0
    k = max(1, int(nz.sum(1).max()))
    first = nz.argmax(1)
    index = np.minimum(first[:, None] + np.arange(k)[None, :], m.shape[1] - 1)
    weight = np.take_along_axis(m, index, 1)
    weight[first[:, None] + np.arange(k)[None, :] >= m.shape[1]] = 0.0
    return index, weight.astype(np.float32)


@lru_cache(maxsize=16)
def _axes(image_hw: Tuple[int, int], proto_hw: Tuple[int, int]):
    rows, cols = prototype_axes(image_hw, proto_hw)
    return _taps(rows), _bands(rows), cols, _bands(cols)


def box_region(box: Sequence[float], image_hw: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the pixels (c, r) with x1 <= c < x2, y1 <= r < y2 (ultralytics' crop)."""
    h, w = image_hw
    x0 = min(max(int(math.ceil(float(box[0]))), 0), w)
    y0 = min(max(int(math.ceil(float(box[1]))), 0), h)
    x1 = min(max(int(math.ceil(float(box[2]))), x0), w)
    y1 = min(max(int(math.ceil(float(box[3]))), y0), h)
    return y0, y1, x0, x1


def _lookup(inst: np.ndarray, none: int, values: np.ndarray) -> np.ndarray:
    """Return values[inst - 1] (none where inst is 0) as uint8: a table lookup per pixel."""
    if inst.dtype == np.uint8:
        lut = np.full(256, none, np.uint8)
        lut[1:len(values) + 1] = values
        return cv2.LUT(inst, lut)
    return np.concatenate([[none], values]).astype(np.uint8)[inst]


class InstanceMasks:
    """One mask per detection, inside its box, at the source resolution (see the module doc).

    `len`, `select(index)` (boolean mask or integer indices, as Detections.select), `crop(i)`,
    `render(scores, class_ids, ...)`, `full_mask(i)` (one H x W mask: for tests and tools).
    """

    def __init__(self, crops: Sequence[Crop], image_hw: Tuple[int, int]) -> None:
        self.image_hw = (int(image_hw[0]), int(image_hw[1]))
        self._crops: Optional[List[Crop]] = list(crops)
        self._coeffs: Optional[np.ndarray] = None
        self._protos: Optional[np.ndarray] = None
        self._boxes: Optional[np.ndarray] = None

    @classmethod
    def from_prototypes(cls, coeffs: np.ndarray, protos: np.ndarray, boxes: np.ndarray,
                        image_hw: Tuple[int, int]) -> 'InstanceMasks':
        """Masks of a YOLO segmentation head, made when rendered.

        coeffs (N, nm) mask coefficients, protos (nm, mh, mw) (kept by reference: do not reuse
        the buffer), boxes (N, 4) x1, y1, x2, y2 in source pixels (after scale_boxes + clip).
        """
        coeffs = np.asarray(coeffs, np.float32).reshape(len(boxes), -1)
        protos = np.asarray(protos, np.float32)
        if protos.ndim != 3 or protos.shape[0] != coeffs.shape[1]:
            raise ValueError(f'mask prototypes {protos.shape} do not match {coeffs.shape[1]} mask '
                             'coefficients per detection: expected (nm, mh, mw)')
        self = cls((), image_hw)
        self._crops = None
        self._coeffs, self._protos = coeffs, protos
        self._boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        return self

    def __len__(self) -> int:
        return len(self._crops) if self._crops is not None else int(self._coeffs.shape[0])

    def select(self, index: Any) -> 'InstanceMasks':
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        if self._crops is not None:
            return InstanceMasks([self._crops[i] for i in index.tolist()], self.image_hw)
        out = InstanceMasks((), self.image_hw)
        out._crops = None
        out._coeffs, out._protos = self._coeffs[index], self._protos
        out._boxes = self._boxes[index]
        return out

    def crop(self, i: int) -> Crop:
        """Return (y0, x0, mask): detection i's mask over its box region, bool."""
        if self._crops is not None:
            return self._crops[i]
        y0, y1, x0, x1 = box_region(self._boxes[i], self.image_hw)
        if y1 <= y0 or x1 <= x0:
            return y0, x0, np.zeros((y1 - y0, x1 - x0), bool)
        protos = self._protos
        (r_index, r_weight), (r_lo, r_hi), cols, (c_lo, c_hi) = _axes(self.image_hw,
                                                                      protos.shape[1:])
        a, b = int(r_lo[y0]), int(r_hi[y1 - 1])
        c, d = int(c_lo[x0]), int(c_hi[x1 - 1])
        sub = protos[:, a:b, c:d]
        logits = (self._coeffs[i] @ sub.reshape(sub.shape[0], -1)).reshape(b - a, d - c)
        wide = logits @ cols[x0:x1, c:d].T  # (prototype rows, box columns)
        index, weight = r_index[y0:y1] - a, r_weight[y0:y1]
        value = np.take(wide, index[:, 0], 0)
        value *= weight[:, :1]
        if index.shape[1] > 1:
            tap = np.empty_like(value)
            for k in range(1, index.shape[1]):
                np.take(wide, np.minimum(index[:, k], b - a - 1), 0, out=tap)
                tap *= weight[:, k:k + 1]
                value += tap
        return y0, x0, value > 0

    def full_mask(self, i: int) -> np.ndarray:
        """Return detection i's mask as an H x W bool image (one at a time: tests, tools)."""
        out = np.zeros(self.image_hw, bool)
        y0, x0, m = self.crop(i)
        out[y0:y0 + m.shape[0], x0:x0 + m.shape[1]] = m
        return out

    def render(self, scores: np.ndarray, class_ids: Optional[np.ndarray] = None, *,
               instance: bool = True, semantic: bool = False,
               confidence: bool = False) -> Dict[str, np.ndarray]:
        """Return the requested images ('instance', 'semantic', 'confidence'), H x W, in one pass.

        Higher scores paint over lower ones; each crop is made, painted into the instance image
        and dropped, so memory is the images plus one box; the semantic and confidence images
        are looked up from the instance image (the same instance wins everywhere).
        """
        n = len(self)
        scores = np.asarray(scores, np.float32).reshape(-1)
        if scores.shape[0] != n:
            raise ValueError(f'{n} masks but {scores.shape[0]} scores')
        h, w = self.image_hw
        out: Dict[str, np.ndarray] = {}
        if n > MONO16_INSTANCES:
            raise ValueError(f'{n} detections do not fit a mono16 instance image (at most '
                             f'{MONO16_INSTANCES}): lower max_detections')
        inst = np.zeros((h, w), np.uint8 if n <= MONO8_INSTANCES else np.uint16)
        if semantic:
            classes = np.asarray(class_ids, np.int64).reshape(-1)
            if classes.shape[0] != n:
                raise ValueError(f'{n} masks but {classes.shape[0]} class ids')
            if n and (classes.min() < 0 or classes.max() >= NO_CLASS):
                raise ValueError(f'class ids {classes.min()}..{classes.max()} do not fit the '
                                 f'mono8 semantic image (0..{NO_CLASS - 1}; {NO_CLASS} = none)')
        # ascending score; among equal scores the lower index last (so it wins)
        for i in np.lexsort((-np.arange(n), scores)).tolist():
            y0, x0, m = self.crop(i)
            if m.size:
                region = inst[y0:y0 + m.shape[0], x0:x0 + m.shape[1]]
                done = cv2.copyTo(np.full(m.shape, i + 1, inst.dtype), m.view(np.uint8), region)
                if done is not region:
                    region[...] = done
        if instance:
            out['instance'] = inst
        if semantic:
            out['semantic'] = _lookup(inst, NO_CLASS, classes)
        if confidence:
            out['confidence'] = _lookup(inst, 0, np.clip(np.rint(scores * 255.0), 1, 255))
        return out


__all__ = ['InstanceMasks', 'MONO16_INSTANCES', 'MONO8_INSTANCES', 'NO_CLASS', 'box_region',
           'prototype_axes']
