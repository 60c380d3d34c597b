"""image_codec against real rclpy sensor_msgs messages, real OpenCV codecs and a real photo."""
from __future__ import annotations

import array
import os
from pathlib import Path
import subprocess
import sys

import cv2
from faster_deployment_ros.core.image_codec import (BitDepthHint, check_decoded_size,
                                                    compressed_image_size,
                                                    decode_compressed, encode_compressed,
                                                    fill_image_msg, image_to_numpy,
                                                    ImageCodecError, jpeg_header,
                                                    JPEG_MAX_EXAMINED, msg_to_numpy,
                                                    numpy_to_image_fields, to_bgr8)
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from support import hostile_images as hostile

RNG = np.random.default_rng(7)

CASES = {  # encoding -> (dtype, channels)
    'rgb8': (np.uint8, 3), 'bgr8': (np.uint8, 3), 'rgba8': (np.uint8, 4),
    'bgra8': (np.uint8, 4), 'mono8': (np.uint8, 1), 'mono16': (np.uint16, 1),
    '16UC1': (np.uint16, 1), '32FC1': (np.float32, 1), '8UC1': (np.uint8, 1),
    '8UC3': (np.uint8, 3),
}
HOSTILE_SCRIPT = Path(__file__).parent / 'support' / 'hostile_images.py'


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


# ---- hostile compressed input: the header probe agrees with the decoder, in bounded work ----
LIMIT = 100 * 100  # max_input_pixels for these tests: 320x240 is over it, 24x16 under


def opencv_shape(data: bytes):
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return None if img is None else img.shape


def test_a_stuffed_zero_cannot_hide_the_real_frame_size():
    # 0xFF 0x00 then two bytes: libjpeg skips them and reads the real 320x240 frame header; the
    # old scan read them as a segment length, landed on a fake 16x16 header in a comment and
    # let the frame past max_input_pixels.
    data, (w, h) = hostile.stuffed_zero_hides_the_frame(16)
    assert opencv_shape(data) == (h, w, 3)  # what the decoder really does
    assert compressed_image_size(data) == ('jpeg', w, h)
    with pytest.raises(ImageCodecError, match=r'jpeg image 320x240 .* over max_input_pixels '
                       r'10000; refused before decoding \(raise max_input_pixels'):
        decode_compressed('jpeg', data, max_pixels=LIMIT)
    assert decode_compressed('jpeg', data, max_pixels=0)[0].shape == (h, w, 3)


def test_a_fake_frame_header_in_a_comment_is_not_read():
    segments, rest = hostile.split_jpeg(hostile.jpeg(24, 16))
    data = hostile.join_jpeg([hostile.segment(0xFE, hostile.sof(9000, 9000))] + segments, rest)
    assert compressed_image_size(data) == ('jpeg', 24, 16) and opencv_shape(data) == (16, 24, 3)


@pytest.mark.parametrize('second', [(16, 16), (5000, 5000)])
def test_several_frame_headers_are_refused(second):
    segments, rest = hostile.split_jpeg(hostile.jpeg(24, 16))
    k = hostile.sof_index(segments)
    for where in (k, k + 1, len(segments)):  # before, right after, after the tables
        data = hostile.join_jpeg(segments[:where] + [hostile.sof(*second)] + segments[where:],
                                 rest)
        assert opencv_shape(data) is None  # libjpeg refuses a second SOF too
        with pytest.raises(ImageCodecError, match='a second frame header .* fix or replace'):
            decode_compressed('jpeg', data, max_pixels=LIMIT)


def test_fill_runs_cost_bounded_work():
    segments, rest = hostile.split_jpeg(hostile.jpeg(24, 16))
    k = hostile.sof_index(segments)
    # fill and stray bytes libjpeg skips are skipped here too, up to the budget
    for pad in (b'\xff' * 1000, b'\x00\xff\x00' * 300, b'\xff' * (JPEG_MAX_EXAMINED - 500)):
        data = hostile.join_jpeg(segments[:k] + [pad] + segments[k:], rest)
        hdr = jpeg_header(data)
        assert (hdr.width, hdr.height) == (24, 16) and opencv_shape(data) == (16, 24, 3)
        assert len(pad) <= hdr.examined <= JPEG_MAX_EXAMINED + 64
    # 10 MB of fill: the old scan read it byte by byte in Python (about 0.2 s per MB); now it
    # stops after the budget, wherever the run lies (benchmarks/jpeg_header_scan.py times it)
    ten_mb = b'\xff' * (10 << 20)
    for data in (b'\xff\xd8' + ten_mb + hostile.jpeg()[2:],
                 hostile.join_jpeg(segments[:k] + [ten_mb] + segments[k:], rest),
                 hostile.join_jpeg(segments[:k] + [b'\xff\x00' * (5 << 20)] + segments[k:],
                                   rest)):
        with pytest.raises(ImageCodecError, match=f'more than {JPEG_MAX_EXAMINED} fill .* '
                           'fix or replace it') as err:
            decode_compressed('jpeg', data, max_pixels=LIMIT)
        assert err.value.examined <= JPEG_MAX_EXAMINED + 64
    # many tiny segments: bounded by the marker count
    many = [hostile.segment(0xFE, b'')] * 5000
    with pytest.raises(ImageCodecError, match='more than 512 markers') as err:
        jpeg_header(hostile.join_jpeg(many + segments, rest))
    assert err.value.examined <= 4 * 513 + 2


def test_truncated_and_malformed_headers_are_refused_with_a_reason():
    data = hostile.jpeg(24, 16)
    sos = jpeg_header(data).sos_offset
    for cut in range(sos + 1):  # every cut before the first scan
        with pytest.raises(ImageCodecError, match='truncated|not a jpeg|neither jpeg'):
            compressed_image_size(data[:cut])
    for cut in range(sos + 2, len(data), 7):  # a cut scan: the header size, or refused
        try:
            out, _ = decode_compressed('jpeg', data[:cut], max_pixels=LIMIT)
        except ImageCodecError:
            continue
        assert out.shape == (16, 24, 3)
    segments, rest = hostile.split_jpeg(data)
    for bad, reason in ((hostile.segment(0x02, b''), 'reserved marker 0xFF02'),
                        (b'\xff\xd8', 'second start-of-image'),
                        (b'\xff\xd9', 'end of image'),
                        (hostile.sof(24, 16, marker=0xC5), 'does not support'),
                        (b'\xff\xfe\x00\x01', 'length 1')):
        with pytest.raises(ImageCodecError, match=reason):
            compressed_image_size(hostile.join_jpeg([bad] + segments, rest))
    no_sof = [s for s in segments if s[1] != 0xC0]
    with pytest.raises(ImageCodecError, match='before any frame header'):
        compressed_image_size(hostile.join_jpeg(no_sof, rest))


def test_hostile_pngs_are_refused():
    assert compressed_image_size(hostile.png(16, 16)) == ('png', 16, 16)
    huge = hostile.png(16, 16, ihdr_size=(60000, 60000))
    with pytest.raises(ImageCodecError, match='png image 60000x60000 .* over max_input_pixels'):
        decode_compressed('png', huge, max_pixels=LIMIT)
    bad_crc = bytearray(hostile.png(16, 16))
    bad_crc[29] ^= 1
    long_ihdr = hostile.PNG_SIGNATURE + hostile.chunk(b'IHDR', bytes(25))
    for data in (bytes(bad_crc), long_ihdr):
        assert opencv_shape(data) is None
        with pytest.raises(ImageCodecError, match='IHDR chunk has a wrong length or CRC'):
            compressed_image_size(data)
    # IHDR says small, the pixel data is big: the decoder follows IHDR (and drops the rest)
    lying = hostile.png(400, 400, ihdr_size=(16, 16))
    assert decode_compressed('png', lying, max_pixels=LIMIT)[0].shape == (16, 16)
    whole = hostile.png(64, 64)
    for cut in range(0, len(whole) - 12, 5):
        with pytest.raises(ImageCodecError):
            decode_compressed('png', whole[:cut], max_pixels=LIMIT)


def test_decoded_size_is_checked_against_the_header():
    img = np.zeros((16, 24, 3), np.uint8)
    check_decoded_size(img, 24, 16, LIMIT)
    with pytest.raises(ImageCodecError, match='decoded to 24x16, but its header says 16x16'):
        check_decoded_size(img, 16, 16, LIMIT)
    with pytest.raises(ImageCodecError, match=r'over max_input_pixels 100 \(raise'):
        check_decoded_size(img, 24, 16, 100)


def test_header_probe_agrees_with_opencv_on_fuzzed_input():
    # hypothesis mutates real JPEGs and PNGs (fill, stray bytes, stuffed zeros, fake and extra
    # frame headers, any marker, byte flips, cuts); for everything OpenCV decodes, the probe
    # refused it or named the decoded size. In a child process with OpenCV's own pixel cap low,
    # so a mutated header claiming a huge frame costs nothing.
    env = dict(os.environ, OPENCV_IO_MAX_IMAGE_PIXELS=str(1 << 22),
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1])]
                                          + [os.environ.get('PYTHONPATH', '')]))
    run = subprocess.run([sys.executable, str(HOSTILE_SCRIPT),
                          '600'], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip().endswith('ok'), run.stdout[-4000:] + \
        '\n'.join(line for line in run.stderr.splitlines()
                  if 'JPEG' not in line and 'libpng' not in line)[-4000:]


# ---- 16-bit frames that use fewer bits: a one-time hint to set bit_depth ---------------------
@pytest.mark.parametrize('bits, hint', [(10, 'set bit_depth: 10'), (12, 'set bit_depth: 12'),
                                        (14, 'set bit_depth: 14'), (16, None)])
def test_bit_depth_hint_for_narrow_16_bit_frames(bits, hint):
    det = BitDepthHint(frames=30)
    got = []
    for k in range(100):
        frame = RNG.integers(0, 1 << bits, (24, 32), dtype=np.uint16)
        got.append(det.observe(frame, 'mono16', 16))
    said = [g for g in got if g is not None]
    if hint is None:
        assert said == []
        return
    assert len(said) == 1 and got[29] == said[0]  # once, after the first 30 frames
    assert hint in said[0] and f'({bits} significant bits)' in said[0]
    assert 'bit_depth is 16' in said[0] and 'nearly black' in said[0]


def test_bit_depth_hint_quiet_when_set_right_and_loud_when_saturating():
    twelve = RNG.integers(0, 4096, (8, 8), dtype=np.uint16)
    det = BitDepthHint(frames=3)
    assert [det.observe(twelve, 'mono16', 12) for _ in range(5)] == [None] * 5
    det = BitDepthHint(frames=3)
    out = [det.observe(twelve, '16UC1', 10) for _ in range(3)]
    assert out[:2] == [None, None] and 'saturate to white' in out[2] and 'set bit_depth: 12' in \
        out[2]
    det = BitDepthHint(frames=1)  # 8-bit frames and black frames tell nothing
    assert det.observe(np.full((4, 4), 200, np.uint8), 'mono8') is None
    assert det.observe(np.zeros((4, 4), np.uint16), 'mono16') is None
