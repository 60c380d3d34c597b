"""Points and 3D boxes -> sensor_msgs/PointCloud2 and vision_msgs/Detection3DArray.

The cloud is organized (height x width of the strided depth image) with float32 x, y, z at
offsets 0, 4, 8 (point_step 12), or with `rgb` at offset 12 (point_step 16): the colour packed
as depth_image_proc's point_cloud_xyzrgb packs it, the bytes B, G, R, 0 of a little-endian
float32 field named rgb (RViz's and PCL's convention). depth_image_proc pads its xyzrgb points
to 32 bytes; readers go by the fields' offsets, so the layout differs only in size. NaN marks
invalid points, so is_dense is False. The data is the points array's bytes, no per-point work.

`point_cloud_cdr` gives the same message serialised (what rmw sends), for a raw publish: it
skips building the Python message and rclpy's conversion of an array of several MB.
"""
from __future__ import annotations

import struct
import sys
from typing import List, Optional, Sequence

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField
from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose

from ..core.geometry import Boxes3D
from ..core.types import Detections

#: Colour encodings `pack_rgb` takes -> the channel index of (R, G, B).
RGB_CHANNELS = {'rgb8': (0, 1, 2), 'rgba8': (0, 1, 2), 'bgr8': (2, 1, 0), 'bgra8': (2, 1, 0),
                'mono8': (0, 0, 0)}
_XYZ = (('x', 0), ('y', 4), ('z', 8))


def cloud_fields(with_rgb: bool = False) -> List[PointField]:
    """Return the PointFields of the cloud: x, y, z float32 (and rgb, float32 at 12)."""
    names = _XYZ + ((('rgb', 12),) if with_rgb else ())
    return [PointField(name=n, offset=o, datatype=PointField.FLOAT32, count=1)
            for n, o in names]


def pack_rgb(image: np.ndarray, encoding: str = 'bgr8', stride: int = 1) -> np.ndarray:
    """(H, W[, C]) uint8 colour image -> (H', W') float32 of packed rgb, every stride-th pixel.

    Bytes B, G, R, 0 per pixel (the uint32 0x00RRGGBB, little-endian), as depth_image_proc
    writes its "rgb" field (alpha left 0). `encoding`: rgb8, rgba8, bgr8, bgra8 or mono8.
    """
    if encoding not in RGB_CHANNELS:
        raise ValueError(f'colour encoding {encoding!r} for the cloud: convert the image to one '
                         f'of {", ".join(RGB_CHANNELS)}')
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f'colour image for the cloud must be uint8, got {img.dtype}')
    if img.ndim == 2:
        img = img[:, :, None]
    img = img[::int(stride), ::int(stride)]
    r, g, b = RGB_CHANNELS[encoding]
    packed = np.zeros(img.shape[:2] + (4,), np.uint8)
    packed[..., 0] = img[..., b]
    packed[..., 1] = img[..., g]
    packed[..., 2] = img[..., r]
    return packed.view('<f4')[..., 0]


def _cloud_array(points: np.ndarray, rgb: Optional[np.ndarray]) -> np.ndarray:
    """(H, W, 3|4) little-endian float32, contiguous: the cloud's data."""
    points = np.asarray(points)
    if points.ndim != 3 or points.shape[2] != 3:
        raise ValueError(f'points must be an organized (H, W, 3) array, got {points.shape}')
    if rgb is None:
        return np.ascontiguousarray(points, '<f4')
    rgb = np.asarray(rgb)
    if rgb.shape != points.shape[:2] or rgb.dtype != np.float32:
        raise ValueError(f"rgb must be the (H, W) float32 of pack_rgb at the points' size "
                         f'{points.shape[:2]}, got {rgb.dtype} {rgb.shape}')
    h, w = rgb.shape
    out = np.empty((h, w, 4), '<f4')
    # x, y, z as one 12-byte item per point: a third of the copy time of three float channels
    xyz = np.ndarray((h * w,), 'V12', out, 0, (16,))
    xyz[...] = np.ascontiguousarray(points, '<f4').reshape(-1, 3).view('V12')[:, 0]
    out[..., 3] = rgb
    return out


def point_cloud(points: np.ndarray, header, rgb: Optional[np.ndarray] = None) -> PointCloud2:
    """Organized PointCloud2 of (H, W, 3) points (metres, optical frame), header as given.

    `header`: the depth image's (stamp and optical frame); `rgb`: `pack_rgb` of the colour
    image at the same stride, or None for x, y, z only.
    """
    data = _cloud_array(points, rgb)
    h, w, c = data.shape
    msg = PointCloud2(header=header, height=h, width=w, fields=cloud_fields(rgb is not None),
                      is_bigendian=False, point_step=4 * c, row_step=4 * c * w, is_dense=False)
    buf = msg.data  # an empty array('B'): filled straight from the array's memory
    buf.frombytes(memoryview(data).cast('B'))
    return msg


def _cdr_string(out: bytearray, text: bytes) -> None:
    out += bytes(-(len(out) - 4) % 4)
    out += struct.pack('<I', len(text) + 1)
    out += text
    out += b'\x00'


def point_cloud_cdr(points: np.ndarray, header, rgb: Optional[np.ndarray] = None) -> bytes:
    """Return the serialised (CDR, little-endian) `point_cloud` message, for a raw publish."""
    assert sys.byteorder == 'little', 'point_cloud_cdr writes little-endian CDR'
    data = _cloud_array(points, rgb)
    h, w, c = data.shape
    out = bytearray(b'\x00\x01\x00\x00')  # encapsulation: plain CDR, little endian
    out += struct.pack('<iI', header.stamp.sec, header.stamp.nanosec)
    _cdr_string(out, header.frame_id.encode('utf-8'))
    out += bytes(-(len(out) - 4) % 4)
    fields = _XYZ + ((('rgb', 12),) if rgb is not None else ())
    out += struct.pack('<III', h, w, len(fields))
    for name, offset in fields:
        _cdr_string(out, name.encode())
        out += bytes(-(len(out) - 4) % 4)
        out += struct.pack('<IBxxxI', offset, PointField.FLOAT32, 1)
    out += b'\x00'  # is_bigendian
    out += bytes(-(len(out) - 4) % 4)
    out += struct.pack('<III', 4 * c, 4 * c * w, data.nbytes)
    return b''.join((out, memoryview(data).cast('B'), b'\x00'))  # data, is_dense False


def to_detection3d_array(boxes: Boxes3D, det: Detections, header,
                         class_id_mode: str = 'name',
                         ids: Optional[Sequence[str]] = None) -> Detection3DArray:
    """One Detection3D per valid 3D box of `det`, with the source image's header.

    bbox: centre (metres, optical frame), identity orientation, size (width, height, depth
    extent); one hypothesis (class name or index, score) whose pose is that centre too.
    Boxes without a valid depth are left out (`Boxes3D.valid`, `Boxes3D.reasons`); `ids`
    (tracking ids, one per detection) go to Detection3D.id.
    """
    if len(boxes) != len(det):
        raise ValueError(f'{len(boxes)} 3D boxes for {len(det)} detections: lift the same '
                         'detections')
    out = Detection3DArray(header=header)
    keep = np.flatnonzero(boxes.valid).tolist()
    if not keep:
        return out
    centers = boxes.centers.tolist()
    sizes = boxes.sizes.tolist()
    scores = det.scores.astype(np.float64).tolist()
    labels = det.names() if class_id_mode == 'name' else [str(i) for i in det.class_ids.tolist()]
    detections = []
    for i in keep:
        d = Detection3D(header=header)
        c, s = centers[i], sizes[i]
        pos = d.bbox.center.position
        pos.x, pos.y, pos.z = c
        size = d.bbox.size
        size.x, size.y, size.z = s
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = labels[i]
        hyp.hypothesis.score = scores[i]
        hpos = hyp.pose.pose.position
        hpos.x, hpos.y, hpos.z = c
        d.results = [hyp]
        if ids is not None:
            d.id = str(ids[i])
        detections.append(d)
    out.detections = detections
    return out
