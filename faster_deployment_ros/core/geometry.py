"""Pinhole geometry (numpy only): depth images to points, 2D boxes to 3D boxes.

`CameraModel` holds what depth_image_proc reads from a sensor_msgs/CameraInfo through
image_geometry's PinholeCameraModel: fx, fy, cx, cy of the projection matrix P (K when P is
unset), adjusted for binning and ROI, and the size of the image they describe.

Distortion is ignored, on purpose and as depth_image_proc's point_cloud_xyz does: the formula
holds for a rectified (undistorted) image, and depth_image_proc expects `image_rect`. A depth map
from a monocular model follows the pixels of the frame it was given, so feed the rectified image
(image_proc's rectify) when the lens distorts noticeably; `CameraModel.has_distortion` says when
the CameraInfo carries non-zero coefficients, for a warning.

Pixel conventions: a depth pixel (u, v) sits at the integer coordinates (u, v) of the camera
model (CameraInfo / OpenCV: pixel centres at integers). 2D boxes are detector boxes, edges in
source pixels with pixel i spanning [i, i + 1): a box over pixels 10..19 is x1 = 10, x2 = 20, and
its centre (15.0 in box coordinates) is the camera model's 14.5.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any, Optional, Sequence, Tuple

import numpy as np

#: 16UC1 depth is millimetres (REP 118); depth_image_proc converts with a float32 0.001.
MM_TO_M = np.float32(0.001)


@dataclass(frozen=True)
class CameraModel:
    """Pinhole intrinsics of the image they describe (after binning and ROI), in pixels.

    `width` / `height`: the size of the images these intrinsics apply to; `distortion`: the
    CameraInfo's D, kept only to report `has_distortion` (see the module docstring).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    frame_id: str = ''
    distortion: Tuple[float, ...] = ()

    def __post_init__(self) -> None:
        bad = [n for n in ('fx', 'fy') if not (math.isfinite(getattr(self, n))
                                               and getattr(self, n) > 0)]
        bad += [n for n in ('cx', 'cy') if not math.isfinite(getattr(self, n))]
        if bad:
            raise ValueError(
                f'camera model has unusable {", ".join(bad)} (fx={self.fx}, fy={self.fy}, '
                f'cx={self.cx}, cy={self.cy}): an uncalibrated camera publishes a CameraInfo '
                'with zero K and P; calibrate it (camera_calibration) or publish its intrinsics')
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f'camera model image size {self.width}x{self.height}: the '
                             'CameraInfo must give the image width and height')

    @classmethod
    def from_k(cls, k: Sequence[float], width: int, height: int, frame_id: str = '',
               distortion: Sequence[float] = ()) -> 'CameraModel':
        """From a row-major 3x3 K (9 values or a 3x3 array) and the image size."""
        k = np.asarray(k, np.float64).reshape(3, 3)
        return cls(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]), int(width),
                   int(height), frame_id, tuple(float(d) for d in distortion))

    @classmethod
    def from_camera_info(cls, info: Any) -> 'CameraModel':
        """From a sensor_msgs/CameraInfo (or any object with its fields), as image_geometry does.

        fx, fy, cx, cy come from P (the rectified image's projection, what depth_image_proc
        uses); a CameraInfo whose P is all zeros (some drivers fill only K) falls back to K.
        Binning divides the focal lengths and the principal point, an ROI shifts the principal
        point, and the image size is the ROI's (or the full size) divided by the binning.
        """
        p = np.asarray(info.p, np.float64).reshape(3, 4)
        k = np.asarray(info.k, np.float64).reshape(3, 3)
        m = p[:, :3] if p[0, 0] != 0.0 else k
        bx, by = max(1, int(info.binning_x)), max(1, int(info.binning_y))
        roi = info.roi
        full = (int(info.width), int(info.height))
        if roi.x_offset == roi.y_offset == roi.width == roi.height == 0:
            size = full
        else:
            size = (int(roi.width) or full[0], int(roi.height) or full[1])
        header = getattr(info, 'header', None)
        return cls(float(m[0, 0]) / bx, float(m[1, 1]) / by,
                   (float(m[0, 2]) - roi.x_offset) / bx, (float(m[1, 2]) - roi.y_offset) / by,
                   size[0] // bx, size[1] // by,
                   getattr(header, 'frame_id', ''), tuple(float(d) for d in info.d))

    @property
    def has_distortion(self) -> bool:
        """The CameraInfo gives non-zero distortion coefficients (which are not applied)."""
        return any(d != 0.0 for d in self.distortion)

    def size_mismatch(self, width: int, height: int) -> Optional[str]:
        """None when an image of width x height fits this model, else why not (for a WARN)."""
        if (int(width), int(height)) == (self.width, self.height):
            return None
        return (f'the CameraInfo describes a {self.width}x{self.height} image but the image is '
                f'{int(width)}x{int(height)}: it belongs to another stream or resolution (or '
                'the depth is not registered to this camera)')

    def project(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) points in the optical frame -> (..., 2) pixel coordinates (u, v)."""
        points = np.asarray(points, np.float64)
        z = points[..., 2]
        return np.stack((self.fx * points[..., 0] / z + self.cx,
                         self.fy * points[..., 1] / z + self.cy), -1)


def _depth_kind(depth: np.ndarray, camera: CameraModel) -> str:
    if depth.ndim != 2:
        raise ValueError(f'depth must be one (H, W) map, got shape {depth.shape}')
    mismatch = camera.size_mismatch(depth.shape[1], depth.shape[0])
    if mismatch:
        raise ValueError(f'depth image and camera model differ: {mismatch}')
    if depth.dtype == np.uint16:
        return '16UC1'
    if depth.dtype in (np.float32, np.float64):
        return '32FC1'
    raise ValueError(f'depth dtype {depth.dtype}: give uint16 millimetres (16UC1) or float32 '
                     'metres (32FC1)')


def depth_to_points(depth: np.ndarray, camera: CameraModel, stride: int = 1,
                    invalid_depth: float = 0.0) -> np.ndarray:
    """Return the organized (H', W', 3) float32 points of a depth image, in metres.

    depth_image_proc's point_cloud_xyz (`convertDepth`), value for value: with
    center = (cx, cy) and constant = unit_scaling / (fx, fy) rounded to float32 (unit_scaling
    1 for 32FC1 metres, float32 0.001 for 16UC1 millimetres),
    x = (u - center_x) * depth * constant_x, y likewise, z = depth in metres, all in float32 in
    that order. Invalid depth (0 in 16UC1, non-finite in 32FC1) gives NaN x, y, z, or, when
    `invalid_depth` (metres) is non-zero, is replaced by it as depth_image_proc's parameter of
    that name does. A float64 map is rounded to float32 first (32FC1 is float32).

    `stride` keeps every stride-th row and column, starting at 0: H' = ceil(H / stride); each
    kept point is exactly the full cloud's point for that pixel. The camera model must describe
    this depth image (ValueError otherwise, with `CameraModel.size_mismatch`'s reason).
    """
    kind = _depth_kind(depth, camera)
    stride = int(stride)
    if stride < 1:
        raise ValueError(f'stride must be >= 1, got {stride}')
    d = depth[::stride, ::stride]
    # Invalid depths become NaN (or invalid_depth) up front: NaN then carries through x, y, z.
    if kind == '16UC1':
        unit = float(MM_TO_M)  # the double of the float 0.001f, as DepthTraits gives it
        df = d.astype(np.float32)
        invalid = d == 0
        if invalid_depth != 0.0:
            fill = np.float32(np.uint16(np.float32(invalid_depth) * np.float32(1000.0)
                                        + np.float32(0.5)))
        else:
            fill = np.float32(np.nan)
        df[invalid] = fill
        z = df * MM_TO_M
    else:
        unit = 1.0
        df = d.astype(np.float32, copy=False)
        invalid = ~np.isfinite(df)
        if invalid.any():
            fill = np.float32(invalid_depth) if invalid_depth != 0.0 else np.float32(np.nan)
            df = np.where(invalid, fill, df)
        z = df
    kx, ky = np.float32(unit / camera.fx), np.float32(unit / camera.fy)
    du = np.arange(0, depth.shape[1], stride, dtype=np.float32) - np.float32(camera.cx)
    dv = np.arange(0, depth.shape[0], stride, dtype=np.float32) - np.float32(camera.cy)
    out = np.empty(d.shape + (3,), np.float32)
    tmp = np.multiply(du[None, :], df)  # contiguous products, then one interleaving copy each
    tmp *= kx
    out[..., 0] = tmp
    np.multiply(dv[:, None], df, out=tmp)
    tmp *= ky
    out[..., 1] = tmp
    out[..., 2] = z
    return out


@dataclass
class Boxes3D:
    """3D boxes of 2D detections, in metres in the camera's optical frame, one row per box.

    centers: (N, 3) float64, the centre of the box's visible front (x, y through the box centre,
    z the robust depth); sizes: (N, 3) float64 (width, height from the box extent at that depth;
    depth extent = interquartile range of the core's depths: the spread of the visible surface,
    0 for a flat front, a lower bound of the object's thickness); valid: (N,) bool; rows of
    invalid boxes are NaN. core_pixels: pixels sampled in each box's core (0: the box lies
    outside the image); depth_pixels: how many of them held a valid depth.
    """

    centers: np.ndarray
    sizes: np.ndarray
    valid: np.ndarray
    core_pixels: np.ndarray
    depth_pixels: np.ndarray

    def __len__(self) -> int:
        return len(self.valid)

    def reasons(self) -> list:
        """Why each box has no 3D box ('' for valid ones), for a log line."""
        out = []
        for ok, core, got in zip(self.valid.tolist(), self.core_pixels.tolist(),
                                 self.depth_pixels.tolist()):
            if ok:
                out.append('')
            elif core == 0:
                out.append('box outside the depth image')
            elif got == 0:
                out.append(f'no valid depth in the box core ({core} pixels)')
            else:
                out.append(f'too few valid depths in the box core ({got} of {core} pixels)')
        return out


def _core_range(lo: float, hi: float, fraction: float, n: int) -> Tuple[int, int]:
    """Pixel indices [i0, i1) whose centres (i + 0.5) lie in the central `fraction` of [lo, hi).

    At least the pixel holding the box centre, when that lies in the image; clipped to [0, n).
    """
    mid = 0.5 * (lo + hi)
    half = 0.5 * fraction * (hi - lo)
    i0, i1 = math.ceil(mid - half - 0.5), math.ceil(mid + half - 0.5)
    if i1 <= i0:
        i0 = math.floor(mid)
        i1 = i0 + 1
    return max(i0, 0), min(i1, n)


def _quantile(ordered: np.ndarray, q: float) -> float:
    """Return the q-quantile of sorted values, linear between neighbours (numpy's default)."""
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    a = float(ordered[lo])
    if lo + 1 == len(ordered):
        return a
    return a + (float(ordered[lo + 1]) - a) * (pos - lo)


def detections_to_3d(boxes: np.ndarray, depth: np.ndarray, camera: CameraModel,
                     core_fraction: float = 0.5, stride: int = 1,
                     min_valid_fraction: float = 0.0) -> Boxes3D:
    """Lift 2D boxes (N, 4: x1, y1, x2, y2 in source pixels) into 3D with an aligned depth map.

    Per box: the core is the central `core_fraction` of its width and height (the object,
    not the background at its corners); its depth is the median of the core's valid pixels
    (16UC1: non-zero, millimetres; 32FC1: finite and > 0, metres), sampled every `stride`-th
    row and column for large boxes. The centre is the box centre back-projected at that depth,
    x = (u - cx) * z / fx with u the centre in camera coordinates (box centre - 0.5, see the
    module docstring); width = (x2 - x1) * z / fx, height = (y2 - y1) * z / fy; the depth extent
    is the interquartile range of the core's depths. A box with no valid depth in its core (or
    fewer than `min_valid_fraction` of its core pixels), or outside the image, is not valid and
    its row is NaN: never a made-up depth. The camera model must describe this depth image
    (ValueError otherwise).
    """
    kind = _depth_kind(depth, camera)
    if not 0.0 < core_fraction <= 1.0:
        raise ValueError(f'core_fraction must lie in (0, 1], got {core_fraction}')
    if not 0.0 <= min_valid_fraction <= 1.0:
        raise ValueError(f'min_valid_fraction must lie in [0, 1], got {min_valid_fraction}')
    stride = int(stride)
    if stride < 1:
        raise ValueError(f'stride must be >= 1, got {stride}')
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(boxes)
    centers = np.full((n, 3), np.nan)
    sizes = np.full((n, 3), np.nan)
    valid = np.zeros(n, bool)
    core_pixels = np.zeros(n, np.int64)
    depth_pixels = np.zeros(n, np.int64)
    h, w = depth.shape
    unit = 0.001 if kind == '16UC1' else 1.0
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        if not all(map(math.isfinite, (x1, y1, x2, y2))) or x2 <= x1 or y2 <= y1:
            continue
        u0, u1 = _core_range(x1, x2, core_fraction, w)
        v0, v1 = _core_range(y1, y2, core_fraction, h)
        if u1 <= u0 or v1 <= v0:
            continue
        core = depth[v0:v1:stride, u0:u1:stride]
        core_pixels[i] = core.size
        if kind == '16UC1':
            z = core[core != 0]
        else:
            z = core[np.isfinite(core) & (core > 0)]
        depth_pixels[i] = z.size
        if z.size == 0 or z.size < min_valid_fraction * core.size:
            continue
        z.sort(kind='stable')  # own dtype (same order in metres); radix sort for uint16
        q1, med, q3 = (_quantile(z, q) * unit for q in (0.25, 0.5, 0.75))
        uc, vc = 0.5 * (x1 + x2) - 0.5, 0.5 * (y1 + y2) - 0.5
        centers[i] = ((uc - camera.cx) * med / camera.fx, (vc - camera.cy) * med / camera.fy,
                      med)
        sizes[i] = ((x2 - x1) * med / camera.fx, (y2 - y1) * med / camera.fy, q3 - q1)
        valid[i] = True
    return Boxes3D(centers, sizes, valid, core_pixels, depth_pixels)
