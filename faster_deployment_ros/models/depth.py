"""Monocular depth adapter: Depth Anything V2 and MiDaS-style models, a DepthMap at source size.

Pre-processing is the references' own transform (MiDaS' `Resize`/`NormalizeImage`, which Depth
Anything V2 reuses): RGB / 255 as float, resized with bicubic interpolation *in float* (resizing
the uint8 image instead rounds and clips the cubic overshoot), ImageNet mean/std. A fixed-size
input is filled exactly (what both references do for fixed-size networks); a dynamic one gets
the reference's aspect-keeping size: Depth Anything V2 the `lower_bound` of input_size (518) in
multiples of 14, MiDaS the `upper_bound` of input_size in multiples of 32.

The network's map goes back to the source resolution as the reference does it: Depth Anything
V2's `infer_image` with bilinear, align_corners=True (done here exactly, in numpy: OpenCV's
remap/warp quantise the weights to 1/32); MiDaS' run.py with bicubic, align_corners=False
(= cv2.resize INTER_CUBIC).

Depth kinds. A relative model (Depth Anything V2's and MiDaS' released models) gives relative
inverse depth: larger is nearer, no unit. A metric model (Depth Anything V2's metric_depth
models: Hypersim indoor, max_depth 20; Virtual KITTI outdoor, max_depth 80) gives metres. The
model says which in its ONNX metadata: `depth_kind` (`metric`, or `relative`) and, for metric
models, `max_depth` (metres; informational). `output` picks what the adapter returns:

- `auto` (default): `metric` when the metadata says `depth_kind: metric`, else
  `relative_inverse`.
- `relative_inverse`: the model's output as it is. Refused for a model whose metadata says
  metric (its output is metres, not relative).
- `metric_from_inverse`: metres = 1 / (depth_scale * out + depth_shift) from a relative model,
  with a scale / shift fitted for the camera; non-positive denominators give NaN (REP 118's
  "invalid"). Needs depth_scale; refused for a metric model.
- `metric`: metres = out * depth_scale. Without a depth_scale (None) the scale is 1 and the
  metadata must say `depth_kind: metric`: a model that says `relative` is refused, and so is one
  without `depth_kind`, since nothing then says its output is metres: give depth_scale (1.0
  for a metric export without the metadata) to state it.

So a relative model never yields metres unless the user supplies the scale.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from .base import as_bgr_u8, ModelAdapter
from ..core.options import parse_bool
from ..core.types import DepthMap, static_dim, TensorSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
UPSAMPLING = ('bilinear_align_corners', 'bicubic', 'bilinear')
OUTPUTS = ('auto', 'relative_inverse', 'metric_from_inverse', 'metric')
#: metadata `depth_kind` values -> what the model's output is
DEPTH_KINDS = {'metric': 'metric', 'relative': 'relative_inverse',
               'relative_inverse': 'relative_inverse'}

# family -> the reference's conventions
PRESETS = {
    'depth_anything_v2': {'input_size': 518, 'multiple_of': 14, 'resize_method': 'lower_bound',
                          'upsampling': 'bilinear_align_corners'},
    'midas': {'input_size': 384, 'multiple_of': 32, 'resize_method': 'upper_bound',
              'upsampling': 'bicubic'},
}


class DepthKindError(ValueError):
    """The requested depth output contradicts the model's depth kind; the message says the fix."""


@dataclass(frozen=True)
class DepthMeta:
    src_w: int
    src_h: int


def constrain_to_multiple_of(x: float, multiple: int, min_val: int = 0,
                             max_val: Optional[int] = None) -> int:
    """Round as MiDaS' Resize.constrain_to_multiple_of does (np.round: halves to even)."""
    y = int(np.round(x / multiple) * multiple)
    if max_val is not None and y > max_val:
        y = int(np.floor(x / multiple) * multiple)
    if y < min_val:
        y = int(np.ceil(x / multiple) * multiple)
    return y


def reference_size(src_hw: Tuple[int, int], size_hw: Tuple[int, int], multiple_of: int,
                   resize_method: str, keep_aspect_ratio: bool = True) -> Tuple[int, int]:
    """(h, w) the reference Resize picks for a `src_hw` image and target `size_hw`."""
    height, width = src_hw
    scale_h, scale_w = size_hw[0] / height, size_hw[1] / width
    if keep_aspect_ratio:
        if resize_method == 'lower_bound':
            scale_h = scale_w = max(scale_h, scale_w)
        elif resize_method == 'upper_bound':
            scale_h = scale_w = min(scale_h, scale_w)
        elif resize_method == 'minimal':
            scale_h = scale_w = scale_w if abs(1 - scale_w) < abs(1 - scale_h) else scale_h
        else:
            raise ValueError(f'resize_method {resize_method!r} not known')
    if resize_method == 'lower_bound':
        kw = [{'min_val': size_hw[0]}, {'min_val': size_hw[1]}]
    elif resize_method == 'upper_bound':
        kw = [{'max_val': size_hw[0]}, {'max_val': size_hw[1]}]
    else:
        kw = [{}, {}]
    return (constrain_to_multiple_of(scale_h * height, multiple_of, **kw[0]),
            constrain_to_multiple_of(scale_w * width, multiple_of, **kw[1]))


def _align_corners_axis(n_in: int, n_out: int):
    if n_in == 1 or n_out == 1:
        pos = np.zeros(n_out)
    else:
        pos = np.arange(n_out) * ((n_in - 1) / (n_out - 1))
    i0 = np.minimum(np.floor(pos).astype(np.int64), max(n_in - 2, 0))
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = (pos - i0).astype(np.float32)
    return i0, i1, frac


def resize_bilinear_align_corners(x: np.ndarray, out_hw: Tuple[int, int]) -> np.ndarray:
    """torch.nn.functional.interpolate(bilinear, align_corners=True) of a 2-D map, float32."""
    x = np.asarray(x, np.float32)
    y0, y1, fy = _align_corners_axis(x.shape[0], out_hw[0])
    x0, x1, fx = _align_corners_axis(x.shape[1], out_hw[1])
    fy = fy[:, None]
    rows = x[y0] * (1 - fy) + x[y1] * fy
    return rows[:, x0] * (1 - fx) + rows[:, x1] * fx


class DepthAdapter(ModelAdapter):
    """Relative (or metric) monocular depth: one (1, 3, H, W) input, one depth map output.

    The output is (1, H, W) or (1, 1, H, W).

    Params: input_size (dynamic inputs: target size, int or (h, w); default the preset's or
    metadata `net_size`/`imgsz`), keep_aspect_ratio (True, dynamic inputs only), multiple_of,
    resize_method, upsampling (one of UPSAMPLING), mean / std (ImageNet), output (one of
    OUTPUTS; the module docstring gives the rule), depth_scale (None: not given), depth_shift
    (0.0). After construction `output` is the resolved kind (never `auto`), `depth_kind` the
    metadata's (None without), `max_depth` the metadata's (None without).
    """

    task = 'depth'

    def __init__(self, inputs: List[TensorSpec], outputs: List[TensorSpec],
                 metadata: Optional[Mapping[str, str]] = None, *, family: str = 'depth',
                 input_size: Any = None, keep_aspect_ratio: Any = True,
                 multiple_of: Optional[int] = None, resize_method: Optional[str] = None,
                 upsampling: Optional[str] = None, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, output: str = 'auto',
                 depth_scale: Optional[float] = None, depth_shift: float = 0.0) -> None:
        metadata = dict(metadata or {})
        self.family = family if family in PRESETS else depth_preset(inputs, metadata)
        preset = PRESETS[self.family]
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError('depth models take one NCHW image input, got '
                             f'{[i.shape for i in inputs]}')
        if len(outputs) < 1 or not is_depth_signature(inputs, outputs[:1]):
            raise ValueError(f'depth models give a (1, H, W) or (1, 1, H, W) output at the input '
                             f'resolution, got {[o.shape for o in outputs]} for {inputs[0].shape}')
        shape = inputs[0].shape
        if static_dim(shape[1]) not in (None, 3):
            raise ValueError(f'depth models take 3 input channels, model input is {shape}')
        self.input_dtype = np.dtype(inputs[0].dtype)
        hw = (static_dim(shape[2]), static_dim(shape[3]))
        self.fixed_size = (int(hw[0]), int(hw[1])) if None not in hw else None
        if input_size is None:
            input_size = metadata.get('net_size') or metadata.get('imgsz') or preset['input_size']
        self.target_size = _size_hw(input_size)
        self.keep_aspect_ratio = parse_bool(keep_aspect_ratio, 'keep_aspect_ratio',
                                            default=False)
        self.multiple_of = int(multiple_of or preset['multiple_of'])
        self.resize_method = resize_method or preset['resize_method']
        if self.resize_method not in ('lower_bound', 'upper_bound', 'minimal'):
            raise ValueError(f'resize_method {self.resize_method!r}: lower_bound, upper_bound, '
                             'minimal')
        self.upsampling = upsampling or preset['upsampling']
        if self.upsampling not in UPSAMPLING:
            raise ValueError(f'upsampling must be one of {", ".join(UPSAMPLING)}')
        self.depth_kind, self.max_depth = metadata_depth_kind(metadata)
        self.output = resolve_output(output, self.depth_kind, depth_scale)
        self.depth_scale = 1.0 if depth_scale is None else float(depth_scale)
        self.depth_shift = float(depth_shift)
        mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        # out = (rgb / 255 - mean) / std = rgb * a + b, per channel
        self._a = (1.0 / (255.0 * std)).astype(np.float32)
        self._b = (-mean / std).astype(np.float32)

    def network_size(self, src_hw: Tuple[int, int]) -> Tuple[int, int]:
        if self.fixed_size is not None:
            return self.fixed_size
        return reference_size(src_hw, self.target_size, self.multiple_of, self.resize_method,
                              self.keep_aspect_ratio)

    def preprocess(self, image: np.ndarray) -> Tuple[List[np.ndarray], DepthMeta]:
        image = as_bgr_u8(image, 'depth')
        src_h, src_w = image.shape[:2]
        h, w = self.network_size((src_h, src_w))
        resized = cv2.resize(image.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        tensor = np.empty((1, 3, h, w), self.input_dtype)
        for c in range(3):  # RGB plane c is BGR channel 2 - c
            np.multiply(resized[:, :, 2 - c], self._a[c], out=tensor[0, c], casting='unsafe')
            tensor[0, c] += self._b[c]
        return [tensor], DepthMeta(src_w, src_h)

    def postprocess(self, outputs: Sequence[np.ndarray], meta: DepthMeta) -> DepthMap:
        pred = np.asarray(outputs[0], np.float32)
        if pred.ndim < 2 or int(np.prod(pred.shape[:-2])) != 1:
            raise ValueError(f'depth postprocess handles one (H, W) map, got {pred.shape}')
        pred = pred.reshape(pred.shape[-2:])
        size = (meta.src_h, meta.src_w)
        if pred.shape == size:
            depth = pred.copy()
        elif self.upsampling == 'bilinear_align_corners':
            depth = resize_bilinear_align_corners(pred, size)
        else:
            interp = cv2.INTER_CUBIC if self.upsampling == 'bicubic' else cv2.INTER_LINEAR
            depth = cv2.resize(pred, (meta.src_w, meta.src_h), interpolation=interp)
        if self.output == 'relative_inverse':
            return DepthMap(depth, 'relative_inverse')
        if self.output == 'metric':
            if self.depth_scale != 1.0:
                depth *= np.float32(self.depth_scale)
            return DepthMap(depth, 'metric')
        denom = depth * np.float32(self.depth_scale) + np.float32(self.depth_shift)
        with np.errstate(divide='ignore', invalid='ignore'):
            metric = np.where(denom > 0, np.float32(1.0) / denom, np.float32(np.nan))
        return DepthMap(metric.astype(np.float32, copy=False), 'metric')


def metadata_depth_kind(metadata: Mapping[str, str]) -> Tuple[Optional[str], Optional[float]]:
    """(kind, max_depth) from the metadata: kind 'metric' / 'relative_inverse' / None (absent).

    A `depth_kind` other than metric / relative, or a `max_depth` that is not a positive number,
    is an error naming the key: a model that states its kind must state it clearly.
    """
    raw = metadata.get('depth_kind')
    kind = None
    if raw is not None:
        kind = DEPTH_KINDS.get(str(raw).strip().lower())
        if kind is None:
            raise DepthKindError(f'model metadata depth_kind={raw!r} is not understood: it '
                                 "must be metric or relative (fix the export's metadata)")
    max_depth = None
    if metadata.get('max_depth') not in (None, ''):
        try:
            max_depth = float(metadata['max_depth'])
        except ValueError:
            max_depth = -1.0
        if not (max_depth > 0 and np.isfinite(max_depth)):
            raise DepthKindError(f'model metadata max_depth={metadata["max_depth"]!r} is not a '
                                 "positive number of metres (fix the export's metadata)")
    return kind, max_depth


def resolve_output(output: str, kind: Optional[str], depth_scale: Optional[float]) -> str:
    """Return the output the adapter gives for `output`, the model's `kind` and depth_scale.

    Raises DepthKindError (a ValueError, saying how to fix it) where the request contradicts
    the model's stated kind or would turn a relative model's output into metres without a
    user-supplied scale.
    """
    if output not in OUTPUTS:
        raise DepthKindError(f'output must be one of {", ".join(OUTPUTS)}, not {output!r}')
    if depth_scale is not None and not float(depth_scale) > 0:
        raise DepthKindError(f'depth_scale must be > 0, not {depth_scale}')
    if output == 'auto':
        return 'metric' if kind == 'metric' else 'relative_inverse'
    if kind == 'metric' and output != 'metric':
        raise DepthKindError(
            f'depth_output {output} contradicts the model: its metadata says depth_kind: '
            'metric (its output is metres already); use depth_output auto or metric')
    if output == 'metric_from_inverse' and depth_scale is None:
        raise DepthKindError(
            'depth_output metric_from_inverse needs depth_scale (and depth_shift) fitted for '
            'the camera: metres = 1 / (depth_scale * out + depth_shift); set them, or use '
            'depth_output auto / relative_inverse')
    if output == 'metric' and kind == 'relative_inverse':
        raise DepthKindError(
            'depth_output metric contradicts the model: its metadata says depth_kind: relative '
            '(relative inverse depth, no unit); use metric_from_inverse with depth_scale / '
            'depth_shift fitted for the camera, or a metric model')
    if output == 'metric' and kind is None and depth_scale is None:
        raise DepthKindError(
            'depth_output metric: the model has no depth_kind metadata, so nothing says its '
            'output is metres. For a metric model (e.g. Depth Anything V2 metric_depth) set '
            'depth_scale: 1.0 to state it (or export it with metadata depth_kind: metric); for '
            'a relative model use metric_from_inverse with depth_scale / depth_shift fitted')
    return output


def is_depth_output(shape: Sequence[Any]) -> bool:
    """(1, H, W) or (1, 1, H, W) with H, W unknown or > 1 (a dense map, not a vector)."""
    dims = list(shape)
    if len(dims) == 4:
        if static_dim(dims[1]) not in (None, 1):
            return False
        dims = [dims[0]] + dims[2:]
    if len(dims) != 3 or static_dim(dims[0]) not in (None, 1):
        return False
    return all(static_dim(d) is None or d > 16 for d in dims[1:])


def is_depth_signature(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> bool:
    """Tell whether the signature is one image in, one dense map out at the image's aspect.

    The map is at the input's resolution or a fixed fraction of it, same in both axes; a
    (1, 1, H, W) output always counts. Detection heads such as (1, 3549, 85) have a
    (1, H, W)-like shape too, but not the input's aspect.
    """
    if len(outputs) != 1 or len(inputs) != 1 or len(inputs[0].shape) != 4:
        return False
    shape = list(outputs[0].shape)
    if not is_depth_output(shape):
        return False
    if len(shape) == 4:
        return True
    in_hw = [static_dim(d) for d in inputs[0].shape[2:]]
    out_hw = [static_dim(d) for d in shape[1:]]
    if None in in_hw or None in out_hw:
        return None in in_hw and all(d is None for d in out_hw)  # dynamic map, dynamic image
    return out_hw[0] * in_hw[1] == out_hw[1] * in_hw[0] and in_hw[0] % out_hw[0] == 0


def depth_preset(inputs: Sequence[TensorSpec], metadata: Mapping[str, str]) -> str:
    """'depth_anything_v2' or 'midas' from metadata, else the input size's multiple."""
    text = ' '.join(str(v) for v in metadata.values()).lower()
    if 'depth_anything' in text or 'depth anything' in text or 'depthanything' in text:
        return 'depth_anything_v2'
    if 'midas' in text or 'dpt' in text:
        return 'midas'
    hw = [static_dim(d) for d in inputs[0].shape[2:]] if inputs else []
    if hw and None not in hw:
        if all(d % 14 == 0 for d in hw) and not all(d % 32 == 0 for d in hw):
            return 'depth_anything_v2'
        if all(d % 32 == 0 for d in hw):
            return 'midas'
    return 'depth_anything_v2'


def _size_hw(value: Any) -> Tuple[int, int]:
    if isinstance(value, str):
        parts = [int(p) for p in value.strip('[]() ').replace('x', ',').split(',') if p.strip()]
        value = parts if len(parts) > 1 else parts[0]
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    h, w = (int(v) for v in value)
    return h, w


def depth_anything_v2(inputs, outputs, metadata=None, **params) -> DepthAdapter:
    return DepthAdapter(inputs, outputs, metadata, family='depth_anything_v2', **params)


def midas(inputs, outputs, metadata=None, **params) -> DepthAdapter:
    return DepthAdapter(inputs, outputs, metadata, family='midas', **params)


__all__ = ['DepthAdapter', 'depth_anything_v2', 'midas', 'is_depth_output', 'is_depth_signature',
           'depth_preset', 'reference_size', 'resize_bilinear_align_corners', 'PRESETS', 'OUTPUTS',
           'UPSAMPLING', 'DEPTH_KINDS', 'DepthKindError', 'metadata_depth_kind', 'resolve_output']
