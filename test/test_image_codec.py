"""image_codec against real rclpy sensor_msgs messages, real OpenCV codecs and a real photo."""
from __future__ import annotations

import array
import subprocess
import sys

import cv2
from faster_deployment_ros.core.image_codec import (decode_compressed, encode_compressed,
                                                    fill_image_msg, image_to_numpy,
                                                    ImageCodecError, msg_to_numpy,
                                                    numpy_to_image_fields, to_bgr8)
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

RNG = np.random.default_rng(7)

CASES = {  # encoding -> (dtype, channels)
    'rgb8': (np.uint8, 3), 'bgr8': (np.uint8, 3), 'rgba8': (np.uint8, 4),
    'bgra8': (np.uint8, 4), 'mono8': (np.uint8, 1), 'mono16': (np.uint16, 1),
    '16UC1': (np.uint16, 1), '32FC1': (np.float32, 1), '8UC1': (np.uint8, 1),
    '8UC3': (np.uint8, 3),
}


def random_image(encoding: str, h: int = 37, w: int = 53) -> np.ndarray:
    dtype, c = CASES[encoding]
    shape = (h, w) if c == 1 else (h, w, c)
    if np.dtype(dtype).kind == 'f':
        return RNG.standard_normal(shape).astype(dtype) * 1000
    return RNG.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


@pytest.mark.ros
@pytest.mark.parametrize('encoding', sorted(CASES))
def test_roundtrip_rclpy_message(encoding):
    img = random_image(encoding)
    msg = fill_image_msg(Image(), img, encoding)
    assert isinstance(msg.data, array.array) and msg.data.typecode == 'B'
    assert (msg.height, msg.width, msg.encoding, msg.is_bigendian) == (37, 53, encoding, 0)
    assert msg.step == 53 * img.itemsize * CASES[encoding][1]
    assert len(msg.data) == msg.step * msg.height
    # rclpy's serializer must accept what we put in: round trip through CDR bytes.
    from rclpy.serialization import deserialize_message, serialize_message
    back = deserialize_message(serialize_message(msg), Image)
    out = msg_to_numpy(back)
    assert out.dtype == img.dtype and out.shape == img.shape
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize('encoding', sorted(CASES))
def test_roundtrip_fields(encoding):
    img = random_image(encoding, 20, 31)
    f = numpy_to_image_fields(img, encoding)
    assert f['encoding'] == encoding and f['is_bigendian'] == 0
    assert f['data'].dtype == np.uint8 and f['data'].size == f['step'] * f['height']
    assert np.shares_memory(f['data'], img)  # contiguous input: no copy
    out = image_to_numpy(**f)
    np.testing.assert_array_equal(out, img)
    assert np.shares_memory(out, img)


def test_fill_reuses_rclpy_buffer_and_resizes():
    a, b = random_image('bgr8'), random_image('bgr8')
    msg = fill_image_msg(Image(), a, 'bgr8')
    buf = msg.data
    fill_image_msg(msg, b, 'bgr8')
    assert msg.data is buf  # same size -> written in place
    np.testing.assert_array_equal(msg_to_numpy(msg), b)
    small = random_image('mono16', 5, 6)
    fill_image_msg(msg, small, 'mono16')
    assert len(msg.data) == 5 * 12
    np.testing.assert_array_equal(msg_to_numpy(msg), small)
    # Non-contiguous input (a crop) is accepted.
    crop = a[3:20, 5:40]
    fill_image_msg(msg, crop, 'bgr8')
    np.testing.assert_array_equal(msg_to_numpy(msg), crop)


def test_zero_copy_view_of_rclpy_data():
    msg = fill_image_msg(Image(), random_image('rgb8'), 'rgb8')
    out = msg_to_numpy(msg)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))


@pytest.mark.parametrize('encoding', ['bgr8', 'mono16', '32FC1', 'mono8'])
def test_padded_step(encoding):
    img = random_image(encoding, 9, 11)
    h, w = img.shape[:2]
    row = img[0].nbytes
    step = row + 13  # odd padding: rows start unaligned for multi-byte types
    raw = bytearray(RNG.integers(0, 255, step * h, dtype=np.uint8).tobytes())
    for y in range(h):
        raw[y * step:y * step + row] = img[y].tobytes()
    msg = Image(height=h, width=w, encoding=encoding, step=step)
    msg.data = array.array('B', bytes(raw))
    out = msg_to_numpy(msg)
    np.testing.assert_array_equal(out, img)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    if encoding != '32FC1':
        assert to_bgr8(out, encoding).shape == (h, w, 3)


@pytest.mark.parametrize('encoding', ['mono16', '16UC1', '32FC1'])
def test_big_endian(encoding):
    img = random_image(encoding)
    be = img.astype(img.dtype.newbyteorder('>'))
    out = image_to_numpy(img.shape[0], img.shape[1], encoding, 1, img.shape[1] * img.itemsize,
                         be.tobytes())
    assert out.dtype == img.dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, img)
    # Same bytes read as little-endian are different numbers: the flag is honoured.
    wrong = image_to_numpy(img.shape[0], img.shape[1], encoding, 0,
                           img.shape[1] * img.itemsize, be.tobytes())
    assert not np.array_equal(wrong, img)


def test_truncated_and_bad_step_rejected():
    img = random_image('bgr8', 10, 10)
    f = numpy_to_image_fields(img, 'bgr8')
    with pytest.raises(ImageCodecError, match='truncated'):
        image_to_numpy(**{**f, 'data': bytes(f['data'])[:-1]})
    with pytest.raises(ImageCodecError, match='step 29 < width'):
        image_to_numpy(**{**f, 'step': 29})
    with pytest.raises(ImageCodecError, match='unsupported image encoding'):
        image_to_numpy(**{**f, 'encoding': 'yuv411'})
    msg = Image(height=10, width=10, encoding='mono16', step=20)
    msg.data = array.array('B', bytes(150))
    with pytest.raises(ImageCodecError, match='150 bytes, expected step \\* height = 200'):
        msg_to_numpy(msg)


def test_wrong_dtype_or_channels_rejected():
    with pytest.raises(ImageCodecError, match='dtype uint16'):
        numpy_to_image_fields(np.zeros((4, 4), np.uint8), 'mono16')
    with pytest.raises(ImageCodecError, match='shape'):
        numpy_to_image_fields(np.zeros((4, 4, 3), np.uint8), 'rgba8')
    with pytest.raises(ImageCodecError):
        fill_image_msg(Image(), np.zeros((4, 4), np.float32), 'bgr8')


def test_to_bgr8_conversions():
    bgr = random_image('bgr8')
    assert to_bgr8(bgr, 'bgr8') is bgr
    np.testing.assert_array_equal(to_bgr8(bgr[:, :, ::-1], 'rgb8'), bgr)
    rgba = np.dstack([bgr[:, :, ::-1], np.full(bgr.shape[:2], 9, np.uint8)])
    np.testing.assert_array_equal(to_bgr8(rgba, 'rgba8'), bgr)
    np.testing.assert_array_equal(to_bgr8(rgba[:, :, [2, 1, 0, 3]], 'bgra8'), bgr)
    mono = bgr[:, :, 0]
    np.testing.assert_array_equal(to_bgr8(mono, 'mono8'), np.dstack([mono] * 3))
    m16 = random_image('mono16')
    out = to_bgr8(m16, '16UC1')
    assert out.dtype == np.uint8 and out.shape == m16.shape + (3,)
    # cv_bridge's 16 -> 8 bit: convertTo(CV_8U, 255 / 65535), rounded
    np.testing.assert_array_equal(out[:, :, 1],
                                  np.round(m16 * (255.0 / 65535.0)).astype(np.uint8))
    assert to_bgr8(np.full((2, 2), 65535, np.uint16), 'mono16').min() == 255
    with pytest.raises(ImageCodecError, match='32FC1'):
        to_bgr8(random_image('32FC1'), '32FC1')


def test_compressed_png_exact_jpeg_close(dog_image_path):
    photo = cv2.imread(str(dog_image_path), cv2.IMREAD_COLOR)
    assert photo is not None and photo.shape == (576, 768, 3)
    fmt, data = encode_compressed(photo, 'png')
    assert fmt == 'bgr8; png compressed bgr8'
    msg = CompressedImage(format=fmt)
    msg.data = array.array('B', data)  # as it arrives from rclpy
    out, enc = decode_compressed(msg.format, msg.data)
    assert enc == 'bgr8'
    np.testing.assert_array_equal(out, photo)

    fmt, data = encode_compressed(photo, 'jpeg', quality=90)
    assert fmt == 'bgr8; jpeg compressed bgr8' and data[:2] == b'\xff\xd8'
    assert len(data) < photo.nbytes / 5
    out, enc = decode_compressed(fmt, data)
    assert enc == 'bgr8' and out.shape == photo.shape
    err = np.abs(out.astype(np.int16) - photo).mean()
    assert 0 < err < 4, err

    # rgb8 source: compressed as BGR, decoded back to rgb8 per the format string.
    rgb = cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)
    fmt, data = encode_compressed(rgb, 'png', encoding='rgb8')
    assert fmt == 'rgb8; png compressed bgr8'
    out, enc = decode_compressed(fmt, data)
    assert enc == 'rgb8'
    np.testing.assert_array_equal(out, rgb)
    np.testing.assert_array_equal(decode_compressed('png', data)[0], photo)

    # 16-bit mono survives png.
    m16 = random_image('mono16')
    fmt, data = encode_compressed(m16, 'png')
    out, enc = decode_compressed(fmt, data)
    assert (fmt, enc) == ('mono16; png compressed mono16', 'mono16')
    np.testing.assert_array_equal(out, m16)


def test_corrupt_compressed_rejected(dog_image_path):
    good = dog_image_path.read_bytes()
    with pytest.raises(ImageCodecError, match='cannot decode'):
        decode_compressed('jpeg', b'\x00' * 100)
    with pytest.raises(ImageCodecError, match='cannot decode'):
        decode_compressed('jpeg', good[:2] + bytes(len(good) - 2))
    with pytest.raises(ImageCodecError, match='empty'):
        decode_compressed('jpeg', b'')
    with pytest.raises(ImageCodecError, match='compressedDepth'):
        decode_compressed('16UC1; compressedDepth png', good)
    with pytest.raises(ImageCodecError, match='16-bit'):
        encode_compressed(random_image('mono16'), 'jpeg')


def test_codec_imports_without_rclpy():
    code = ('import sys, faster_deployment_ros.core.image_codec; '
            'sys.exit(any(m.startswith("rclpy") for m in sys.modules))')
    assert subprocess.run([sys.executable, '-c', code]).returncode == 0
