"""Replay tooling: report functions (pure), and play-record end to end in a real rclpy graph.

The graph has small in-test nodes: a faithful echo and a misbehaving one.
"""
from __future__ import annotations

import json
import threading
import time

import cv2
from faster_deployment_ros.core.image_codec import msg_to_numpy
from faster_deployment_ros.tools.bag_types import make_typestore
from faster_deployment_ros.tools.report import (build_report, detection_classes, format_report,
                                                header_mismatches, latencies_ns, order_violations,
                                                percentiles_ms, Record, summarize_detections)
from faster_deployment_ros.tools.video_to_bag import video_to_bag
import numpy as np
import pytest
from rosbags.rosbag2 import Reader
from support.ros_nodes import destroy_node

START = 1_700_000_000_000_000_000


# ---------------------------------------------------------------- report.py (no ROS)

def R(stamp, t, frame='cam'):
    return Record(stamp, frame, t)


def test_report_counts_and_latency():
    ms = 1_000_000
    inputs = [R(100 * i, 1000 * ms + 20 * ms * i) for i in range(10)]
    # outputs: frame 3 dropped, 5 and 6 swapped, frame 8 with a foreign frame_id, frame 9 twice
    order = [0, 1, 2, 4, 6, 5, 7, 9, 9]
    outputs = [R(100 * i, 1000 * ms + 20 * ms * i + (5 + i) * ms) for i in order]
    outputs.insert(7, Record(800, 'other', 1000 * ms + 20 * ms * 8 + 13 * ms))
    rep = build_report(inputs, outputs, detections=[['person']] * 10,
                       lateness_ns=[0] * 10, extra={'config': {'rate': 1.0}})
    assert rep['frames_in'] == 10 and rep['frames_out'] == 10
    assert rep['dropped'] == 1 and rep['duplicates'] == 1  # frame 3; frame 9 twice
    assert rep['order_violations'] == 2  # 6 -> 5, and 9 -> 9 (not strictly increasing)
    assert rep['header_mismatches'] == 1
    lat = rep['latency_ms']  # first output per input stamp, 'other' included (stamp match)
    assert lat['n'] == 9 and lat['max'] == 14.0
    assert lat['p50'] == pytest.approx(np.median([5, 6, 7, 9, 11, 10, 12, 13, 14]))
    assert rep['input_fps'] == pytest.approx(50.0)
    assert rep['throughput_fps'] == pytest.approx(10 / (0.18 + 0.014), rel=1e-3)
    assert rep['config'] == {'rate': 1.0}
    text = format_report(rep)
    assert 'order violations 2' in text and 'with a person 100.0%' in text


def test_report_helpers_edge_cases():
    assert percentiles_ms([]) is None
    assert order_violations([]) == 0 and order_violations([1]) == 0
    assert header_mismatches([R(1, 0, 'a')], [R(1, 5, 'b'), R(2, 6, 'a'), R(1, 7, 'a')]) == 2
    assert latencies_ns([R(1, 10), R(2, 20)], [R(2, 25), R(3, 40), R(1, 41), R(1, 50)]) == [5, 31]
    rep = build_report([R(1, 0)], [])
    assert rep['dropped'] == 1 and rep['latency_ms'] is None and rep['throughput_fps'] == 0.0
    s = summarize_detections([['person', 'person', 'car'], [], ['car']])
    assert s['per_class'] == {'person': 2, 'car': 2}
    assert s['frames_with_class'] == {'car': 2, 'person': 1}
    assert s['frames_with_detections'] == 2 and s['frames_with_detections_pct'] == 66.67


def test_detection_classes_takes_best_hypothesis():
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

    def hyp(c, s):
        h = ObjectHypothesisWithPose()
        h.hypothesis.class_id, h.hypothesis.score = c, s
        return h
    msg = Detection2DArray()
    msg.detections = [Detection2D(results=[hyp('dog', 0.3), hyp('cat', 0.8)]),
                      Detection2D(results=[]), Detection2D(results=[hyp('person', 0.5)])]
    assert detection_classes(msg) == ['cat', 'person']


@pytest.mark.ros
def test_cdr_header_matches_rclpy_serialization():
    from faster_deployment_ros.tools.replay import cdr_header, has_header, import_message
    from rclpy.serialization import serialize_message
    from vision_msgs.msg import Detection2DArray
    msg = Detection2DArray()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1_700_000_123, 456_789
    msg.header.frame_id = 'cam_front'
    assert cdr_header(serialize_message(msg)) == (1_700_000_123_000_456_789, 'cam_front')
    assert import_message('vision_msgs/Detection2DArray') is Detection2DArray
    assert has_header(Detection2DArray) and not has_header(import_message('std_msgs/msg/String'))


# ---------------------------------------------------------------- end to end (real rclpy graph)

class EchoNode:
    """An in-test stand-in for a detector, in its own rclpy context.

    For every image it publishes a Detection2DArray with the input header and one detection whose
    class_id is the frame's mean grey level (so pixel data is checked end to end). ``misbehave``
    drops every 7th frame, swaps the outputs of frames 10 and 11 and stamps frame 22 with a wrong
    frame_id. ``work_s``: time each frame takes, as a model's inference would.
    """

    def __init__(self, misbehave: bool = False, image_out: bool = False,
                 work_s: float = 0.0) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray

        self.ctx = Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node('echo_detector', context=self.ctx)
        self.pub = self.node.create_publisher(Detection2DArray, 'detections', 10)
        self.img_pub = self.node.create_publisher(Image, 'small_image', 10) if image_out else None
        self.node.create_subscription(Image, 'image', self.on_image, qos_profile_sensor_data)
        self.misbehave, self.n, self.held, self.work_s = misbehave, 0, None, work_s
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.spin, daemon=True)
        self.thread.start()

    def spin(self) -> None:
        while not self.stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def on_image(self, msg) -> None:
        from faster_deployment_ros.core.image_codec import fill_image_msg
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose
        i, self.n = self.n, self.n + 1
        if self.work_s:
            time.sleep(self.work_s)  # the stand-in's "inference"
        img = msg_to_numpy(msg)
        out = Detection2DArray(header=msg.header)
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id, hyp.hypothesis.score = str(int(img.mean())), 1.0
        out.detections = [Detection2D(header=msg.header, results=[hyp])]
        if self.img_pub is not None:
            small = Image(header=msg.header)
            self.img_pub.publish(fill_image_msg(small, np.ascontiguousarray(img[::8, ::8]),
                                                msg.encoding))
        if self.misbehave:
            if i % 7 == 6:
                return
            if i == 22:
                out.header.frame_id = 'wrong'
            if i == 10:
                self.held = out
                return
        self.pub.publish(out)
        if self.misbehave and i == 11:
            self.pub.publish(self.held)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.executor.shutdown()
        destroy_node(self.node)
        self.ctx.try_shutdown()


@pytest.fixture(scope='module')
def campus_bag(campus_video, tmp_path_factory):
    path = tmp_path_factory.mktemp('replay') / 'campus30'
    video_to_bag(campus_video, path, max_frames=30, start_ns=START)
    return path


@pytest.fixture
def echo(request):
    node = EchoNode(**getattr(request, 'param', {}))
    yield node
    node.close()


def frame_means(bag):
    store = make_typestore(())
    with Reader(bag) as r:
        return {store.deserialize_cdr(d, c.msgtype).header.stamp.sec * 10**9
                + store.deserialize_cdr(d, c.msgtype).header.stamp.nanosec:
                str(int(msg_to_numpy(store.deserialize_cdr(d, c.msgtype)).mean()))
                for c, _, d in r.messages()}


def read_outputs(bag, msgtype):
    store = make_typestore((msgtype,))
    with Reader(bag) as r:
        assert [c.msgtype for c in r.connections] == [msgtype]
        return [(ts, store.deserialize_cdr(d, c.msgtype)) for c, ts, d in r.messages()]


@pytest.mark.ros
@pytest.mark.parametrize('mode', ['raw', 'msg'])
def test_play_record_echo(campus_bag, echo, tmp_path, mode):
    from faster_deployment_ros.tools.replay import play_record, ReplayConfig
    cfg = ReplayConfig(in_bag=campus_bag, out_dir=tmp_path, rate=3.0, publish_mode=mode,
                       wait_timeout=20, settle_timeout=10)
    rep = play_record(cfg, log=lambda s: None)
    assert rep == json.loads((tmp_path / 'report.json').read_text())
    assert rep['frames_in'] == rep['frames_out'] == 30, rep
    assert rep['dropped'] == 0 and rep['duplicates'] == 0
    assert rep['order_violations'] == 0 and rep['header_mismatches'] == 0
    assert rep['latency_ms']['n'] == 30 and rep['latency_ms']['max'] > 0
    assert rep['input_fps'] == pytest.approx(30.0, rel=0.1)  # 10 fps bag at rate 3
    assert rep['detections']['frames_with_detections'] == 30
    # The output bag: receipt-time stamps, the input headers, and the echo node's pixel means.
    outputs = read_outputs(tmp_path / 'outputs', 'vision_msgs/msg/Detection2DArray')
    assert len(outputs) == 30
    means = frame_means(campus_bag)
    stamps = []
    for ts, msg in outputs:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        stamps.append(stamp)
        assert msg.header.frame_id == 'camera'
        assert msg.detections[0].results[0].hypothesis.class_id == means[stamp]
        assert ts > START  # receipt wall time, not the (older) frame stamp
    assert stamps == sorted(means) == [START + i * 100_000_000 for i in range(30)]


@pytest.mark.ros
@pytest.mark.parametrize('echo', [{'misbehave': True}], indirect=True)
def test_play_record_reports_misbehaviour(campus_bag, echo, tmp_path):
    from faster_deployment_ros.tools.replay import play_record, ReplayConfig
    rep = play_record(ReplayConfig(in_bag=campus_bag, out_dir=tmp_path, rate=3.0,
                                   idle_timeout=1.0), log=lambda s: None)
    assert rep['frames_in'] == 30
    assert rep['frames_out'] == 26 and rep['dropped'] == 4  # frames 6, 13, 20, 27
    assert rep['order_violations'] == 1  # 11 before 10
    assert rep['header_mismatches'] == 1  # frame 22
    assert rep['latency_ms']['n'] == 26


@pytest.mark.ros
@pytest.mark.parametrize('echo', [{'image_out': True}], indirect=True)
def test_play_record_any_type(campus_bag, echo, tmp_path):
    from faster_deployment_ros.tools.replay import play_record, ReplayConfig
    rep = play_record(ReplayConfig(in_bag=campus_bag, out_dir=tmp_path, rate=3.0,
                                   out_topic='/small_image', out_type='sensor_msgs/Image',
                                   max_frames=12), log=lambda s: None)
    assert rep['frames_in'] == rep['frames_out'] == 12
    assert rep['order_violations'] == 0 and rep['header_mismatches'] == 0
    assert 'detections' not in rep
    outputs = read_outputs(tmp_path / 'outputs', 'sensor_msgs/msg/Image')
    assert [(m.height, m.width, m.encoding) for _, m in outputs] == [(45, 60, 'bgr8')] * 12


@pytest.mark.ros
@pytest.mark.parametrize('echo', [{'work_s': 0.03}], indirect=True)
def test_play_record_lockstep_feeds_a_slow_node_every_frame(campus_bag, echo, tmp_path):
    """
    Replay as fast as possible into a node slower than the player: lockstep loses no frame.

    Best effort, depth 5; lockstep waits for each output (golden-bag runs rely on it).
    """
    from faster_deployment_ros.tools.replay import play_record, ReplayConfig
    rep = play_record(ReplayConfig(in_bag=campus_bag, out_dir=tmp_path, rate=0.0, lockstep=True,
                                   idle_timeout=5.0), log=lambda s: None)
    assert rep['frames_in'] == rep['frames_out'] == 30 and rep['dropped'] == 0
    assert rep['order_violations'] == 0 and rep['header_mismatches'] == 0
    assert echo.n == 30


# ---------------------------------------------------------------- the demo driver (real node)

@pytest.mark.slow
@pytest.mark.ros
def test_demo_driver_on_plaza(plaza_video, yolox_model, tmp_path):
    """`make demo` on 40 frames of the plaza video: the real detector_node in a subprocess."""
    import subprocess
    import sys

    out = tmp_path / 'demo'
    cmd = [sys.executable, '-m', 'faster_deployment_ros.tools.demo', '--input', str(plaza_video),
           '--model', str(yolox_model), '--out', str(out), '--max-frames', '40', '--rate', '0.5',
           '--node-timeout', '60']
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = json.loads((out / 'report.json').read_text())
    assert rep['frames_in'] == 40
    assert 1 <= rep['frames_out'] <= 40 and rep['dropped'] == 40 - rep['frames_out']
    assert rep['order_violations'] == 0 and rep['header_mismatches'] == 0
    assert rep['latency_ms']['n'] == rep['frames_out']
    det = rep['detections']
    assert det['frames_with_class_pct']['person'] >= 90, det
    assert det['per_class']['person'] >= 5 * rep['frames_out'], det  # a crowded plaza
    assert 'frames in 40' in proc.stdout and 'with a person' in proc.stdout
    pngs = sorted(out.glob('frame_*.png'))
    assert 1 <= len(pngs) <= 4
    img = cv2.imread(str(pngs[0]))
    stamp = int(pngs[0].stem.split('_')[-1])
    store = make_typestore(())
    with Reader(out / 'input_bag') as r:
        frames = {ts: store.deserialize_cdr(d, c.msgtype) for c, ts, d in r.messages()}
    src = msg_to_numpy(frames[stamp])  # bag time == header stamp
    changed = np.any(img != src, axis=2).mean()
    assert 0.001 < changed < 0.3, changed  # boxes and labels drawn on the matching frame
    # A missing model exits 2 and says what to pass.
    again = subprocess.run(cmd[:6] + ['/nonexistent/model.onnx'] + cmd[7:], capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 2
    assert 'make demo INPUT=/path/video.avi MODEL=/path/model.onnx' in again.stderr


@pytest.mark.slow
@pytest.mark.ros
def test_demo_golden_record_then_check(plaza_video, yolox_model, tmp_path):
    """
    `make golden`, then `make demo-check`: the same run passes, conf_threshold 0.6 fails.

    20 plaza frames; the golden modes process every frame (lockstep, blocking, reliable).
    """
    from pathlib import Path
    import re
    import subprocess
    import sys

    golden = tmp_path / 'golden'
    base = [sys.executable, '-m', 'faster_deployment_ros.tools.demo', '--input', str(plaza_video),
            '--model', str(yolox_model), '--max-frames', '20', '--node-timeout', '60',
            '--frames', '0']

    def demo(out, *extra):
        return subprocess.run(base + ['--out', str(tmp_path / out), *extra], capture_output=True,
                              text=True, timeout=240)
    proc = demo('rec', '--record-golden', str(golden))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((golden / 'golden.json').read_text())['frames_out'] == 20
    proc = demo('same', '--check-golden', str(golden))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    diff = json.loads((tmp_path / 'same' / 'diff.json').read_text())
    assert diff['gate']['passed'] and diff['frames_compared'] == 20
    assert diff['overall']['recall'] == 1.0 and diff['overall']['box_drift_px_max'] == 0.0
    assert (tmp_path / 'same' / 'diff.png').is_file()

    params = tmp_path / 'conf06.yaml'
    src = Path(__file__).resolve().parents[1] / 'config' / 'yolox_nano_onnxruntime.yaml'
    text, n = re.subn(r'(conf_threshold:\s*)0\.3\b', r'\g<1>0.6', src.read_text())
    assert n == 1
    params.write_text(text)
    proc = demo('worse', '--check-golden', str(golden), '--params', str(params))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert 'GATE FAILED' in proc.stdout and 'recall' in proc.stdout
    # no golden bag: a clear error, exit 2
    proc = demo('none', '--check-golden', str(tmp_path / 'nothing'))
    assert proc.returncode == 2 and 'record one first' in proc.stderr
