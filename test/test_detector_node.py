"""The detector node in a real ROS 2 graph.

Real rclpy, real Fast DDS, real ONNX Runtime, the real YOLOX-nano model, real camera frames.
"""
from __future__ import annotations

from pathlib import Path
import time

import cv2
import numpy as np
import pytest
from support.ros_nodes import call_service, destroy_node

rclpy = pytest.importorskip('rclpy')
from faster_deployment_ros.backends.onnxruntime_backend import (  # noqa: E402, I100
    OnnxRuntimeBackend)
from faster_deployment_ros.core.image_codec import encode_compressed, fill_image_msg  # noqa: E402
from faster_deployment_ros.models import create_adapter  # noqa: E402
from faster_deployment_ros.ros.detector_node import DetectorNode  # noqa: E402
from faster_deployment_ros.tools.frames import read_frames  # noqa: E402
from lifecycle_msgs.msg import State  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from support.node_harness import (console_script, header_key, image_msg, NodeHarness,  # noqa: E402
                                  RELIABLE, TEST_PARAMETERS)
from vision_msgs.msg import Detection2DArray  # noqa: E402

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[1]


def video_frames(path: Path, n: int, step: int = 1) -> list:
    frames = read_frames(path, n, step)
    assert len(frames) == n, f'could not read {n} frames from {path}'
    return frames


class Harness(NodeHarness):
    """A detector node and a test node (publisher + recorder) spinning in one executor."""

    def __init__(self, model: Path, **params) -> None:
        overrides = {'model_path': str(model), 'model_family': 'yolox', 'conf_threshold': 0.3,
                     **TEST_PARAMETERS, **params}
        super().__init__(DetectorNode, overrides, 'detector_test_peer',
                         inputs={'image': (Image, 'image'),
                                 'compressed': (CompressedImage, 'image/compressed')},
                         outputs={'detections': (Detection2DArray, 'detections'),
                                  'debug': (Image, 'debug_image')})
        self.image_pub, self.compressed_pub = self.pubs['image'], self.pubs['compressed']
        self.received, self.debug_images = self.got['detections'], self.got['debug']

    def wait_for(self, n: int, timeout: float = 30.0) -> list:
        return self.wait_count(self.received, n, timeout)

    def image_msg(self, frame: np.ndarray, stamp_ns: int, frame_id: str = 'camera') -> Image:
        return image_msg(frame, stamp_ns, frame_id)


@pytest.fixture
def harness(ros, yolox_model):
    made = []

    def make(**params):
        h = Harness(yolox_model, **params)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def test_frames_come_back_in_order_with_identical_headers(harness, plaza_video):
    h = harness(workers=2)
    assert h.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert h.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    h.wait_matched(h.image_pub)
    frames = video_frames(plaza_video, 12, step=5)
    sent = []
    for i, frame in enumerate(frames):
        msg = h.image_msg(frame, 1_700_000_000_000_000_000 + i * 20_000_000, f'cam_{i % 3}')
        sent.append(header_key(msg.header))
        h.image_pub.publish(msg)
    got = h.wait_for(len(frames))
    assert [header_key(m.header) for m in got] == sent
    with_person = 0
    for m in got:
        for d in m.detections:
            assert header_key(d.header) == header_key(m.header)
            assert len(d.results) == 1 and 0.3 <= d.results[0].hypothesis.score <= 1.0
            assert 0 <= d.bbox.center.position.x <= 1280 and 0 <= d.bbox.center.position.y <= 720
            assert d.bbox.size_x > 0 and d.bbox.size_y > 0
        names = {d.results[0].hypothesis.class_id for d in m.detections}
        with_person += 'person' in names
    assert with_person >= len(got) - 1, 'persons should be found in the plaza frames'


def test_nothing_published_while_inactive(harness, campus_video):
    h = harness()
    assert h.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert h.state() == 'inactive'
    frames = video_frames(campus_video, 3)
    time.sleep(1.0)  # discovery; an inactive node has no subscription to match
    for i, frame in enumerate(frames):
        h.image_pub.publish(h.image_msg(frame, i + 1))
    time.sleep(2.0)
    assert h.received == []
    assert h.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    h.wait_matched(h.image_pub)
    h.image_pub.publish(h.image_msg(frames[0], 99))
    got = h.wait_for(1)
    assert [m.header.stamp.nanosec for m in got] == [99]
    assert h.node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    time.sleep(0.5)
    h.image_pub.publish(h.image_msg(frames[1], 100))
    time.sleep(1.5)
    assert len(h.received) == 1, 'a deactivated node must not publish'


def test_bad_model_path_fails_configure_and_node_stays_unconfigured(harness, yolox_model,
                                                                    tmp_path):
    h = harness(model_path=str(tmp_path / 'missing.onnx'))
    assert h.node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert h.state() == 'unconfigured'
    corrupt = tmp_path / 'corrupt.onnx'
    corrupt.write_bytes(b'this is not a model')
    h.node.set_parameters([Parameter('model_path', value=str(corrupt))])
    assert h.node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert h.state() == 'unconfigured'
    # the same node configures once the path is fixed
    h.node.set_parameters([Parameter('model_path', value=str(yolox_model))])
    assert h.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert h.state() == 'inactive'


def test_bad_parameters_fail_configure(harness):
    h = harness(full_policy='sometimes')
    assert h.node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert h.state() == 'unconfigured'


def test_wrong_encoding_and_truncated_frames_are_dropped_and_node_keeps_running(
        harness, campus_video):
    h = harness()
    assert h.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert h.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    h.wait_matched(h.image_pub)
    frame = video_frames(campus_video, 1)[0]
    good1 = h.image_msg(frame, 1)
    bad_encoding = h.image_msg(frame, 2)
    bad_encoding.encoding = 'yuv_nonsense'
    truncated = h.image_msg(frame, 3)
    truncated.data = truncated.data[: len(truncated.data) // 2]
    good2 = h.image_msg(frame, 4)
    for msg in (good1, bad_encoding, truncated, good2):
        h.image_pub.publish(msg)
    got = h.wait_for(2)
    time.sleep(1.0)
    assert [m.header.stamp.nanosec for m in h.received] == [1, 4]
    assert h.node.telemetry.errors == 2
    assert h.state() == 'active'
    assert len(got[0].detections) == len(got[1].detections) > 0


def test_compressed_input_and_debug_image(harness, dog_image_path):
    h = harness(input_type='compressed', publish_debug_image=True)
    assert h.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert h.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    h.wait_matched(h.compressed_pub)
    image = cv2.imread(str(dog_image_path))
    fmt, data = encode_compressed(image, 'png')
    msg = CompressedImage(format=fmt, data=data)
    msg.header.frame_id = 'still'
    msg.header.stamp.sec = 42
    h.compressed_pub.publish(msg)
    got = h.wait_for(1)
    assert header_key(got[0].header) == (42, 0, 'still')
    names = {d.results[0].hypothesis.class_id for d in got[0].detections}
    assert {'dog', 'bicycle'} <= names
    deadline = time.monotonic() + 10
    while not h.debug_images and time.monotonic() < deadline:
        time.sleep(0.05)
    debug = h.debug_images[0]
    assert (debug.width, debug.height, debug.encoding) == (768, 576, 'bgr8')
    assert header_key(debug.header) == (42, 0, 'still')


def test_class_id_mode_index(harness, dog_image_path):
    h = harness(class_id_mode='index')
    assert h.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert h.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    h.wait_matched(h.image_pub)
    h.image_pub.publish(h.image_msg(cv2.imread(str(dog_image_path)), 5))
    got = h.wait_for(1)
    ids = {d.results[0].hypothesis.class_id for d in got[0].detections}
    assert '16' in ids and '1' in ids  # COCO: 16 dog, 1 bicycle


def console_node(*ros_args: str):
    """Run the installed detector_node console script (see node_harness.console_script)."""
    return console_script('detector_node', ['--ros-args', *ros_args])


def test_console_script_across_processes_best_effort_720p(ros, yolox_model, plaza_video):
    """The installed console script with the shipped YAML returns results in order.

    A best-effort 720p stream comes from another process (this one).
    """
    node = rclpy.create_node('console_script_peer')
    with console_node('--params-file', str(ROOT / 'config/yolox_nano_onnxruntime.yaml'),
                      '-p', f'model_path:={yolox_model}', '-p', 'full_policy:=block',
                      '-p', 'queue_size:=8') as proc:
        best_effort = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
        pub = node.create_publisher(Image, 'image', best_effort)
        received = []
        node.create_subscription(Detection2DArray, 'detections', received.append, RELIABLE)
        deadline = time.monotonic() + 60
        # both directions discovered: our frames reach the node, its results reach us (on Jazzy
        # the first result was lost when only the first direction was awaited)
        while pub.get_subscription_count() == 0 or node.count_publishers('/detections') == 0:
            assert proc.poll() is None, 'detector_node exited'
            assert time.monotonic() < deadline, 'node never subscribed'
            rclpy.spin_once(node, timeout_sec=0.1)
        frames = video_frames(plaza_video, 8, step=10)
        msg = Image()
        # Best effort: a sample sent while the path is still being set up may be lost (seen on
        # Jazzy). Warm up until one result is back, then every frame must make it.
        fill_image_msg(msg, frames[0], 'bgr8')
        msg.header.stamp.sec = 999
        deadline = time.monotonic() + 30
        while not any(m.header.stamp.sec == 999 for m in received):
            assert time.monotonic() < deadline, 'no result for the warm-up frames'
            pub.publish(msg)
            end = time.monotonic() + 0.5
            while time.monotonic() < end and not received:
                rclpy.spin_once(node, timeout_sec=0.02)
        stamps = []
        for i, frame in enumerate(frames):
            fill_image_msg(msg, frame, 'bgr8')
            msg.header.stamp.sec = 1000 + i
            msg.header.frame_id = 'plaza'
            stamps.append(1000 + i)
            pub.publish(msg)
            end = time.monotonic() + 0.25
            while time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.02)
        end = time.monotonic() + 20
        while (sum(m.header.stamp.sec != 999 for m in received) < len(frames)
               and time.monotonic() < end):
            rclpy.spin_once(node, timeout_sec=0.05)
        received = [m for m in received if m.header.stamp.sec != 999]  # warm-up results
        got = [m.header.stamp.sec for m in received]
        assert got == stamps, f'expected every frame back in order, got {got}'
        assert all(m.header.frame_id == 'plaza' for m in received)
        assert sum(any(d.results[0].hypothesis.class_id == 'person' for d in m.detections)
                   for m in received) >= len(frames) - 1
    destroy_node(node)


class GpuPathStandIn(OnnxRuntimeBackend):
    """The TensorRT backend's GPU-path interface over real ONNX Runtime.

    (supports_gpu_pipeline, enable_gpu_pipeline, detect_image) TensorRT cannot run here: this
    checks the node's wiring of that path, not the kernels (test_gpu_kernels does those).
    """

    supports_gpu_pipeline = True
    calls: list = []
    specs: list = []

    def enable_gpu_pipeline(self, pre, dec) -> None:
        GpuPathStandIn.specs.append((pre, dec))
        self._adapter = create_adapter(
            'yolox', self.inputs, self.outputs, self.metadata, conf_threshold=dec.conf_threshold,
            nms_threshold=dec.nms_threshold, max_detections=dec.max_detections)

    def detect_image(self, image, class_names=()):
        GpuPathStandIn.calls.append(image.shape)
        tensors, meta = self._adapter.preprocess(image)
        det = self._adapter.postprocess(self.infer(tensors), meta)
        det.class_names = list(class_names)
        return det


def test_gpu_pipeline_path_is_used_when_the_backend_offers_it(harness, campus_video):
    from faster_deployment_ros.backends import _REGISTRY, register_backend
    register_backend('gpu_stand_in', __name__, 'GpuPathStandIn')
    try:
        frames = video_frames(campus_video, 4, step=20)
        results = {}
        for gpu in (True, False):
            GpuPathStandIn.calls.clear()
            h = harness(backend='gpu_stand_in', gpu_pipeline=gpu, workers=2)
            assert h.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            assert h.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
            h.wait_matched(h.image_pub)
            for i, frame in enumerate(frames):
                h.image_pub.publish(h.image_msg(frame, i + 1))
            got = h.wait_for(len(frames))
            assert [m.header.stamp.nanosec for m in got] == [1, 2, 3, 4]
            results[gpu] = [[(d.results[0].hypothesis.class_id, round(d.bbox.center.position.x, 3))
                             for d in m.detections] for m in got]
            # the GPU path hands the decoded frame (raw bytes, source size) to the backend
            assert GpuPathStandIn.calls == ([(360, 480, 3)] * len(frames) if gpu else [])
            h.node.trigger_deactivate()
            h.node.trigger_cleanup()
        pre, dec = GpuPathStandIn.specs[-1]
        assert (dec.conf_threshold, dec.nms_threshold) == (0.3, 0.45)
        assert results[True] == results[False] and any(results[True])
    finally:
        _REGISTRY.pop('gpu_stand_in', None)


def test_lifecycle_services_drive_the_console_script(ros, yolox_model):
    """What `ros2 lifecycle set /detector configure|activate` does: the change_state service."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    node = rclpy.create_node('lifecycle_client')
    # A name of its own: earlier in-process detectors of this test run may still be known to
    # the graph as /detector, and a request sent to their services is never answered.
    with console_node('-p', f'model_path:={yolox_model}', '-p', 'model_family:=yolox',
                      '-r', '__node:=lifecycle_probe'):
        change = node.create_client(ChangeState, '/lifecycle_probe/change_state')
        get = node.create_client(GetState, '/lifecycle_probe/get_state')
        assert change.wait_for_service(timeout_sec=30), 'no /lifecycle_probe/change_state'
        assert get.wait_for_service(timeout_sec=30), 'no /lifecycle_probe/get_state'

        def call(client, request):
            # get_state changes nothing: re-sent while Jazzy's rmw may drop the first reply
            return call_service(node, client, request, 30.0, read_only=client is get)

        assert call(get, GetState.Request()).current_state.id == State.PRIMARY_STATE_UNCONFIGURED
        for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            assert call(change, ChangeState.Request(transition=Transition(id=transition))).success
        assert call(get, GetState.Request()).current_state.id == State.PRIMARY_STATE_ACTIVE
        deadline = time.monotonic() + 10
        while not node.get_subscriptions_info_by_topic('/image') and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        subs = node.get_subscriptions_info_by_topic('/image')
        assert [s.node_name for s in subs] == ['lifecycle_probe'], 'activate must subscribe'
        assert call(change, ChangeState.Request(
            transition=Transition(id=Transition.TRANSITION_DEACTIVATE))).success
        assert call(get, GetState.Request()).current_state.id == State.PRIMARY_STATE_INACTIVE
    destroy_node(node)


def test_latency_budget_per_hop_on_diagnostics(harness, plaza_video):
    """Every hop of a frame's time is on /diagnostics (`hop_<name>_<q>_ms`), and the hops add up.

    Queued -> published is queue + pre + infer + post + handover + build + publish.
    """
    from faster_deployment_ros.runtime import HOPS
    h = harness()
    assert h.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert h.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    h.wait_matched(h.image_pub)
    frames = video_frames(plaza_video, 6, step=5)
    for frame in frames:  # stamped now, so the transport hop (stamp -> callback) is measured
        h.image_pub.publish(h.image_msg(frame, time.time_ns()))
    assert len(h.wait_for(len(frames))) == len(frames)
    budget = h.node.latency_budget()
    assert set(budget) == set(HOPS)
    assert all(0.0 <= s['p50'] <= s['p99'] for s in budget.values())
    assert budget['infer']['p50'] > 0 and budget['build']['p50'] > 0
    parts = ('queue', 'pre', 'infer', 'post', 'handover', 'build', 'publish')
    assert budget['node']['mean'] == pytest.approx(sum(budget[p]['mean'] for p in parts),
                                                   abs=1e-3)
    [status] = [s for s in h.node.diagnostic_statuses() if s.name.endswith(': pipeline')]
    values = {kv.key: kv.value for kv in status.values}
    for hop in HOPS:
        for q in ('p50', 'p99', 'mean'):
            assert float(values[f'hop_{hop}_{q}_ms']) >= 0.0


def test_node_process_gil_switch_interval(monkeypatch):
    """Python's own interval unless FDR_SWITCH_INTERVAL_US asks for another (A/B runs)."""
    from faster_deployment_ros.ros.node_main import switch_interval
    monkeypatch.delenv('FDR_SWITCH_INTERVAL_US', raising=False)
    assert switch_interval() is None
    monkeypatch.setenv('FDR_SWITCH_INTERVAL_US', '100')
    assert switch_interval() == pytest.approx(100e-6)
    for bad in ('fast', '0', '-3'):
        monkeypatch.setenv('FDR_SWITCH_INTERVAL_US', bad)
        with pytest.raises(SystemExit, match='FDR_SWITCH_INTERVAL_US'):
            switch_interval()
