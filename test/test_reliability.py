"""A node a robot can trust (#9), tried as a hostile world would, in a real ROS 2 graph.

Real rclpy, Fast DDS, ONNX Runtime and the real YOLOX-nano model: hostile Image /
CompressedImage messages (and a property-based fuzzer over every Image field), diagnostics
levels, runtime parameters, lifecycle churn under load, a backend that raises / hangs / is slow,
library logs on /rosout, and SIGINT / SIGTERM under both queue policies.
"""
from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest
from support.ros_nodes import destroy_node

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402, I100
from faster_deployment_ros.backends import register_backend  # noqa: E402
from faster_deployment_ros.core.image_codec import encode_compressed, fill_image_msg  # noqa: E402
from faster_deployment_ros.ros.depth_node import DepthNode  # noqa: E402
from faster_deployment_ros.ros.detector_node import DetectorNode  # noqa: E402
from faster_deployment_ros.ros.node_main import make_executor  # noqa: E402
from hypothesis import given, HealthCheck, settings, strategies as st  # noqa: E402
from rcl_interfaces.msg import Log  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from support import fault_backend  # noqa: E402
from support.node_harness import close_rig  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[1]
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
SUCCESS = TransitionCallbackReturn.SUCCESS
OK, WARN, ERROR, STALE = 0, 1, 2, 3

register_backend('fault', 'support.fault_backend', 'FaultBackend')


@pytest.fixture(scope='module')
def dog(dog_image_path):
    import cv2
    img = cv2.imread(str(dog_image_path), cv2.IMREAD_COLOR)
    assert img is not None
    return img


class Rig:
    """A perception node and a peer (publishers; recorders of results, /diagnostics, /rosout).

    Both spin in one executor; every wait is on a condition, bounded only against hangs.
    """

    def __init__(self, model: Path, node_cls=DetectorNode, output=(Detection2DArray, 'detections'),
                 **params) -> None:
        overrides = {'model_path': str(model), 'qos_reliability': 'reliable',
                     'full_policy': 'block', 'queue_size': 2, 'qos_depth': 50,
                     'diagnostics_period': 0.0}
        if node_cls is DetectorNode:
            overrides.update(model_family='yolox', conf_threshold=0.3)
        overrides.update(params)
        self.node = node_cls(parameter_overrides=[Parameter(k, value=v)
                                                  for k, v in overrides.items()])
        self.peer = rclpy.create_node('reliability_peer')
        self.image_pub = self.peer.create_publisher(Image, 'image', RELIABLE)
        self.compressed_pub = self.peer.create_publisher(
            CompressedImage, 'image/compressed', RELIABLE)
        self.dets: list = []
        self.diags: list = []
        self.logs: list = []
        self.cv = threading.Condition()
        self.peer.create_subscription(output[0], output[1],
                                      lambda m: self._keep(self.dets, m), RELIABLE)
        self.peer.create_subscription(DiagnosticArray, '/diagnostics',
                                      lambda m: self._keep(self.diags, m), 50)
        # rcl's /rosout publishers are transient local (the last 1000 lines, 10 s lifespan): a
        # transient-local reader also gets what a node logged before the two were matched
        self.peer.create_subscription(Log, '/rosout', lambda m: self._keep(self.logs, m),
                                      QoSProfile(depth=200,
                                                 durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.executor = make_executor()  # as the node's own process spins it
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()
        self.stamp = 1_700_000_000_000_000_000

    def _keep(self, into: list, msg) -> None:
        with self.cv:
            into.append(msg)
            self.cv.notify_all()

    def wait(self, predicate, timeout: float = 30.0):
        """Wait until predicate() is truthy (re-checked on every message); return its value."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                got = predicate()
                if got or time.monotonic() > deadline:
                    return got
                self.cv.wait(0.2)

    def start(self, expect=SUCCESS) -> None:
        assert self.node.trigger_configure() == expect
        if expect == SUCCESS:
            assert self.node.trigger_activate() == SUCCESS
            self.wait(lambda: self.image_pub.get_subscription_count()
                      + self.compressed_pub.get_subscription_count() > 0, 10)

    def next_stamp(self) -> int:
        self.stamp += 33_000_000
        return self.stamp

    def image(self, frame: np.ndarray, encoding: str = 'bgr8') -> Image:
        msg = fill_image_msg(Image(), frame, encoding)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(self.next_stamp(), 10 ** 9)
        msg.header.frame_id = 'camera'
        return msg

    def probe(self, frame: np.ndarray) -> Detection2DArray:
        """Publish a good frame and return its detections.

        Proof the node still works and, under block + reliable, that every earlier frame was
        accounted for.
        """
        msg = self.image(frame)
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        self.image_pub.publish(msg)
        got = self.wait(lambda: next((d for d in self.dets
                                      if (d.header.stamp.sec, d.header.stamp.nanosec) == key),
                                     None))
        assert got is not None, 'the node stopped answering good frames'
        return got

    def status(self, level=None, contains: str = '', timeout: float = 20.0):
        """Return the first /diagnostics status of the node (after now) with that level / text."""
        start = len(self.diags)

        def find():
            for arr in self.diags[start:]:
                for s in arr.status:
                    if not s.name.startswith('detector'):
                        continue
                    if (level is None or s.level == bytes([level])) and contains in s.message:
                        return s
            return None
        return self.wait(find, timeout)

    def accounted(self) -> bool:
        h = self.node.health
        return h.frames_in == h.published_total + h.dropped_total + h.failed_total + h.in_flight

    def close(self) -> None:
        close_rig(self)


@pytest.fixture
def rig(ros, yolox_model):
    made = []

    def make(**params):
        r = Rig(yolox_model, **params)
        made.append(r)
        return r

    yield make
    fault_backend.RELEASE.set()
    for r in made:
        r.close()
    fault_backend.RELEASE.clear()
    fault_backend.HANGING.clear()


# ---- hostile input ------------------------------------------------------------------------
def hostile_images(frame: np.ndarray) -> list:
    """(name, Image) pairs a camera driver, a bag or an attacker might send."""
    h, w = frame.shape[:2]
    good = fill_image_msg(Image(), frame, 'bgr8')

    def variant(**fields):
        m = Image()
        m.height, m.width, m.encoding = good.height, good.width, good.encoding
        m.is_bigendian, m.step, m.data = good.is_bigendian, good.step, good.data
        for k, v in fields.items():
            setattr(m, k, v)
        return m
    return [
        ('unknown encoding', variant(encoding='yuv422_garbage')),
        ('empty encoding', variant(encoding='')),
        ('float encoding', variant(encoding='32FC1', step=w * 4, data=bytes(w * h * 4))),
        ('truncated data', variant(data=bytes(good.data[:len(good.data) // 2]))),
        ('no data', variant(data=b'')),
        ('step too small', variant(step=w)),
        ('step too large', variant(step=w * 3 + 7)),
        ('zero size', variant(width=0, height=0, step=0, data=b'')),
        ('height zero with data', variant(height=0)),
        ('one row', variant(height=1, data=bytes(good.data[:w * 3]))),
        ('1x2000 sliver', variant(height=1, width=2000, step=6000, data=bytes(6000))),
        ('2000x1 sliver', variant(height=2000, width=1, step=3, data=bytes(6000))),
        ('huge claimed size', variant(width=100_000, height=100_000, step=300_000)),
        ('over max_input_pixels', variant(width=7681, height=4320, step=7681 * 3)),
        ('big-endian mono16', variant(encoding='mono16', is_bigendian=1, step=w * 2,
                                      data=bytes(w * h * 2))),
        ('rgba with bgr step', variant(encoding='rgba8')),
    ]


def test_hostile_images_fail_cleanly_and_the_node_keeps_working(rig, dog):
    r = rig()
    r.start()
    assert len(r.probe(dog).detections) > 0
    cases = hostile_images(dog)
    decodable = {'one row', '1x2000 sliver', '2000x1 sliver', 'big-endian mono16'}
    h = r.node.health
    failed, published = h.failed_total, h.published_total
    for name, msg in cases:
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(r.next_stamp(), 10 ** 9)
        r.image_pub.publish(msg)
    assert len(r.probe(dog).detections) > 0
    # every undecodable frame failed with a reason, every decodable one was published
    assert h.failed_total - failed == len(cases) - len(decodable), h.last_error
    assert h.published_total - published == len(decodable) + 1
    assert r.accounted()
    assert r.node.lifecycle_state == 'active'


def test_huge_and_corrupt_compressed_images_are_refused_before_decoding(rig, dog):
    r = rig(input_type='compressed')
    r.start()

    def send(data: bytes, fmt: str = 'jpeg') -> None:
        m = CompressedImage(format=fmt, data=data)
        m.header.stamp.sec, m.header.stamp.nanosec = divmod(r.next_stamp(), 10 ** 9)
        r.compressed_pub.publish(m)

    fmt, good = encode_compressed(dog, 'jpeg')
    big = np.zeros((16384, 16384), np.uint8)
    _, bomb = encode_compressed(big, 'png')  # a few hundred KB that would decode to 256 MB+
    del big
    for data in (bomb, good[:40], good[:len(good) // 2], b'', b'\x00' * 100,
                 b'GIF89a' + bytes(100), b'\xff\xd8\xff\xd9'):
        send(data, 'png' if data is bomb else 'jpeg')
    send(good, fmt)
    got = r.wait(lambda: r.dets)
    assert got and len(got[-1].detections) > 0
    h = r.node.health
    assert h.failed_total == 7 and r.accounted()
    errors = [m.msg for m in r.logs if m.name == 'detector']
    assert r.wait(lambda: any('refused before decoding' in t for t in
                              [m.msg for m in r.logs if m.name == 'detector'])), errors


@st.composite
def image_fields(draw):
    encodings = st.sampled_from(['bgr8', 'rgb8', 'rgba8', 'bgra8', 'mono8', 'mono16', '16UC1',
                                 '8UC3', '32FC1', 'yuv422', '', 'bgr8\x00', 'B' * 300])
    return {
        'height': draw(st.one_of(st.integers(0, 64), st.sampled_from([2 ** 32 - 1, 2 ** 31]))),
        'width': draw(st.one_of(st.integers(0, 64), st.sampled_from([2 ** 32 - 1, 100_000]))),
        'encoding': draw(encodings),
        'is_bigendian': draw(st.integers(0, 255)),
        'step': draw(st.one_of(st.integers(0, 300), st.sampled_from([2 ** 32 - 1]))),
        'data': draw(st.binary(max_size=4096)),
        'frame_id': draw(st.text(max_size=20)),
        'sec': draw(st.integers(-2 ** 31, 2 ** 31 - 1)),
    }


@pytest.fixture
def fuzz_rig(ros, yolox_model):
    # one node for all of hypothesis' examples (a function-scoped fixture is not reset between
    # them), gone before the next test: no second detector may answer other tests' frames
    r = Rig(yolox_model)
    r.start()
    yield r
    r.close()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(fields=image_fields())
def test_fuzzed_images_never_break_the_node(fuzz_rig, dog, fields):
    r = fuzz_rig
    m = Image(height=fields['height'], width=fields['width'], encoding=fields['encoding'],
              is_bigendian=fields['is_bigendian'], step=fields['step'], data=fields['data'])
    m.header.frame_id = fields['frame_id']
    m.header.stamp.sec = fields['sec']
    r.image_pub.publish(m)
    r.probe(dog[::8, ::8].copy())  # a small good frame after it still gets its detections
    assert r.accounted()


# ---- diagnostics --------------------------------------------------------------------------
def test_unconfigured_node_reports_why_configure_failed(rig, tmp_path):
    r = rig(model_path=str(tmp_path / 'missing.onnx'), diagnostics_period=0.2)
    r.start(expect=TransitionCallbackReturn.FAILURE)
    s = r.status(ERROR, 'unconfigured')
    assert s is not None and 'missing.onnx' in s.message


def test_diagnostics_error_when_every_frame_fails_then_stale_when_input_stops(rig, dog):
    r = rig(diagnostics_period=0.2, diagnostics_window=1.0, diagnostics_stale_after=1.5)
    r.start()
    assert r.status(OK) is not None
    bad = r.image(dog)
    bad.encoding = 'yuv_unsupported'
    stop = threading.Event()

    def stream():  # a camera at 20 Hz sending frames of an unsupported encoding
        while not stop.wait(0.05):
            r.image_pub.publish(bad)
    t = threading.Thread(target=stream, daemon=True)
    t.start()
    try:
        s = r.status(ERROR, 'failed')
        assert s is not None and 'yuv_unsupported' in s.message
        values = {kv.key: kv.value for kv in s.values}
        assert values['published'] == '0' and int(values['failed']) > 0
    finally:
        stop.set()
        t.join()
    s = r.status(STALE, 'no input for')
    assert s is not None
    r.status(STALE)
    last = r.status(STALE)
    assert float({kv.key: kv.value for kv in last.values}['fps']) == 0.0
    assert r.node.trigger_deactivate() == SUCCESS
    assert r.status(STALE, 'inactive') is not None


def test_slow_backend_warns_about_drops(rig, dog):
    r = rig(backend='fault', full_policy='drop_oldest', diagnostics_period=0.2,
            diagnostics_window=2.0, **{'fault.mode': 'slow', 'fault.delay_s': 0.25})
    r.start()
    frame = dog[::2, ::2].copy()
    stop = threading.Event()

    def stream():  # 30 Hz into a model that takes 250 ms
        while not stop.wait(1 / 30):
            r.image_pub.publish(r.image(frame))
    t = threading.Thread(target=stream, daemon=True)
    t.start()
    try:
        assert r.status(WARN, 'dropping') is not None
    finally:
        stop.set()
        t.join()
    assert r.wait(lambda: r.node.health.in_flight == 0)
    assert r.accounted() and r.node.health.dropped_total > 0


def test_raising_backend_is_error_and_the_node_survives(rig, dog):
    r = rig(backend='fault', diagnostics_period=0.2, **{'fault.mode': 'raise'})
    r.start()
    for _ in range(5):
        r.image_pub.publish(r.image(dog))
    s = r.status(ERROR, 'injected model failure')
    assert s is not None
    assert r.wait(lambda: r.node.health.failed_total == 5)
    assert r.node.trigger_deactivate() == SUCCESS
    assert r.node.trigger_cleanup() == SUCCESS


def test_hung_backend_does_not_hang_deactivate_or_cleanup(rig, dog):
    r = rig(backend='fault', **{'fault.mode': 'hang'})
    r.start()
    for _ in range(4):
        r.image_pub.publish(r.image(dog))
    assert fault_backend.HANGING.wait(20)
    assert r.node.trigger_deactivate() == SUCCESS  # flush gives up after its bound
    assert r.node.trigger_cleanup() == SUCCESS     # close gives up on the stuck worker
    fault_backend.RELEASE.set()


# ---- runtime parameters -------------------------------------------------------------------
def test_runtime_parameters_apply_to_the_next_frame_or_are_rejected(rig, dog):
    r = rig(conf_threshold=0.05)
    r.start()
    before = r.probe(dog)
    scores = [d.results[0].hypothesis.score for d in before.detections]
    assert min(scores) < 0.5

    res = r.node.set_parameters([Parameter('conf_threshold', value=0.5)])[0]
    assert res.successful
    after = r.probe(dog)
    assert after.detections
    assert all(d.results[0].hypothesis.score >= 0.5 for d in after.detections)

    res = r.node.set_parameters([Parameter('classes', value=['dog'])])[0]
    assert res.successful
    only = r.probe(dog)
    assert only.detections and {d.results[0].hypothesis.class_id for d in only.detections} \
        == {'dog'}

    for name, value, reason in [('conf_threshold', 5.0, 'must lie in [0, 1]'),
                                ('queue_size', 0, 'must be an integer >= 1'),
                                ('queue_size', 8, 'needs reconfigure: queue_size'),
                                ('workers', 2, 'needs reconfigure: workers'),
                                ('model_path', '/x.onnx', 'needs reconfigure: model_path'),
                                ('classes', ['unicorn'], 'not a class of this model'),
                                ('max_detections', 0, 'must be an integer >= 1')]:
        res = r.node.set_parameters([Parameter(name, value=value)])[0]
        assert not res.successful and reason in res.reason, (name, res.reason)
    assert r.node.get_parameter('conf_threshold').value == 0.5
    assert r.node.get_parameter('queue_size').value == 2
    # negative: back to the family's reference threshold (YOLOX: 0.3), as at configure
    assert r.node.set_parameters([Parameter('conf_threshold', value=-1.0)])[0].successful
    assert r.node.adapter.conf_threshold == pytest.approx(0.3)

    # structural parameters are taken once the node is unconfigured, and used by configure
    assert r.node.trigger_deactivate() == SUCCESS
    assert r.node.trigger_cleanup() == SUCCESS
    assert r.node.set_parameters([Parameter('queue_size', value=3)])[0].successful
    r.start()
    assert r.node.pipeline.queue_size == 3


# ---- lifecycle churn, logs ------------------------------------------------------------------
def test_lifecycle_churn_under_load_keeps_threads_and_counts(rig, dog):
    r = rig(full_policy='drop_oldest', qos_reliability='best_effort')
    r.start()
    frame = dog[::2, ::2].copy()
    stop = threading.Event()

    def stream():  # a 30 Hz camera throughout
        while not stop.wait(1 / 30):
            r.image_pub.publish(r.image(frame))
    t = threading.Thread(target=stream, daemon=True)
    t.start()
    try:
        r.wait(lambda: r.node.health.published_total > 0)
        threads_before = threading.active_count()
        for i in range(6):
            assert r.node.trigger_deactivate() == SUCCESS
            if i % 2:
                assert r.node.trigger_cleanup() == SUCCESS
                assert r.node.trigger_configure() == SUCCESS
            assert r.node.trigger_activate() == SUCCESS
        published = r.node.health.published_total
        assert r.wait(lambda: r.node.health.published_total > published + 3)
    finally:
        stop.set()
        t.join()
    assert threading.active_count() <= threads_before
    assert r.wait(lambda: r.node.health.in_flight == 0)
    assert r.accounted()


def test_library_logs_reach_rosout(rig):
    r = rig(model_family='auto')
    r.start()
    found = r.wait(lambda: [m for m in r.logs
                            if m.name == 'detector' and 'model family auto -> yolox' in m.msg])
    assert found


def test_depth_node_answers_degenerate_frames_with_a_reason(ros, dog):
    model = ROOT / '.cache' / 'models' / 'midas_small_style.onnx'
    if not model.exists():
        pytest.skip('test models not built (make test-assets)')
    r = Rig(model, node_cls=DepthNode, output=(Image, 'depth'), model_family='auto')
    try:
        r.start()
        for shape in [(1, 2000, 3), (2000, 1, 3), (0, 0, 3)]:
            r.image_pub.publish(r.image(np.zeros(shape, np.uint8)))
        assert r.probe(dog[::4, ::4].copy()).width == dog[::4, ::4].shape[1]
        h = r.node.health
        assert h.failed_total == 3 and r.accounted()
        # the error lines travel on /rosout, apart from the results: wait for them
        assert r.wait(lambda: [m for m in r.logs if m.name == 'depth' and (
            'too small or too elongated' in m.msg or 'is empty' in m.msg)]), \
            ' '.join(m.msg for m in r.logs if m.name == 'depth')
        errors = ' '.join(m.msg for m in r.logs if m.name == 'depth')
        assert 'Traceback' not in errors and 'ZeroDivisionError' not in errors
    finally:
        r.close()


def test_more_inference_threads_than_cores_warns(rig):
    from faster_deployment_ros.core.autotune.measurement import available_cores
    cores = available_cores()
    r = rig(workers=2, threads=cores)
    r.start()
    assert r.wait(lambda: [m for m in r.logs if m.name == 'detector'
                           and f'= {2 * cores} inference threads on {cores} cores' in m.msg])


def test_wrong_family_names_the_right_one(rig):
    model = ROOT / '.cache' / 'models' / 'yolov8n.onnx'
    if not model.exists():
        pytest.skip('test models not built (make test-assets)')
    r = rig(model_path=str(model), model_family='yolox', diagnostics_period=0.2)
    r.start(expect=TransitionCallbackReturn.FAILURE)
    s = r.status(ERROR, 'unconfigured')
    assert 'looks like a YOLOv8 head' in s.message and 'model_family: yolov8' in s.message


# ---- signals ----------------------------------------------------------------------------
def run_and_signal(model: Path, frame: np.ndarray, policy: str, sig: int) -> tuple:
    """Return the console-script node under a 60 Hz camera, stopped by `sig` with frames in flight.

    (exit code, seconds from signal to exit, output).
    """
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            [sys.executable, '-m', 'faster_deployment_ros.ros.detector_node', '--ros-args',
             '-p', 'autostart:=true', '-p', f'model_path:={model}', '-p', 'model_family:=yolox',
             '-p', f'full_policy:={policy}', '-p', 'qos_reliability:=best_effort',
             '-p', 'diagnostics_period:=0.5'],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
        node = rclpy.create_node('signal_peer')
        pub = node.create_publisher(Image, 'image', 5)
        got = threading.Event()
        node.create_subscription(Detection2DArray, 'detections', lambda m: got.set(), 10)
        msg = fill_image_msg(Image(), frame, 'bgr8')
        try:
            deadline = time.monotonic() + 60
            while not got.is_set() and time.monotonic() < deadline and proc.poll() is None:
                pub.publish(msg)
                rclpy.spin_once(node, timeout_sec=1 / 60)
            assert got.is_set(), 'the node never answered'
            for _ in range(10):  # frames in flight when the signal comes
                pub.publish(msg)
                rclpy.spin_once(node, timeout_sec=1 / 60)
            t0 = time.monotonic()
            proc.send_signal(sig)
            rc = proc.wait(timeout=30)
            elapsed = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            destroy_node(node)
        out.seek(0)
        return rc, elapsed, out.read().decode(errors='replace')


@pytest.mark.parametrize('policy', ['drop_oldest', 'block'])
@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_signal_stops_the_node_cleanly(ros, yolox_model, dog, policy, sig):
    rc, elapsed, output = run_and_signal(yolox_model, dog, policy, sig)
    print(f'{policy} {signal.Signals(sig).name}: exit {rc} after {elapsed:.2f} s')
    assert rc == 0, output
    assert 'Traceback' not in output, output
    assert 'Failed to publish' not in output, output
