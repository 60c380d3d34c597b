"""The transport floor, and the minimal hand-rolled detector node, for the benchmarks.

Without `model`: the transport floor, a minimal rclpy node answering each Image with an empty
vision_msgs/Detection2DArray carrying the frame's header. What any Python node pays before it
does any work (DDS, deserialising a 720p frame, the executor, serialising and sending the
answer), with the same QoS, executor and middleware settings as detector_node.

With `model` (an ONNX file) and `family`: the smallest detector node one would write by hand,
as yolo_ros-style nodes and scripts do: in the subscription callback, the frame's bytes as an
image, the package's adapter pre-processing, a plain ONNX Runtime session (default options,
`threads` intra-op threads, 0: ORT's default; `spinning: false` makes its idle threads block,
as the node's do on <= 4 cores), the adapter's post-processing, the detections published with
the frame's header. One frame at a time, nothing overlapped, no queue: the
reference the outside view compares the node's own part with.

With `model`, `family` and `video` (and `frames`): the transport floor answering with
detections. At start it reads the video's first `frames` frames as the outside view's camera
publisher does (probe.read_video), runs that same session and adapter once on each and keeps
each frame's Detection2DArray; then it answers every Image with the stored answer of the frame
it carries (found by a sample of its bytes), with the frame's header, and runs no model. What
any Python node pays to receive a 720p frame and answer it with these detections: the floor
for an answer of that size, which the receiver also pays to deserialize. A frame not in the
table is answered empty and counted in an error log line.

  python -m faster_deployment_ros.tools.benchmark.echo_node --ros-args -r __ns:=/floor
  python -m faster_deployment_ros.tools.benchmark.echo_node --ros-args -p model:=M.onnx \
      -p family:=yolox -p threads:=2
  python -m faster_deployment_ros.tools.benchmark.echo_node --ros-args -p model:=M.onnx \
      -p family:=yolox -p video:=V.avi -p frames:=30
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Dict, Optional

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray

from ...core.memory import reuse_large_buffers
from ...ros.detection_msgs import to_detection_array
from ...ros.node_main import make_executor

#: the answer table finds a frame by every FINGERPRINT_STRIDE-th byte (about 2800 of a 720p frame)
FINGERPRINT_STRIDE = 997


def frame_key(pixels: Any) -> bytes:
    """Return the answer table's key of a frame: every FINGERPRINT_STRIDE-th byte of its pixels.

    `pixels`: the decoded frame (a C-contiguous array) or an Image message's data, the same
    bytes in the same order.
    """
    return bytes(memoryview(pixels).cast('B')[::FINGERPRINT_STRIDE])


class EchoNode(Node):

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('transport_floor', **kwargs)
        depth = int(self.declare_parameter('qos_depth', 1).value)
        model = str(self.declare_parameter('model', '').value)
        video = str(self.declare_parameter('video', '').value)
        self.infer = None
        self.table: Optional[Dict[bytes, Detection2DArray]] = None
        self.unknown = 0
        if model:
            infer = self._load(model)
            if video:
                self.table = self._answer_table(
                    infer, video, int(self.declare_parameter('frames', 30).value))
            else:
                self.infer = infer
        # after the model and the table: no frame arrives before the node can answer it
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                         reliability=ReliabilityPolicy.BEST_EFFORT)
        self.pub = self.create_publisher(Detection2DArray, 'detections', QoSProfile(depth=depth))
        self.sub = self.create_subscription(Image, 'image', self._on_image, qos)
        self.get_logger().info(f'answering {self.resolve_topic_name("image")} on '
                               f'{self.resolve_topic_name("detections")}')

    def _load(self, model: str) -> Callable[[np.ndarray], Any]:
        from .probe import detector, make_adapter, ort_session
        threads = int(self.declare_parameter('threads', 0).value)
        family = str(self.declare_parameter('family', 'auto').value)
        conf = float(self.declare_parameter('conf', 0.25).value)
        spinning = bool(self.declare_parameter('spinning', True).value)
        session = ort_session(model, threads, spinning)
        adapter = make_adapter(session, family, conf)
        self.get_logger().info(f'model {model} ({adapter.family}), {threads} intra-op '
                               'thread(s) (0: ONNX Runtime default), '
                               f'{"spinning" if spinning else "no spinning"}')
        return detector(session, adapter)

    def _answer_table(self, infer: Callable[[np.ndarray], Any], video: str,
                      frames: int) -> Dict[bytes, Detection2DArray]:
        from .probe import read_video
        if frames < 1:
            raise SystemExit(f'frames:={frames}: the answer table needs at least one frame; '
                             'pass the number of frames the camera publisher sends')
        table: Dict[bytes, Detection2DArray] = {}
        for image in read_video(video, frames):
            key = frame_key(image)
            if key in table:
                raise SystemExit(f'two frames of {video} look alike to the answer table (every '
                                 f'{FINGERPRINT_STRIDE}th byte equal): pass a video whose '
                                 'first frames differ')
            table[key] = to_detection_array(infer(image), Header())
        counts = sorted(len(a.detections) for a in table.values())
        self.get_logger().info(f'answer table: {len(table)} frames of {video}, '
                               f'{counts[len(counts) // 2]} detections per frame (median); '
                               'no model runs from here on')
        return table

    def _on_image(self, msg: Image) -> None:
        if self.table is not None:
            answer = self.table.get(frame_key(msg.data))
            if answer is None:
                self.unknown += 1
                self.get_logger().error(
                    f'frame {msg.header.frame_id!r} is not in the answer table '
                    f'({self.unknown} so far), answered empty: publish the frames of the '
                    "video given as 'video', at most 'frames' of them",
                    throttle_duration_sec=5.0)
                answer = Detection2DArray()
            answer.header = msg.header
            self.pub.publish(answer)
            return
        if self.infer is None:
            self.pub.publish(Detection2DArray(header=msg.header))
            return
        if msg.encoding != 'bgr8' or msg.step != 3 * msg.width:
            self.get_logger().error(f'minimal node: bgr8 frames without padding only, got '
                                    f'{msg.encoding} step {msg.step}: publish bgr8 frames')
            return
        image = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
        self.pub.publish(to_detection_array(self.infer(image), msg.header))


def main(args=None) -> None:
    reuse_large_buffers()
    rclpy.init(args=args if args is not None else sys.argv)
    node = EchoNode()
    executor = make_executor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
