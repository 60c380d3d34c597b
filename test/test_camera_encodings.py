"""Camera encodings real drivers send, decoded with cv_bridge's semantics.

YUV 4:2:2, NV12/NV21, Bayer 8/16, mono16 at 10/12 bits, each checked against OpenCV's own
cvtColor on real frames.

Each frame is a real photo or video frame turned into the driver's encoding with OpenCV (or, for
the planar/mosaic layouts OpenCV cannot write, by sampling its planes), sent through a real rclpy
Image message, decoded by image_codec and compared with OpenCV's conversion back to BGR; the
result must also stay close to the original frame, which catches a swapped pattern or byte order
that OpenCV would decode just as happily.
"""
from __future__ import annotations

import cv2
from faster_deployment_ros.core.image_codec import (fill_image_msg, image_to_numpy,
                                                    ImageCodecError, msg_to_numpy, to_8bit,
                                                    to_bgr8)
import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image

pytestmark = pytest.mark.ros

# ROS Bayer name -> (OpenCV code cv_bridge uses, colour of the 2x2 block's pixels in row order)
BAYER = {'rggb': (cv2.COLOR_BayerBG2BGR, 'rggb'), 'bggr': (cv2.COLOR_BayerRG2BGR, 'bggr'),
         'gbrg': (cv2.COLOR_BayerGR2BGR, 'gbrg'), 'grbg': (cv2.COLOR_BayerGB2BGR, 'grbg')}
CHANNEL = {'b': 0, 'g': 1, 'r': 2}


@pytest.fixture(scope='module')
def frames(dog_image_path, plaza_video):
    """Two real frames, cropped to even sizes (4:2:x chroma and Bayer blocks are 2x2)."""
    out = [cv2.imread(str(dog_image_path))]
    cap = cv2.VideoCapture(str(plaza_video))
    ok, frame = cap.read()
    cap.release()
    assert ok, 'cannot read the plaza video'
    out.append(frame)
    return [f[:f.shape[0] // 2 * 2, :f.shape[1] // 2 * 2] for f in out]


def via_message(array: np.ndarray, encoding: str) -> np.ndarray:
    """Through a real rclpy Image and its CDR bytes, as a subscriber receives it."""
    msg = fill_image_msg(Image(), array, encoding)
    back = deserialize_message(serialize_message(msg), Image)
    assert (back.encoding, back.width) == (encoding, array.shape[1])
    return msg_to_numpy(back)


def mosaic(bgr: np.ndarray, pattern: str) -> np.ndarray:
    h, w = bgr.shape[:2]
    m = np.empty((h, w), bgr.dtype)
    for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        m[dy::2, dx::2] = bgr[dy::2, dx::2, CHANNEL[pattern[k]]]
    return m


def nv(bgr: np.ndarray, order: str) -> np.ndarray:
    """BGR -> NV12 (U first) or NV21 (V first): OpenCV's I420 planes, chroma interleaved."""
    h, w = bgr.shape[:2]
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    y = i420[:h]
    u = i420[h:h + h // 4].reshape(h // 2, w // 2)
    v = i420[h + h // 4:].reshape(h // 2, w // 2)
    uv = np.dstack([u, v] if order == 'nv12' else [v, u]).reshape(h // 2, w)
    return np.vstack([y, uv])


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


@pytest.mark.parametrize('encoding,to_yuv,back', [
    ('uyvy', cv2.COLOR_BGR2YUV_UYVY, cv2.COLOR_YUV2BGR_UYVY),
    ('yuv422', cv2.COLOR_BGR2YUV_UYVY, cv2.COLOR_YUV2BGR_UYVY),
    ('yuyv', cv2.COLOR_BGR2YUV_YUY2, cv2.COLOR_YUV2BGR_YUY2),
    ('yuv422_yuy2', cv2.COLOR_BGR2YUV_YUY2, cv2.COLOR_YUV2BGR_YUY2),
])
def test_yuv422(frames, encoding, to_yuv, back):
    for bgr in frames:
        yuv = cv2.cvtColor(bgr, to_yuv)
        assert yuv.shape == bgr.shape[:2] + (2,)
        out = to_bgr8(via_message(yuv, encoding), encoding)
        np.testing.assert_array_equal(out, cv2.cvtColor(yuv, back))
        assert mean_abs(out, bgr) < 3.0
    # the other byte order decodes the colourful photo to something else entirely
    other = 'yuyv' if encoding in ('uyvy', 'yuv422') else 'uyvy'
    assert mean_abs(to_bgr8(cv2.cvtColor(frames[0], to_yuv), other), frames[0]) > 20.0


@pytest.mark.parametrize('encoding', ['nv21', 'nv12'])
def test_nv12_nv21(frames, encoding):
    code = cv2.COLOR_YUV2BGR_NV21 if encoding == 'nv21' else cv2.COLOR_YUV2BGR_NV12
    for bgr in frames:
        h, w = bgr.shape[:2]
        planes = nv(bgr, encoding)
        msg = fill_image_msg(Image(), planes, encoding)
        assert (msg.height, msg.width, msg.step, len(msg.data)) == (h, w, w, w * h * 3 // 2)
        out = to_bgr8(via_message(planes, encoding), encoding)
        np.testing.assert_array_equal(out, cv2.cvtColor(planes, code))
        assert mean_abs(out, bgr) < 3.0
    # U and V swapped: the colourful photo's colours go wrong
    bgr = frames[0]
    out = to_bgr8(nv(bgr, encoding), encoding)
    other = 'nv12' if encoding == 'nv21' else 'nv21'
    assert mean_abs(to_bgr8(nv(bgr, encoding), other), bgr) > 5 * mean_abs(out, bgr)


def test_nv21_padded_rows_and_bad_sizes(frames):
    bgr = frames[0]
    h, w = bgr.shape[:2]
    planes = nv(bgr, 'nv21')
    step = w + 64  # a driver with a stride: both planes' rows are padded
    raw = np.zeros((h * 3 // 2, step), np.uint8)
    raw[:, :w] = planes
    arr = image_to_numpy(h, w, 'nv21', 0, step, raw.tobytes())
    np.testing.assert_array_equal(to_bgr8(arr, 'nv21'),
                                  cv2.cvtColor(planes, cv2.COLOR_YUV2BGR_NV21))
    with pytest.raises(ImageCodecError, match=r'step \* height \* 3 / 2'):
        image_to_numpy(h, w, 'nv21', 0, w, planes[:h].tobytes())  # Y plane only
    with pytest.raises(ImageCodecError, match='even'):
        image_to_numpy(3, 4, 'nv12', 0, 4, bytes(4 * 4))


@pytest.mark.parametrize('pattern', sorted(BAYER))
def test_bayer8(frames, pattern):
    code, _ = BAYER[pattern]
    encoding = f'bayer_{pattern}8'
    for bgr in frames:
        raw = mosaic(bgr, pattern)
        out = to_bgr8(via_message(raw, encoding), encoding)
        np.testing.assert_array_equal(out, cv2.cvtColor(raw, code))
        assert mean_abs(out, bgr) < 8.0
    bgr = frames[0]  # any other pattern mixes up the colourful photo's colours
    raw = mosaic(bgr, pattern)
    err = mean_abs(to_bgr8(raw, encoding), bgr)
    for wrong in set(BAYER) - {pattern}:
        assert mean_abs(to_bgr8(raw, f'bayer_{wrong}8'), bgr) > 1.5 * err


@pytest.mark.parametrize('pattern', sorted(BAYER))
@pytest.mark.parametrize('bits', [12, 16])
def test_bayer16(frames, pattern, bits):
    """Demosaic at 16 bits, then scale by the sensor's bit depth.

    As cv_bridge does: demosaic, then convertTo 255/65535 (bit_depth 16).
    """
    code, _ = BAYER[pattern]
    encoding = f'bayer_{pattern}16'
    bgr = frames[1]
    raw = mosaic((bgr.astype(np.uint32) * ((1 << bits) - 1) // 255).astype(np.uint16), pattern)
    out = to_bgr8(via_message(raw, encoding), encoding, bit_depth=bits)
    scale = 255.0 / ((1 << bits) - 1)
    np.testing.assert_array_equal(out, cv2.convertScaleAbs(cv2.cvtColor(raw, code), alpha=scale))
    assert mean_abs(out, to_bgr8(mosaic(bgr, pattern), f'bayer_{pattern}8')) < 1.0


@pytest.mark.parametrize('encoding', ['mono16', '16UC1'])
@pytest.mark.parametrize('bits', [10, 12, 16])
def test_mono16_scaled_by_bit_depth(frames, encoding, bits):
    """A 10/12-bit sensor's full range maps to 0..255 with its bit_depth.

    Bit_depth 16 is cv_bridge's convertTo(CV_8U, 255 / 65535), rounded.
    """
    grey = cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY)
    top = (1 << bits) - 1
    m16 = (grey.astype(np.uint32) * top // 255).astype(np.uint16)
    out = to_bgr8(via_message(m16, encoding), encoding, bit_depth=bits)
    assert out.shape == grey.shape + (3,)
    assert np.abs(out[:, :, 1].astype(int) - grey).max() <= 1
    if bits == 16:
        np.testing.assert_array_equal(out[:, :, 0],
                                      np.round(m16 * (255.0 / 65535.0)).astype(np.uint8))
    else:  # read with cv_bridge's 16-bit convention, the same frame is nearly black
        assert to_bgr8(m16, encoding).mean() < grey.mean() / 15
    assert to_8bit(np.array([[min(top + 7, 65535)]], np.uint16), bits)[0, 0] == 255  # saturates
    with pytest.raises(ImageCodecError, match='bit_depth'):
        to_bgr8(m16, encoding, bit_depth=17)


def test_rgba_bgra_rgb16(frames):
    bgr = frames[0]
    rgba = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA)
    np.testing.assert_array_equal(to_bgr8(via_message(rgba, 'rgba8'), 'rgba8'), bgr)
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    np.testing.assert_array_equal(to_bgr8(via_message(bgra, 'bgra8'), 'bgra8'), bgr)
    rgb16 = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.uint16) * 257
    np.testing.assert_array_equal(to_bgr8(via_message(rgb16, 'rgb16'), 'rgb16'), bgr)


def test_same_detections_from_every_encoding(frames, yolox_model):
    """The issue's scene: YOLOX-nano on one frame sent as bgr8 and as each driver encoding.

    mono16 at 10 and 12 bits with their bit_depth finds what mono8 finds (with the old `>> 8` it
    found fewer at 12 bits and none at 10); colour encodings find what bgr8 finds.
    """
    from faster_deployment_ros.backends import create_backend
    from faster_deployment_ros.models import create_adapter

    bgr = frames[1]
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    with create_backend('onnxruntime', str(yolox_model), threads=1) as backend:
        adapter = create_adapter('yolox', backend.inputs, backend.outputs, backend.metadata)

        def detect(image):
            tensors, meta = adapter.preprocess(image)
            return adapter.postprocess(backend.infer(tensors), meta)

        ref = detect(bgr)
        ref_mono = detect(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
        assert len(ref) >= 5 and len(ref_mono) >= 5
        colour = {'uyvy': cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_UYVY),
                  'yuyv': cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_YUY2),
                  'nv21': nv(bgr, 'nv21'), 'bayer_rggb8': mosaic(bgr, 'rggb')}
        for encoding, raw in colour.items():
            found = detect(to_bgr8(via_message(raw, encoding), encoding))
            assert abs(len(found) - len(ref)) <= max(2, len(ref) // 5), encoding
            assert set(found.class_ids.tolist()) & set(ref.class_ids.tolist())
        for bits in (10, 12):
            m16 = (grey.astype(np.uint32) * ((1 << bits) - 1) // 255).astype(np.uint16)
            found = detect(to_bgr8(via_message(m16, 'mono16'), 'mono16', bit_depth=bits))
            assert abs(len(found) - len(ref_mono)) <= max(1, len(ref_mono) // 10), bits
