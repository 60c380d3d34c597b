"""Play an image bag into a live ROS 2 graph and record the outputs of the node under test.

The player publishes each bag frame with its recorded header at its recorded time (scaled by
``rate``) while a recorder subscription writes every output, stamped with its receipt time,
into an MCAP bag; ``report.json`` then says what was dropped, reordered, mis-stamped and how
late it came (see tools/report.py). A ROS tool: rclpy is imported inside the functions so that
``faster_deployment_ros.tools`` stays importable without ROS.
"""
from __future__ import annotations

import array
import contextlib
from dataclasses import dataclass, field
import importlib
import json
from pathlib import Path
import queue
import struct
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from rosbags.rosbag2 import Reader, Writer
from rosbags.rosbag2.enums import StoragePlugin

from .bag_types import make_typestore, normalize_type
from .graph_node import spinning_node
from .report import (build_report, companion_report, detection_classes, percentiles_ms,
                     Record)
from ..core.image_codec import fill_image_msg, msg_to_numpy

IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')


@dataclass
class ReplayConfig:
    in_bag: Path
    out_dir: Path
    in_topic: str = '/image'
    out_topic: str = '/detections'
    out_type: str = 'vision_msgs/msg/Detection2DArray'
    bag_topic: Optional[str] = None      # topic inside the bag; default in_topic or its only image
    rate: float = 1.0                    # 0: as fast as possible
    reliable: bool = False               # input QoS: best effort (sensor data) by default
    depth: int = 5
    wait_timeout: float = 30.0           # for the node under test to appear in the graph
    settle_timeout: float = 10.0         # after the last frame, at most this long for outputs
    idle_timeout: float = 2.0            # ...and stop early once outputs stop for this long
    start_delay: float = 0.5             # after matching, so the far side matches us too
    publish_mode: str = 'raw'            # raw: the bag's CDR bytes | msg: rclpy msgs, one buffer
    max_frames: Optional[int] = None
    lockstep: bool = False               # publish a frame only once the previous one's output
    #                                      came (or idle_timeout passed): no frame is dropped
    node_name: str = 'fdr_replay'
    # topic -> type recorded beside out_topic into the same bag (e.g. the detector's
    # instance_mask); report['topics'][topic] says how their headers match the outputs'
    companion_topics: Dict[str, str] = field(default_factory=dict)
    extra_report: Dict[str, Any] = field(default_factory=dict)


class ReplayError(RuntimeError):
    pass


def import_message(name: str):
    """'pkg/msg/Type' (or pkg/Type) -> the rclpy message class."""
    pkg, kind, typ = normalize_type(name).split('/')
    try:
        return getattr(importlib.import_module(f'{pkg}.{kind}'), typ)
    except (ImportError, AttributeError) as exc:
        raise ReplayError(f'cannot import message type {name}: {exc}') from exc


def has_header(msg_cls) -> bool:
    slots = getattr(msg_cls, 'SLOT_TYPES', ())
    first = slots[0] if slots else None
    return (getattr(first, 'namespaces', None) == ['std_msgs', 'msg']
            and getattr(first, 'name', None) == 'Header')


def cdr_header(data) -> Tuple[int, str]:
    """(stamp ns, frame_id) of a CDR message whose first field is std_msgs/Header.

    Reads 16 bytes and the frame_id instead of deserialising a possibly multi-MB message.
    """
    endian = '<' if data[1] == 1 else '>'
    sec, nsec, n = struct.unpack_from(endian + 'iII', data, 4)
    frame_id = bytes(data[16:16 + max(n - 1, 0)]).decode('utf-8', 'replace')
    return sec * 1_000_000_000 + nsec, frame_id


def _pick_connection(reader: Reader, cfg: ReplayConfig):
    conns = reader.connections
    want = cfg.bag_topic or cfg.in_topic
    chosen = [c for c in conns if c.topic == want]
    if not chosen and cfg.bag_topic is None:
        chosen = [c for c in conns if c.msgtype in IMAGE_TYPES]
        if len(chosen) > 1:
            raise ReplayError(f'{cfg.in_bag} has several image topics '
                              f'({", ".join(c.topic for c in chosen)}); pass --bag-topic')
    if not chosen:
        raise ReplayError(f'topic {want} not in {cfg.in_bag} (has: '
                          f'{", ".join(f"{c.topic} [{c.msgtype}]" for c in conns) or "nothing"})')
    return chosen


class _Prefetcher(threading.Thread):
    """Reads bag messages ahead of the player so disk and decoding jitter stay off its clock."""

    def __init__(self, path: Path, cfg: ReplayConfig, size: int = 8) -> None:
        super().__init__(name='bag-prefetch', daemon=True)
        self.reader = Reader(path)
        self.reader.open()
        self.conns = _pick_connection(self.reader, cfg)
        self.msgtype = self.conns[0].msgtype
        self.q: 'queue.Queue' = queue.Queue(maxsize=size)
        self.limit = cfg.max_frames
        self.stop = threading.Event()
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            for i, (_, ts, data) in enumerate(self.reader.messages(connections=self.conns)):
                if self.limit is not None and i >= self.limit:
                    break
                if not self._put((ts, data)):
                    return
        except BaseException as exc:  # noqa: B902 - handed to the player
            self.error = exc
        finally:
            self._put(None)
            self.reader.close()

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False


class _Recorder:
    """Raw subscription callback: receipt time, header, and the CDR bytes into the bag."""

    def __init__(self, writer: Writer, conn, with_header: bool,
                 lock: Optional[threading.Lock] = None) -> None:
        self.writer, self.conn, self.with_header = writer, conn, with_header
        self.records: List[Record] = []
        self.last_t = 0
        self.lock = lock or threading.Lock()  # shared by the recorders of one bag writer
        self.arrived = threading.Condition(self.lock)

    def __call__(self, data: bytes) -> None:
        t = time.monotonic_ns()
        wall = time.time_ns()
        stamp, frame_id = cdr_header(data) if self.with_header else (0, '')
        with self.lock:
            self.records.append(Record(stamp, frame_id, t))
            self.last_t = t
            self.writer.write(self.conn, wall, data)
            self.arrived.notify_all()


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise ReplayError(f'timed out after {timeout:.0f} s waiting for {what}')
        time.sleep(0.02)


def _build_publisher_msg(rb_msg, msgtype: str, reuse):
    """Rosbags message -> rclpy message, reusing the previous rclpy message and its buffer."""
    msg = reuse
    msg.header.stamp.sec = int(rb_msg.header.stamp.sec)
    msg.header.stamp.nanosec = int(rb_msg.header.stamp.nanosec)
    msg.header.frame_id = rb_msg.header.frame_id
    if msgtype == 'sensor_msgs/msg/Image':
        fill_image_msg(msg, msg_to_numpy(rb_msg), rb_msg.encoding)
    else:
        msg.format = rb_msg.format
        buf = array.array('B')
        buf.frombytes(rb_msg.data)
        msg.data = buf
    return msg


def play_record(cfg: ReplayConfig, log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Run the replay; writes OUT_DIR/outputs (MCAP bag) and OUT_DIR/report.json.

    Returns the report dict. The node under test must already be running (or start within
    wait_timeout).
    """
    from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)

    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out_bag = out_dir / 'outputs'
    if out_bag.exists():
        raise ReplayError(f'{out_bag} exists; remove it or choose another OUT_DIR')
    out_type = normalize_type(cfg.out_type)
    out_cls = import_message(out_type)
    store = make_typestore((out_type,))
    prefetch = _Prefetcher(Path(cfg.in_bag), cfg)
    in_cls = import_message(prefetch.msgtype)
    in_store = make_typestore(()) if cfg.publish_mode == 'msg' else None
    if cfg.publish_mode not in ('msg', 'raw'):
        raise ReplayError(f'publish_mode {cfg.publish_mode!r}: choose msg or raw')

    writer = None

    def close_writer() -> None:  # last: once the node that feeds it is gone
        if writer is not None:
            writer.close()
    with contextlib.ExitStack() as teardown:
        teardown.callback(close_writer)
        node = teardown.enter_context(spinning_node(cfg.node_name, log))
        teardown.callback(prefetch.stop.set)  # first: the bag reader thread ends
        in_qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=cfg.depth,
            reliability=ReliabilityPolicy.RELIABLE if cfg.reliable
            else ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
        pub = node.create_publisher(in_cls, cfg.in_topic, in_qos)
        log(f'[replay] waiting for a subscriber on {cfg.in_topic} and a publisher on '
            f'{cfg.out_topic} (up to {cfg.wait_timeout:.0f} s)')
        _wait(lambda: pub.get_subscription_count() > 0, cfg.wait_timeout,
              f'a subscriber on {cfg.in_topic}')
        _wait(lambda: node.count_publishers(cfg.out_topic) > 0, cfg.wait_timeout,
              f'a publisher on {cfg.out_topic}')
        out_qos = _recorder_qos(node, cfg.out_topic)
        writer = Writer(out_bag, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
        writer.open()
        conn = writer.add_connection(cfg.out_topic, out_type, typestore=store)
        recorder = _Recorder(writer, conn, has_header(out_cls))
        sub = node.create_subscription(out_cls, cfg.out_topic, recorder, out_qos, raw=True)
        companions = _record_companions(node, writer, cfg, recorder.lock)
        for s in [sub] + [s for _, s in companions.values()]:
            _wait(lambda s=s: s.get_publisher_count() > 0, cfg.wait_timeout,
                  f'the recorder to match {s.topic_name}')
        time.sleep(cfg.start_delay)

        inputs: List[Record] = []
        lateness: List[int] = []
        costs: List[int] = []  # prepare + publish, per frame
        reuse = in_cls()
        prefetch.start()
        log(f'[replay] playing {cfg.in_bag} ({prefetch.msgtype}) at rate {cfg.rate} '
            f'-> {cfg.in_topic}, recording {cfg.out_topic} [{out_type}]')
        t0 = ts0 = None
        while True:
            item = prefetch.q.get()
            if item is None:
                break
            ts, data = item
            c0 = time.perf_counter_ns()
            if cfg.publish_mode == 'msg':
                rb = in_store.deserialize_cdr(data, prefetch.msgtype)
                payload = _build_publisher_msg(rb, prefetch.msgtype, reuse)
                stamp = rb.header.stamp.sec * 1_000_000_000 + rb.header.stamp.nanosec
                frame_id = rb.header.frame_id
            else:
                payload = bytes(data)
                stamp, frame_id = cdr_header(data)
            cost = time.perf_counter_ns() - c0
            now = time.monotonic_ns()
            if t0 is None:
                t0, ts0 = now, ts
            due = t0 + ((ts - ts0) / cfg.rate if cfg.rate > 0 else 0)
            if now < due:
                time.sleep((due - now) / 1e9)
            t_pub = time.monotonic_ns()
            pub.publish(payload)
            costs.append(cost + time.monotonic_ns() - t_pub)
            inputs.append(Record(stamp, frame_id, t_pub))
            lateness.append(max(0, int(t_pub - due)))
            if cfg.lockstep:
                with recorder.arrived:
                    recorder.arrived.wait_for(lambda: len(recorder.records) >= len(inputs),
                                              timeout=cfg.idle_timeout)
            if len(inputs) % 50 == 0:
                log(f'[replay] {len(inputs)} frames published, {len(recorder.records)} outputs')
        if prefetch.error is not None:
            raise ReplayError(f'reading {cfg.in_bag} failed: {prefetch.error}') \
                from prefetch.error
        if not inputs:
            raise ReplayError(f'{cfg.in_bag}: no frames on the chosen topic')

        # Let the outputs settle: all frames answered (and each companion topic as many
        # messages as outputs), outputs idle, or the timeout.
        end = time.monotonic() + cfg.settle_timeout
        recorders = [recorder] + [r for r, _ in companions.values()]
        while time.monotonic() < end and (
                len(recorder.records) < len(inputs)
                or any(len(r.records) < len(recorder.records) for r in recorders)):
            last = max([r.last_t for r in recorders] + [inputs[-1].t_ns])
            if time.monotonic_ns() - last > cfg.idle_timeout * 1e9:
                break
            time.sleep(0.02)
        for s in [sub] + [s for _, s in companions.values()]:
            node.destroy_subscription(s)
        with recorder.lock:
            outputs = list(recorder.records)
            companion_records = {t: list(r.records) for t, (r, _) in companions.items()}
            writer.close()
            writer = None

    detections = None
    if out_type == 'vision_msgs/msg/Detection2DArray':
        detections = read_detections(out_bag, store)
    report = build_report(inputs, outputs, detections, lateness, extra={
        'config': {'in_bag': str(cfg.in_bag), 'in_topic': cfg.in_topic,
                   'out_topic': cfg.out_topic, 'out_type': out_type, 'rate': cfg.rate,
                   'reliable_input': cfg.reliable, 'depth': cfg.depth,
                   'publish_mode': cfg.publish_mode, 'output_bag': str(out_bag)},
        'player_cost_ms': percentiles_ms(costs), **cfg.extra_report})
    if companion_records:
        report['topics'] = {t: companion_report(outputs, r) for t, r in companion_records.items()}
    (out_dir / 'report.json').write_text(json.dumps(report, indent=2) + '\n')
    return report


def _recorder_qos(node, topic: str):
    """Depth 1000, volatile, with the reliability of ``topic``'s publishers.

    As ros2 bag record does: a reliable subscription would not hear a best-effort publisher.
    """
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    infos = node.get_publishers_info_by_topic(topic)
    reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000,
                      reliability=ReliabilityPolicy.RELIABLE if reliable
                      else ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)


def _record_companions(node, writer: Writer, cfg: ReplayConfig,
                       lock: threading.Lock) -> Dict[str, Tuple[_Recorder, Any]]:
    """Record every companion topic into ``writer``: topic -> (recorder, subscription).

    Waits for each topic's publisher first (its QoS decides the recorder's reliability).
    """
    out = {}
    for topic, typ in cfg.companion_topics.items():
        _wait(lambda t=topic: node.count_publishers(t) > 0, cfg.wait_timeout,
              f'a publisher on {topic}')
        typ = normalize_type(typ)
        cls = import_message(typ)
        conn = writer.add_connection(topic, typ, typestore=make_typestore((typ,)))
        rec = _Recorder(writer, conn, has_header(cls), lock)
        out[topic] = (rec, node.create_subscription(cls, topic, rec, _recorder_qos(node, topic),
                                                    raw=True))
    return out


def read_detections(bag: Path, store=None) -> List[List[str]]:
    """Class names per message of every Detection2DArray in ``bag`` (in bag order)."""
    store = store or make_typestore()
    out = []
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.msgtype == 'vision_msgs/msg/Detection2DArray']
        for conn, _, data in reader.messages(connections=conns):
            out.append(detection_classes(store.deserialize_cdr(data, conn.msgtype)))
    return out


def read_detection_msgs(bag: Path, store=None) -> List[Any]:
    """Every Detection2DArray in ``bag`` as rosbags messages (for drawing)."""
    store = store or make_typestore()
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.msgtype == 'vision_msgs/msg/Detection2DArray']
        return [store.deserialize_cdr(d, c.msgtype)
                for c, _, d in reader.messages(connections=conns)]
