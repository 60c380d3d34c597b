"""Several camera streams into a live ROS 2 graph at once, each output recorded per camera.

One publisher per camera plays that camera's frames on its own schedule (a fixed rate, or the
bag's recorded times); one raw recorder per camera keeps (stamp, frame_id, receipt time) of every
output. Each camera then gets its own report (tools/report.py: dropped, order, header
mismatches, latency publish -> receipt). Used by `make demo-multicam` (tools/demo_multicam.py)
and the multi-camera benchmark (tools/multicam_bench.py). A ROS tool: rclpy is imported inside
the functions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import struct
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .graph_node import spinning_node
from .replay import cdr_header
from .report import (build_report, detection_classes, latencies_ns, percentiles_ms,
                     Record)


@dataclass
class Stream:
    """One camera: where its frames go, where its results come back, and what to play."""

    name: str
    in_topic: str
    out_topic: str
    payloads: List[bytes]            # serialised messages whose first field is a Header
    msg_type: Any                    # the rclpy class of the payloads (Image, CompressedImage)
    rate: float = 0.0                # Hz: play payloads cycled at this rate ...
    offsets_s: Optional[List[float]] = None  # ... or each payload once at these times
    restamp: bool = True             # header stamp = wall time at publish (unique per frame)
    phase_s: float = 0.0             # first frame this late (cameras are not in lockstep)
    inputs: List[Record] = field(default_factory=list)
    outputs: List[Record] = field(default_factory=list)
    output_data: List[bytes] = field(default_factory=list)
    keep_output_data: bool = False


def serialise_images(frames: Sequence[np.ndarray], frame_id: str) -> List[bytes]:
    """bgr8 frames -> serialised sensor_msgs/Image (stamp 0, patched at publish)."""
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    from ..core.image_codec import fill_image_msg
    out = []
    for f in frames:
        msg = fill_image_msg(Image(), np.ascontiguousarray(f), 'bgr8')
        msg.header.frame_id = frame_id
        out.append(serialize_message(msg))
    return out


def _restamped(payload: bytes, stamp_ns: int) -> bytes:
    buf = bytearray(payload)
    endian = '<' if buf[1] == 1 else '>'
    struct.pack_into(endian + 'iI', buf, 4, *divmod(stamp_ns, 1_000_000_000))
    return bytes(buf)


def _schedule(streams: Sequence[Stream], duration_s: float) -> List[Tuple[float, int, int]]:
    """(offset s, stream index, payload index) in time order over all streams."""
    items = []
    for si, s in enumerate(streams):
        if s.offsets_s is not None:
            items += [(t, si, k) for k, t in enumerate(s.offsets_s)]
        else:
            n = int(duration_s * s.rate)
            items += [(s.phase_s + k / s.rate, si, k % len(s.payloads)) for k in range(n)]
    items.sort()
    return items


def play_streams(streams: Sequence[Stream], duration_s: float = 10.0, *,
                 node_name: str = 'fdr_multicam', wait_timeout: float = 60.0,
                 settle_timeout: float = 10.0, idle_timeout: float = 2.0,
                 start_delay: float = 0.5, log: Callable[[str], None] = print,
                 on_published: Optional[Callable[[], None]] = None) -> None:
    """Play every stream and record its outputs into stream.inputs / stream.outputs.

    Frames go out best effort, as camera drivers publish them. The nodes under test must
    subscribe within wait_timeout; `on_published` is called once the last frame is out (before
    waiting for results).
    """
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    from .replay import import_message
    lock = threading.Lock()
    last = [0]
    with spinning_node(node_name, log) as node:
        in_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                            reliability=ReliabilityPolicy.BEST_EFFORT)
        pubs = [node.create_publisher(s.msg_type, s.in_topic, in_qos) for s in streams]
        end = time.monotonic() + wait_timeout
        for s, pub in zip(streams, pubs):
            while pub.get_subscription_count() == 0 or node.count_publishers(s.out_topic) == 0:
                if time.monotonic() > end:
                    raise RuntimeError(f'nothing subscribed {s.in_topic} and published '
                                       f'{s.out_topic} within {wait_timeout:.0f} s')
                time.sleep(0.05)
        subs = []
        for s in streams:
            infos = node.get_publishers_info_by_topic(s.out_topic)
            out_cls = import_message(infos[0].topic_type)
            reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                           for i in infos)
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000,
                             reliability=ReliabilityPolicy.RELIABLE if reliable
                             else ReliabilityPolicy.BEST_EFFORT)

            def record(data: bytes, s: Stream = s) -> None:
                t = time.monotonic_ns()
                stamp, frame_id = cdr_header(data)
                with lock:
                    s.outputs.append(Record(stamp, frame_id, t))
                    if s.keep_output_data:
                        s.output_data.append(bytes(data))
                    last[0] = t
            subs.append(node.create_subscription(out_cls, s.out_topic, record, qos, raw=True))
        end = time.monotonic() + wait_timeout
        while any(sub.get_publisher_count() == 0 for sub in subs):
            if time.monotonic() > end:
                raise RuntimeError('the recorders never matched the outputs')
            time.sleep(0.05)
        time.sleep(start_delay)

        items = _schedule(streams, duration_s)
        log(f'[multicam] playing {len(items)} frames on {len(streams)} cameras: '
            + ', '.join(f'{s.in_topic} -> {s.out_topic}' for s in streams))
        t0 = time.monotonic_ns()
        for offset, si, k in items:
            s = streams[si]
            due = t0 + int(offset * 1e9)
            now = time.monotonic_ns()
            if now < due:
                time.sleep((due - now) / 1e9)
            payload = s.payloads[k]
            if s.restamp:
                payload = _restamped(payload, time.time_ns())
            t_pub = time.monotonic_ns()
            pubs[si].publish(payload)
            stamp, frame_id = cdr_header(payload)
            s.inputs.append(Record(stamp, frame_id, t_pub))
        if on_published is not None:
            on_published()
        n_in = sum(len(s.inputs) for s in streams)
        end = time.monotonic() + settle_timeout
        while time.monotonic() < end:
            with lock:
                n_out = sum(len(s.outputs) for s in streams)
                idle = time.monotonic_ns() - max(last[0], t0) > idle_timeout * 1e9
            if n_out >= n_in or idle:
                break
            time.sleep(0.02)
        for sub in subs:
            node.destroy_subscription(sub)


def kept_records(s: Stream, since_ns: Optional[int] = None) -> Tuple[List[Record], List[Record]]:
    """Return one camera's (inputs, outputs): frames published from `since_ns` on and theirs."""
    inputs = [r for r in s.inputs if since_ns is None or r.t_ns >= since_ns]
    kept = {r.stamp_ns for r in inputs}
    return inputs, [r for r in s.outputs if r.stamp_ns in kept]


def pooled_latency_ms(streams: Sequence[Stream],
                      since_ns: Optional[int] = None) -> Optional[Dict[str, float]]:
    """Return latency percentiles (publish -> receipt) over every frame of every camera."""
    return percentiles_ms([t for s in streams for t in latencies_ns(*kept_records(s, since_ns))])


def stream_report(s: Stream, since_ns: Optional[int] = None) -> Dict[str, Any]:
    """Build tools/report.py's report for one camera.

    `since_ns` keeps only frames published from then on (a warm-up cut) and their outputs.
    """
    inputs, outputs = kept_records(s, since_ns)
    kept = {r.stamp_ns for r in inputs}
    detections = None
    if s.output_data:
        from rclpy.serialization import deserialize_message
        from vision_msgs.msg import Detection2DArray
        detections = [detection_classes(deserialize_message(d, Detection2DArray))
                      for d, r in zip(s.output_data, s.outputs) if r.stamp_ns in kept]
    return build_report(inputs, outputs, detections,
                        extra={'camera': s.name, 'in_topic': s.in_topic,
                               'out_topic': s.out_topic})
