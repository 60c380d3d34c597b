"""Nav2's semantic_segmentation_layer end to end: mask, confidence and aligned cloud, synchronised.

The layer (github.com/kiwicampus/semantic_segmentation_layer, also ros-navigation's) subscribes,
per observation source, to a `segmentation_topic` (sensor_msgs/Image, uint8 class ids read as
data[v * width + u]), a `confidence_topic` (uint8, 0-255), a `pointcloud_topic` (PointCloud2:
x, y, z float32, one point per mask pixel: it drops the set when mask width * height differs
from the cloud's) with sensor-data QoS (best effort, depth 50), and a `labels_topic` (LabelInfo,
reliable, transient local, depth 5) whose class_map maps ids to names; mask, confidence and
cloud go through `message_filters::TimeSynchronizer` (exact stamps, queue 1000).

Here a segmentation_node and a depth_node (metric depth, `publish_points`, `points_stride: 1`)
get the same frames and camera_info; a subscriber built like the layer - the Python
`message_filters.Subscriber` + `TimeSynchronizer` from ros2/message_filters, same QoS, same
queue - must receive one synchronised set per frame, each passing the checks the layer makes
before it buffers an observation.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from faster_deployment_ros.core.image_codec import msg_to_numpy  # noqa: E402, I100
from faster_deployment_ros.ros.depth_node import DepthNode  # noqa: E402
from faster_deployment_ros.ros.node_main import make_executor  # noqa: E402
from faster_deployment_ros.ros.segmentation_node import SegmentationNode  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, qos_profile_sensor_data,  # noqa: E402
                       QoSProfile, ReliabilityPolicy)
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from support.golden import model_path, read_frame  # noqa: E402
from support.node_harness import header_key, image_msg, RELIABLE  # noqa: E402
from support.node_harness import TEST_PARAMETERS  # noqa: E402
from support.ros_nodes import destroy_node  # noqa: E402
from support.shared_data import missing  # noqa: E402
from vision_msgs.msg import LabelInfo  # noqa: E402

pytestmark = pytest.mark.ros

#: the layer's subscriptions: rmw_qos_profile_sensor_data with depth 50; LabelInfo reliable,
#: transient local, depth 5
SENSOR_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50,
                        reliability=qos_profile_sensor_data.reliability,
                        durability=qos_profile_sensor_data.durability)
LABELS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                        reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
SYNC_QUEUE = 1000


@pytest.fixture(scope='module')
def message_filters():
    try:
        import message_filters as mf
    except ImportError:
        missing('message_filters (ros2/message_filters, Python) is not importable: '
                'scripts/setup_env.sh installs it from ../shared/vendor')
    return mf


def camera_info(width: int, height: int, stamp_ns: int, frame_id: str) -> CameraInfo:
    fx = fy = 0.9 * width
    info = CameraInfo(width=width, height=height, distortion_model='plumb_bob')
    info.k = [fx, 0.0, width / 2 - 0.5, 0.0, fy, height / 2 - 0.5, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, width / 2 - 0.5, 0.0, 0.0, fy, height / 2 - 0.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.header.stamp.sec, info.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    info.header.frame_id = frame_id
    return info


class LayerLikeSubscriber:
    """What the layer's onInitialize builds for one observation source with a confidence topic."""

    def __init__(self, node, mf, ns: str = '') -> None:
        self.sets = []
        self.labels = []
        self._cv = threading.Condition()
        self.mask_sub = mf.Subscriber(node, Image, f'{ns}segmentation', qos_profile=SENSOR_QOS)
        self.conf_sub = mf.Subscriber(node, Image, f'{ns}segmentation_confidence',
                                      qos_profile=SENSOR_QOS)
        self.cloud_sub = mf.Subscriber(node, PointCloud2, f'{ns}points', qos_profile=SENSOR_QOS)
        self.label_sub = mf.Subscriber(node, LabelInfo, f'{ns}label_info',
                                       qos_profile=LABELS_QOS)
        self.label_sub.registerCallback(self._on_labels)
        self.sync = mf.TimeSynchronizer([self.mask_sub, self.conf_sub, self.cloud_sub],
                                        SYNC_QUEUE)
        self.sync.registerCallback(self._on_set)

    def _on_labels(self, msg) -> None:
        with self._cv:
            self.labels.append(msg)
            self._cv.notify_all()

    def _on_set(self, mask, conf, cloud) -> None:
        with self._cv:
            self.sets.append((mask, conf, cloud))
            self._cv.notify_all()

    def wait(self, what: str, n: int, timeout: float = 120.0) -> list:
        with self._cv:
            self._cv.wait_for(lambda: len(getattr(self, what)) >= n, timeout)
            return list(getattr(self, what))


class Rig:
    """segmentation_node + depth_node + a camera peer + the layer-like subscriber, one executor."""

    def __init__(self, mf) -> None:
        common = {**TEST_PARAMETERS, 'image': 'image'}
        self.seg = SegmentationNode(parameter_overrides=[Parameter(k, value=v) for k, v in {
            **common, 'model_path': str(model_path('lraspp_mobilenet_v3_large'))}.items()])
        self.depth = DepthNode(parameter_overrides=[Parameter(k, value=v) for k, v in {
            **common, 'model_path': str(model_path('midas_small_style')),
            'model_family': 'midas', 'depth_output': 'metric', 'depth_scale': 0.01,
            'publish_points': True, 'points_stride': 1}.items()])
        self.peer = rclpy.create_node('nav2_layer_peer')
        self.image_pub = self.peer.create_publisher(Image, 'image', RELIABLE)
        self.info_pub = self.peer.create_publisher(CameraInfo, 'camera_info', RELIABLE)
        self.executor = make_executor()  # as the node's own process spins it
        for n in (self.seg, self.depth, self.peer):
            self.executor.add_node(n)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()
        for node in (self.seg, self.depth):
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS, \
                node.configure_error
            assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        # the layer starts after the nodes (label_info must have been kept for it)
        self.layer = LayerLikeSubscriber(self.peer, mf)

    def wait_matched(self, timeout: float = 30.0) -> None:
        import time
        deadline = time.monotonic() + timeout
        while (self.image_pub.get_subscription_count() < 2
               or self.info_pub.get_subscription_count() < 1
               or any(p.get_subscription_count() < 1 for p in
                      self.seg._mask_pubs + self.seg._conf_pubs + self.depth._points_pubs)):
            assert time.monotonic() < deadline, 'the graph never connected'
            time.sleep(0.05)

    def close(self) -> None:
        self.executor.shutdown()
        self._thread.join(5)
        for node in (self.seg, self.depth):
            node.release()
        destroy_node(self.seg, self.depth, self.peer)


def test_mask_confidence_and_cloud_synchronise_as_the_layer_does(ros, message_filters,
                                                                 campus_video):
    rig = Rig(message_filters)
    try:
        rig.wait_matched()
        labels = rig.layer.wait('labels', 1, timeout=30)
        assert labels, 'the layer never got label_info (transient local)'
        ids = {c.class_id: c.class_name for c in labels[-1].class_map}
        assert len(ids) == 21 and ids[15] == 'person'
        frames = [read_frame(campus_video, i) for i in (5, 15, 25)]
        sent = []
        for i, frame in enumerate(frames):
            stamp = 5_000_000_000 + 100_000_000 * i
            h, w = frame.shape[:2]
            rig.info_pub.publish(camera_info(w, h, stamp, 'campus_optical'))
            msg = image_msg(frame, stamp, 'campus_optical')
            sent.append(msg)
            rig.image_pub.publish(msg)
            got = rig.layer.wait('sets', i + 1)  # one frame at a time: nothing dropped
            assert len(got) == i + 1, f'frame {i}: no synchronised set (mask, confidence, cloud)'
        for (mask, conf, cloud), src, frame in zip(rig.layer.sets, sent, frames):
            # exact same header on all three: what TimeSynchronizer paired them by
            assert header_key(mask.header) == header_key(conf.header) \
                == header_key(cloud.header) == header_key(src.header)
            # the layer's checks before bufferSegmentation
            assert mask.width * mask.height == cloud.width * cloud.height
            assert len(mask.data) >= mask.width * mask.height
            assert (mask.height, mask.width) == frame.shape[:2] == (cloud.height, cloud.width)
            assert mask.encoding == conf.encoding == 'mono8'
            assert mask.step == mask.width and conf.step == conf.width
            fields = {f.name: (f.datatype, f.count) for f in cloud.fields}
            assert all(fields[a] == (7, 1) for a in 'xyz'), fields  # FLOAT32
            classes = np.unique(msg_to_numpy(mask))
            assert set(classes.tolist()) - {255} <= set(ids), 'mask ids not in label_info'
            assert len(classes) > 5
            assert msg_to_numpy(conf).max() > 0
    finally:
        rig.close()
