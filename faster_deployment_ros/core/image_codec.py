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
from typing import Any, Dict, Tuple

import cv2
import numpy as np

__all__ = [
    'ImageCodecError', 'ENCODINGS', 'encoding_info', 'image_to_numpy', 'msg_to_numpy',
    'numpy_to_image_fields', 'fill_image_msg', 'to_bgr8', 'to_8bit', 'decode_compressed',
    'encode_compressed', 'compressed_image_size', 'check_image_size',
]


class ImageCodecError(ValueError):
    """An image message that cannot be turned into an array (or the other way round)."""


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


def decode_compressed(compressed_format: str, data: Any) -> Tuple[np.ndarray, str]:
    """sensor_msgs/CompressedImage (format, data) -> (array, encoding).

    ``compressed_format`` follows image_transport ('rgb8; jpeg compressed bgr8') or is just
    'jpeg'/'png'.
    When it names an original encoding OpenCV can produce from the decoded image, the result is
    converted to it (so 'rgb8; ...' comes back rgb8); otherwise bgr8/bgra8/mono8/mono16.
    """
    fmt = (compressed_format or '').strip()
    if 'compresseddepth' in fmt.lower().replace(' ', ''):
        raise ImageCodecError('compressedDepth images are not supported '
                              f'(format {compressed_format!r})')
    buf = _as_uint8_buffer(data)
    if buf.size == 0:
        raise ImageCodecError(f'empty compressed image (format {compressed_format!r})')
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageCodecError(
            f'cannot decode compressed image: format {compressed_format!r}, {buf.size} bytes '
            f'starting {bytes(buf[:8]).hex()} (corrupt or not jpeg/png)')
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
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); not C4/C8/CC
_JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                       0xCF))


def compressed_image_size(data: Any) -> Tuple[str, int, int]:
    """(kind, width, height) read from a PNG or JPEG header, without decoding.

    Raises ImageCodecError when the data is neither or its header is cut short, so a decoder
    never sees a payload whose size is unknown.
    """
    buf = _as_uint8_buffer(data)
    head = bytes(buf[:8])
    if head == _PNG_SIGNATURE:
        if buf.size < 24 or bytes(buf[12:16]) != b'IHDR':
            raise ImageCodecError('png image without an IHDR header (truncated or corrupt)')
        w = int.from_bytes(bytes(buf[16:20]), 'big')
        h = int.from_bytes(bytes(buf[20:24]), 'big')
        return 'png', w, h
    if head[:2] == b'\xff\xd8':
        i, n = 2, int(buf.size)
        while i + 3 < n:
            if buf[i] != 0xFF:
                raise ImageCodecError(f'corrupt jpeg: no marker at byte {i}')
            marker = int(buf[i + 1])
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
                i += 2
                continue
            if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
                break
            length = (int(buf[i + 2]) << 8) | int(buf[i + 3])
            if marker in _JPEG_SOF:
                if i + 9 > n:
                    break
                h = (int(buf[i + 5]) << 8) | int(buf[i + 6])
                w = (int(buf[i + 7]) << 8) | int(buf[i + 8])
                return 'jpeg', w, h
            if length < 2:
                raise ImageCodecError(f'corrupt jpeg: segment length {length} at byte {i}')
            i += 2 + length
        raise ImageCodecError('jpeg image without a frame header (truncated or corrupt)')
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
            f'{max_pixels}; refused before decoding (raise max_input_pixels if it is genuine)')
