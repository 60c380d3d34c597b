"""PointCloud2 and Detection3DArray building (ros/cloud_msgs.py).

The clouds are decoded back with numpy from the message's own fields (offset, datatype,
point_step, row_step; no sensor_msgs_py), and the serialised bytes are rclpy's.
"""
from __future__ import annotations

from faster_deployment_ros.core.geometry import (Boxes3D, CameraModel, depth_to_points,
                                                 detections_to_3d)
from faster_deployment_ros.core.types import Detections
from faster_deployment_ros.ros.cloud_msgs import (pack_rgb, point_cloud, point_cloud_cdr,
                                                  to_detection3d_array)
import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header
from support.cdr import assert_cdr_is, receive_raw
from support.golden import read_frame
from support.shared_data import shared_file
from vision_msgs.msg import Detection3DArray

pytestmark = pytest.mark.ros

CAM = CameraModel(fx=910.46, fy=909.87, cx=639.27, cy=358.91, width=1280, height=720)
NUMPY_TYPES = {PointField.FLOAT32: '<f4', PointField.FLOAT64: '<f8', PointField.UINT8: 'u1',
               PointField.UINT32: '<u4'}


def decode(msg: PointCloud2) -> dict:
    """Return each field of the cloud as an (height, width) array, read by its offset."""
    assert not msg.is_bigendian
    dtype = np.dtype({'names': [f.name for f in msg.fields],
                      'formats': [NUMPY_TYPES[f.datatype] for f in msg.fields],
                      'offsets': [f.offset for f in msg.fields],
                      'itemsize': msg.point_step})
    raw = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.row_step)
    rows = raw[:, :msg.width * msg.point_step].copy().view(dtype)
    return {f.name: rows[f.name].reshape(msg.height, msg.width) for f in msg.fields}


def header(frame_id='camera_color_optical_frame', sec=1_700_000_000, nanosec=123_456_789):
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


@pytest.fixture(scope='module')
def scene():
    """Return a real frame and a depth map over it (floor and wall, holes in a band)."""
    frame = read_frame(shared_file('data/pedestrians_plaza_1280x720_50fps.avi'), 10)
    v = np.arange(720, dtype=np.float32)[:, None]
    u = np.arange(1280, dtype=np.float32)[None, :]
    depth = np.minimum(8.0, 1.2 + 2000.0 / (v + 40.0) + 0.001 * u).astype(np.float32)
    depth[300:320] = np.nan
    return frame, depth


@pytest.mark.parametrize('stride', [1, 2, 3])
@pytest.mark.parametrize('with_rgb', [False, True])
def test_cloud_decodes_to_the_points(scene, stride, with_rgb):
    frame, depth = scene
    pts = depth_to_points(depth, CAM, stride=stride)
    rgb = pack_rgb(frame, 'bgr8', stride) if with_rgb else None
    msg = point_cloud(pts, header(), rgb)
    h, w = pts.shape[:2]
    assert (msg.height, msg.width) == (h, w) == (-(-720 // stride), -(-1280 // stride))
    assert msg.header == header() and not msg.is_dense and not msg.is_bigendian
    rgb_field = [('rgb', 12, PointField.FLOAT32, 1)] if with_rgb else []
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == \
        [(n, o, PointField.FLOAT32, 1) for n, o in (('x', 0), ('y', 4), ('z', 8))] + rgb_field
    assert msg.point_step == (16 if with_rgb else 12) and msg.row_step == msg.point_step * w
    assert len(msg.data) == msg.row_step * h
    got = decode(msg)
    xyz = np.stack([got['x'], got['y'], got['z']], -1)
    np.testing.assert_array_equal(xyz, pts)  # NaN where pts is NaN, bit for bit elsewhere
    assert np.isnan(xyz[300 // stride + 1]).all() and np.isfinite(xyz[0]).all()
    if with_rgb:
        # depth_image_proc's packing: bytes B, G, R, 0 (the uint32 0x00RRGGBB)
        packed = got['rgb'].view('<u4')
        bgr = frame[::stride, ::stride].astype(np.uint32)
        np.testing.assert_array_equal(packed, bgr[..., 2] << 16 | bgr[..., 1] << 8 | bgr[..., 0])
    # the raw-publish bytes are this message, as rclpy serialises it
    cdr = point_cloud_cdr(pts, header(), rgb)
    assert_cdr_is(cdr, msg)
    tail = len(msg.data) + 1  # data, is_dense: the same bytes
    assert cdr[-tail:] == serialize_message(msg)[-tail:]


def test_pack_rgb_encodings():
    img = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    bgra = pack_rgb(img, 'bgra8').view(np.uint8).reshape(2, 3, 4)
    assert bgra[0, 1].tolist() == [4, 5, 6, 0]  # B, G, R, alpha 0
    rgba = pack_rgb(img, 'rgba8').view(np.uint8).reshape(2, 3, 4)
    assert rgba[0, 1].tolist() == [6, 5, 4, 0]
    mono = pack_rgb(img[..., 0], 'mono8').view(np.uint8).reshape(2, 3, 4)
    assert mono[1, 2].tolist() == [20, 20, 20, 0]
    with pytest.raises(ValueError, match='convert the image'):
        pack_rgb(img, 'yuv422')
    with pytest.raises(ValueError, match='pack_rgb'):
        point_cloud(np.zeros((2, 3, 3), np.float32), header(), np.zeros((3, 2), np.float32))


def test_detection3d_array_fields_and_header():
    boxes = Boxes3D(centers=np.array([[0.5, -0.2, 2.0], [np.nan] * 3, [-1.0, 0.1, 4.5]]),
                    sizes=np.array([[0.4, 1.7, 0.1], [np.nan] * 3, [1.8, 1.5, 0.6]]),
                    valid=np.array([True, False, True]), core_pixels=np.array([9, 9, 9]),
                    depth_pixels=np.array([9, 0, 9]))
    det = Detections(np.zeros((3, 4), np.float32), np.array([0.9, 0.8, 0.7], np.float32),
                     np.array([0, 2, 2]), ['person', 'bicycle', 'car'])
    h = header('left_optical')
    msg = to_detection3d_array(boxes, det, h, ids=['7', '8', '9'])
    assert isinstance(msg, Detection3DArray) and msg.header == h
    assert len(msg.detections) == 2  # the box without depth is left out
    first, last = msg.detections
    assert first.header == h and first.id == '7' and last.id == '9'
    c, s = first.bbox.center, first.bbox.size
    assert (c.position.x, c.position.y, c.position.z) == (0.5, -0.2, 2.0)
    assert (c.orientation.x, c.orientation.y, c.orientation.z, c.orientation.w) == (0, 0, 0, 1)
    assert (s.x, s.y, s.z) == (0.4, 1.7, 0.1)
    hyp = first.results[0]
    assert hyp.hypothesis.class_id == 'person'
    assert hyp.hypothesis.score == pytest.approx(0.9)
    assert hyp.pose.pose.position == c.position
    assert last.results[0].hypothesis.class_id == 'car'
    assert last.bbox.size.z == 0.6
    by_index = to_detection3d_array(boxes, det, h, class_id_mode='index')
    assert [d.results[0].hypothesis.class_id for d in by_index.detections] == ['0', '2']
    assert by_index.detections[0].id == ''
    assert deserialize_message(serialize_message(msg), Detection3DArray) == msg
    none = detections_to_3d(np.zeros((0, 4)), np.ones((720, 1280), np.float32), CAM)
    empty = to_detection3d_array(none, Detections.empty(), h)
    assert empty.header == h and empty.detections == []
    with pytest.raises(ValueError, match='same detections'):
        to_detection3d_array(boxes, Detections.empty(), h)


def test_camera_model_from_camera_info():
    from sensor_msgs.msg import CameraInfo
    info = CameraInfo(width=1280, height=720, distortion_model='plumb_bob')
    info.header.frame_id = 'cam_optical'
    info.k = [900.0, 0.0, 640.0, 0.0, 905.0, 360.0, 0.0, 0.0, 1.0]
    info.d = [0.1, -0.2, 0.0, 0.0, 0.0]
    cam = CameraModel.from_camera_info(info)  # P unset: K
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (900, 905, 640, 360)
    assert (cam.width, cam.height) == (1280, 720)
    assert cam.frame_id == 'cam_optical' and cam.has_distortion
    # P (the rectified image's) wins when set, as image_geometry uses it
    info.p = [880.0, 0.0, 630.0, 0.0, 0.0, 885.0, 350.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    cam = CameraModel.from_camera_info(info)
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (880, 885, 630, 350)
    # binning 2 and an ROI: image_geometry's adjustment, and the image size they describe
    info.binning_x = info.binning_y = 2
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 100, 50, 800, 600
    cam = CameraModel.from_camera_info(info)
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (440, 442.5, 265, 150)
    assert (cam.width, cam.height) == (400, 300)
    with pytest.raises(ValueError, match='uncalibrated'):
        CameraModel.from_camera_info(CameraInfo(width=640, height=480))


def test_subscriber_receives_the_raw_cloud(ros, scene):
    """Published as bytes (rclpy's raw publish), received as an ordinary PointCloud2."""
    _, depth = scene
    pts = depth_to_points(depth, CAM, stride=8)
    got = receive_raw(PointCloud2, point_cloud_cdr(pts, header('cam')), 'cloud_test',
                      'cloud_roundtrip')
    assert got == point_cloud(pts, header('cam'))
    np.testing.assert_array_equal(decode(got)['z'], pts[..., 2])
