"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge and without rclpy.

Works on plain fields (height, width, encoding, is_bigendian, step, data), so the same code
serves rclpy messages (``data`` is ``array.array('B')``), rosbags messages (``data`` is a uint8
ndarray) and raw buffers. Decoding returns zero-copy views whenever the byte order is native;
encoding into an rclpy message reuses the message's own buffer when the size is unchanged.
"""
from __future__ import annotations

import array as _array
import re
import sys
from typing import Any, Dict, List, NamedTuple, Optional, Tuple
import zlib

import cv2
import numpy as np

__all__ = [
    'ImageCodecError', 'ENCODINGS', 'encoding_info', 'image_to_numpy', 'msg_to_numpy',
    'numpy_to_image_fields', 'fill_image_msg', 'to_bgr8', 'to_8bit', 'decode_compressed',
    'encode_compressed', 'compressed_image_size', 'check_image_size', 'check_decoded_size',
    'jpeg_header', 'JpegHeader', 'JPEG_MAX_EXAMINED', 'JPEG_MAX_MARKERS', 'BitDepthHint',
]


class ImageCodecError(ValueError):
    """An image message that cannot be turned into an array (or the other way round).

    `examined`: for a JPEG refused by its header scan, how many bytes the scan looked at.
    """

    examined: Optional[int] = None


# encoding -> (numpy dtype, channels)
ENCODINGS: Dict[str, Tuple[np.dtype, int]] = {
    'rgb8': (np.dtype(np.uint8), 3), 'bgr8': (np.dtype(np.uint8), 3),
    'rgba8': (np.dtype(np.uint8), 4), 'bgra8': (np.dtype(np.uint8), 4),
    'mono8': (np.dtype(np.uint8), 1),
    'rgb16': (np.dtype(np.uint16), 3), 'bgr16': (np.dtype(np.uint16), 3),
    'rgba16': (np.dtype(np.uint16), 4), 'bgra16': (np.dtype(np.uint16), 4),
    'mono16': (np.dtype(np.uint16), 1),
    # What camera drivers send (sensor_msgs image_encodings; to_bgr8 converts them as cv_bridge
    # does). YUV 4:2:2 packs two bytes per pixel: uyvy (alias yuv422) and yuyv (yuv422_yuy2).
    'yuv422': (np.dtype(np.uint8), 2), 'uyvy': (np.dtype(np.uint8), 2),
    'yuv422_yuy2': (np.dtype(np.uint8), 2), 'yuyv': (np.dtype(np.uint8), 2),
    # YUV 4:2:0 semi-planar: a full-size Y plane, then a half-height interleaved chroma plane;
    # height is the picture's, data holds step * height * 3 / 2 bytes (see _YUV420SP).
    'nv21': (np.dtype(np.uint8), 1), 'nv12': (np.dtype(np.uint8), 1),
    **{f'bayer_{p}{b}': (np.dtype(np.uint8 if b == 8 else np.uint16), 1)
       for p in ('rggb', 'bggr', 'gbrg', 'grbg') for b in (8, 16)},
}
_YUV420SP = ('nv21', 'nv12')
_CV_DEPTHS = {'8U': np.uint8, '8S': np.int8, '16U': np.uint16, '16S': np.int16,
              '32S': np.int32, '32F': np.float32, '64F': np.float64}
_CV_RE = re.compile(r'^(8U|8S|16U|16S|32S|32F|64F)C([1-4])$')
_NATIVE_BIG = sys.byteorder == 'big'


def encoding_info(encoding: str) -> Tuple[np.dtype, int]:
    """(dtype, channels) of a ROS image encoding; OpenCV-style '16UC1', '8UC3', ... included."""
    info = ENCODINGS.get(encoding)
    if info is not None:
        return info
    m = _CV_RE.match(encoding or '')
    if m:
        return np.dtype(_CV_DEPTHS[m.group(1)]), int(m.group(2))
    raise ImageCodecError(
        f'unsupported image encoding {encoding!r}; supported: {", ".join(ENCODINGS)} '
        'and OpenCV types like 8UC1, 8UC3, 16UC1, 32FC1')


def _as_uint8_buffer(data: Any) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else \
            np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a list of ints (rare: hand-built messages)
        return np.asarray(data, dtype=np.uint8)


def image_to_numpy(height: int, width: int, encoding: str, is_bigendian: int, step: int,
                   data: Any) -> np.ndarray:
    """Image fields -> (H, W) or (H, W, C) array.

    A view on ``data`` (no copy) unless the data is big-endian multi-byte, which is byteswapped
    into a native copy. Row padding (``step`` > width * pixel size) is skipped via strides, so the
    result may be non-contiguous; call ``np.ascontiguousarray`` if a consumer needs that.
    """
    dtype, channels = encoding_info(encoding)
    height, width, step = int(height), int(width), int(step)
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageCodecError(
            f'{encoding} image {width}x{height}: step {step} < width * pixel size {row_bytes}')
    buf = _as_uint8_buffer(data)
    planes = height
    if encoding in _YUV420SP:  # the chroma plane follows the Y plane: rows = height * 3 / 2
        if height % 2 or width % 2:
            raise ImageCodecError(f'{encoding} image {width}x{height}: width and height must '
                                  'be even (4:2:0 chroma is subsampled 2x2)')
        planes = height * 3 // 2
    need = step * planes
    if buf.size != need:
        raise ImageCodecError(
            f'{encoding} image {width}x{height} step {step}: data has {buf.size} bytes, '
            f'expected step * height{" * 3 / 2" if planes != height else ""} = {need}'
            + (' (truncated)' if buf.size < need else ''))
    height = planes  # nv12/nv21: the array holds both planes, (height * 3 / 2, width)
    if height == 0 or width == 0:
        shape = (height, width) if channels == 1 else (height, width, channels)
        return np.zeros(shape, dtype)
    rows = buf.reshape(height, step)[:, :row_bytes]
    big = bool(is_bigendian) and dtype.itemsize > 1
    src_dtype = dtype.newbyteorder('>') if big else dtype
    out = rows.view(src_dtype)
    out = out.reshape((height, width) if channels == 1 else (height, width, channels))
    if big and not _NATIVE_BIG:
        out = out.astype(dtype)  # the only copying path: big-endian data on a little-endian host
    return out


def msg_to_numpy(msg: Any) -> np.ndarray:
    """Duck-typed sensor_msgs/Image (rclpy or rosbags) -> array, see ``image_to_numpy``."""
    return image_to_numpy(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step,
                          msg.data)


def _check_array(array: np.ndarray, encoding: str) -> Tuple[np.ndarray, int, int, int]:
    dtype, channels = encoding_info(encoding)
    a = np.asarray(array)
    if a.dtype != dtype:
        if a.dtype.kind == dtype.kind and a.dtype.itemsize == dtype.itemsize:
            a = a.astype(dtype)  # same type, other byte order
        else:
            raise ImageCodecError(f'{encoding} needs dtype {dtype}, got {a.dtype}')
    if a.ndim == 2 and channels == 1:
        h, w = a.shape
        if encoding in _YUV420SP:  # (height * 3 / 2, width): both planes
            if h % 3 or w % 2 or (h // 3) % 2:
                raise ImageCodecError(f'{encoding} needs an array of shape (H * 3 / 2, W) with '
                                      f'H and W even, got {a.shape}')
            h = h // 3 * 2
    elif a.ndim == 3 and a.shape[2] == channels:
        h, w = a.shape[:2]
    else:
        want = '(H, W) or (H, W, 1)' if channels == 1 else f'(H, W, {channels})'
        raise ImageCodecError(f'{encoding} needs an array of shape {want}, got {a.shape}')
    return a, h, w, w * channels * dtype.itemsize


def numpy_to_image_fields(array: np.ndarray, encoding: str) -> Dict[str, Any]:
    """Array -> dict of Image fields.

    ``data`` is a flat uint8 ndarray (a view when the input is C-contiguous), which rosbags
    messages take as is; ``fill_image_msg`` handles rclpy.
    """
    a, h, w, step = _check_array(array, encoding)
    flat = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    return {'height': h, 'width': w, 'encoding': encoding, 'is_bigendian': 0, 'step': step,
            'data': flat}


def fill_image_msg(msg: Any, array: np.ndarray, encoding: str) -> Any:
    """Fill a duck-typed Image message in place (header untouched) and return it.

    For rclpy messages the existing ``array.array('B')`` buffer is overwritten in place when its
    size matches (one memcpy, no allocation: the way to publish multi-MB frames in a loop);
    otherwise a new ``array.array('B')`` is made with ``frombytes`` (rclpy's setter accepts it
    without its per-element checks). rosbags messages get a uint8 ndarray.
    """
    a, h, w, step = _check_array(array, encoding)
    msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step = h, w, encoding, 0, step
    old = getattr(msg, 'data', None)
    n = a.nbytes
    if isinstance(old, _array.array):
        if old.typecode == 'B' and len(old) == n:
            np.frombuffer(old, dtype=a.dtype).reshape(a.shape)[...] = a
            return msg
        buf = _array.array('B')
        buf.frombytes(np.ascontiguousarray(a).reshape(-1).view(np.uint8))
        msg.data = buf
    elif isinstance(old, np.ndarray):
        msg.data = np.ascontiguousarray(a).reshape(-1).view(np.uint8).copy()
    else:
        msg.data = np.ascontiguousarray(a).tobytes()
    return msg


_TO_BGR = {'rgb': cv2.COLOR_RGB2BGR, 'rgba': cv2.COLOR_RGBA2BGR, 'bgra': cv2.COLOR_BGRA2BGR,
           'mono': cv2.COLOR_GRAY2BGR,
           # cv_bridge's table (OpenCV names a pattern by its 2x2 block at row 1, column 1)
           'bayer_rggb': cv2.COLOR_BayerBG2BGR, 'bayer_bggr': cv2.COLOR_BayerRG2BGR,
           'bayer_gbrg': cv2.COLOR_BayerGR2BGR, 'bayer_grbg': cv2.COLOR_BayerGB2BGR}
_YUV_CODES = {'yuv422': cv2.COLOR_YUV2BGR_UYVY, 'uyvy': cv2.COLOR_YUV2BGR_UYVY,
              'yuv422_yuy2': cv2.COLOR_YUV2BGR_YUY2, 'yuyv': cv2.COLOR_YUV2BGR_YUY2,
              'nv21': cv2.COLOR_YUV2BGR_NV21, 'nv12': cv2.COLOR_YUV2BGR_NV12}
_TO_BGR.update(_YUV_CODES)
_ALIASES = {'8UC1': 'mono8', '8UC3': 'bgr8', '8UC4': 'bgra8', '16UC1': 'mono16',
            '16UC3': 'bgr16', '16UC4': 'bgra16'}


def to_8bit(array: np.ndarray, bit_depth: int = 16) -> np.ndarray:
    """Convert uint16 to uint8 as cv_bridge does, or by the sensor's bit depth.

    With `bit_depth` 16: convertTo with scale 255 / 65535, rounded and saturated (cv_bridge). A
    sensor that puts 10 or 12 significant bits in 16-bit words gives its depth, so its full range
    maps to 0..255 instead of the darkest 1/64 or 1/16.
    """
    if not 1 <= int(bit_depth) <= 16:
        raise ImageCodecError(f'bit_depth {bit_depth}: must lie in 1..16')
    return cv2.convertScaleAbs(array, alpha=255.0 / ((1 << int(bit_depth)) - 1))


def to_bgr8(array: np.ndarray, encoding: str, bit_depth: int = 16) -> np.ndarray:
    """Convert any image a camera driver sends to (H, W, 3) uint8 BGR, the models' layout.

    cv_bridge's conversions: the same OpenCV colour codes as cv_bridge's toCvShare(.., bgr8).
    bgr8 input comes back as is (no copy). 16-bit images (mono16, 16UC1, rgb16, 16-bit bayer)
    are scaled by `bit_depth` (see to_8bit; 16 is cv_bridge's convention); bayer images are
    demosaiced at their own depth first, as cv_bridge does. nv12/nv21 arrays hold both planes,
    (height * 3 / 2, width), as image_to_numpy returns them. Float and signed images have no
    canonical 8-bit mapping and raise ImageCodecError.
    """
    alias = _ALIASES.get(encoding, encoding)
    if alias not in ENCODINGS:
        raise ImageCodecError(f'cannot convert {encoding!r} to bgr8; supported: '
                              f'{", ".join(ENCODINGS)}, 8UC1/3/4, 16UC1/3/4')
    a, _, _, _ = _check_array(array, encoding)
    base = alias if alias in _TO_BGR else alias.rstrip('0123456789')
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if base.startswith('bayer_') or base in _YUV_CODES:  # colour first, at the source depth
        a = cv2.cvtColor(np.ascontiguousarray(a), _TO_BGR[base])
        return to_8bit(a, bit_depth) if a.dtype == np.uint16 else a
    if a.dtype == np.uint16:
        a = to_8bit(a, bit_depth)
    if base == 'bgr':
        return a
    return cv2.cvtColor(a, _TO_BGR[base])


class BitDepthHint:
    """Notices 16-bit frames whose values never use the bits `bit_depth` assumes, once.

    Cameras often put 10 or 12 significant bits in 16-bit words (mono16, 16UC1, bayer_*16);
    with `bit_depth: 16` (cv_bridge's scaling) such frames come out nearly black. `observe`
    looks at the maximum of the first `frames` 16-bit frames (one ``max`` each, nothing after)
    and then returns a hint string exactly once when the brightest value fits in fewer bits
    than `bit_depth` says (16 -> 10, 12 or 14), or exceeds it (values saturate to white);
    otherwise None. Call it from one thread (the pre-processing thread).
    """

    def __init__(self, frames: int = 30) -> None:
        self.frames = frames
        self.seen = 0
        self.peak = 0
        self.done = False

    def observe(self, array: np.ndarray, encoding: str, bit_depth: int = 16) -> Optional[str]:
        if self.done or array.dtype != np.uint16 or array.size == 0:
            return None
        self.peak = max(self.peak, int(array.max()))
        self.seen += 1
        if self.seen < self.frames:
            return None
        self.done = True
        bits = max(1, self.peak.bit_length())
        full = (1 << int(bit_depth)) - 1
        if self.peak == 0:
            return None
        if self.peak > full:
            return (f'{encoding} frames reach {self.peak} but bit_depth is {bit_depth} (up to '
                    f'{full}): brighter pixels saturate to white; set bit_depth: '
                    f'{max(bits, 8)} or more (16 for the full 16-bit range)')
        for depth in (10, 12, 14):
            if bits <= depth < int(bit_depth):
                return (f'{encoding} frames never exceed {self.peak} over the first '
                        f'{self.seen} frames ({bits} significant bits) but bit_depth is '
                        f'{bit_depth}: the image reaches only {100 * self.peak / full:.1f} % of '
                        f'the 8-bit range (nearly black); if the camera delivers {depth}-bit '
                        f'data, set bit_depth: {depth}')
        return None


def _decoded_encoding(img: np.ndarray) -> str:
    depth = {np.dtype(np.uint8): '8', np.dtype(np.uint16): '16'}.get(img.dtype)
    if depth is None:
        raise ImageCodecError(f'compressed image decoded to unsupported dtype {img.dtype}')
    if img.ndim == 2:
        return 'mono' + depth
    return {3: 'bgr', 4: 'bgra'}[img.shape[2]] + depth


_CONVERT = {('bgr8', 'rgb8'): cv2.COLOR_BGR2RGB, ('bgr8', 'mono8'): cv2.COLOR_BGR2GRAY,
            ('bgr8', 'bgra8'): cv2.COLOR_BGR2BGRA, ('bgr8', 'rgba8'): cv2.COLOR_BGR2RGBA,
            ('bgra8', 'rgba8'): cv2.COLOR_BGRA2RGBA, ('bgra8', 'bgr8'): cv2.COLOR_BGRA2BGR,
            ('bgra8', 'rgb8'): cv2.COLOR_BGRA2RGB, ('mono8', 'bgr8'): cv2.COLOR_GRAY2BGR,
            ('mono8', 'rgb8'): cv2.COLOR_GRAY2RGB}


def decode_compressed(compressed_format: str, data: Any,
                      max_pixels: Optional[int] = None) -> Tuple[np.ndarray, str]:
    """sensor_msgs/CompressedImage (format, data) -> (array, encoding).

    ``compressed_format`` follows image_transport ('rgb8; jpeg compressed bgr8') or is just
    'jpeg'/'png'.
    When it names an original encoding OpenCV can produce from the decoded image, the result is
    converted to it (so 'rgb8; ...' comes back rgb8); otherwise bgr8/bgra8/mono8/mono16.

    With `max_pixels` (0: no pixel limit) only JPEG and PNG are accepted, and the size is
    checked three times: read from the header the way the decoder reads it
    (``compressed_image_size``), refused over the limit before decoding, and checked again on
    the decoded image (``check_decoded_size``). None decodes whatever OpenCV reads, unchecked.
    """
    fmt = (compressed_format or '').strip()
    if 'compresseddepth' in fmt.lower().replace(' ', ''):
        raise ImageCodecError('compressedDepth images are not supported '
                              f'(format {compressed_format!r})')
    buf = _as_uint8_buffer(data)
    if buf.size == 0:
        raise ImageCodecError(f'empty compressed image (format {compressed_format!r})')
    header = None
    if max_pixels is not None:
        header = compressed_image_size(buf)
        check_image_size(header[1], header[2], max_pixels, f'{header[0]} image')
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # e.g. over OpenCV's own OPENCV_IO_MAX_IMAGE_PIXELS
        raise ImageCodecError(
            f'cannot decode compressed image: format {compressed_format!r}, {buf.size} bytes: '
            f'{str(exc).strip().splitlines()[-1]}') from exc
    if img is None:
        raise ImageCodecError(
            f'cannot decode compressed image: format {compressed_format!r}, {buf.size} bytes '
            f'starting {bytes(buf[:8]).hex()} (corrupt or not jpeg/png)')
    if header is not None:
        check_decoded_size(img, header[1], header[2], max_pixels, f'{header[0]} image')
    enc = _decoded_encoding(img)
    want = fmt.split(';', 1)[0].strip() if ';' in fmt else ''
    code = _CONVERT.get((enc, want))
    if code is not None:
        return cv2.cvtColor(img, code), want
    return img, enc


def encode_compressed(array: np.ndarray, fmt: str = 'jpeg', quality: int = 90,
                      encoding: str | None = None) -> Tuple[str, bytes]:
    """Array -> (image_transport format string, compressed bytes) for sensor_msgs/CompressedImage.

    ``encoding`` defaults to bgr8/bgra8/mono8/mono16 by shape and dtype; rgb8/rgba8 input is
    converted to BGR before compressing, as compressed_image_transport does.
    """
    fmt = fmt.lower()
    if fmt in ('jpg', 'jpeg'):
        ext, params, fmt = '.jpg', [cv2.IMWRITE_JPEG_QUALITY, int(quality)], 'jpeg'
    elif fmt == 'png':
        ext, params = '.png', [cv2.IMWRITE_PNG_COMPRESSION, 3]
    else:
        raise ImageCodecError(f'unsupported compression {fmt!r}; use jpeg or png')
    a = np.asarray(array)
    if encoding is None:
        encoding = _decoded_encoding(a)
    a, _, _, _ = _check_array(a, encoding)
    packed = encoding
    if encoding in ('rgb8', 'rgba8', 'rgb16', 'rgba16'):
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR if a.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
        packed = 'bgr' + encoding[3:]
    elif encoding in ('8UC1', '8UC3', '16UC1'):
        packed = {'8UC1': 'mono8', '8UC3': 'bgr8', '16UC1': 'mono16'}[encoding]
    if a.dtype == np.uint16 and ext == '.jpg':
        raise ImageCodecError(f'jpeg cannot hold 16-bit {encoding}; use png')
    if a.dtype not in (np.uint8, np.uint16):
        raise ImageCodecError(f'cannot compress {encoding} ({a.dtype}); use 8/16-bit images')
    ok, out = cv2.imencode(ext, a, params)
    if not ok:
        raise ImageCodecError(f'OpenCV failed to encode {encoding} {a.shape} as {fmt}')
    return f'{encoding}; {fmt} compressed {packed}', out.tobytes()


# ---- input size limits, checked before any pixel is touched or decoded ----------------------

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# JPEG markers as libjpeg(-turbo)'s marker reader (jdmarker.c, read_markers) treats them on the
# way to the first scan: frame headers it reads, frame headers it refuses, segments it skips or
# parses by their length, and markers without a length.
_JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC9, 0xCA, 0xCB))
_JPEG_SOF_UNSUPPORTED = frozenset((0xC5, 0xC6, 0xC7, 0xC8, 0xCD, 0xCE, 0xCF))
_JPEG_SEGMENTS = frozenset((0xC4, 0xCC, 0xDB, 0xDC, 0xDD, 0xFE, *range(0xE0, 0xF0)))
_JPEG_NO_LENGTH = frozenset((0x01, *range(0xD0, 0xD8)))
_JPEG_SOI, _JPEG_EOI, _JPEG_SOS = 0xD8, 0xD9, 0xDA
#: the header scan examines at most this many bytes of a JPEG, whatever its size: marker and
#: length fields and any fill (0xFF) or stray bytes between segments; segment contents are
#: skipped by their length without being read. A camera's encoder writes a few hundred.
JPEG_MAX_EXAMINED = 1 << 16
#: and reads at most this many markers before the first scan (a photo with EXIF, ICC profile,
#: tables and thumbnails has about 20)
JPEG_MAX_MARKERS = 512
_FIRST_WINDOW = 256  # bytes searched for the next marker before the rest of the budget


class JpegHeader(NamedTuple):
    """What the frame header of a JPEG says, read the way libjpeg reads it.

    `sof` is the start-of-frame marker (0xC0 baseline, 0xC2 progressive, ...), `sos_offset`
    where the first scan starts, `examined` how many bytes the scan looked at (at most
    ``JPEG_MAX_EXAMINED`` plus a few per marker) and `markers` how many it read.
    """

    width: int
    height: int
    sof: int
    sos_offset: int
    examined: int
    markers: int


def _jpeg_error(what: str, fix: str = 'the sender (camera driver or its jpeg encoder) writes a '
                'broken stream: fix or replace it') -> ImageCodecError:
    return ImageCodecError(f'refused jpeg image: {what}; {fix}')


def jpeg_header(data: Any) -> JpegHeader:
    """Read a JPEG's frame size as libjpeg's ``jpeg_read_header`` does, in bounded time.

    Markers are found as libjpeg's ``next_marker`` finds them (stray bytes skipped, 0xFF fill
    swallowed, a stuffed 0xFF 0x00 is no marker) up to the first start of scan, so the size
    returned is the size OpenCV's decoder allocates. What libjpeg refuses (a second frame
    header or SOI, a scan before the frame header, reserved markers, processes it cannot
    decode) and what this scan cannot settle cheaply (more than ``JPEG_MAX_EXAMINED`` bytes
    examined, more than ``JPEG_MAX_MARKERS`` markers, a stream ending before the first scan)
    raise ImageCodecError saying what is wrong. The cost does not depend on the data's length.
    """
    seen = [0]
    try:
        return _scan_jpeg(_as_uint8_buffer(data), seen)
    except ImageCodecError as exc:
        exc.examined = seen[0]
        raise


def _scan_jpeg(buf: np.ndarray, seen: List[int]) -> JpegHeader:
    """jpeg_header's scan; keeps the count of bytes examined in seen[0] as it goes."""
    n = int(buf.size)
    if n < 4 or buf[0] != 0xFF or buf[1] != _JPEG_SOI:
        raise ImageCodecError(f'not a jpeg image ({n} bytes starting {bytes(buf[:4]).hex()})')
    mv = memoryview(np.ascontiguousarray(buf))
    i, examined, markers = 2, 2, 0
    frame: Optional[Tuple[int, int, int]] = None
    while True:
        # -- the next marker, as libjpeg's next_marker finds it --------------------------------
        if i + 1 < n and mv[i] == 0xFF and mv[i + 1] not in (0x00, 0xFF):
            marker, i, examined = mv[i + 1], i + 2, examined + 2
        else:
            found, at_end = -1, False
            for size in (_FIRST_WINDOW, JPEG_MAX_EXAMINED):
                size = min(size, JPEG_MAX_EXAMINED - examined, n - i)
                at_end = i + size >= n
                if size >= 2:
                    w = buf[i:i + size]
                    hits = np.flatnonzero((w[:-1] == 0xFF) & (w[1:] != 0x00) & (w[1:] != 0xFF))
                    examined += size
                    if hits.size:
                        found = int(hits[0])
                        break
                if at_end:
                    break
            seen[0] = examined
            if found < 0:
                if at_end:
                    raise _jpeg_error(f'the data ends after {n} bytes, before the first scan '
                                      '(truncated)')
                raise _jpeg_error(
                    f'more than {JPEG_MAX_EXAMINED} fill (0xFF) or stray bytes between its '
                    f'header markers (from byte {i}), where an encoder writes none')
            marker, i = mv[i + found + 1], i + found + 2
        markers += 1
        seen[0] = examined
        if markers > JPEG_MAX_MARKERS:
            raise _jpeg_error(f'more than {JPEG_MAX_MARKERS} markers before the first scan')
        at = i - 2
        # -- what libjpeg's read_markers does with it ------------------------------------------
        if marker in _JPEG_NO_LENGTH:
            continue
        if marker == _JPEG_SOS:
            if frame is None:
                raise _jpeg_error(f'a scan starts at byte {at} before any frame header (SOF)')
            return JpegHeader(frame[0], frame[1], frame[2], at, examined, markers)
        if marker == _JPEG_SOI:
            raise _jpeg_error(f'a second start-of-image marker at byte {at}')
        if marker == _JPEG_EOI:
            raise _jpeg_error(f'end of image at byte {at} before any scan (no picture)')
        if marker in _JPEG_SOF_UNSUPPORTED:
            raise _jpeg_error(f'frame header 0x{marker:02X} at byte {at} is a jpeg process the '
                              'decoder does not support (hierarchical or arithmetic-coded '
                              'differential)', 'send baseline or progressive jpeg')
        if marker not in _JPEG_SOF and marker not in _JPEG_SEGMENTS:
            raise _jpeg_error(f'reserved marker 0xFF{marker:02X} at byte {at}')
        if i + 2 > n:
            raise _jpeg_error(f'the data ends inside the marker at byte {at} (truncated)')
        length = (mv[i] << 8) | mv[i + 1]
        examined += 2
        seen[0] = examined
        if length < 2:
            raise _jpeg_error(f'segment 0xFF{marker:02X} at byte {at} has length {length} (< 2)')
        if i + length > n:
            raise _jpeg_error(f'segment 0xFF{marker:02X} at byte {at} of length {length} runs '
                              f'past the end of the {n} bytes (truncated)')
        if marker in _JPEG_SOF:
            if length < 8 or length != 8 + 3 * mv[i + 7] or mv[i + 7] == 0:
                raise _jpeg_error(f'frame header at byte {at} has length {length}, which does '
                                  'not match its component count')
            dims = ((mv[i + 5] << 8) | mv[i + 6], (mv[i + 3] << 8) | mv[i + 4])
            if frame is not None:
                raise _jpeg_error(f'a second frame header (SOF) at byte {at}: the first said '
                                  f'{frame[0]}x{frame[1]}, this one {dims[0]}x{dims[1]}')
            frame = (dims[0], dims[1], marker)
            examined += 6
        seen[0] = examined
        i += length


def compressed_image_size(data: Any) -> Tuple[str, int, int]:
    """(kind, width, height) of a PNG or JPEG, read from its header without decoding.

    The size is the one OpenCV's decoder allocates: JPEG as libjpeg reads its markers
    (``jpeg_header``), PNG from an IHDR chunk that must come first, be 13 bytes long and carry
    a valid CRC, as libpng requires. Raises ImageCodecError when the data is neither, or its
    header is cut short, inconsistent or hostile, so a decoder never sees a payload whose size
    is unknown.
    """
    buf = _as_uint8_buffer(data)
    head = bytes(buf[:8])
    if head == _PNG_SIGNATURE:
        ihdr = bytes(buf[8:33])
        if len(ihdr) < 25 or ihdr[4:8] != b'IHDR':
            raise ImageCodecError('refused png image: no IHDR chunk right after the signature '
                                  '(truncated or corrupt); fix the sender')
        if ihdr[:4] != b'\x00\x00\x00\x0d' or \
                zlib.crc32(ihdr[4:21]) != int.from_bytes(ihdr[21:25], 'big'):
            raise ImageCodecError('refused png image: its IHDR chunk has a wrong length or CRC '
                                  '(corrupt; libpng refuses it too); fix the sender')
        w = int.from_bytes(ihdr[8:12], 'big')
        h = int.from_bytes(ihdr[12:16], 'big')
        return 'png', w, h
    if head[:2] == b'\xff\xd8':
        hdr = jpeg_header(buf)
        return 'jpeg', hdr.width, hdr.height
    raise ImageCodecError(f'compressed image is neither jpeg nor png ({buf.size} bytes starting '
                          f'{head.hex()}); only those are accepted')


def check_image_size(width: int, height: int, max_pixels: int, what: str = 'image') -> None:
    """Raise ImageCodecError for an empty frame or one over `max_pixels` (0: no limit)."""
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise ImageCodecError(f'{what} is empty ({width}x{height})')
    if max_pixels and width * height > max_pixels:
        raise ImageCodecError(
            f'{what} {width}x{height} has {width * height} pixels, over max_input_pixels '
            f'{max_pixels}; refused before decoding (raise max_input_pixels if it is genuine, '
            'else fix the camera)')


def check_decoded_size(image: np.ndarray, width: int, height: int, max_pixels: int,
                       what: str = 'image') -> None:
    """Raise ImageCodecError when a decoded image is not the size its header said, or too big.

    The check after decoding: a header probe that disagreed with the decoder would otherwise
    hand on an image of a size nobody checked.
    """
    h, w = int(image.shape[0]), int(image.shape[1])
    if (w, h) != (int(width), int(height)):
        raise ImageCodecError(
            f'{what} decoded to {w}x{h}, but its header says {width}x{height} (a malformed or '
            'hostile stream); refused, fix the sender')
    if max_pixels and w * h > max_pixels:
        raise ImageCodecError(
            f'{what} decoded to {w}x{h} = {w * h} pixels, over max_input_pixels {max_pixels} '
            '(raise max_input_pixels if it is genuine, else fix the camera)')
