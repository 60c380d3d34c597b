"""The node's Detection2DArray bytes (detection_array_cdr) are to_detection_array's message.

rclpy deserialises them to an equal message, for empty and full frames, every string length
(CDR alignment), both class id modes, with track ids in Detection2D.id and with oriented boxes
(bbox.center.theta); and they are what a subscriber receives.
"""
from __future__ import annotations

from faster_deployment_ros.core.obb import obb_to_xyxy
from faster_deployment_ros.core.types import Detections
from faster_deployment_ros.ros.detection_msgs import detection_array_cdr, to_detection_array
import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from std_msgs.msg import Header
from support.cdr import assert_cdr_is, receive_raw
from vision_msgs.msg import Detection2DArray

pytestmark = pytest.mark.ros


def _detections(n: int, rng, names) -> Detections:
    xy = rng.uniform(0, 1200, (n, 2))
    wh = rng.uniform(1, 300, (n, 2))
    boxes = np.concatenate((xy, xy + wh), 1).astype(np.float32)
    return Detections(boxes, rng.uniform(0, 1, n).astype(np.float32),
                      rng.integers(0, len(names), n), names)


@pytest.mark.parametrize('frame_id', ['', 'c', 'cam', 'camera_optical_frame', 'kamera_ü'])
@pytest.mark.parametrize('n', [0, 1, 2, 7, 40])
@pytest.mark.parametrize('mode', ['name', 'index'])
def test_cdr_bytes_are_the_message(frame_id, n, mode):
    rng = np.random.default_rng(n)
    names = ['person', 'x', 'ab', 'abc', 'traffic light', 'p' * 9, 'zebra'] + ['c'] * 73
    det = _detections(n, rng, names)
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = 1_700_000_123, 987_654_321
    want = to_detection_array(det, header, mode)
    msg = assert_cdr_is(detection_array_cdr(det, header, mode), want)
    if n:
        d = msg.detections[0]
        x1, y1, x2, y2 = det.boxes[0].astype(np.float64)
        assert d.bbox.center.position.x == pytest.approx((x1 + x2) / 2)
        assert d.bbox.size_y == pytest.approx(y2 - y1)
        assert d.results[0].pose.pose.orientation.w == 1.0
        assert d.header == header


@pytest.mark.parametrize('n', [1, 3, 40])
def test_track_ids_go_into_detection2d_id(n):
    """Ids of every decimal length (so every padding after the id string) survive the bytes."""
    rng = np.random.default_rng(10 + n)
    det = _detections(n, rng, ['person', 'car', 'traffic light'])
    det.track_ids = np.array([1, 22, 333, 4444, 10 ** 12, 7][:n] * 7, np.int64)[:n]
    header = Header(frame_id='cam')
    header.stamp.sec = 5
    want = to_detection_array(det, header, 'name')
    assert [d.id for d in want.detections] == [str(i) for i in det.track_ids.tolist()]
    assert_cdr_is(detection_array_cdr(det, header, 'name'), want)
    det.track_ids = None  # untracked: the id stays empty
    assert {d.id for d in deserialize_message(detection_array_cdr(det, header),
                                              Detection2DArray).detections} == {''}


@pytest.mark.parametrize('n', [1, 5, 40])
def test_oriented_boxes_set_theta_and_own_frame_size(n):
    """Detections.obb: centre, theta and the box's own w, h in BoundingBox2D, bytes = message."""
    rng = np.random.default_rng(20 + n)
    obb = np.concatenate([rng.uniform(0, 1000, (n, 2)), rng.uniform(1, 300, (n, 2)),
                          rng.uniform(-np.pi / 4, 3 * np.pi / 4, (n, 1))], 1).astype(np.float32)
    det = Detections(obb_to_xyxy(obb).astype(np.float32), rng.uniform(0, 1, n).astype(np.float32),
                     rng.integers(0, 3, n), ['plane', 'ship', 'storage tank'], obb=obb)
    det.track_ids = np.arange(n, dtype=np.int64) + 7
    header = Header(frame_id='aerial')
    header.stamp.sec = 9
    want = to_detection_array(det, header, 'name')
    msg = assert_cdr_is(detection_array_cdr(det, header, 'name'), want)
    for d, (cx, cy, w, h, theta) in zip(msg.detections, obb.astype(np.float64)):
        assert (d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.center.theta,
                d.bbox.size_x, d.bbox.size_y) == (cx, cy, theta, w, h)
    assert any(d.bbox.center.theta != 0.0 for d in msg.detections)
    # select (the class filter, the tracker) keeps obb aligned with the other fields
    picked = det.select(det.class_ids == 1)
    sub = deserialize_message(detection_array_cdr(picked, header), Detection2DArray)
    assert [d.bbox.center.theta for d in sub.detections] == \
        obb[det.class_ids == 1, 4].astype(np.float64).tolist()
    assert {d.results[0].hypothesis.class_id for d in sub.detections} <= {'ship'}


def test_subscriber_receives_the_bytes_as_a_message(ros):
    """Published as bytes (rclpy's raw publish), received as an ordinary message."""
    det = _detections(5, np.random.default_rng(3), ['person', 'car'])
    header = Header(frame_id='cam')
    header.stamp.sec = 42
    got = receive_raw(Detection2DArray, detection_array_cdr(det, header), 'cdr_dets',
                      'cdr_roundtrip')
    assert got == to_detection_array(det, header)
