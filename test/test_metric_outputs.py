"""Metres from pixels: depth_node's `points` and detector_node's `detections_3d`.

Real rclpy graph, the MiDaS-style test model read as metric depth, real frames. The cloud the
node publishes equals depth_image_proc's point_cloud_xyz formula (core.geometry, itself checked
against an independent reference in test_geometry.py) applied to the depth image the node
publishes for the same frame, with the same header; a frame without a matching CameraInfo gets
no cloud and a warning naming why.
"""
from __future__ import annotations

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from faster_deployment_ros.core.geometry import CameraModel, depth_to_points  # noqa: E402, I100
from faster_deployment_ros.core.image_codec import msg_to_numpy  # noqa: E402
from faster_deployment_ros.ros.depth_node import DepthNode  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from support.golden import model_path, read_frame  # noqa: E402
from support.node_harness import header_key, image_msg, NodeHarness  # noqa: E402
from support.node_harness import TEST_PARAMETERS, wait_until  # noqa: E402

pytestmark = pytest.mark.ros


def camera_info(width: int, height: int, stamp_ns: int, frame_id: str) -> CameraInfo:
    fx = fy = 0.9 * width
    info = CameraInfo(width=width, height=height, distortion_model='plumb_bob')
    info.k = [fx, 0.0, width / 2 - 0.5, 0.0, fy, height / 2 + 3.0, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, width / 2 - 0.5, 0.0, 0.0, fy, height / 2 + 3.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.header.stamp.sec, info.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    info.header.frame_id = frame_id
    return info


def cloud_xyz(msg: PointCloud2) -> np.ndarray:
    """(height, width, 3) x y z of an organized cloud, read through its own field offsets."""
    offsets = {f.name: f.offset for f in msg.fields}
    raw = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, msg.point_step)
    return np.stack([raw[:, :, offsets[a]:offsets[a] + 4].copy().view(np.float32)[..., 0]
                     for a in 'xyz'], axis=-1)


@pytest.fixture
def rig(ros):
    made = []

    def make(**params):
        p = {**TEST_PARAMETERS, 'model_path': str(model_path('midas_small_style')),
             'model_family': 'midas', 'depth_output': 'metric', 'depth_scale': 0.01,
             'publish_points': True, **params}
        h = NodeHarness(DepthNode, p, 'depth_points_peer',
                        inputs={'image': (Image, 'image'), 'info': (CameraInfo, 'camera_info')},
                        outputs={'depth': (Image, 'depth'), 'points': (PointCloud2, 'points')})
        made.append(h)
        return h
    yield make
    for h in made:
        h.close()


@pytest.mark.parametrize('stride', [1, 3])
def test_cloud_is_the_depth_image_through_the_camera_model(rig, plaza_video, stride):
    h = rig(points_stride=stride)
    h.start(inputs=['image', 'info'])
    frame = read_frame(plaza_video, 10)
    height, width = frame.shape[:2]
    stamps = [7_000_000_000 + 40_000_000 * i for i in range(2)]
    for stamp in stamps:  # CameraInfo first, as drivers publish it with each frame
        h.pubs['info'].publish(camera_info(width, height, stamp, 'plaza_optical'))
    assert wait_until(lambda: h.node.camera_infos[0].received == len(stamps))
    for stamp in stamps:
        h.pubs['image'].publish(image_msg(frame, stamp, 'plaza_optical'))
    depths = h.wait_count(h.got['depth'], 2, timeout=60)
    clouds = h.wait_count(h.got['points'], 2, timeout=60)
    assert len(depths) == len(clouds) == 2
    model = CameraModel.from_camera_info(camera_info(width, height, stamps[0], 'plaza_optical'))
    for depth_msg, cloud in zip(depths, clouds):
        assert header_key(cloud.header) == header_key(depth_msg.header)
        assert cloud.header.frame_id == 'plaza_optical' and not cloud.is_dense
        expect = depth_to_points(msg_to_numpy(depth_msg), model, stride=stride)
        assert (cloud.height, cloud.width) == expect.shape[:2]
        got = cloud_xyz(cloud)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expect))
        np.testing.assert_allclose(got, expect, atol=1e-6, equal_nan=True)
        assert np.nanmax(got[..., 2]) > 0  # a real cloud, metres in front of the camera


def test_no_camera_info_no_cloud_and_a_warning_naming_why(rig, plaza_video):
    h = rig()
    h.start()
    frame = read_frame(plaza_video, 10)
    h.pubs['image'].publish(image_msg(frame, 9_000_000_000, 'plaza_optical'))
    assert len(h.wait_count(h.got['depth'], 1, timeout=60)) == 1
    assert wait_until(lambda: h.node.outputs_skipped == 1)
    assert 'no CameraInfo received yet on /camera_info' in h.node.skip_reason
    assert not h.got['points']


def test_points_need_metric_depth(rig):
    h = rig(depth_output='relative_inverse')
    assert h.node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert 'publish_points needs metric depth' in h.node.configure_error


# ---- a metric model: metres with no depth_output / depth_scale to set -----------------------
METRIC_MODEL = 'depth_anything_v2_metric_hypersim_vits'


def test_metric_model_gives_a_cloud_in_metres_out_of_the_box(rig, plaza_video):
    """The official metric model (metadata depth_kind: metric): auto gives metres and points."""
    h = rig(model_path=str(model_path(METRIC_MODEL)), model_family='auto', depth_output='auto',
            depth_scale=0.0, points_stride=2)
    h.start(inputs=['image', 'info'])
    assert h.node.adapter.output == 'metric' and h.node.adapter.max_depth == 20.0
    frame = read_frame(plaza_video, 10)
    height, width = frame.shape[:2]
    stamp = 11_000_000_000
    h.pubs['info'].publish(camera_info(width, height, stamp, 'plaza_optical'))
    assert wait_until(lambda: h.node.camera_infos[0].received == 1)
    h.pubs['image'].publish(image_msg(frame, stamp, 'plaza_optical'))
    depth_msg = h.wait_count(h.got['depth'], 1, timeout=60)[0]
    cloud = h.wait_count(h.got['points'], 1, timeout=60)[0]
    assert depth_msg.encoding == '32FC1'
    assert header_key(cloud.header) == header_key(depth_msg.header)
    depth = msg_to_numpy(depth_msg)
    # Metres of the model's range, spread like a scene (not a constant or a relative map).
    assert np.isfinite(depth).all() and 0.0 < depth.min() and depth.max() < 20.0
    assert np.percentile(depth, 95) - np.percentile(depth, 5) > 3.0
    z = cloud_xyz(cloud)[..., 2]
    np.testing.assert_array_equal(z, depth[::2, ::2])  # z is the depth image, metre for metre


def test_depth_output_contradicting_the_model_fails_configure(rig):
    h = rig(model_path=str(model_path(METRIC_MODEL)), model_family='auto',
            depth_output='relative_inverse', depth_scale=0.0, publish_points=False)
    assert h.node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert 'depth_kind: metric' in h.node.configure_error
    assert 'use depth_output auto or metric' in h.node.configure_error


def test_relative_model_gives_no_metres_without_a_scale(rig):
    """No depth_kind metadata: auto is relative (no cloud); metric needs depth_scale."""
    relative = str(model_path('depth_anything_v2_vits'))
    h = rig(model_path=relative, model_family='auto', depth_output='auto', depth_scale=0.0)
    assert h.node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert 'publish_points needs metric depth' in h.node.configure_error
    h2 = rig(model_path=relative, model_family='auto', depth_output='metric', depth_scale=0.0)
    assert h2.node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert 'no depth_kind metadata' in h2.node.configure_error
    assert 'set depth_scale: 1.0' in h2.node.configure_error


# ---- detector_node: detections lifted to 3D with a registered depth image -----------------
@pytest.fixture
def detector_rig(ros, yolox_model):
    from faster_deployment_ros.ros.detector_node import DetectorNode
    from vision_msgs.msg import Detection2DArray, Detection3DArray
    made = []

    def make(**params):
        p = {**TEST_PARAMETERS, 'model_path': str(yolox_model), 'model_family': 'yolox',
             'publish_detections_3d': True, **params}
        h = NodeHarness(DetectorNode, p, 'detector_3d_peer',
                        inputs={'image': (Image, 'image'), 'info': (CameraInfo, 'camera_info'),
                                'depth': (Image, 'depth_registered/image_rect')},
                        outputs={'det': (Detection2DArray, 'detections'),
                                 'det3d': (Detection3DArray, 'detections_3d')})
        made.append(h)
        return h
    yield make
    for h in made:
        h.close()


@pytest.mark.parametrize('encoding', ['32FC1', '16UC1'])
def test_detections_3d_from_a_registered_depth_image(detector_rig, dog_image_path, encoding):
    import cv2
    from faster_deployment_ros.core.image_codec import fill_image_msg
    h = detector_rig()
    h.start(inputs=['image', 'info', 'depth'])
    frame = cv2.imread(str(dog_image_path))
    height, width = frame.shape[:2]
    stamp = 11_000_000_000
    # a scene of known geometry: everything 2.5 m away (a wall), 16UC1 in millimetres
    depth = np.full((height, width), 2.5, np.float32) if encoding == '32FC1' \
        else np.full((height, width), 2500, np.uint16)
    depth_msg = fill_image_msg(Image(), depth, encoding)
    depth_msg.header.stamp.sec, depth_msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
    depth_msg.header.frame_id = 'dog_optical'
    h.pubs['info'].publish(camera_info(width, height, stamp, 'dog_optical'))
    h.pubs['depth'].publish(depth_msg)
    assert wait_until(lambda: h.node.detections_3d.depth_images[0].received == 1
                      and h.node.detections_3d.camera_infos[0].received == 1)
    h.pubs['image'].publish(image_msg(frame, stamp, 'dog_optical'))
    det2d = h.wait_count(h.got['det'], 1, timeout=60)[0]
    det3d = h.wait_count(h.got['det3d'], 1, timeout=60)[0]
    assert header_key(det3d.header) == header_key(det2d.header)
    assert len(det3d.detections) == len(det2d.detections) > 0
    info = camera_info(width, height, stamp, 'dog_optical')
    fx, cx, fy, cy = info.p[0], info.p[2], info.p[5], info.p[6]
    for d2, d3 in zip(det2d.detections, det3d.detections):
        c = d3.bbox.center.position
        assert c.z == pytest.approx(2.5, abs=1e-6)
        # the box centre through the pinhole model (pixel centres at +0.5: core.geometry)
        u, v = d2.bbox.center.position.x - 0.5, d2.bbox.center.position.y - 0.5
        assert c.x == pytest.approx((u - cx) * 2.5 / fx, abs=1e-3)
        assert c.y == pytest.approx((v - cy) * 2.5 / fy, abs=1e-3)
        assert d3.bbox.size.x == pytest.approx(d2.bbox.size_x * 2.5 / fx, rel=0.02)
        assert d3.results[0].hypothesis.class_id == d2.results[0].hypothesis.class_id


def test_no_depth_image_no_3d_detections_and_the_reason(detector_rig, dog_image_path):
    import cv2
    h = detector_rig()
    h.start()
    h.pubs['image'].publish(image_msg(cv2.imread(str(dog_image_path)), 12_000_000_000, 'x'))
    assert len(h.wait_count(h.got['det'], 1, timeout=60)) == 1
    assert wait_until(lambda: h.node.outputs_skipped == 1)
    assert 'no depth image received yet' in h.node.skip_reason, h.node.skip_reason
    assert not h.got['det3d']


def depth_image(value_m: float, width: int, height: int, stamp: int, frame_id: str) -> Image:
    from faster_deployment_ros.core.image_codec import fill_image_msg
    msg = fill_image_msg(Image(), np.full((height, width), value_m, np.float32), '32FC1')
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


def test_depth_images_after_the_detections_are_waited_for_in_order(detector_rig,
                                                                   dog_image_path):
    """A depth model slower than the detector: its images come after each frame's detections.

    Frames wait (depth_wait_ms) and leave in delivery order; a frame whose depth image the depth
    stream skipped gets no 3D detections, counted with the reason.
    """
    import cv2
    h = detector_rig(depth_wait_ms=10000.0)
    h.start(inputs=['image', 'info', 'depth'])
    frame = cv2.imread(str(dog_image_path))
    height, width = frame.shape[:2]
    stamps = [20_000_000_000 + k * 100_000_000 for k in range(4)]
    for s in stamps:
        h.pubs['info'].publish(camera_info(width, height, s, 'cam'))
    h.pubs['depth'].publish(depth_image(1.0, width, height, stamps[0], 'cam'))
    assert wait_until(lambda: h.node.detections_3d.depth_images[0].received == 1
                      and h.node.detections_3d.camera_infos[0].received == 4)
    for s in stamps:
        h.pubs['image'].publish(image_msg(frame, s, 'cam'))
        h.wait_count(h.got['det'], stamps.index(s) + 1, timeout=60)
    # frame 0's depth was there: out at once; frames 1-3 wait for theirs
    assert [m.header.stamp.sec * 10 ** 9 + m.header.stamp.nanosec
            for m in h.wait_count(h.got['det3d'], 1, timeout=60)] == stamps[:1]
    assert len(h.node.detections_3d.joins[0]) == 3 and h.node.outputs_skipped == 0
    # the depth stream skips frame 1 and delivers frames 2 and 3 (2.0 m, 3.0 m)
    h.pubs['depth'].publish(depth_image(2.0, width, height, stamps[2], 'cam'))
    h.pubs['depth'].publish(depth_image(3.0, width, height, stamps[3], 'cam'))
    got = h.wait_count(h.got['det3d'], 3, timeout=60)
    assert [m.header.stamp.sec * 10 ** 9 + m.header.stamp.nanosec for m in got] == \
        [stamps[0], stamps[2], stamps[3]]
    assert [m.detections[0].bbox.center.position.z for m in got] == \
        pytest.approx([1.0, 2.0, 3.0], abs=1e-6)
    assert wait_until(lambda: h.node.outputs_skipped == 1)
    assert 'none at or after it' not in h.node.skip_reason  # it was passed, not late
    assert 'stamps differ' in h.node.skip_reason, h.node.skip_reason


def test_a_depth_image_that_never_comes_is_waited_for(detector_rig, dog_image_path):
    import cv2
    h = detector_rig(depth_wait_ms=300.0)
    h.start(inputs=['image', 'info', 'depth'])
    frame = cv2.imread(str(dog_image_path))
    height, width = frame.shape[:2]
    first, second = 30_000_000_000, 30_100_000_000
    h.pubs['info'].publish(camera_info(width, height, first, 'cam'))
    h.pubs['info'].publish(camera_info(width, height, second, 'cam'))
    h.pubs['depth'].publish(depth_image(1.5, width, height, first, 'cam'))
    assert wait_until(lambda: h.node.detections_3d.depth_images[0].received == 1
                      and h.node.detections_3d.camera_infos[0].received == 2)
    h.pubs['image'].publish(image_msg(frame, second, 'cam'))
    assert len(h.wait_count(h.got['det'], 1, timeout=60)) == 1
    # nothing else arrives: the node's expiry timer ends the wait
    assert wait_until(lambda: h.node.outputs_skipped == 1)
    assert 'none at or after it yet' in h.node.skip_reason, h.node.skip_reason
    assert '(waited 300 ms)' in h.node.skip_reason
    assert not h.got['det3d']
