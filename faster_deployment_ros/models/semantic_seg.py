"""Plain semantic segmentation: one (1, C, H, W) logits output -> class mask + confidence.

Pre-processing (torchvision's segmentation presets, on a fixed-size network input): RGB / 255,
ImageNet mean/std, the frame fitted into the input either by `letterbox` (default: aspect kept,
centred, the padding cropped off again afterwards) or `stretch` (plain resize). A dynamic
input takes `input_size` ((h, w), or an int: the short side, aspect kept, as torchvision's
`SemanticSegmentation(resize_size=520)`), default 520.

Post-processing is the reference's: the logits of the image region (letterbox padding cropped)
are resized to the source resolution with bilinear interpolation, align_corners=False (what
torchvision's models and `F.interpolate` do), and each pixel gets the argmax class and the
softmax probability of that class. Done without resizing all C channels: where the four
logit-grid neighbours of a source pixel share their argmax class k, the interpolated logits
(a convex combination) have argmax k too, so the class is exact without them; and where the
cell's corners bound the softmax probability within CONFIDENCE_TOLERANCE (see `segment`), the
confidence is the bilinear interpolation of the corners'. Every other pixel gets its C
interpolated logits, argmax and softmax. So the class is exact and the confidence within one
1/255 step of the exact one (before rounding) everywhere.

Output: `core.types.SegmentationMap` (uint8 class ids, NO_CLASS = 255 below `min_confidence`;
uint8 confidence = probability x 255, rounded). At most 255 classes (255 is "no class").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from .base import as_bgr_u8, ModelAdapter
from .depth import is_depth_output
from .labels import resolve_class_names
from ..core.letterbox import letterbox_geometry
from ..core.types import NO_CLASS, SegmentationMap, static_dim, TensorSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_MODES = ('letterbox', 'stretch')
#: output strides accepted as "a dense map of the input" (logits at input resolution or 1/s)
STRIDES = (1, 2, 4, 8)
DEFAULT_SHORT_SIDE = 520  # torchvision's SemanticSegmentation(resize_size=520)
PAD_VALUE = 114


@dataclass(frozen=True)
class SegMeta:
    """Where the frame sits in the network input: content region (top, left, h, w) + net size."""

    src_w: int
    src_h: int
    net_h: int
    net_w: int
    top: int
    left: int
    content_h: int
    content_w: int


def is_segmentation_output(shape: Sequence[Any]) -> bool:
    """(1, C, H, W) with C > 1 known and H, W unknown or > 16 (a dense multi-class map)."""
    dims = list(shape)
    if len(dims) != 4 or static_dim(dims[0]) not in (None, 1):
        return False
    c = static_dim(dims[1])
    if c is None or c < 2:
        return False
    return all(static_dim(d) is None or d > 16 for d in dims[2:])


def is_segmentation_signature(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> bool:
    """One NCHW image in, one (1, C, H, W) logits map out at the input's resolution (or 1/2..1/8).

    C > 1 keeps depth ((1, 1, H, W) or (1, H, W)) apart.
    """
    if len(outputs) != 1 or len(inputs) != 1 or len(inputs[0].shape) != 4:
        return False
    shape = list(outputs[0].shape)
    if not is_segmentation_output(shape) or is_depth_output(shape):
        return False
    in_hw = [static_dim(d) for d in inputs[0].shape[2:]]
    out_hw = [static_dim(d) for d in shape[2:]]
    if None in in_hw or None in out_hw:
        return None in in_hw and all(d is None for d in out_hw)  # dynamic map, dynamic image
    return any(in_hw[0] == out_hw[0] * s and in_hw[1] == out_hw[1] * s for s in STRIDES)


def _axis(n_out: int, start: int, length: int, scale: float,
          n_in: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i0, i1, frac) sampling the logit grid for `n_out` source pixels along one axis.

    The content spans net pixels [start, start + length); logit = net * scale. Half-pixel
    centres, clamped to the content (F.interpolate(bilinear, align_corners=False) of the
    cropped logits when scale is 1).
    """
    pos = (start + (np.arange(n_out, dtype=np.float64) + 0.5) * (length / n_out)) * scale - 0.5
    lo = max(start * scale, 0.0)
    last = max(min(int(np.floor((start + length) * scale - 1.0)), n_in - 1), int(np.floor(lo)))
    pos = np.clip(pos, lo, last)
    i0 = np.minimum(np.floor(pos).astype(np.int64), last)
    i1 = np.minimum(i0 + 1, last)
    frac = (pos - i0).astype(np.float32)
    return i0, i1, frac


class SemanticSegAdapter(ModelAdapter):
    """Plain semantic segmentation: (1, 3, H, W) image in, (1, C, H', W') logits out.

    Params: class_names (default: metadata `names`, else the indices), resize_mode (one of
    RESIZE_MODES), input_size (dynamic inputs), min_confidence (0..1: pixels whose confidence
    is lower get NO_CLASS; 0 keeps every pixel), mean / std (ImageNet).
    """

    family = 'semantic_seg'
    task = 'segmentation'
    THRESHOLDS = ('min_confidence',)

    def __init__(self, inputs: List[TensorSpec], outputs: List[TensorSpec],
                 metadata: Optional[Mapping[str, str]] = None, *, class_names: Any = None,
                 resize_mode: str = 'letterbox', input_size: Any = None,
                 min_confidence: float = 0.0, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        metadata = dict(metadata or {})
        if not is_segmentation_signature(inputs, outputs[:1]):
            raise ValueError('semantic segmentation models take one NCHW image and give one '
                             '(1, C, H, W) logits output (C > 1) at the input resolution or 1/2, '
                             f'1/4, 1/8 of it; got inputs {[i.shape for i in inputs]}, outputs '
                             f'{[o.shape for o in outputs]}')
        shape = inputs[0].shape
        if static_dim(shape[1]) not in (None, 3):
            raise ValueError(f'segmentation models take 3 input channels, model input is {shape}')
        self.num_classes = int(outputs[0].shape[1])
        if self.num_classes > NO_CLASS:
            raise ValueError(f'{self.num_classes} classes do not fit a mono8 mask (at most '
                             f'{NO_CLASS}: {NO_CLASS} means "no class")')
        self.class_names = resolve_class_names(class_names, metadata, self.num_classes)
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f'resize_mode must be one of {", ".join(RESIZE_MODES)}, not '
                             f'{resize_mode!r}')
        self.resize_mode = resize_mode
        self.input_dtype = np.dtype(inputs[0].dtype)
        hw = (static_dim(shape[2]), static_dim(shape[3]))
        self.fixed_size = (int(hw[0]), int(hw[1])) if None not in hw else None
        if input_size is None:
            input_size = metadata.get('imgsz') or DEFAULT_SHORT_SIDE
        self.target_size = input_size
        self.min_confidence = 0.0
        self.set_thresholds(min_confidence=min_confidence)
        mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        self._a = (1.0 / (255.0 * std)).astype(np.float32)  # out = rgb * a + b per channel
        self._b = (-mean / std).astype(np.float32)

    def network_size(self, src_hw: Tuple[int, int]) -> Tuple[int, int]:
        """(h, w) of the network input for a frame of `src_hw`."""
        if self.fixed_size is not None:
            return self.fixed_size
        size = self.target_size
        if isinstance(size, str):
            parts = [int(p) for p in size.strip('[]() ').replace('x', ',').split(',')
                     if p.strip()]
            size = parts if len(parts) > 1 else parts[0]
        if isinstance(size, (int, np.integer)):  # short side, aspect kept
            h, w = src_hw
            r = int(size) / min(h, w)
            return max(1, int(round(h * r))), max(1, int(round(w * r)))
        return int(size[0]), int(size[1])

    def preprocess(self, image: np.ndarray) -> Tuple[List[np.ndarray], SegMeta]:
        image = as_bgr_u8(image, 'segmentation')
        src_h, src_w = image.shape[:2]
        net_h, net_w = self.network_size((src_h, src_w))
        if self.resize_mode == 'letterbox' and self.fixed_size is not None:
            _, new_w, new_h, left, top = letterbox_geometry((src_h, src_w), (net_h, net_w),
                                                            center=True)
        else:
            new_w, new_h, left, top = net_w, net_h, 0, 0
        resized = image if (new_h, new_w) == (src_h, src_w) else \
            cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        tensor = np.empty((1, 3, net_h, net_w), self.input_dtype)
        for c in range(3):  # RGB plane c is BGR channel 2 - c; pad = PAD_VALUE grey
            plane = tensor[0, c]
            if (new_h, new_w) != (net_h, net_w):
                plane[...] = PAD_VALUE * self._a[c] + self._b[c]
            region = plane[top:top + new_h, left:left + new_w]
            np.multiply(resized[:, :, 2 - c], self._a[c], out=region, casting='unsafe')
            region += self._b[c]
        return [tensor], SegMeta(src_w, src_h, net_h, net_w, top, left, new_h, new_w)

    def postprocess(self, outputs: Sequence[np.ndarray], meta: SegMeta) -> SegmentationMap:
        logits = np.asarray(outputs[0])
        if logits.ndim != 4 or logits.shape[0] != 1 or logits.shape[1] != self.num_classes:
            raise ValueError(f'segmentation postprocess expects (1, {self.num_classes}, H, W) '
                             f'logits, got {logits.shape}')
        _, _, oh, ow = logits.shape
        ys = _axis(meta.src_h, meta.top, meta.content_h, oh / meta.net_h, oh)
        xs = _axis(meta.src_w, meta.left, meta.content_w, ow / meta.net_w, ow)
        mask, conf = segment(logits[0], ys, xs)
        if self.min_confidence > 0.0:
            mask[conf < np.float32(self.min_confidence)] = NO_CLASS
        conf8 = np.empty(conf.shape, np.uint8)
        np.multiply(conf, np.float32(255.0), out=conf)
        np.rint(conf, out=conf)
        conf8[...] = conf
        return SegmentationMap(mask, conf8, self.class_names)


#: largest confidence error (probability) a pixel may get from interpolating its cell's
#: corner probabilities; cells that cannot guarantee it are computed exactly
CONFIDENCE_TOLERANCE = 1.0 / 255.0
#: logit differences below this are raised to it before exp: exp(-80) is still a normal
#: float32 (no denormal slow path) and adds nothing a confidence in 1/255 steps could show
EXP_FLOOR = -80.0
#: above this fraction of pixels needing exact values, every class plane is resized instead
DENSE_ABOVE = 0.15  # measured crossover at 720p: about 0.2


def segment(logits: np.ndarray, ys, xs) -> Tuple[np.ndarray, np.ndarray]:
    """Argmax class (uint8) and its softmax probability (float32) of the resized logits.

    `logits` is (C, h, w); `ys` / `xs` are `_axis` samplings (i0, i1, frac) of the output rows
    and columns. A grid cell (four neighbouring logit pixels) whose corners share the argmax
    class k gives every pixel inside class k (the interpolated logits are a convex combination).
    Its probability 1 / sum_j exp(v_j - v_k) then lies between 1 / sum_j max_corners
    exp(l_j - l_k) and 1 / sum_j min_corners exp(l_j - l_k) (each exp(v_j - v_k) is a weighted
    geometric mean of the corners' values), and so do the corners' own probabilities and their
    bilinear interpolation: where that interval is narrower than CONFIDENCE_TOLERANCE the
    interpolation is used. Every other pixel gets its C interpolated logits, argmax and softmax.
    Class planes are walked one at a time (contiguous, vectorised; no (h, w, C) transpose).
    """
    y0, y1, fy = ys
    x0, x1, fx = xs
    r0, r1 = int(y0.min()), int(y1.max()) + 1
    c0, c1 = int(x0.min()), int(x1.max()) + 1
    grid = np.ascontiguousarray(logits[:, r0:r1, c0:c1], dtype=np.float32)
    y0, y1, x0, x1 = y0 - r0, y1 - r0, x0 - c0, x1 - c0
    label, prob, easy = _grid_cells(grid)
    hard = ~easy[y0][:, x0]
    if hard.mean() > DENSE_ABOVE and _plain_resize(ys, xs, grid.shape[1:]):
        return _dense(grid, (len(y0), len(x0)))
    mask = label[y0][:, x0]
    rows = prob[y0] * (1.0 - fy)[:, None] + prob[y1] * fy[:, None]
    conf = rows[:, x0] * (1.0 - fx) + rows[:, x1] * fx
    by, bx = np.nonzero(hard)
    if by.size:
        w = grid.shape[2]
        wy, wx = fy[by], fx[bx]
        corners = ((y0[by] * w + x0[bx], (1.0 - wy) * (1.0 - wx)),
                   (y0[by] * w + x1[bx], (1.0 - wy) * wx),
                   (y1[by] * w + x0[bx], wy * (1.0 - wx)),
                   (y1[by] * w + x1[bx], wy * wx))
        flat = grid.reshape(grid.shape[0], -1)
        values = np.empty((grid.shape[0], by.size), np.float32)
        tmp = np.empty(by.size, np.float32)
        for c in range(grid.shape[0]):
            v = values[c]
            np.multiply(flat[c].take(corners[0][0]), corners[0][1], out=v)
            for index, weight in corners[1:]:
                np.multiply(flat[c].take(index), weight, out=tmp)
                v += tmp
        k, p = _argmax_softmax(values)
        mask[by, bx] = k
        conf[by, bx] = p
    return mask, conf.astype(np.float32, copy=False)


def _plain_resize(ys, xs, grid_hw) -> bool:
    """Whether the samplings are cv2.resize(INTER_LINEAR)'s of the whole cropped grid.

    True when the crop lies on whole logit pixels: then cv2's float bilinear (half-pixel
    centres, edges clamped) samples exactly where `_axis` does.
    """
    for (i0, i1, frac), n_in in zip((ys, xs), grid_hw):
        n_out = len(i0)
        pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        want = np.minimum(np.floor(pos).astype(np.int64), n_in - 1)
        if not (np.array_equal(want, i0 - i0.min())
                and np.allclose(pos - want, frac, atol=1e-5)):
            return False
    return True


def _dense(grid: np.ndarray, out_hw: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Resize every class plane (cv2, float bilinear); argmax and softmax in two passes.

    Each plane is resized twice into one buffer rather than kept (C full-size planes would be
    allocated per frame, which costs more than the second resize).
    """
    size = (out_hw[1], out_hw[0])
    top = cv2.resize(grid[0], size, interpolation=cv2.INTER_LINEAR)
    label = np.zeros(out_hw, np.uint8)
    buf = np.empty(out_hw, np.float32)
    better = np.empty(out_hw, np.uint8)
    for c in range(1, grid.shape[0]):
        cv2.resize(grid[c], size, buf, interpolation=cv2.INTER_LINEAR)
        cv2.compare(buf, top, cv2.CMP_GT, better)  # 255 where strictly greater
        cv2.bitwise_and(better, c, better)
        cv2.max(label, better, label)  # classes ascend: c beats every label set so far
        cv2.max(top, buf, top)
    total = np.zeros(out_hw, np.float32)
    for c in range(grid.shape[0]):
        cv2.resize(grid[c], size, buf, interpolation=cv2.INTER_LINEAR)
        cv2.subtract(buf, top, buf)
        cv2.max(buf, EXP_FLOOR, buf)
        cv2.exp(buf, buf)
        cv2.add(total, buf, total)
    return label, np.divide(1.0, total, out=total)


def _running_argmax(planes) -> Tuple[np.ndarray, np.ndarray]:
    """(argmax uint8, first index on ties; the max) of 2-D float32 planes, with cv2 ops.

    Classes ascend, so "class c where plane c beats the running max" is max(label, mask & c);
    cv2's element-wise ops run several times faster than numpy's boolean assignment here.
    """
    top = planes[0].copy()
    label = np.zeros(top.shape, np.uint8)
    for c in range(1, len(planes)):
        better = cv2.compare(planes[c], top, cv2.CMP_GT)  # 255 where strictly greater
        cv2.max(label, cv2.bitwise_and(better, c), label)
        cv2.max(top, planes[c], top)
    return label, top


def _softmax_of_top(planes, top: np.ndarray) -> np.ndarray:
    """1 / sum_c exp(plane_c - top): the softmax probability of the max, float32."""
    total = np.zeros(top.shape, np.float32)
    tmp = np.empty(top.shape, np.float32)
    for plane in planes:
        cv2.subtract(plane, top, tmp)
        cv2.max(tmp, EXP_FLOOR, tmp)
        cv2.exp(tmp, tmp)
        cv2.add(total, tmp, total)
    return np.divide(1.0, total, out=total)


def _cell_view(a: np.ndarray):
    """Return the four corners of every cell (edge rows / columns repeated) as (h, w) views."""
    pad = np.pad(a, ((0, 1), (0, 1)), mode='edge')
    return pad[:-1, :-1], pad[1:, :-1], pad[:-1, 1:], pad[1:, 1:]


def _grid_cells(grid: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(argmax, its probability, cell interpolable) on the (C, h, w) logit grid.

    A cell (indexed by its top-left corner) is interpolable when its corners share the class
    and the probability bounds of segment()'s docstring are within CONFIDENCE_TOLERANCE.
    """
    label, top = _running_argmax(grid)
    total = np.zeros(top.shape, np.float32)
    low = np.zeros(top.shape, np.float32)   # sum_j min over the cell's corners of exp(l_j - top)
    high = np.zeros(top.shape, np.float32)  # sum_j max ...
    e = np.empty(top.shape, np.float32)
    lo4 = np.empty(top.shape, np.float32)
    hi4 = np.empty(top.shape, np.float32)
    for c in range(grid.shape[0]):
        cv2.subtract(grid[c], top, e)
        cv2.max(e, EXP_FLOOR, e)
        cv2.exp(e, e)
        cv2.add(total, e, total)
        a, b, d, f = _cell_view(e)
        np.minimum(np.minimum(a, b, out=lo4), np.minimum(d, f), out=lo4)
        np.maximum(np.maximum(a, b, out=hi4), np.maximum(d, f), out=hi4)
        cv2.add(low, lo4, low)
        cv2.add(high, hi4, high)
    prob = np.divide(1.0, total, out=total)
    a, b, d, f = _cell_view(label)
    easy = (a == b) & (a == d) & (a == f)
    easy &= (1.0 / low - 1.0 / high) <= CONFIDENCE_TOLERANCE
    return label, prob, easy


def _argmax_softmax(planes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(argmax over axis 0 as uint8, first index on ties; its softmax probability, float32)."""
    label, top = _running_argmax(planes)
    return label, _softmax_of_top(planes, top)


def semantic_seg(inputs, outputs, metadata=None, **params) -> SemanticSegAdapter:
    return SemanticSegAdapter(inputs, outputs, metadata, **params)


__all__ = ['SemanticSegAdapter', 'SegMeta', 'is_segmentation_output',
           'is_segmentation_signature', 'segment', 'RESIZE_MODES', 'STRIDES']
