"""One model, several cameras (`inputs`) in a real rclpy graph.

Real ONNX Runtime, the real YOLOX-nano model and real frames from two videos, one per camera.
Each camera's output topic must carry exactly that camera's frames, in its order, with its
headers.
"""
from __future__ import annotations

import threading
import time
from typing import Dict, List

import numpy as np
import pytest
from support.ros_nodes import destroy_node

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402, I100 - after the skip
from faster_deployment_ros.core.image_codec import (encode_compressed,  # noqa: E402
                                                    fill_image_msg, msg_to_numpy)
from faster_deployment_ros.ros.camera_inputs import resolve_inputs  # noqa: E402
from faster_deployment_ros.ros.depth_node import DepthNode  # noqa: E402
from faster_deployment_ros.ros.detector_node import DetectorNode  # noqa: E402
from faster_deployment_ros.ros.node_main import make_executor  # noqa: E402
from faster_deployment_ros.runtime import ParameterError  # noqa: E402
from faster_deployment_ros.tools.frames import read_frames  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from support.golden import model_path  # noqa: E402
from support.node_harness import close_rig  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

pytestmark = pytest.mark.ros

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


# ---------------------------------------------------------------------------- topic resolution
def test_inputs_resolve_to_cameras_and_output_namespaces():
    assert resolve_inputs([]) is None and resolve_inputs(['']) is None
    front, rear, side = resolve_inputs(['/front/image_raw', '/rear/image_raw/compressed',
                                        'side/cam/image'])
    assert (front.topic, front.compressed, front.output('detections')) == \
        ('/front/image_raw', False, '/front/detections')
    assert (rear.topic, rear.compressed, rear.output('depth')) == \
        ('/rear/image_raw/compressed', True, '/rear/depth')
    assert (side.output('detections'), side.name) == ('side/cam/detections', 'side/cam')
    assert [c.index for c in (front, rear, side)] == [0, 1, 2]
    # input_type: compressed reads every camera's image_transport compressed topic
    cams = resolve_inputs(['/a/image', '/b/image/compressed'], 'compressed')
    assert [(c.topic, c.compressed) for c in cams] == \
        [('/a/image/compressed', True), ('/b/image/compressed', True)]
    assert resolve_inputs(['image'])[0].output('detections') == 'detections'


@pytest.mark.parametrize('inputs, why', [
    (['/cam/image_raw', '/cam/image_rect'], 'same topics'),
    (['/front/image_raw', '/front/image_raw'], 'twice'),
    (['image', 'other'], 'same topics'),
    (['/compressed'], 'not an image topic'),
])
def test_inputs_that_would_mix_cameras_are_refused(inputs, why):
    with pytest.raises(ParameterError, match=why):
        resolve_inputs(inputs)


# ---------------------------------------------------------------------------- ROS graph
class Graph:
    """A perception node and a peer with one publisher and one recorder per camera."""

    def __init__(self, node, cameras: Dict[str, tuple], outputs: Dict[str, str],
                 out_type=Detection2DArray) -> None:
        self.node = node
        self.peer = rclpy.create_node('multicam_test_peer')
        self.pubs = {cam: self.peer.create_publisher(typ, topic, RELIABLE)
                     for cam, (topic, typ) in cameras.items()}
        self.got: Dict[str, list] = {cam: [] for cam in outputs}
        self._cv = threading.Condition()
        for cam, topic in outputs.items():
            self.peer.create_subscription(out_type, topic, self._keeper(cam), RELIABLE)
        self.executor = make_executor()  # as the node's own process spins it
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _keeper(self, cam: str):
        def keep(msg) -> None:
            with self._cv:
                self.got[cam].append(msg)
                self._cv.notify_all()
        return keep

    def start(self) -> None:
        assert self.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert self.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        deadline = time.monotonic() + 10
        while any(p.get_subscription_count() == 0 for p in self.pubs.values()):
            assert time.monotonic() < deadline, 'the node never subscribed every camera'
            time.sleep(0.05)

    def wait_for(self, counts: Dict[str, int], timeout: float = 60.0) -> Dict[str, list]:
        deadline = time.monotonic() + timeout
        with self._cv:
            while (any(len(self.got[c]) < n for c, n in counts.items())
                   and time.monotonic() < deadline):
                self._cv.wait(0.1)
            return {c: list(v) for c, v in self.got.items()}

    def close(self) -> None:
        close_rig(self)


@pytest.fixture
def graph(ros):
    made: List[Graph] = []

    def make(node_cls, params: dict, cameras, outputs, out_type=Detection2DArray) -> Graph:
        overrides = {'qos_reliability': 'reliable', 'full_policy': 'block', 'queue_size': 4,
                     'qos_depth': 100, 'diagnostics_period': 0.0}
        overrides.update(params)
        node = node_cls(parameter_overrides=[Parameter(k, value=v)
                                             for k, v in overrides.items()])
        g = Graph(node, cameras, outputs, out_type)
        made.append(g)
        return g

    yield make
    for g in made:
        g.close()


def image_msg(frame: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    msg = fill_image_msg(Image(), frame, 'bgr8')
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


def compressed_msg(frame: np.ndarray, stamp_ns: int, frame_id: str) -> CompressedImage:
    fmt, data = encode_compressed(frame, 'jpeg')
    msg = CompressedImage(format=fmt, data=data)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


def key(h) -> tuple:
    return (h.stamp.sec, h.stamp.nanosec, h.frame_id)


def test_two_cameras_one_detector_each_output_gets_its_own_frames_in_order(
        graph, yolox_model, plaza_video, campus_video):
    n = 8
    plaza = read_frames(plaza_video, n, 5)
    campus = read_frames(campus_video, n, 3)
    assert len(plaza) == len(campus) == n
    g = graph(DetectorNode,
              {'model_path': str(yolox_model), 'model_family': 'yolox', 'conf_threshold': 0.3,
               'workers': 2, 'inputs': ['/mc_front/image_raw', '/mc_rear/image_raw/compressed'],
               'diagnostics_stale_after': 1.0, 'diagnostics_max_latency_ms': 0.0},
              cameras={'front': ('/mc_front/image_raw', Image),
                       'rear': ('/mc_rear/image_raw/compressed', CompressedImage)},
              outputs={'front': '/mc_front/detections', 'rear': '/mc_rear/detections'})
    g.start()
    assert len(g.node.backends) == 2  # two workers, shared by both cameras
    sent: Dict[str, list] = {'front': [], 'rear': []}
    t0 = 1_700_000_000_000_000_000
    for i in range(n):  # interleaved, the rear camera's stamps deliberately older
        front = image_msg(plaza[i], t0 + i * 20_000_000, 'front_optical')
        rear = compressed_msg(campus[i], t0 - 10**9 + i * 100_000_000, 'rear_optical')
        g.pubs['front'].publish(front)
        g.pubs['rear'].publish(rear)
        sent['front'].append(key(front.header))
        sent['rear'].append(key(rear.header))
    got = g.wait_for({'front': n, 'rear': n})
    for cam in ('front', 'rear'):
        assert [key(m.header) for m in got[cam]] == sent[cam], cam
        for m in got[cam]:
            assert all(key(d.header) == key(m.header) for d in m.detections)
    # real detections on both cameras: the plaza is full of people, so is the campus walkway
    assert sum(any(d.results[0].hypothesis.class_id == 'person' for d in m.detections)
               for m in got['front']) >= n - 1
    assert sum(len(m.detections) > 0 for m in got['rear']) >= n // 2
    # boxes lie within each camera's own frame size (720p front, 480x360 rear)
    for cam, (w, h) in (('front', (1280, 720)), ('rear', (480, 360))):
        for m in got[cam]:
            for d in m.detections:
                assert 0 <= d.bbox.center.position.x <= w and 0 <= d.bbox.center.position.y <= h

    # per-camera counters and diagnostics
    sources = g.node.pipeline.stats()['sources']
    assert sources[0]['frames_out'] == n and sources[1]['frames_out'] == n
    statuses = {s.name: s for s in g.node.camera_diagnostics()}
    assert set(statuses) == {'detector: camera mc_front', 'detector: camera mc_rear'}
    for name, topic in (('mc_front', '/mc_front/image_raw'),
                        ('mc_rear', '/mc_rear/image_raw/compressed')):
        s = statuses[f'detector: camera {name}']
        values = {kv.key: kv.value for kv in s.values}
        assert s.level == DiagnosticStatus.OK, s.message
        assert values['input'] == topic and values['published'] == str(n)
        assert values['frames_in'] == str(n) and values['dropped'] == '0'
        assert 'pipeline_latency_p50_ms' in values
    assert set(statuses) <= {s.name for s in g.node.diagnostic_statuses()}

    # One camera goes quiet while the other keeps sending: only its status turns STALE.
    def levels() -> Dict[str, bytes]:
        return {s.name.rsplit(' ', 1)[1]: s.level for s in g.node.camera_diagnostics()}
    deadline, i = time.monotonic() + 20, n
    while levels()['mc_rear'] != DiagnosticStatus.STALE:
        assert time.monotonic() < deadline, 'the silent camera never turned STALE'
        g.pubs['front'].publish(image_msg(plaza[i % n], t0 + i * 20_000_000, 'front_optical'))
        i += 1
        time.sleep(0.1)  # a camera's frame period, not a synchronisation
    assert levels()['mc_front'] == DiagnosticStatus.OK


def test_two_cameras_one_depth_node(graph, plaza_video, campus_video):
    model = model_path('midas_small_style')
    plaza = read_frames(plaza_video, 3, 7)
    campus = read_frames(campus_video, 3, 7)
    g = graph(DepthNode, {'model_path': str(model), 'model_family': 'auto',
                          'inputs': ['/dc_left/image', '/dc_right/image']},
              cameras={'left': ('/dc_left/image', Image), 'right': ('/dc_right/image', Image)},
              outputs={'left': '/dc_left/depth', 'right': '/dc_right/depth'}, out_type=Image)
    g.start()
    sent: Dict[str, list] = {'left': [], 'right': []}
    for i in range(3):
        for cam, frames in (('left', plaza), ('right', campus)):
            msg = image_msg(frames[i], 2_000_000_000 + i * 50_000_000, f'{cam}_cam')
            g.pubs[cam].publish(msg)
            sent[cam].append(key(msg.header))
    got = g.wait_for({'left': 3, 'right': 3})
    for cam, shape in (('left', (720, 1280)), ('right', (360, 480))):
        assert [key(m.header) for m in got[cam]] == sent[cam]
        for m in got[cam]:  # each depth image has its own camera's size
            assert m.encoding == '32FC1' and msg_to_numpy(m).shape == shape


def test_clashing_inputs_fail_configure_with_the_reason(ros, yolox_model):
    node = DetectorNode(parameter_overrides=[
        Parameter('model_path', value=str(yolox_model)),
        Parameter('inputs', value=['/cam/left', '/cam/right'])])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert 'same topics' in node.configure_error
    finally:
        node.release()
        destroy_node(node)


def test_single_camera_default_is_unchanged(graph, yolox_model, plaza_video):
    """Without `inputs`: the `image` topic in, `detections` beside it, no per-camera status."""
    g = graph(DetectorNode, {'model_path': str(yolox_model), 'model_family': 'yolox'},
              cameras={'one': ('image', Image)}, outputs={'one': 'detections'})
    g.start()
    frames = read_frames(plaza_video, 2, 5)
    sent = []
    for i, f in enumerate(frames):
        msg = image_msg(f, 3_000_000_000 + i, 'camera')
        g.pubs['one'].publish(msg)
        sent.append(key(msg.header))
    got = g.wait_for({'one': 2})
    assert [key(m.header) for m in got['one']] == sent
    assert len(g.node.cameras) == 1 and g.node.camera_diagnostics() == []
    assert 'sources' not in g.node.pipeline.stats()


def test_model_loaded_once_for_all_cameras(ros, yolox_model):
    node = DetectorNode(parameter_overrides=[
        Parameter('model_path', value=str(yolox_model)), Parameter('workers', value=1),
        Parameter('inputs', value=[f'/mm{i}/image' for i in range(4)])])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert len(node.backends) == 1 and len(node.cameras) == 4
        assert node.output_topics('detections') == [f'/mm{i}/detections' for i in range(4)]
    finally:
        node.release()
        destroy_node(node)


def test_multicam_player_restamps_and_interleaves_cameras(plaza_video):
    """The benchmark / demo player: each publish gets a fresh stamp, cameras interleave."""
    from faster_deployment_ros.tools.multicam import (_restamped, _schedule, serialise_images,
                                                      Stream)
    from faster_deployment_ros.tools.replay import cdr_header
    from rclpy.serialization import deserialize_message
    frames = read_frames(plaza_video, 2, 5)
    payloads = serialise_images(frames, 'cam_a')
    assert cdr_header(_restamped(payloads[1], 1_700_000_000_123_456_789)) == \
        (1_700_000_000_123_456_789, 'cam_a')
    assert msg_to_numpy(deserialize_message(
        _restamped(payloads[1], 5), Image)).tobytes() == frames[1].tobytes()
    fast = Stream('a', '/a/image', '/a/detections', payloads, Image, rate=30.0)
    slow = Stream('b', '/b/image', '/b/detections', payloads, Image, rate=5.0, phase_s=0.05)
    items = _schedule([fast, slow], 1.0)
    assert [t for t, _, _ in items] == sorted(t for t, _, _ in items)
    assert sum(si == 0 for _, si, _ in items) == 30 and sum(si == 1 for _, si, _ in items) == 5
    assert min(t for t, si, _ in items if si == 1) == pytest.approx(0.05)


def test_benchmark_latency_pools_every_camera_after_the_warm_up():
    """multicam_bench's scenario latency: publish -> receipt over all cameras' kept frames."""
    from faster_deployment_ros.tools.multicam import kept_records, pooled_latency_ms, Stream
    from faster_deployment_ros.tools.report import Record
    ms = 1_000_000
    a = Stream('a', '/a/image', '/a/detections', [], Image)
    b = Stream('b', '/b/image', '/b/detections', [], Image)
    # camera a: frames published at 0, 100, 200 ms, answered after 10, 20, 30 ms;
    # camera b: at 150 and 250 ms, answered after 40 ms and never
    a.inputs = [Record(s, 'a', s * ms) for s in (0, 100, 200)]
    a.outputs = [Record(s, 'a', (s + d) * ms) for s, d in ((0, 10), (100, 20), (200, 30))]
    b.inputs = [Record(s, 'b', s * ms) for s in (150, 250)]
    b.outputs = [Record(150, 'b', 190 * ms)]
    assert kept_records(b, 200 * ms) == ([b.inputs[1]], [])
    got = pooled_latency_ms([a, b], since_ns=100 * ms)  # 20, 30 (a) and 40 (b) ms
    assert (got['n'], got['p50'], got['max']) == (3, 30.0, 40.0)
    assert pooled_latency_ms([a, b])['n'] == 4
    assert pooled_latency_ms([b], since_ns=200 * ms) is None
