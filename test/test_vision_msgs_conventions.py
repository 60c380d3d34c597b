"""vision_msgs conventions and family defaults of the detector, in a real ROS 2 graph.

LabelInfo on `label_info` (transient local, so a subscriber that comes late still gets it), index
class ids decoded through it, Detection2D.id empty, frame_id passed through; each model family's
reference thresholds unless the user sets them; a 12-bit mono16 camera decoded with `bit_depth`.
"""
from __future__ import annotations

from pathlib import Path
import threading
import time

import cv2
from faster_deployment_ros.core.image_codec import fill_image_msg
from faster_deployment_ros.ros.detector_node import DetectorNode
from faster_deployment_ros.ros.node_main import make_executor
from faster_deployment_ros.tools.frames import read_frames
import numpy as np
import pytest
import rclpy
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from support.node_harness import close_rig
from vision_msgs.msg import Detection2DArray, LabelInfo

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / '.cache' / 'models'
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATE = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                  durability=DurabilityPolicy.TRANSIENT_LOCAL)
_SUFFIX = iter(range(1000))


class Graph:
    """A detector and a peer node spinning in one executor; the peer subscribes on demand."""

    def __init__(self, model: Path, **params) -> None:
        overrides = {'model_path': str(model), 'qos_reliability': 'reliable',
                     'full_policy': 'block', 'queue_size': 4, 'qos_depth': 10,
                     'diagnostics_period': 0.0}
        overrides.update(params)
        self.node = DetectorNode(parameter_overrides=[Parameter(k, value=v)
                                                      for k, v in overrides.items()])
        self.peer = rclpy.create_node(f'conventions_peer_{next(_SUFFIX)}')
        self.image_pub = self.peer.create_publisher(Image, 'image', RELIABLE)
        self.got = {'detections': [], 'label_info': []}
        self._cv = threading.Condition()
        self.executor = make_executor()  # as the node's own process spins it
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def subscribe(self, kind: str) -> None:
        msg_type, qos = ((Detection2DArray, RELIABLE) if kind == 'detections'
                         else (LabelInfo, LATE))
        self.peer.create_subscription(msg_type, kind, lambda m: self._on(kind, m), qos)

    def _on(self, kind: str, msg) -> None:
        with self._cv:
            self.got[kind].append(msg)
            self._cv.notify_all()

    def wait(self, kind: str, n: int, timeout: float = 30.0) -> list:
        deadline = time.monotonic() + timeout
        with self._cv:
            while len(self.got[kind]) < n and time.monotonic() < deadline:
                self._cv.wait(0.1)
            return list(self.got[kind])

    def wait_subscribed(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.image_pub.get_subscription_count() == 0:
            assert time.monotonic() < deadline, 'the detector never subscribed'
            time.sleep(0.05)

    def start(self) -> None:
        assert self.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert self.node.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def send(self, array: np.ndarray, encoding: str, frame_id: str, sec: int) -> None:
        msg = fill_image_msg(Image(), array, encoding)
        msg.header.frame_id = frame_id
        msg.header.stamp.sec = sec
        self.image_pub.publish(msg)

    def close(self) -> None:
        close_rig(self)


@pytest.fixture
def graph(ros):
    made = []

    def make(model, **params):
        g = Graph(model, **params)
        made.append(g)
        return g

    yield make
    for g in made:
        g.close()


@pytest.fixture(scope='module')
def plaza_frame(plaza_video):
    frames = read_frames(plaza_video, 1)
    assert frames, 'cannot read the plaza video'
    return frames[0]


def test_label_info_reaches_a_late_subscriber_and_decodes_index_ids(graph, yolox_model,
                                                                    plaza_frame):
    g = graph(yolox_model, class_id_mode='index')
    g.start()
    # Subscribe only now, after the node published its LabelInfo: transient local delivers it.
    g.subscribe('label_info')
    g.subscribe('detections')
    info = g.wait('label_info', 1)
    assert len(info) == 1, 'a late subscriber got no LabelInfo'
    info = info[0]
    names = {c.class_id: c.class_name for c in info.class_map}
    assert len(names) == 80 and names[0] == 'person' and names[79] == 'toothbrush'
    assert info.threshold == pytest.approx(0.3)  # YOLOX's reference conf (unset parameter)

    g.wait_subscribed()
    g.send(plaza_frame, 'bgr8', 'plaza_camera', 11)
    det = g.wait('detections', 1)
    assert det, 'no detections arrived'
    det = det[0]
    assert det.header.frame_id == 'plaza_camera' and det.header.stamp.sec == 11
    assert len(det.detections) >= 3
    labels = set()
    for d in det.detections:
        assert d.id == ''  # no tracker here: the id stays empty
        assert d.header.frame_id == 'plaza_camera'
        class_id = d.results[0].hypothesis.class_id
        assert class_id.isdigit() and int(class_id) in names
        labels.add(names[int(class_id)])
        assert d.results[0].hypothesis.score >= info.threshold
    assert 'person' in labels

    # A run-time threshold change publishes a new LabelInfo.
    res = g.node.set_parameters([Parameter('conf_threshold', value=0.55)])
    assert res[0].successful, res[0].reason
    info = g.wait('label_info', 2)
    assert len(info) == 2 and info[1].threshold == pytest.approx(0.55)


@pytest.mark.parametrize('model,family,conf,nms', [
    ('yolox', 'yolox', 0.3, 0.45),
    ('yolov8n.onnx', 'yolov8', 0.25, 0.7),
    ('yolo11n.onnx', 'yolov8', 0.25, 0.7),  # same head and decode as YOLOv8
    ('yolo11n-obb.onnx', 'obb', 0.25, 0.7),  # oriented boxes: metadata task obb
    ('rtdetr-l.onnx', 'rtdetr', 0.25, None),
])
def test_family_reference_defaults_unless_set(graph, yolox_model, model, family, conf, nms):
    path = yolox_model if model == 'yolox' else MODELS / model
    if not path.exists():
        pytest.skip(f'{path} not found (scripts/test_assets.d/20_test_models.sh builds it)')
    g = graph(path)
    assert g.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    a = g.node.adapter
    assert a.family == family
    assert a.conf_threshold == pytest.approx(conf)
    if nms is None:
        assert not hasattr(a, 'nms_threshold')
    else:
        assert a.nms_threshold == pytest.approx(nms)
    assert g.node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    # a value the user sets wins; the other stays the family's
    g.node.set_parameters([Parameter('conf_threshold', value=0.6)])
    assert g.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert g.node.adapter.conf_threshold == pytest.approx(0.6)
    if nms is not None:
        assert g.node.adapter.nms_threshold == pytest.approx(nms)


def test_twelve_bit_mono16_camera_with_bit_depth(graph, yolox_model, plaza_frame):
    """A 12-bit sensor in mono16 words.

    With bit_depth 12 the node finds what it finds in the same frame as mono8 (cv_bridge's 16-bit
    scaling would make it 16x darker).
    """
    grey = cv2.cvtColor(plaza_frame, cv2.COLOR_BGR2GRAY)
    m12 = (grey.astype(np.uint32) * 4095 // 255).astype(np.uint16)
    g = graph(yolox_model, bit_depth=12)
    g.start()
    g.subscribe('detections')
    g.wait_subscribed()
    g.send(grey, 'mono8', 'cam', 1)
    g.send(m12, 'mono16', 'cam', 2)
    out = g.wait('detections', 2)
    assert [m.header.stamp.sec for m in out] == [1, 2]
    assert len(out[0].detections) >= 3
    assert abs(len(out[1].detections) - len(out[0].detections)) <= 1
