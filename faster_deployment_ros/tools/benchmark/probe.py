"""The outside observer's processes: a camera publisher, a detections receiver, the bare model.

What a user of the node sees, measured from outside it: each role runs in a process of its own,
with nothing of the node or of fdr-benchmark's in-process harness inside (plain rclpy,
sensor_msgs / vision_msgs messages, OpenCV, NumPy, ONNX Runtime):

- ``publish``: one rclpy node, best effort depth 5, sensor_msgs/Image bgr8 messages built once
  from the frames' bytes; a run publishes at a rate, each frame's ``header.frame_id`` its
  number, ``header.stamp`` the system time, and records ``time.monotonic_ns()`` just before
  each ``publish()`` call.
- ``receive``: one rclpy node subscribing to detections (reliable, depth 10) and /diagnostics;
  it takes each answer serialized, deserializes it into a Detection2DArray as any Python user's
  node gets it, and records ``time.monotonic_ns()`` after that, keyed by the frame number, and
  how long the deserialization took (a vision_msgs answer of 50 detections costs a Python
  receiver about 3 ms; the transport floor's empty one 0.02 ms).
- ``bare``: plain ONNX Runtime, a default ``SessionOptions`` with only
  ``intra_op_num_threads`` set (0: ONNX Runtime's own default), the package's model adapter for
  pre- and post-processing (``models.create_adapter``: the same letterbox and decode/NMS the
  node runs), paced at a rate: pre + infer + post per frame, the frames decoded into memory.

The monotonic clock is one clock for every process of the machine, so receipt minus publish is
the latency across processes. ``publish`` and ``receive`` take one JSON command per line on
stdin and answer one JSON line on stdout; ``bare`` prints one JSON line and exits.

  python -m faster_deployment_ros.tools.benchmark.probe bare --model M --video V --rate 12
"""
from __future__ import annotations

import argparse
import array
import json
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import cv2
import numpy as np

#: frame_id of warm-up frames (not timed); timed frames carry their number
WARM_ID = 'warm'


def read_video(path: str, count: int) -> List[np.ndarray]:
    """Return up to `count` bgr8 frames of the video at `path` (plain OpenCV)."""
    cap = cv2.VideoCapture(path)
    frames = []
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(np.ascontiguousarray(frame))
    cap.release()
    if not frames:
        raise SystemExit(f'no frames could be read from {path}: pass a readable video')
    return frames


def _answer(obj: Dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + '\n')
    sys.stdout.flush()


def _commands():
    for line in sys.stdin:
        line = line.strip()
        if line:
            yield json.loads(line)


# ---------------------------------------------------------------------------------- publish
def publish_main(args: argparse.Namespace) -> None:
    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    frames = read_video(args.video, args.frames)
    rclpy.init()
    node = rclpy.create_node('outside_view_camera')
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                     reliability=ReliabilityPolicy.BEST_EFFORT)
    msgs = []
    for f in frames:
        m = Image()
        m.height, m.width = f.shape[:2]
        m.encoding, m.is_bigendian, m.step = 'bgr8', 0, f.shape[1] * 3
        data = array.array('B')
        data.frombytes(f.tobytes())
        m.data = data
        msgs.append(m)
    pubs: Dict[str, Any] = {}
    counter = 0
    _answer({'ready': True, 'frames': len(msgs)})
    for cmd in _commands():
        if cmd['cmd'] == 'quit':
            break
        topic = cmd['topic']
        pub = pubs.get(topic)
        if pub is None:
            pub = pubs[topic] = node.create_publisher(Image, topic, qos)
        end = time.monotonic() + float(cmd.get('timeout', 60.0))
        while pub.get_subscription_count() == 0:
            if time.monotonic() > end:
                break
            time.sleep(0.02)
        if pub.get_subscription_count() == 0:
            _answer({'error': f'nothing subscribed to {topic} in {cmd.get("timeout", 60)} s'})
            continue
        rate, warm_s, seconds = float(cmd['rate']), float(cmd['warmup_s']), float(cmd['seconds'])
        sent: List[List[int]] = []
        warm = 0
        t0 = time.monotonic()
        k = 0
        while True:
            due = t0 + k / rate
            now = time.monotonic()
            if due - t0 >= warm_s + seconds:
                break
            if due > now:
                time.sleep(due - now)
            msg = msgs[k % len(msgs)]
            timed = due - t0 >= warm_s
            msg.header.frame_id = str(counter) if timed else WARM_ID
            stamp = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            t_pub = time.monotonic_ns()
            pub.publish(msg)
            if timed:
                sent.append([counter, t_pub])
                counter += 1
            else:
                warm += 1
            k += 1
        _answer({'sent': sent, 'warm': warm,
                 'input_fps': round((len(sent) - 1) / ((sent[-1][1] - sent[0][1]) / 1e9), 3)
                 if len(sent) > 1 else 0.0})
    node.destroy_node()
    rclpy.try_shutdown()


# ---------------------------------------------------------------------------------- receive
def receive_main(args: argparse.Namespace) -> None:
    from diagnostic_msgs.msg import DiagnosticArray
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.serialization import deserialize_message
    from vision_msgs.msg import Detection2DArray

    rclpy.init()
    node = rclpy.create_node('outside_view_receiver')
    lock = threading.Lock()
    got: Dict[str, List[List[Any]]] = {}
    diag: Dict[str, Dict[str, Any]] = {}  # status name -> {'t': monotonic ns, 'values': ...}
    subs: Dict[str, Any] = {}

    def on_det(topic: str, raw: bytes) -> None:
        # Taken serialized, then deserialized here, so both moments are known: the answer in
        # hand (bytes) and as a Python message, which is what rclpy's own take would hand over.
        t_raw = time.monotonic_ns()
        msg = deserialize_message(raw, Detection2DArray)
        t = time.monotonic_ns()
        with lock:
            got[topic].append([msg.header.frame_id, t, len(msg.detections), t - t_raw])

    def on_diag(msg) -> None:
        t = time.monotonic_ns()
        with lock:
            for st in msg.status:
                diag[st.name] = {'t': t, 'values': {kv.key: kv.value for kv in st.values}}

    node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    _answer({'ready': True})
    for cmd in _commands():
        if cmd['cmd'] == 'quit':
            break
        topic = cmd['topic']
        if cmd['cmd'] == 'watch':
            if topic not in subs:
                with lock:
                    got[topic] = []
                subs[topic] = node.create_subscription(
                    Detection2DArray, topic, lambda m, t=topic: on_det(t, m), 10, raw=True)
            end = time.monotonic() + float(cmd.get('timeout', 60.0))
            while subs[topic].get_publisher_count() == 0 and time.monotonic() < end:
                time.sleep(0.02)
            _answer({'ok': subs[topic].get_publisher_count() > 0})
        elif cmd['cmd'] == 'take':
            # until `expect` timed frames came back, or nothing new for `quiet_s`
            expect, quiet = int(cmd.get('expect', 0)), float(cmd.get('quiet_s', 1.0))
            end = time.monotonic() + float(cmd.get('timeout', 10.0))
            last, last_change = -1, time.monotonic()
            while time.monotonic() < end:
                with lock:
                    n = sum(1 for r in got[topic] if r[0] != WARM_ID)
                if n >= expect:
                    break
                if n != last:
                    last, last_change = n, time.monotonic()
                elif time.monotonic() - last_change > quiet:
                    break
                time.sleep(0.02)
            status = cmd.get('status', '')
            after = int(cmd.get('diagnostics_after_ns', 0))
            end = time.monotonic() + float(cmd.get('diagnostics_timeout', 0.0))
            while status and time.monotonic() < end:
                with lock:
                    if diag.get(status, {}).get('t', 0) > after:
                        break
                time.sleep(0.05)
            with lock:
                rec, got[topic] = got[topic], []
                values = diag.get(status, {}).get('values', {}) if status else {}
            _answer({'received': [r for r in rec if r[0] != WARM_ID],
                     'warm': sum(1 for r in rec if r[0] == WARM_ID), 'diagnostics': values})
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()


# ---------------------------------------------------------------------------------- bare
def ort_session(model: str, threads: int, spinning: bool = True):
    """Return a plain ONNX Runtime CPU session: default options, `threads` intra-op (0: ORT's).

    spinning False: idle intra-op threads block instead of spinning (ORT's default is to spin;
    the node does not on <= 4 cores).
    """
    import onnxruntime as ort
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    if not spinning:
        so.add_session_config_entry('session.intra_op.allow_spinning', '0')
    return ort.InferenceSession(model, sess_options=so, providers=['CPUExecutionProvider'])


def make_adapter(session, family: str, conf: float):
    """Return the package's adapter for the session's model (its pre- and post-processing)."""
    from ...core.types import ONNX_DTYPES, TensorSpec
    from ...models import create_adapter

    def spec(a) -> TensorSpec:
        shape = tuple(d if isinstance(d, int) else None if d is None else str(d)
                      for d in a.shape)
        return TensorSpec(a.name, shape, ONNX_DTYPES.get(a.type, np.dtype(np.float32)))

    inputs = [spec(a) for a in session.get_inputs()]
    outputs = [spec(a) for a in session.get_outputs()]
    meta = dict(session.get_modelmeta().custom_metadata_map or {})
    return create_adapter(family, inputs, outputs, meta, conf_threshold=conf)


def detector(session, adapter) -> Callable[[np.ndarray], Any]:
    """Return `detect(image)`: the adapter's pre-processing, the session, its post-processing."""
    names = [i.name for i in session.get_inputs()]
    outs = [o.name for o in session.get_outputs()]

    def detect(image: np.ndarray):
        tensors, meta = adapter.preprocess(image)
        return adapter.postprocess(session.run(outs, dict(zip(names, tensors))), meta)
    return detect


def time_frames(session, adapter, frames: Sequence[np.ndarray], count: int,
                rate: float = 0.0, seconds: float = 0.0) -> Dict[str, List[float]]:
    """Return pre / infer / post / frame times (ms) of `count` frames (or `seconds`), paced."""
    names = [i.name for i in session.get_inputs()]
    outs = [o.name for o in session.get_outputs()]
    t: Dict[str, List[float]] = {'pre': [], 'infer': [], 'post': [], 'frame': []}
    now = time.perf_counter
    t0 = now()
    k = 0
    while (k < count) if not seconds else (now() - t0 < seconds):
        if rate > 0:
            due = t0 + k / rate
            if due > now():
                time.sleep(due - now())
        a = now()
        tensors, meta = adapter.preprocess(frames[k % len(frames)])
        b = now()
        outputs = session.run(outs, dict(zip(names, tensors)))
        c = now()
        adapter.postprocess(outputs, meta)
        d = now()
        for key, v in (('pre', b - a), ('infer', c - b), ('post', d - c), ('frame', d - a)):
            t[key].append(round(1e3 * v, 4))
        k += 1
    return t


def bare_main(args: argparse.Namespace) -> None:
    frames = read_video(args.video, args.frames)
    counts = [int(x) for x in args.threads.split(',') if x.strip()]
    sweep = []
    best: Optional[int] = counts[0] if len(counts) == 1 else None
    if best is None:  # short sweep, back to back: the thread count with the fastest frame
        for threads in counts:
            session = ort_session(args.model, threads)
            adapter = make_adapter(session, args.family, args.conf)
            time_frames(session, adapter, frames, 3)
            t = time_frames(session, adapter, frames, args.sweep_frames)
            sweep.append({'threads': threads,
                          'frame_p50_ms': round(float(np.median(t['frame'])), 3),
                          'capacity_fps': round(1e3 / float(np.mean(t['frame'])), 2)})
            del session
        best = min(sweep, key=lambda s: s['frame_p50_ms'])['threads']
    out: Dict[str, Any] = {'threads': best, 'sweep': sweep, 'rate_hz': args.rate}
    if args.seconds > 0:
        session = ort_session(args.model, best)
        adapter = make_adapter(session, args.family, args.conf)
        time_frames(session, adapter, frames, 3)
        out.update(time_frames(session, adapter, frames, 0, rate=args.rate,
                               seconds=args.seconds))
    _answer(out)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog='probe', description=__doc__.split('\n')[0])
    sub = ap.add_subparsers(dest='role', required=True)
    pub = sub.add_parser('publish', help='camera: bgr8 frames at a rate (commands on stdin)')
    pub.add_argument('--video', required=True)
    pub.add_argument('--frames', type=int, default=30)
    sub.add_parser('receive', help='detections and /diagnostics receipt (commands on stdin)')
    bare = sub.add_parser('bare', help='plain ONNX Runtime, pre + infer + post, paced')
    bare.add_argument('--model', required=True)
    bare.add_argument('--family', required=True)
    bare.add_argument('--video', required=True)
    bare.add_argument('--frames', type=int, default=30)
    bare.add_argument('--conf', type=float, default=0.3)
    bare.add_argument('--threads', default='0', help='intra-op thread count, or several to '
                      'sweep (the fastest is used)')
    bare.add_argument('--sweep-frames', type=int, default=15)
    bare.add_argument('--rate', type=float, default=0.0, help='Hz (0: back to back)')
    bare.add_argument('--seconds', type=float, default=0.0, help='paced run (0: sweep only)')
    return ap


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    {'publish': publish_main, 'receive': receive_main, 'bare': bare_main}[args.role](args)


if __name__ == '__main__':
    main()
